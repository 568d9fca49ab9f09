# Stage rules: embed — demo CLIP training, DINO training, image embeddings, prompt embeddings.
# results/<ds>/democlip.pt (demo only), results/<ds>/dino.pt, results/<ds>/embeddings.h5, results/<ds>/text_embeddings.h5
import re as _re_embed
import shlex as _shlex


def _datasets_where(predicate):
    """Regex of the dataset names for which predicate(ds) holds (never matches when none does)."""
    return "|".join(_re_embed.escape(ds) for ds in DATASETS if predicate(ds)) or "(?!)"


def _embeds(ds):
    return param(ds, "embedding.kind") in ("open_clip", "timm", "dino")


def _trains_clip(ds):
    return param(ds, "embedding.kind") == "open_clip" and param(ds, "embedding.model") == "democlip"


def _trains_dino(ds):
    return param(ds, "embedding.kind") == "dino" and str(param(ds, "embedding.checkpoint", "")).startswith(RESULTS)


def _n_gpus(ds):
    return int(param(ds, "train.gpus", 0))


def _prompt_args(wc):
    """--prompts items NAME=PROMPT, shell-quoted."""
    return " ".join(_shlex.quote(f"{k}={v}") for k, v in param(wc.ds, "embedding.prompts", {}).items())


def _checkpoint_arg(wc):
    ckpt = param(wc.ds, "embedding.checkpoint")
    return f"--checkpoint {_shlex.quote(str(ckpt))}" if ckpt else ""


def _pipeline_checkpoint(wc):
    """The encoder checkpoint as an input when the pipeline makes it (democlip.pt, dino.pt)."""
    ckpt = param(wc.ds, "embedding.checkpoint")
    return [ckpt] if ckpt and str(ckpt).startswith(RESULTS) else []


rule train_clip:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
    output:
        ckpt=f"{RESULTS}/{{ds}}/democlip.pt",
        metrics=f"{RESULTS}/{{ds}}/democlip.json",
    wildcard_constraints:
        ds=_datasets_where(_trains_clip),
    log:
        "logs/{ds}/train_clip.log",
    benchmark:
        "logs/benchmarks/{ds}/train_clip.tsv"
    params:
        prompts=_prompt_args,
        image_size=lambda wc: param(wc.ds, "embedding.input_size", 64),
        epochs=lambda wc: param(wc.ds, "embedding.clip_train.epochs", 30),
        batch_size=lambda wc: param(wc.ds, "embedding.clip_train.batch_size", 32),
        lr=lambda wc: param(wc.ds, "embedding.clip_train.lr", 1e-3),
        width=lambda wc: param(wc.ds, "embedding.clip_train.width", 128),
        layers=lambda wc: param(wc.ds, "embedding.clip_train.layers", 4),
        embed_dim=lambda wc: param(wc.ds, "embedding.clip_train.embed_dim", 64),
        patch_size=lambda wc: param(wc.ds, "embedding.clip_train.patch_size", 8),
        seed=lambda wc: param(wc.ds, "embedding.clip_train.seed", 0),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "infbrush train-clip --store {input.store} --out {output.ckpt} --prompts {params.prompts}"
        " --image-size {params.image_size} --patch-size {params.patch_size} --width {params.width}"
        " --layers {params.layers} --embed-dim {params.embed_dim} --epochs {params.epochs}"
        " --batch-size {params.batch_size} --lr {params.lr} --seed {params.seed} --device cpu --no-progress"
        " > {log} 2>&1"


def _dino_launcher(wc):
    n = _n_gpus(wc.ds)
    return f"torchrun --standalone --nproc_per_node={n} -m infbrush" if n > 1 else "infbrush"


def _dino_augment_args(wc):
    """Architecture overrides and augmentation flags of train-dino; unset keys keep DINO's defaults."""
    flags = {"patch_size": "--patch-size", "depth": "--depth", "global_crop_scale": "--global-crop-scale",
             "local_crop_scale": "--local-crop-scale", "vf_prob": "--vf-prob", "rr_prob": "--rr-prob",
             "cj_prob": "--cj-prob", "cj_strength": "--cj-strength", "gray_prob": "--gray-prob",
             "blur_prob": "--blur-prob", "solarize_prob": "--solarize-prob", "min_lr": "--min-lr",
             "drop_path": "--drop-path", "koleo_weight": "--koleo-weight"}
    args = []
    for key, flag in flags.items():
        value = param(wc.ds, f"dino.{key}", None)
        if value is not None:
            args.append(f"{flag} " + " ".join(str(v) for v in (value if isinstance(value, list) else [value])))
    return " ".join(args)


