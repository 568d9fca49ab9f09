# Stage rules: train — the function-space diffusion model on a dataset's image store (`infbrush train`).
#
# params.yaml train.batch_size is per GPU/process (the paper's "20 per GPU"); the command takes the global
# batch, so the rule passes batch_size × max(1, gpus). With gpus > 1 the command runs under
# `torchrun --standalone --nproc_per_node <gpus>` (one node; DDP over NCCL). Rerunning resumes from the
# newest checkpoint in the run folder; on SIGTERM/SIGUSR1 the command checkpoints, runs
# `scontrol requeue $SLURM_JOB_ID` under SLURM and exits 75 (see infbrush/runtime/preemption.py).
# One rule body trains every model of a dataset: `train` the main one (results/<ds>/), `train_variant` (the same
# rule with other paths) each variant, results/<ds>/<variant>/: label = conditioned on class labels,
# ablation_cano = without CANO (Table 2); the {variant} wildcard picks the condition (P.train_cond).


rule train:
    input:
        unpack(lambda wc: P.train_inputs(wc.ds, P.variant(wc))),
    output:
        ema=f"{RESULTS}/{{ds}}/ema.pt",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train.log",
    benchmark:
        "logs/benchmarks/{ds}/train.tsv"
    params:
        out=P.run_folder("train"),
        launcher=lambda wc: P.launcher(wc.ds),
        cond=lambda wc: P.train_cond(wc.ds, P.variant(wc)),
        batch_size=lambda wc: P.global_batch(wc.ds),
        model_args=lambda wc: P.model_args(wc.ds),
        steps=lambda wc: P.train_steps(wc.ds, P.variant(wc)),
        flags=P.flags_of({
            "model.preset": "--model-preset", "train.lr": "--lr",
            "train.betas": "--betas", "train.ema_rate": "--ema-rate", "train.grad_clip": "--grad-clip",
            "train.seed": "--seed", "train.log_every": "--log-every", "train.ckpt_every": "--ckpt-every",
            "train.keep_checkpoints": "--keep", "train.sample_every": "--sample-every",
            "train.lr_warmup": "--lr-warmup", "train.lr_decay": "--lr-decay",
            "train.lr_final_fraction": "--lr-final-fraction", "train.balance_labels": "--balance-labels",
            "train.stratify_t": "--stratify-t", "train.workers": "--workers",
            "train.ema_kind": "--ema-kind", "train.ema_std": "--ema-std", "train.t_dist": "--t-dist",
            "train.t_dist_loc": "--t-dist-loc", "train.t_dist_scale": "--t-dist-scale",
            "train.loss_weighting": "--loss-weighting", "train.min_snr_gamma": "--min-snr-gamma",
            "train.on_data_change": "--on-data-change", "diffusion.n_points": "--n-points",
            "diffusion.mollify_sigma": "--mollify-sigma", "diffusion.cond_drop_prob": "--cond-drop-prob",
            "diffusion.timesteps": "--timesteps",
        }),
    resources:
        **P.train_resources(),
    threads: 2
    shell:
        "{params.launcher} train --store {input.store} {params.cond} --out {params.out}"
        " --export {output.ema} --batch-size {params.batch_size} {params.steps} {params.flags} {params.model_args}"
        " --no-progress"
        " > {log} 2>&1"


use rule train as train_variant with:
    output:
        ema=f"{RESULTS}/{{ds}}/{{variant}}/ema.pt",
    log:
        "logs/{ds}/train_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/train_{variant}.tsv"
