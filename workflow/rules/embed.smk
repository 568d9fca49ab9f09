# Stage rules: embed — the encoders the pipeline trains itself (embedding.train: train_clip for kind open_clip,
# train_dino for kind dino), image embeddings, prompt embeddings (their paths: infbrush/layout.py).
# Both trainers (train-dino here, train in train.smk) take --out RUN_FOLDER (checkpoints, metrics; rerunning
# resumes) and --export WEIGHTS: results/<ds>/dino_ckpt/ and results/<ds>/dino.pt.


rule train_clip:
    input:
        store=L.images("{ds}"),
    output:
        ckpt=L.clip_weights("{ds}"),
        metrics=L.clip_scores("{ds}"),
    wildcard_constraints:
        ds=P.names(lambda ds: P.trains(ds, "open_clip")),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train_clip.log",
    benchmark:
        "logs/benchmarks/{ds}/train_clip.tsv"
    params:
        flags=P.flags_of(
            "embedding.prompts", {"embedding.input_size": "--image-size"}, "embedding.clip_train.patch_size",
            "embedding.clip_train.width", "embedding.clip_train.layers", "embedding.clip_train.embed_dim",
            "embedding.clip_train.epochs", "embedding.clip_train.batch_size", "embedding.clip_train.lr",
            "embedding.clip_train.seed",
        ),
    threads: 2
    resources:
        **P.resources("train_clip"),
    shell:
        "infbrush train-clip --store {input.store} --out {output.ckpt} {params.flags} --device cpu --no-progress"
        " > {log} 2>&1"


rule train_dino:
    input:
        store=L.images("{ds}"),
    output:
        ckpt=L.dino_weights("{ds}"),
        metrics=L.dino_scores("{ds}"),
    wildcard_constraints:
        ds=P.names(lambda ds: P.trains(ds, "dino")),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train_dino.log",
    benchmark:
        "logs/benchmarks/{ds}/train_dino.tsv"
    params:
        out=lambda wc: L.dino_run(wc.ds),
        launcher=lambda wc: P.launcher(wc.ds),
        device=lambda wc: P.device(wc.ds),
        flags=P.flags_of(
            "embedding.model", "dino.img_size", "dino.patch_size", "dino.depth", "dino.epochs", "dino.batch_size",
            "dino.out_dim", "dino.hidden_dim", "dino.bottleneck_dim", "dino.local_crops", "dino.local_crop_size",
            "dino.global_crop_scale", "dino.local_crop_scale", "dino.vf_prob", "dino.rr_prob", "dino.cj_prob",
            "dino.cj_strength", "dino.gray_prob", "dino.blur_prob", "dino.solarize_prob", "dino.lr", "dino.min_lr",
            "dino.warmup_epochs", "dino.weight_decay", "dino.warmup_teacher_temp", "dino.teacher_temp",
            "dino.warmup_teacher_temp_epochs", "dino.momentum_teacher", "dino.drop_path", "dino.koleo_weight",
            "dino.seed", "dino.on_data_change",
        ),
    threads: 2
    resources:
        **P.resources("train_dino"),
    shell:
        "{params.launcher} train-dino --store {input.store} --out {params.out} --export {output.ckpt} {params.flags}"
        " --device {params.device} --no-progress > {log} 2>&1"


rule embed:
    input:
        store=L.images("{ds}"),
        checkpoint=lambda wc: P.checkpoint(wc.ds),
    output:
        L.embeddings("{ds}"),
    wildcard_constraints:
        ds=P.names(lambda ds: P.get(ds, "embedding.kind") != "label"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/embed.log",
    benchmark:
        "logs/benchmarks/{ds}/embed.tsv"
    params:
        device=lambda wc: P.device(wc.ds),
        flags=P.flags_of(
            "embedding.kind", "embedding.model", "embedding.checkpoint", "embedding.input_size", "embedding.batch_size"
        ),
    threads: 2
    resources:
        **P.resources("embed"),
    shell:
        "infbrush embed --store {input.store} {params.flags} --device {params.device} --out {output} --no-progress"
        " > {log} 2>&1"


rule embed_text:
    input:
        checkpoint=lambda wc: P.checkpoint(wc.ds),
    output:
        L.text_embeddings("{ds}"),
    wildcard_constraints:
        ds=P.names(P.has_prompts),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/embed_text.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_text.tsv"
    params:
        flags=P.flags_of("embedding.kind", "embedding.model", "embedding.checkpoint", "embedding.prompts"),
    threads: 1
    resources:
        **P.resources("embed_text"),
    shell:
        "infbrush embed-text {params.flags} --out {output} --device cpu > {log} 2>&1"
