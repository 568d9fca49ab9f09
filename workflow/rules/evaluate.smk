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
SAMPLE_KEYS = (
    "sample.steps", "sample.sampler", "sample.spacing", "sample.guidance_scale", "sample.guidance_interval",
    "sample.chunk_points", "sample.compression", "sample.png_max_side", "sample.seed", "sample.amp",
)
ENCODER_KEYS = ("embedding.kind", "embedding.model", "embedding.checkpoint")


rule sample:
    input:
        unpack(lambda wc: inputs(P, wc.ds, variant(wc), "weights", "store")),
    output:
        L.samples("{ds}", "{res}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/sample_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{res}.tsv"
    params:
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),
        cond=lambda wc: sample_cond(P, wc.ds, wc.res, variant(wc)),
        flags=lambda wc: sample_flags(P, wc.ds, SAMPLE_KEYS, variant(wc)),
        launcher=lambda wc: P.launcher(wc.ds, "sample.processes"),
    resources:
        **P.resources("sample"),
    threads: lambda wc: max(P.get(wc.ds, "sample.threads"), P.get(wc.ds, "sample.processes") or 1)
    shell:
        "{params.launcher} sample --weights {input.weights} --out {params.out} --resolution {wildcards.res}"
        " {params.cond} {params.flags} --no-progress > {log} 2>&1"


use rule sample as sample_variant with:
    output:
        L.samples("{ds}", "{res}", "{variant}"),
    log:
        "logs/{ds}/sample_{variant}_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_{variant}_{res}.tsv"


use rule sample as sample_text with:
    input:
        weights=L.weights("{ds}"),
        text=L.text_embeddings("{ds}"),
    output:
        L.samples("{ds}", "{res}", cond="text"),
    log:
        "logs/{ds}/sample_text_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_text_{res}.tsv"
    params:
        cond=lambda wc, input: f"--cond-text {input.text} "
        + P.flags(wc.ds, "evaluate.zeroshot_per_class", prefix="zeroshot_"),


use rule sample as sample_bach with:
    input:
        weights=L.weights("{ds}"),
        store=L.bach_store("{ds}"),
        embeddings=L.bach_embeddings("{ds}"),
    output:
        L.samples("{ds}", "{res}", cond="bach"),
    log:
        "logs/{ds}/sample_bach_{res}.log",
    benchmark:
        "logs/benchmarks/{ds}/sample_bach_{res}.tsv"
    params:
        cond=lambda wc, input: f"--cond-embeddings {input.embeddings} --store {input.store} --split train",


use rule embed as embed_bach with:
    input:
        store=L.bach_store("{ds}"),
        checkpoint=lambda wc: P.checkpoint(wc.ds),
    output:
        L.bach_embeddings("{ds}"),
    log:
        "logs/{ds}/embed_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/embed_bach.tsv"


