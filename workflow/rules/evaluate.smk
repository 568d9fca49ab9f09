# Stage rules: sampling and evaluation — samples at any resolution, CLIP FID / Crop FID / KID (fid-ref + fid),
# zero-shot confusion, BACH downstream, controllability (demo), the CANO ablation, and the HTML report.
#
# Sample sets (each `infbrush sample` writes OUT/<R>/<name>.png|.tiff + OUT/<R>/index.json):
#   samples/<R>/              conditioned on held-out real images' embeddings (FID, control, report grids)
#   samples_text/<R>/         conditioned on the class prompts' text embeddings (zero-shot)
#   samples_bach/<R>/         conditioned on the BACH training images' embeddings (BACH downstream)
#   ablation_cano/samples/<R>/  the CANO-off model, held-out conditions (ablation_cano.json)
# FID and the other metrics use the first resolution of sample.resolutions (the training resolution).


wildcard_constraints:
    res=r"\d+",


def _ds(wc):
    return DATASETS[wc.ds]


def _ev(ds, key, default=None):
    """datasets.<ds>.evaluate.<key>, or ``default`` when params.yaml does not set it."""
    return param(ds, f"evaluate.{key}", default)


def _res0(ds):
    return DATASETS[ds]["sample"]["resolutions"][0]


def _synthetic_res(ds):
    """Resolution of the zero-shot and BACH synthetic images (evaluate.synthetic_resolution, else the first)."""
    return _ev(ds, "synthetic_resolution") or _res0(ds)


def _gpu(wc):
    return 1 if int(DATASETS[wc.ds]["train"].get("gpus", 0)) > 0 else 0


def _has_prompts(ds):
    return bool((DATASETS[ds].get("embedding") or {}).get("prompts"))


def _has_bach(ds):
    return bool((DATASETS[ds].get("inputs") or {}).get("bach"))


def _is_label(ds):
    return DATASETS[ds]["embedding"]["kind"] == "label"


def _sample_flags(wc):
    """Every sampling setting as flags; mpp metadata for WSI datasets (tiling.target_mpp at patch_size)."""
    s = DATASETS[wc.ds]["sample"]
    flags = [f"--steps {s['steps']}", f"--guidance-scale {s['guidance_scale']}", f"--chunk-points {s['chunk_points']}",
             f"--seed {s['seed']}", "--no-progress"]
    tiling = DATASETS[wc.ds].get("tiling")
    if tiling and tiling.get("target_mpp") not in (None, "native"):  # native: the slides' own MPP, unknown here
        flags.append(f"--mpp {tiling['target_mpp']} --mpp-size {tiling['patch_size']}")
    return " ".join(flags)


def _sample_inputs(wc):
    inputs = {"weights": f"{RESULTS}/{wc.ds}/ema.pt", "store": f"{RESULTS}/{wc.ds}/images.h5"}
    if not _is_label(wc.ds):
        inputs["embeddings"] = f"{RESULTS}/{wc.ds}/embeddings.h5"
    return inputs


def _sample_cond(wc, input):
    d = DATASETS[wc.ds]
    n_images = d["sample"]["n_images"]
    if _is_label(wc.ds):  # a label-conditioned model (CelebA-HQ blonde / non-blonde): equal numbers per class
        k = d["embedding"]["n_classes"]
        return f"--labels {','.join(map(str, range(k)))} --per-class {max(1, n_images // k)}"
    per_class = d["sample"].get("per_class")
    if per_class and wc.res != str(_res0(wc.ds)):  # 2×, 4×: fewer images (artefact and KID checks only)
        per_class = d["sample"].get("per_class_upscaled") or per_class
    if per_class:  # every class of the held-out images represented (controllability)
        return f"--cond-embeddings {input.embeddings} --store {input.store} --split held-out --balanced --per-class {per_class}"
    return f"--cond-embeddings {input.embeddings} --store {input.store} --split held-out --n-images {n_images}"


