# Stage rules: sampling and evaluation — samples at any resolution, CLIP FID / Crop FID / KID (fid-ref + fid),
# zero-shot confusion, BACH downstream, controllability, the CANO ablation, the spectrum and the HTML report.
#
# Sample sets (each `infbrush sample` writes OUT/<R>/<name>.png|.tiff + OUT/<R>/index.json), one rule and its
# `use rule … with` variants, which change only the paths and the condition:
#   samples/<R>/              conditioned on held-out real images' embeddings (FID, control, report grids)
#   <variant>/samples/<R>/    a variant model (label: every class; ablation_cano: as samples/)
#   samples_text/<R>/         conditioned on the class prompts' text embeddings (zero-shot)
#   samples_bach/<R>/         conditioned on the BACH training images' embeddings (BACH downstream)
# FID and the other metrics use the first resolution of sample.resolutions (the training resolution).
SAMPLE_FLAGS = {
    "sample.steps": "--steps", "sample.sampler": "--sampler", "sample.spacing": "--spacing",
    "sample.guidance_scale": "--guidance-scale", "sample.guidance_interval": "--guidance-interval",
    "sample.chunk_points": "--chunk-points",
    "sample.compression": "--compression", "sample.png_max_side": "--png-max-side", "sample.seed": "--seed",
    "sample.amp": "--amp",
}
ENCODER_FLAGS = {
    "embedding.kind": "--kind", "embedding.model": "--model", "embedding.checkpoint": "--checkpoint",
}


rule sample:
    input:
        unpack(lambda wc: P.sample_inputs(wc.ds, P.variant(wc))),
    output:
        f"{RESULTS}/{{ds}}/samples/{{res}}/index.json",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/sample_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{res}.tsv"
    params:
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),
        cond=lambda wc: P.sample_cond(wc.ds, wc.res, P.variant(wc)),
        flags=lambda wc: P.sample_flags(wc.ds, SAMPLE_FLAGS, P.variant(wc)),
        launcher=lambda wc: P.sample_launcher(wc.ds),
    resources:
        **P.resources(mem_mb=(8000, 64000), runtime=(120, 1440), gpu="one"),
    threads: lambda wc: max(2, P.sample_processes(wc.ds))
    shell:
        "{params.launcher} sample --weights {input.weights} --out {params.out} --resolution {wildcards.res}"
        " {params.cond} {params.flags} --no-progress > {log} 2>&1"


use rule sample as sample_variant with:
    output:
        f"{RESULTS}/{{ds}}/{{variant}}/samples/{{res}}/index.json",
    log:
        "logs/{ds}/sample_{variant}_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{variant}_{res}.tsv"


use rule sample as sample_text with:
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
        cond=lambda wc, input: f"--cond-text {input.text} "
        + P.flags(wc.ds, {"evaluate.zeroshot_per_class": "--per-class"}),


use rule sample as sample_bach with:
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
        cond=lambda wc, input: f"--cond-embeddings {input.embeddings} --store {input.store} --split train",


use rule embed as embed_bach with:
    input:
        unpack(P.embed_inputs("bach")),
    output:
        f"{RESULTS}/{{ds}}/bach_embeddings.h5",
    log:
        "logs/{ds}/embed_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_bach.tsv"


rule fid_ref:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        clip=lambda wc: P.clip_checkpoint(wc.ds) or [],
        inception=lambda wc: P.get(wc.ds, "evaluate.inception_weights") or [],
    output:
        f"{RESULTS}/{{ds}}/fid_ref.npz",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/fid_ref.log",
    benchmark:
        "logs/benchmarks/{ds}/fid_ref.tsv"
    params:
        clip=lambda wc: flag("--clip-checkpoint", P.clip_checkpoint(wc.ds)),
        flags=P.flags_of({
            "evaluate.clip_model": "--clip-model", "evaluate.crop_size": "--crop-size",
            "evaluate.crops_per_image": "--crops-per-image", "sample.seed": "--crop-seed",
            "evaluate.fid_real_split": "--split", "evaluate.fid_max_real_images": "--max-images",
            "evaluate.kid_max_feats": "--kid-max-feats", "evaluate.fid_seed": "--seed",
            "evaluate.inception_weights": "--inception-weights",
        }),
    resources:
        **P.resources(mem_mb=(8000, 64000), runtime=(120, 720), gpu="one"),
    threads: 2
    shell:
        "infbrush fid-ref --store {input.store} --out {output} {params.flags} {params.clip} > {log} 2>&1"


rule fid:
    input:
        ref=f"{RESULTS}/{{ds}}/fid_ref.npz",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/samples/{P.res0(wc.ds)}/index.json",
        clip=lambda wc: P.clip_checkpoint(wc.ds) or [],
        sanity=lambda wc: f"{RESULTS}/{wc.ds}/images.h5" if P.get(wc.ds, "evaluate.fid_sanity") else [],
    output:
        f"{RESULTS}/{{ds}}/fid.json",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/fid.log",
    benchmark:
        "logs/benchmarks/{ds}/fid.tsv"
    params:
        # demo sets are far smaller than the feature dimensions (see infbrush/evaluate/crops.py): KID is their number
        flags=P.flags_of({"evaluate.allow_rank_deficient": "--allow-rank-deficient"}),
        # evaluate.fid_sanity: score real / blurred / noise sets and flag failing metrics
        sanity=lambda wc, input: flag("--store", input.sanity or None),
        tag="",
    resources:
        **P.resources(mem_mb=(8000, 64000), runtime=(60, 240), gpu="one"),
    threads: 2
    shell:
        "infbrush fid --ref {input.ref} --samples {input.samples} --out {output} {params.flags} {params.sanity}"
        " {params.tag} > {log} 2>&1"