rule fid_ref:
    input:
        store=L.images("{ds}"),
        clip=lambda wc: clip_checkpoint(P, wc.ds) or [],
        inception=lambda wc: P.get(wc.ds, "evaluate.inception_weights") or [],
    output:
        L.fid_ref("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/fid_ref.log",
    benchmark:
        "logs/benchmarks/{ds}/fid_ref.tsv"
    params:
        clip=lambda wc: flag("--clip-checkpoint", clip_checkpoint(P, wc.ds)),
        flags=P.flags_of(
            "evaluate.clip_model", "evaluate.crop_size", "evaluate.crops_per_image", {"sample.seed": "--crop-seed"},
            "evaluate.fid_split", "evaluate.fid_max_images", "evaluate.kid_max_feats", "evaluate.fid_seed",
            "evaluate.inception_weights", prefix="fid_",
        ),
    resources:
        **P.resources("fid_ref"),
    threads: 2
    shell:
        "infbrush fid-ref --store {input.store} --out {output} {params.flags} {params.clip} > {log} 2>&1"


rule fid:
    input:
        ref=L.fid_ref("{ds}"),
        samples=lambda wc: L.samples(wc.ds, P.res0(wc.ds)),
        clip=lambda wc: clip_checkpoint(P, wc.ds) or [],
        sanity=lambda wc: L.images(wc.ds) if P.get(wc.ds, "evaluate.fid_sanity") else [],
    output:
        L.fid("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/fid.log",
    benchmark:
        "logs/benchmarks/{ds}/fid.tsv"
    params:
        # demo sets are far smaller than the feature dimensions (see infbrush/evaluate/crops.py): KID is their number
        flags=P.flags_of("evaluate.allow_rank_deficient"),
        # evaluate.fid_sanity: score real / blurred / noise sets and flag failing metrics
        sanity=lambda wc, input: flag("--store", input.sanity or None),
        tag="",
    resources:
        **P.resources("fid"),
    threads: 2
    shell:
        "infbrush fid --ref {input.ref} --samples {input.samples} --out {output} {params.flags} {params.sanity}"
        " {params.tag} > {log} 2>&1"


use rule fid as ablation_cano with:
    input:
        ref=L.fid_ref("{ds}"),
        samples=lambda wc: L.samples(wc.ds, P.res0(wc.ds), "ablation_cano"),
        clip=lambda wc: clip_checkpoint(P, wc.ds) or [],
        sanity=[],
    output:
        L.ablation_cano("{ds}"),
    log:
        "logs/{ds}/ablation_cano.log",
    benchmark:
        "logs/benchmarks/{ds}/ablation_cano.tsv"
    params:
        tag="--tag 'ablation: CANO off'",


rule zeroshot:
    input:
        samples=lambda wc: L.samples(wc.ds, synthetic_res(P, wc.ds), cond="text"),
        ckpt=lambda wc: P.checkpoint(wc.ds),
    output:
        json=L.zeroshot("{ds}"),
        png=L.zeroshot_plot("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/zeroshot.log",
    benchmark:
        "logs/benchmarks/{ds}/zeroshot.tsv"
    params:
        flags=P.flags_of(*ENCODER_KEYS, "embedding.prompts"),
    resources:
        **P.resources("zeroshot"),
    threads: 2
    shell:
        "infbrush zeroshot --samples {input.samples} {params.flags} --out {output.json} --png {output.png}"
        " > {log} 2>&1"


rule bach_eval:
    input:
        bach=L.bach_store("{ds}"),
        synthetic=lambda wc: L.samples(wc.ds, synthetic_res(P, wc.ds), cond="bach"),
        ckpt=lambda wc: P.checkpoint(wc.ds),
    output:
        L.bach_scores("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/bach_eval.log",
    benchmark:
        "logs/benchmarks/{ds}/bach_eval.tsv"
    params:
        flags=P.flags_of(*ENCODER_KEYS, "evaluate.bach_seeds", prefix="bach_"),
    resources:
        **P.resources("bach_eval"),
    threads: 2
    shell:
        "infbrush bach-eval --bach {input.bach} --synthetic {input.synthetic} {params.flags} --out {output}"
        " > {log} 2>&1"


rule control:
    input:
        unpack(lambda wc: inputs(P, wc.ds, variant(wc), "store", "samples")),
    output:
        L.control("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/control.log",
    benchmark:
        "logs/benchmarks/{ds}/control.tsv"
    params:
        goals=lambda wc: control_goals(P, wc.ds, variant(wc)),
        embeddings=lambda wc, input: flag("--embeddings", input.get("embeddings")),
        flags=P.flags_of("sample.seed", "evaluate.control_feature_size", prefix="control_"),
    resources:
        **P.resources("control"),
    threads: 1
    shell:
        "infbrush control --store {input.store} --samples {input.samples} --out {output} {params.flags}"
        " {params.goals} {params.embeddings} > {log} 2>&1"


use rule control as control_variant with:
    output:
        L.control("{ds}", "{variant}"),
    log:
        "logs/{ds}/control_{variant}.log",
    benchmark:
        "logs/benchmarks/{ds}/control_{variant}.tsv"


rule spectrum:
    input:
        store=L.images("{ds}"),
        samples=lambda wc: [L.samples(wc.ds, r) for r in P.get(wc.ds, "sample.resolutions")],
    output:
        json=L.spectrum("{ds}"),
        png=L.spectrum_plot("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/spectrum.log",
    benchmark:
        "logs/benchmarks/{ds}/spectrum.tsv"
    params:
        samples=lambda wc, input: " ".join(f"--samples {s}" for s in input.samples),
        flags=P.flags_of("sample.seed", "evaluate.spectrum_lattice_freqs", prefix="spectrum_"),
    resources:
        **P.resources("spectrum"),
    threads: 1
    shell:
        "infbrush spectrum --store {input.store} {params.samples} --out {output.json} --plot {output.png}"
        " {params.flags} > {log} 2>&1"


rule report_html:
    input:
        unpack(lambda wc: report_inputs(P, wc.ds)),
    output:
        report(L.report("{ds}"), category="infbrush", labels={"dataset": "{ds}"}),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/report.log",
    benchmark:
        "logs/benchmarks/{ds}/report.tsv"
    params:
        results=lambda wc, output: os.path.dirname(output[0]),
        settings=lambda wc: shlex.quote(json.dumps({"dataset": wc.ds, **P.datasets[wc.ds]}, default=str)),
        paper=P.flags_of("report.paper_row", "report.miniature"),
    resources:
        **P.resources("report_html"),
    threads: 1
    shell:
        "infbrush report --dataset {wildcards.ds} --results {params.results} --out {output}"
        " --params {params.settings} {params.paper} > {log} 2>&1"
