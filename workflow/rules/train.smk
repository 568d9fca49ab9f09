# Stage rules: train — the function-space diffusion model on a dataset's image store (`infbrush train`).
#
# params.yaml train.batch_size is per GPU/process (the paper's "20 per GPU"); the command takes the global
# batch, so the rule passes batch_size × max(1, gpus). With gpus > 1 the command runs under
# `torchrun --standalone --nproc_per_node <gpus>` (one node; DDP over NCCL). Rerunning resumes from the
# newest checkpoint in the run folder; on SIGTERM/SIGUSR1 the command checkpoints, runs
# `scontrol requeue $SLURM_JOB_ID` under SLURM and exits 75 (see infbrush/runtime/preemption.py).
# One rule body trains every model of a dataset: `train` the main one (results/<ds>/), `train_variant` (the same
# rule with other paths) each variant, results/<ds>/<variant>/: label = conditioned on class labels,
# ablation_cano = without CANO (Table 2); the {variant} wildcard picks the condition (helpers/models.py).


rule train:
    input:
        unpack(lambda wc: inputs(P, wc.ds, variant(wc), "store")),
    output:
        ema=L.weights("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train.log",
    benchmark:
        "logs/benchmarks/{ds}/train.tsv"
    params:
        out=lambda wc: L.train_run(wc.ds, variant(wc)),
        launcher=lambda wc: P.launcher(wc.ds),
        cond=lambda wc: train_cond(P, wc.ds, variant(wc)),
        batch_size=lambda wc: P.get(wc.ds, "train.batch_size") * max(1, P.gpus(wc.ds)),  # per GPU → global
        model_args=lambda wc: flag("--model-args", json.dumps(o)) if (o := P.get(wc.ds, "model.overrides")) else "",
        # a variant's own steps where model.variant_steps sets them (the demo's label models need more)
        steps=lambda wc: flag("--steps", of_variant(P, wc.ds, variant(wc), "model.variant_steps", "train.steps")),
        flags=P.flags_of(
            {"model.preset": "--model-preset"}, "train.lr", "train.betas", "train.ema_rate", "train.grad_clip",
            "train.seed", "train.log_every", "train.ckpt_every", "train.keep", "train.sample_every",
            "train.lr_warmup", "train.lr_decay", "train.lr_final_fraction", "train.balance_labels",
            "train.stratify_t", "train.workers", "train.ema_kind", "train.ema_std", "train.t_dist",
            "train.t_dist_loc", "train.t_dist_scale", "train.loss_weighting", "train.min_snr_gamma",
            "train.on_data_change", "diffusion.n_points", "diffusion.mollify_sigma", "diffusion.cond_drop_prob",
            "diffusion.timesteps",
        ),
    resources:
        **P.resources("train"),
    threads: lambda wc: P.get(wc.ds, "train.threads")
    shell:
        "{params.launcher} train --store {input.store} {params.cond} --out {params.out}"
        " --export {output.ema} --batch-size {params.batch_size} {params.steps} {params.flags} {params.model_args}"
        " --no-progress"
        " > {log} 2>&1"


use rule train as train_variant with:
    output:
        ema=L.weights("{ds}", "{variant}"),
    log:
        "logs/{ds}/train_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/train_{variant}.tsv"