rule train_dino:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
    output:
        ckpt=f"{RESULTS}/{{ds}}/dino.pt",
        metrics=f"{RESULTS}/{{ds}}/dino.json",
    wildcard_constraints:
        ds=_datasets_where(_trains_dino),
    log:
        "logs/{ds}/train_dino.log",
    benchmark:
        "logs/benchmarks/{ds}/train_dino.tsv"
    params:
        launcher=_dino_launcher,
        model=cfg("embedding.model"),
        img_size=cfg("dino.global_crop_size"),
        epochs=cfg("dino.epochs"),
        batch_size=cfg("dino.batch_size"),
        out_dim=cfg("dino.out_dim"),
        local_crops=cfg("dino.local_crops"),
        local_crop_size=cfg("dino.local_crop_size"),
        lr=cfg("dino.lr"),
        warmup_teacher_temp=cfg("dino.warmup_teacher_temp"),
        teacher_temp=cfg("dino.teacher_temp"),
        momentum_teacher=cfg("dino.momentum_teacher"),
        weight_decay=lambda wc: " ".join(str(x) for x in param(wc.ds, "dino.weight_decay")),
        warmup_epochs=lambda wc: param(wc.ds, "dino.warmup_epochs", 10),
        warmup_teacher_temp_epochs=lambda wc: param(wc.ds, "dino.warmup_teacher_temp_epochs", 30),
        hidden_dim=lambda wc: param(wc.ds, "dino.hidden_dim", 2048),
        bottleneck_dim=lambda wc: param(wc.ds, "dino.bottleneck_dim", 256),
        augment=_dino_augment_args,
        seed=cfg("dino.seed"),
        device=lambda wc: "auto" if _n_gpus(wc.ds) else "cpu",
    threads: 2
    resources:
        gpu=lambda wc: _n_gpus(wc.ds),
        mem_mb=lambda wc: 64000 if _n_gpus(wc.ds) else 4000,
        runtime=lambda wc: 48 * 60 if _n_gpus(wc.ds) else 60,
    shell:
        "{params.launcher} train-dino --store {input.store} --out {output.ckpt} --model {params.model}"
        " --img-size {params.img_size} --epochs {params.epochs} --batch-size {params.batch_size}"
        " --out-dim {params.out_dim} --hidden-dim {params.hidden_dim} --bottleneck-dim {params.bottleneck_dim}"
        " --local-crops {params.local_crops} --local-crop-size {params.local_crop_size} --lr {params.lr}"
        " --warmup-epochs {params.warmup_epochs} --warmup-teacher-temp {params.warmup_teacher_temp}"
        " --teacher-temp {params.teacher_temp} --warmup-teacher-temp-epochs {params.warmup_teacher_temp_epochs}"
        " --momentum-teacher {params.momentum_teacher} --weight-decay {params.weight_decay} --seed {params.seed}"
        " {params.augment} --restart-stale --device {params.device} --no-progress > {log} 2>&1"


rule embed:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        checkpoint=_pipeline_checkpoint,
    output:
        f"{RESULTS}/{{ds}}/embeddings.h5",
    wildcard_constraints:
        ds=_datasets_where(_embeds),
    log:
        "logs/{ds}/embed.log",
    benchmark:
        "logs/benchmarks/{ds}/embed.tsv"
    params:
        kind=cfg("embedding.kind"),
        model=cfg("embedding.model"),
        checkpoint=_checkpoint_arg,
        input_size=cfg("embedding.input_size"),
        batch_size=cfg("embedding.batch_size"),
        device=lambda wc: "auto" if _n_gpus(wc.ds) else "cpu",
    threads: 2
    resources:
        gpu=lambda wc: min(1, _n_gpus(wc.ds)),
        mem_mb=lambda wc: 32000 if _n_gpus(wc.ds) else 4000,
        runtime=lambda wc: 12 * 60 if _n_gpus(wc.ds) else 30,
    shell:
        "infbrush embed --store {input.store} --kind {params.kind} --model {params.model} {params.checkpoint}"
        " --input-size {params.input_size} --batch-size {params.batch_size} --device {params.device}"
        " --out {output} --no-progress > {log} 2>&1"


rule embed_text:
    input:
        checkpoint=_pipeline_checkpoint,
    output:
        f"{RESULTS}/{{ds}}/text_embeddings.h5",
    wildcard_constraints:
        ds=_datasets_where(lambda ds: param(ds, "embedding.kind") == "open_clip" and param(ds, "embedding.prompts")),
    log:
        "logs/{ds}/embed_text.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_text.tsv"
    params:
        model=cfg("embedding.model"),
        checkpoint=_checkpoint_arg,
        prompts=_prompt_args,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "infbrush embed-text --kind open_clip --model {params.model} {params.checkpoint}"
        " --prompts {params.prompts} --out {output} --device cpu > {log} 2>&1"


def _embed_targets(ds):
    targets = [f"{RESULTS}/{ds}/embeddings.h5"] if _embeds(ds) else []
    if param(ds, "embedding.kind") == "open_clip" and param(ds, "embedding.prompts"):
        targets.append(f"{RESULTS}/{ds}/text_embeddings.h5")
    return targets


DATASET_TARGETS.append(_embed_targets)