def _clip_checkpoint(ds):
    """Weights of the FID CLIP: evaluate.clip_checkpoint, else the dataset's own embedding checkpoint when it is
    the same model, else (democlip on a dataset without one, e.g. demo_naip) the first demo CLIP in params."""
    model = _ev(ds, "clip_model", "clip_vit_b_32")
    explicit = _ev(ds, "clip_checkpoint")
    if explicit:
        return explicit
    embedding = DATASETS[ds].get("embedding") or {}
    if embedding.get("model") == model and embedding.get("checkpoint"):
        return embedding["checkpoint"]
    if model == "democlip":
        for block in DATASETS.values():
            emb = block.get("embedding") or {}
            if emb.get("model") == "democlip" and emb.get("checkpoint"):
                return emb["checkpoint"]
    return None


def _resources(mem_mb_cpu, mem_mb_gpu, runtime_cpu, runtime_gpu):
    return dict(
        gpu=_gpu,
        mem_mb=lambda wc: mem_mb_gpu if _gpu(wc) else mem_mb_cpu,
        runtime=lambda wc: runtime_gpu if _gpu(wc) else runtime_cpu,
    )


rule sample:
    input:
        unpack(_sample_inputs),
    output:
        f"{RESULTS}/{{ds}}/samples/{{res}}/index.json",
    log:
        "logs/{ds}/sample_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{res}.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/samples",
        cond=_sample_cond,
        flags=_sample_flags,
    resources:
        **_resources(8000, 64000, 120, 1440),
    threads: 2
    shell:
        "infbrush sample --weights {input.weights} --out {params.out} --resolution {wildcards.res}"
        " {params.cond} {params.flags} > {log} 2>&1"


def _variant_sample_inputs(wc):
    inputs = {"weights": f"{RESULTS}/{wc.ds}/{wc.variant}/ema.pt", "store": f"{RESULTS}/{wc.ds}/images.h5"}
    if wc.variant != "label":
        inputs["embeddings"] = f"{RESULTS}/{wc.ds}/embeddings.h5"
    return inputs