use rule fid as ablation_cano with:
    input:
        ref=f"{RESULTS}/{{ds}}/fid_ref.npz",
        samples=lambda wc: f"{RESULTS}/{wc.ds}/ablation_cano/samples/{P.res0(wc.ds)}/index.json",
        clip=lambda wc: P.clip_checkpoint(wc.ds) or [],
        sanity=[],
    output:
        f"{RESULTS}/{{ds}}/ablation_cano.json",
    log:
        "logs/{ds}/ablation_cano.log",
    benchmark:
        "logs/benchmarks/{ds}/ablation_cano.tsv"
    params:
        tag="--tag 'ablation: CANO off'",


rule zeroshot:
    input:
        samples=lambda wc: f"{RESULTS}/{wc.ds}/samples_text/{P.synthetic_res(wc.ds)}/index.json",
        ckpt=lambda wc: P.encoder_checkpoint(wc.ds),
    output:
        json=f"{RESULTS}/{{ds}}/zeroshot.json",
        png=f"{RESULTS}/{{ds}}/zeroshot.png",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/zeroshot.log",
    benchmark:
        "logs/benchmarks/{ds}/zeroshot.tsv"
    params:
        flags=P.flags_of({**ENCODER_FLAGS, "embedding.prompts": "--prompts"}),
    resources:
        **P.resources(mem_mb=(4000, 32000), runtime=(30, 60), gpu="one"),
    threads: 2
    shell:
        "infbrush zeroshot --samples {input.samples} {params.flags} --out {output.json} --png {output.png}"
        " > {log} 2>&1"


rule bach_eval:
    input:
        bach=f"{RESULTS}/{{ds}}/bach.h5",
        synthetic=lambda wc: f"{RESULTS}/{wc.ds}/samples_bach/{P.synthetic_res(wc.ds)}/index.json",
        ckpt=lambda wc: P.encoder_checkpoint(wc.ds),
    output:
        f"{RESULTS}/{{ds}}/bach.json",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/bach_eval.log",
    benchmark:
        "logs/benchmarks/{ds}/bach_eval.tsv"
    params:
        flags=P.flags_of({**ENCODER_FLAGS, "evaluate.bach_seeds": "--seeds"}),
    resources:
        **P.resources(mem_mb=(4000, 32000), runtime=(30, 60), gpu="one"),
    threads: 2
    shell:
        "infbrush bach-eval --bach {input.bach} --synthetic {input.synthetic} {params.flags} --out {output}"
        " > {log} 2>&1"


rule control:
    input:
        unpack(lambda wc: P.control_inputs(wc.ds, P.variant(wc))),
    output:
        f"{RESULTS}/{{ds}}/control.json",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/control.log",
    benchmark:
        "logs/benchmarks/{ds}/control.tsv"
    params:
        goals=lambda wc: P.control_goal_flags(wc.ds, P.variant(wc)),
        embeddings=lambda wc, input: flag("--embeddings", input.get("embeddings")),
        flags=P.flags_of({"sample.seed": "--seed", "evaluate.control_feature_size": "--feature-size"}),
    resources:
        mem_mb=4000,
        runtime=30,
    threads: 1
    shell:
        "infbrush control --store {input.store} --samples {input.samples} --out {output} {params.flags}"
        " {params.goals} {params.embeddings} > {log} 2>&1"


use rule control as control_variant with:
    output:
        f"{RESULTS}/{{ds}}/{{variant}}/control.json",
    log:
        "logs/{ds}/control_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/control_{variant}.tsv"


rule spectrum:
    input:
        store=f"{RESULTS}/{{ds}}/images.h5",
        samples=lambda wc: [f"{RESULTS}/{wc.ds}/samples/{r}/index.json" for r in P.get(wc.ds, "sample.resolutions")],
    output:
        json=f"{RESULTS}/{{ds}}/spectrum.json",
        png=f"{RESULTS}/{{ds}}/spectrum.png",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/spectrum.log",
    benchmark:
        "logs/benchmarks/{ds}/spectrum.tsv"
    params:
        samples=lambda wc, input: " ".join(f"--samples {s}" for s in input.samples),
        flags=P.flags_of({"sample.seed": "--seed", "evaluate.spectrum_lattice_freqs": "--lattice-freqs"}),
    resources:
        mem_mb=8000,
        runtime=30,
    threads: 1
    shell:
        "infbrush spectrum --store {input.store} {params.samples} --out {output.json} --plot {output.png}"
        " {params.flags} > {log} 2>&1"


rule report_html:
    input:
        unpack(lambda wc: P.report_inputs(wc.ds)),
    output:
        report(f"{RESULTS}/{{ds}}/report.html", category="infbrush", labels={"dataset": "{ds}"}),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/report.log",
    benchmark:
        "logs/benchmarks/{ds}/report.tsv"
    params:
        results=lambda wc, output: os.path.dirname(output[0]),
        settings=lambda wc: shlex.quote(json.dumps({"dataset": wc.ds, **P.datasets[wc.ds]}, default=str)),
    resources:
        mem_mb=4000,
        runtime=15,
    threads: 1
    shell:
        "infbrush report --dataset {wildcards.ds} --results {params.results} --out {output}"
        " --params {params.settings} > {log} 2>&1"
