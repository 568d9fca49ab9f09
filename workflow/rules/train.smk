# Stage rules: train — the function-space diffusion model on a dataset's image store (`infbrush train`).
#
# params.yaml train.batch_size is per GPU/process (the paper's "20 per GPU"); the command takes the global
# batch, so the rule passes batch_size × max(1, gpus). With gpus > 1 the command runs under
# `torchrun --standalone --nproc_per_node <gpus>` (one node; DDP over NCCL). Rerunning resumes from the
# newest checkpoint in the run folder; on SIGTERM/SIGUSR1 the command checkpoints, runs
# `scontrol requeue $SLURM_JOB_ID` under SLURM and exits 75 (see infbrush/train/preemption.py).


def _train_gpus(wildcards):
    return int(DATASETS[wildcards.ds]["train"].get("gpus", 0))


def _train_inputs(wildcards):
    inputs = {"store": f"{RESULTS}/{wildcards.ds}/images.h5"}
    if DATASETS[wildcards.ds]["embedding"]["kind"] != "label":
        inputs["embeddings"] = f"{RESULTS}/{wildcards.ds}/embeddings.h5"
    return inputs


def _train_cond(wildcards, input):
    embedding = DATASETS[wildcards.ds]["embedding"]
    if embedding["kind"] == "label":
        return f"--cond-labels {embedding['n_classes']}"
    return f"--cond-embeddings {input.embeddings}"


def _train_launcher(wildcards):
    gpus = _train_gpus(wildcards)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m infbrush"
    return "infbrush"


def _train_flags(wildcards):
    """Every training setting of the dataset as command flags (one place for both rules)."""
    d = DATASETS[wildcards.ds]
    t, diff, model = d["train"], d["diffusion"], d["model"]
    gpus = max(1, _train_gpus(wildcards))
    flags = [
        # Snakemake reruns training only when its inputs or params changed: checkpoints of other data are stale.
        "--on-data-change restart",
        f"--model-preset {model['preset']}",
        f"--steps {t['steps']}",
        f"--batch-size {t['batch_size'] * gpus}",
        f"--lr {t['lr']}",
        f"--betas {t['betas'][0]} {t['betas'][1]}",
        f"--ema-rate {t['ema_rate']}",
        f"--grad-clip {t['grad_clip']}",
        f"--seed {t['seed']}",
        f"--log-every {t.get('log_every', 10)}",
        f"--ckpt-every {t.get('ckpt_every', 100)}",
        f"--keep {t.get('keep_checkpoints', 3)}",
        f"--sample-every {t.get('sample_every', 0)}",
        f"--n-points {diff['n_points']}",
        f"--mollify-sigma {diff['mollify_sigma']}",
        f"--cond-drop-prob {diff['cond_drop_prob']}",
        f"--timesteps {diff['timesteps']}",
        f"--workers {0 if _train_gpus(wildcards) == 0 else 6}",
        "--no-progress",
    ]
    for key, flag in (("lr_warmup", "--lr-warmup"), ("lr_decay", "--lr-decay"),
                      ("lr_final_fraction", "--lr-final-fraction")):
        if t.get(key) is not None:
            flags.append(f"{flag} {t[key]}")
    flags += [flag for key, flag in (("balance_labels", "--balance-labels"), ("stratify_t", "--stratify-t"))
              if t.get(key)]
    if model.get("overrides"):
        import json, shlex

        flags.append(f"--model-args {shlex.quote(json.dumps(model['overrides']))}")
    return " ".join(flags)


def _train_resources(key):
    def value(wildcards):
        gpus = _train_gpus(wildcards)
        if key == "gpu":
            return gpus
        if key == "cpus_per_gpu":
            return 8 if gpus else 0
        if key == "mem_mb":
            return 64000 * gpus if gpus else 6000
        if key == "runtime":  # minutes; a longer run continues after requeue / rerun from its checkpoint
            return 2880 if gpus else 60
        raise KeyError(key)

    return value


rule train:
    input:
        unpack(_train_inputs),
    output:
        ema=f"{RESULTS}/{{ds}}/ema.pt",
    log:
        "logs/{ds}/train.log",
    benchmark:
        "logs/benchmarks/{ds}/train.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/train",
        launcher=_train_launcher,
        cond=_train_cond,
        flags=_train_flags,
        cano=lambda w: "" if DATASETS[w.ds]["model"]["cano"] else "--no-cano",
    resources:
        gpu=_train_resources("gpu"),
        cpus_per_gpu=_train_resources("cpus_per_gpu"),
        mem_mb=_train_resources("mem_mb"),
        runtime=_train_resources("runtime"),
    threads: 2
    shell:
        "{params.launcher} train --store {input.store} {params.cond} --out {params.out} --export {output.ema}"
        " {params.cano} {params.flags} > {log} 2>&1"


wildcard_constraints:
    variant="label|ablation_cano",


def _variant_inputs(wildcards):
    """A label-conditioned variant needs only the store; the CANO ablation also the embeddings."""
    if wildcards.variant == "label":
        return {"store": f"{RESULTS}/{wildcards.ds}/images.h5"}
    return _train_inputs(wildcards)


def _variant_cond(wildcards, input):
    """label: condition on the store's class labels (model.label_classes); ablation_cano: as the main model,
    without the cross-attention neural operator (the paper's Table 2)."""
    if wildcards.variant == "label":
        return f"--cond-labels {DATASETS[wildcards.ds]['model']['label_classes']}"
    return f"{_train_cond(wildcards, input)} --no-cano"


use rule train as train_variant with:
    input:
        unpack(_variant_inputs),
    output:
        ema=f"{RESULTS}/{{ds}}/{{variant}}/ema.pt",
    log:
        "logs/{ds}/train_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/train_{variant}.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/{{variant}}/train",
        launcher=_train_launcher,
        cond=_variant_cond,
        flags=_train_flags,
        cano="",  # the ablation's --no-cano comes with its condition (_variant_cond)


DATASET_TARGETS.append(lambda ds: [f"{RESULTS}/{ds}/ema.pt"]
                       + [f"{RESULTS}/{ds}/{v}/ema.pt" for v in DATASETS[ds]["model"].get("variants", [])])