def _variant_sample_cond(wc, input):
    """label: every class (model.label_classes) sample.per_class times; else as the main model's samples."""
    if wc.variant == "label":
        k = DATASETS[wc.ds]["model"]["label_classes"]
        per_class = DATASETS[wc.ds]["sample"].get("per_class") or max(1, DATASETS[wc.ds]["sample"]["n_images"] // k)
        return f"--labels {','.join(map(str, range(k)))} --per-class {per_class}"
    return _sample_cond(wc, input)


use rule sample as sample_variant with:
    input:
        unpack(_variant_sample_inputs),
    output:
        f"{RESULTS}/{{ds}}/{{variant}}/samples/{{res}}/index.json",
    log:
        "logs/{ds}/sample_{variant}_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{variant}_{res}.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/{{variant}}/samples",
        cond=_variant_sample_cond,
        flags=_sample_flags,


rule sample_text:
    input:
        weights=f"{RESULTS}/{{ds}}/ema.pt",
        text=f"{RESULTS}/{{ds}}/text_embeddings.h5",
    output:
        f"{RESULTS}/{{ds}}/samples_text/{{res}}/index.json",
    log:
        "logs/{ds}/sample_text_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_text_{res}.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/samples_text",
        per_class=lambda wc: _ev(wc.ds, "zeroshot_per_class", 4),
        flags=_sample_flags,
    resources:
        **_resources(8000, 64000, 120, 1440),
    threads: 2
    shell:
        "infbrush sample --weights {input.weights} --out {params.out} --resolution {wildcards.res}"
        " --cond-text {input.text} --per-class {params.per_class} {params.flags} > {log} 2>&1"


rule embed_bach:
    input:
        store=f"{RESULTS}/{{ds}}/bach.h5",
        ckpt=lambda wc: [c] if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else [],
    output:
        f"{RESULTS}/{{ds}}/bach_embeddings.h5",
    log:
        "logs/{ds}/embed_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_bach.tsv"
    params:
        kind=lambda wc: DATASETS[wc.ds]["embedding"]["kind"],
        model=lambda wc: DATASETS[wc.ds]["embedding"]["model"],
        ckpt=lambda wc: f"--checkpoint {c}" if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else "",
        batch_size=lambda wc: DATASETS[wc.ds]["embedding"]["batch_size"],
    resources:
        **_resources(4000, 32000, 30, 120),
    threads: 2
    shell:
        "infbrush embed --store {input.store} --kind {params.kind} --model {params.model} {params.ckpt}"
        " --out {output} --batch-size {params.batch_size} --no-progress > {log} 2>&1"


rule sample_bach:
    input:
        weights=f"{RESULTS}/{{ds}}/ema.pt",
        store=f"{RESULTS}/{{ds}}/bach.h5",
        embeddings=f"{RESULTS}/{{ds}}/bach_embeddings.h5",
    output:
        f"{RESULTS}/{{ds}}/samples_bach/{{res}}/index.json",
    log:
        "logs/{ds}/sample_bach_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_bach_{res}.tsv"
    params:
        out=f"{RESULTS}/{{ds}}/samples_bach",
        flags=_sample_flags,
    resources:
        **_resources(8000, 64000, 120, 1440),
    threads: 2
    shell:
        "infbrush sample --weights {input.weights} --out {params.out} --resolution {wildcards.res}"
        " --cond-embeddings {input.embeddings} --store {input.store} --split train {params.flags} > {log} 2>&1"


def _fid_ref_inputs(wc):
    inputs = {"store": f"{RESULTS}/{wc.ds}/images.h5"}
    clip = _clip_checkpoint(wc.ds)
    if clip:
        inputs["clip"] = clip
    weights = _ev(wc.ds, "inception_weights")
    if weights:
        inputs["inception"] = weights
    return inputs


def _fid_ref_flags(wc):
    ds = wc.ds
    flags = [f"--clip-model {_ev(ds, 'clip_model', 'clip_vit_b_32')}",
             f"--crop-size {_ev(ds, 'crop_size', 256)}", f"--crops-per-image {_ev(ds, 'crops_per_image', 16)}",
             f"--crop-seed {DATASETS[ds]['sample'].get('seed', 0)}", f"--split {_ev(ds, 'fid_real_split', 'all')}",
             f"--max-images {_ev(ds, 'fid_max_real_images', 64 if ds in DEMO_SOURCES else 0)}", f"--kid-max-feats {_ev(ds, 'kid_max_feats', 10000)}",
             f"--seed {_ev(ds, 'fid_seed', 0)}"]
    if _clip_checkpoint(ds):
        flags.append(f"--clip-checkpoint {_clip_checkpoint(ds)}")
    if _ev(ds, "inception_weights"):
        flags.append(f"--inception-weights {_ev(ds, 'inception_weights')}")
    return " ".join(flags)


rule fid_ref:
    input:
        unpack(_fid_ref_inputs),
    output:
        f"{RESULTS}/{{ds}}/fid_ref.npz",
    log:
        "logs/{ds}/fid_ref.log",
    benchmark:
        "logs/benchmarks/{ds}/fid_ref.tsv"
    params:
        flags=_fid_ref_flags,
    resources:
        **_resources(8000, 64000, 120, 720),
    threads: 2
    shell:
        "infbrush fid-ref --store {input.store} --out {output} {params.flags} > {log} 2>&1"


def _fid_flags(wc):
    # demo sets are far smaller than the feature dimensions (see infbrush/evaluate/crops.py): KID is their number
    return "--allow-rank-deficient" if _ev(wc.ds, "allow_rank_deficient", wc.ds in DEMO_SOURCES) else ""


def _fid_sanity(ds):
    """evaluate.fid_sanity (default: on for the demos): score real / blurred / noise sets and flag failing metrics."""
    return bool(_ev(ds, "fid_sanity", ds in DEMO_SOURCES))


rule fid:
    input:
        ref=f"{RESULTS}/{{ds}}/fid_ref.npz",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/samples/{_res0(wc.ds)}/index.json",
        clip=lambda wc: [c] if (c := _clip_checkpoint(wc.ds)) else [],
        store=lambda wc: [f"{RESULTS}/{wc.ds}/images.h5"] if _fid_sanity(wc.ds) else [],
    output:
        f"{RESULTS}/{{ds}}/fid.json",
    log:
        "logs/{ds}/fid.log",
    benchmark:
        "logs/benchmarks/{ds}/fid.tsv"
    params:
        flags=_fid_flags,
        sanity=lambda wc, input: f"--store {input.store}" if _fid_sanity(wc.ds) else "",
    resources:
        **_resources(8000, 64000, 60, 240),
    threads: 2
    shell:
        "infbrush fid --ref {input.ref} --samples {input.samples} --out {output} {params.flags} {params.sanity}"
        " > {log} 2>&1"


rule ablation_cano:
    input:
        ref=f"{RESULTS}/{{ds}}/fid_ref.npz",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/ablation_cano/samples/{_res0(wc.ds)}/index.json",
        clip=lambda wc: [c] if (c := _clip_checkpoint(wc.ds)) else [],
    output:
        f"{RESULTS}/{{ds}}/ablation_cano.json",
    log:
        "logs/{ds}/ablation_cano.log",
    benchmark:
        "logs/benchmarks/{ds}/ablation_cano.tsv"
    params:
        flags=_fid_flags,
    resources:
        **_resources(8000, 64000, 60, 240),
    threads: 2
    shell:
        "infbrush fid --ref {input.ref} --samples {input.samples} --out {output} {params.flags}"
        " --tag 'ablation: CANO off' > {log} 2>&1"


def _prompt_items(wc):
    import shlex

    prompts = DATASETS[wc.ds]["embedding"]["prompts"]
    return " ".join(shlex.quote(f"{name}={text}") for name, text in prompts.items())


rule zeroshot:
    input:
        samples=lambda wc: f"{RESULTS}/{wc.ds}/samples_text/{_synthetic_res(wc.ds)}/index.json",
        ckpt=lambda wc: [c] if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else [],
    output:
        json=f"{RESULTS}/{{ds}}/zeroshot.json",
        png=f"{RESULTS}/{{ds}}/zeroshot.png",
    log:
        "logs/{ds}/zeroshot.log",
    benchmark:
        "logs/benchmarks/{ds}/zeroshot.tsv"
    params:
        kind=lambda wc: DATASETS[wc.ds]["embedding"]["kind"],
        model=lambda wc: DATASETS[wc.ds]["embedding"]["model"],
        ckpt=lambda wc: f"--checkpoint {c}" if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else "",
        prompts=_prompt_items,
    resources:
        **_resources(4000, 32000, 30, 60),
    threads: 2
    shell:
        "infbrush zeroshot --samples {input.samples} --kind {params.kind} --model {params.model}"
        " {params.ckpt} --out {output.json} --png {output.png} --prompts {params.prompts} > {log} 2>&1"


rule bach_eval:
    input:
        bach=f"{RESULTS}/{{ds}}/bach.h5",
        synthetic=lambda wc: f"{RESULTS}/{wc.ds}/samples_bach/{_synthetic_res(wc.ds)}/index.json",
        ckpt=lambda wc: [c] if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else [],
    output:
        f"{RESULTS}/{{ds}}/bach.json",
    log:
        "logs/{ds}/bach_eval.log",
    benchmark:
        "logs/benchmarks/{ds}/bach_eval.tsv"
    params:
        kind=lambda wc: DATASETS[wc.ds]["embedding"]["kind"],
        model=lambda wc: DATASETS[wc.ds]["embedding"]["model"],
        ckpt=lambda wc: f"--checkpoint {c}" if (c := DATASETS[wc.ds]["embedding"].get("checkpoint")) else "",
        seeds=lambda wc: " ".join(map(str, _ev(wc.ds, "bach_seeds", [0, 1, 2]))),
    resources:
        **_resources(4000, 32000, 30, 60),
    threads: 2
    shell:
        "infbrush bach-eval --bach {input.bach} --synthetic {input.synthetic} --kind {params.kind}"
        " --model {params.model} {params.ckpt} --seeds {params.seeds} --out {output} > {log} 2>&1"


def _control_goals(wc):
    """--goal: evaluate.control_goal, else 0.9 for a label-conditioned model (issue 12) or the library default;
    --judge-goal: evaluate.control_judge_goal when set."""
    label_model = _is_label(wc.ds) or wc.get("variant") == "label"
    goal = _ev(wc.ds, "control_label_goal" if label_model else "control_goal", 0.9 if label_model else None)
    judge = _ev(wc.ds, "control_judge_goal")
    return " ".join(([f"--goal {goal}"] if goal is not None else []) + ([f"--judge-goal {judge}"] if judge is not None else []))


rule control:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/samples/{_res0(wc.ds)}/index.json",
    output:
        f"{RESULTS}/{{ds}}/control.json",
    log:
        "logs/{ds}/control.log",
    benchmark:
        "logs/benchmarks/{ds}/control.tsv"
    params:
        seed=lambda wc: DATASETS[wc.ds]["sample"].get("seed", 0),
        feature_size=lambda wc: _ev(wc.ds, "control_feature_size", 64),
        goals=_control_goals,
    resources:
        mem_mb=4000,
        runtime=30,
    threads: 1
    shell:
        "infbrush control --store {input.store} --samples {input.samples} --out {output} --seed {params.seed}"
        " --feature-size {params.feature_size} {params.goals} > {log} 2>&1"


use rule control as control_variant with:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/{wc.variant}/samples/{_res0(wc.ds)}/index.json",
    output:
        f"{RESULTS}/{{ds}}/{{variant}}/control.json",
    log:
        "logs/{ds}/control_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/control_{variant}.tsv"


def _spectrum_flags(wc):
    freqs = _ev(wc.ds, "spectrum_lattice_freqs", [])
    flags = [f"--seed {DATASETS[wc.ds]['sample'].get('seed', 0)}"]
    if freqs:
        flags.append("--lattice-freqs " + " ".join(str(f) for f in freqs))
    return " ".join(flags)


rule spectrum:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        samples=lambda wc: [f"{RESULTS}/{wc.ds}/samples/{r}/index.json" for r in DATASETS[wc.ds]["sample"]["resolutions"]],
    output:
        json=f"{RESULTS}/{{ds}}/spectrum.json",
        png=f"{RESULTS}/{{ds}}/spectrum.png",
    log:
        "logs/{ds}/spectrum.log",
    benchmark:
        "logs/benchmarks/{ds}/spectrum.tsv"
    params:
        samples=lambda wc, input: " ".join(f"--samples {s}" for s in input.samples),
        flags=_spectrum_flags,
    resources:
        mem_mb=8000,
        runtime=30,
    threads: 1
    shell:
        "infbrush spectrum --store {input.store} {params.samples} --out {output.json} --plot {output.png}"
        " {params.flags} > {log} 2>&1"


def _report_inputs(wc):
    """Everything the report shows for this dataset; the report itself tolerates any of them missing."""
    ds, root = wc.ds, f"{RESULTS}/{wc.ds}"
    inputs = {"fid": f"{root}/fid.json",
              "samples": [f"{root}/samples/{r}/index.json" for r in DATASETS[ds]["sample"]["resolutions"]]}
    if _has_prompts(ds):
        inputs["zeroshot"] = f"{root}/zeroshot.json"
    if _has_bach(ds):
        inputs["bach"] = f"{root}/bach.json"
    if ds in DEMO_SOURCES:
        inputs["control"] = f"{root}/control.json"
    if DATASETS[ds].get("sample"):  # the viewer rule (viewer.smk) builds it; the report links its preview
        inputs["viewer"] = f"{root}/viewer/index.html"
    if "label" in DATASETS[ds]["model"].get("variants", []):
        inputs["control_label"] = f"{root}/label/control.json"
    if _ev(ds, "spectrum", ds in DEMO_SOURCES):
        inputs["spectrum"] = f"{root}/spectrum.json"
    if _ev(ds, "ablation_cano", False):
        inputs["ablation"] = f"{root}/ablation_cano.json"
    if ds in ((config.get("brush") or {}).get("maps") or {}):  # workflow/rules/brush.smk (issue 16)
        inputs["brush"] = f"{root}/brush.json"
    return inputs


def _report_params(wc):
    import json, shlex

    return shlex.quote(json.dumps({"dataset": wc.ds, **DATASETS[wc.ds]}, default=str))


rule report_html:
    input:
        unpack(_report_inputs),
    output:
        report(f"{RESULTS}/{{ds}}/report.html", category="infbrush", labels={"dataset": "{ds}"}),
    log:
        "logs/{ds}/report.log",
    benchmark:
        "logs/benchmarks/{ds}/report.tsv"
    params:
        results=f"{RESULTS}/{{ds}}",
        settings=_report_params,
    resources:
        mem_mb=4000,
        runtime=15,
    threads: 1
    shell:
        "infbrush report --dataset {wildcards.ds} --results {params.results} --out {output}"
        " --params {params.settings} > {log} 2>&1"


DATASET_TARGETS.append(lambda ds: [f"{RESULTS}/{ds}/report.html"])
