# Stage rules: embed — demo CLIP training, DINO training, image embeddings, prompt embeddings.
# results/<ds>/democlip.pt (demo only), results/<ds>/dino.pt, results/<ds>/embeddings.h5, results/<ds>/text_embeddings.h5
# Both trainers (train-dino here, train in train.smk) take --out RUN_FOLDER (checkpoints, metrics; rerunning
# resumes) and --export WEIGHTS: results/<ds>/dino_ckpt/ and results/<ds>/dino.pt.


rule train_clip:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
    output:
        ckpt=f"{RESULTS}/{{ds}}/democlip.pt",
        metrics=f"{RESULTS}/{{ds}}/democlip.json",
    wildcard_constraints:
        ds=P.names(P.trains_clip),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train_clip.log",
    benchmark:
        "logs/benchmarks/{ds}/train_clip.tsv"
    params:
        flags=P.flags_of({
            "embedding.prompts": "--prompts", "embedding.input_size": "--image-size",
            "embedding.clip_train.patch_size": "--patch-size", "embedding.clip_train.width": "--width",
            "embedding.clip_train.layers": "--layers", "embedding.clip_train.embed_dim": "--embed-dim",
            "embedding.clip_train.epochs": "--epochs", "embedding.clip_train.batch_size": "--batch-size",
            "embedding.clip_train.lr": "--lr", "embedding.clip_train.seed": "--seed",
        }),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "infbrush train-clip --store {input.store} --out {output.ckpt} {params.flags} --device cpu --no-progress"
        " > {log} 2>&1"


rule train_dino:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
    output:
        ckpt=f"{RESULTS}/{{ds}}/dino.pt",
        metrics=f"{RESULTS}/{{ds}}/dino.json",
    wildcard_constraints:
        ds=P.names(P.trains_dino),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/train_dino.log",
    benchmark:
        "logs/benchmarks/{ds}/train_dino.tsv"
    params:
        out=P.run_folder("dino_ckpt"),
        launcher=lambda wc: P.launcher(wc.ds),
        device=lambda wc: P.device(wc.ds),
        flags=P.flags_of({
            "embedding.model": "--model", "dino.global_crop_size": "--img-size", "dino.patch_size": "--patch-size",
            "dino.depth": "--depth", "dino.epochs": "--epochs", "dino.batch_size": "--batch-size",
            "dino.out_dim": "--out-dim", "dino.hidden_dim": "--hidden-dim",
            "dino.bottleneck_dim": "--bottleneck-dim", "dino.local_crops": "--local-crops",
            "dino.local_crop_size": "--local-crop-size", "dino.global_crop_scale": "--global-crop-scale",
            "dino.local_crop_scale": "--local-crop-scale", "dino.vf_prob": "--vf-prob", "dino.rr_prob": "--rr-prob",
            "dino.cj_prob": "--cj-prob", "dino.cj_strength": "--cj-strength", "dino.gray_prob": "--gray-prob",
            "dino.blur_prob": "--blur-prob", "dino.solarize_prob": "--solarize-prob", "dino.lr": "--lr",
            "dino.min_lr": "--min-lr", "dino.warmup_epochs": "--warmup-epochs",
            "dino.weight_decay": "--weight-decay", "dino.warmup_teacher_temp": "--warmup-teacher-temp",
            "dino.teacher_temp": "--teacher-temp",
            "dino.warmup_teacher_temp_epochs": "--warmup-teacher-temp-epochs",
            "dino.momentum_teacher": "--momentum-teacher", "dino.drop_path": "--drop-path",
            "dino.koleo_weight": "--koleo-weight", "dino.seed": "--seed", "dino.on_data_change": "--on-data-change",
        }),
    threads: 2
    resources:
        **P.resources(mem_mb=(4000, 64000), runtime=(60, 48 * 60), gpu="all"),
    shell:
        "{params.launcher} train-dino --store {input.store} --out {params.out} --export {output.ckpt} {params.flags}"
        " --device {params.device} --no-progress > {log} 2>&1"


rule embed:
    input:
        unpack(P.embed_inputs("images")),
    output:
        f"{RESULTS}/{{ds}}/embeddings.h5",
    wildcard_constraints:
        ds=P.names(P.embeds),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/embed.log",
    benchmark:
        "logs/benchmarks/{ds}/embed.tsv"
    params:
        device=lambda wc: P.device(wc.ds),
        flags=P.flags_of({
            "embedding.kind": "--kind", "embedding.model": "--model", "embedding.checkpoint": "--checkpoint",
            "embedding.input_size": "--input-size", "embedding.batch_size": "--batch-size",
        }),
    threads: 2
    resources:
        **P.resources(mem_mb=(4000, 32000), runtime=(30, 12 * 60), gpu="one"),
    shell:
        "infbrush embed --store {input.store} {params.flags} --device {params.device} --out {output} --no-progress"
        " > {log} 2>&1"


rule embed_text:
    input:
        checkpoint=lambda wc: P.encoder_checkpoint(wc.ds),
    output:
        f"{RESULTS}/{{ds}}/text_embeddings.h5",
    wildcard_constraints:
        ds=P.names(P.has_prompts),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/embed_text.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_text.tsv"
    params:
        flags=P.flags_of({
            "embedding.kind": "--kind", "embedding.model": "--model", "embedding.checkpoint": "--checkpoint",
            "embedding.prompts": "--prompts",
        }),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "infbrush embed-text {params.flags} --out {output} --device cpu > {log} 2>&1"
