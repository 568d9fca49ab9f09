# Stage rules: the zoomable viewer — Deep Zoom tiles of the generated images beside the real slides / patches of
# their conditions, and the brush's painted image beside its condition map, in OpenSeadragon, linked from the
# report (for a dataset with a large_field block: every generated field beside its reference field).
# results/<ds>/viewer/index.html opens from disk; preview.png (headless Chromium, where installed) is
# embedded in the report. OpenSeadragon comes from npm, pinned by package-lock.json: `infbrush viewer` runs
# `npm ci` when node_modules/ lacks it.


rule viewer:
    input:
        npm="package-lock.json",
        store=L.images("{ds}"),
        # a large-field dataset shows its generated fields (whole image, patch-based) beside their references
        samples=lambda wc: [L.large_field_fields(wc.ds)]
        if P.get(wc.ds, "large_field")
        else [L.samples(wc.ds, r) for r in P.get(wc.ds, "sample.resolutions")],
        tiles=lambda wc: L.tiles(wc.ds) if P.get(wc.ds, "source") == "wsi" else [],
        brush=lambda wc: L.brush(wc.ds) if P.brushed(wc.ds) else [],
    output:
        L.viewer("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/viewer.log",
    benchmark:
        "logs/benchmarks/{ds}/viewer.tsv"
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        tiles=lambda wc, input: f"--tiles {os.path.dirname(input.tiles)} --slides {P.get(wc.ds, 'inputs.slides')}"
        if input.tiles
        else "",
        flags=P.flags_of("viewer.max_images", "viewer.context", "viewer.preview"),
    priority: 10  # before the report, which links it and embeds its preview, when both can run
    threads: 2
    resources:
        **P.resources("viewer"),
    shell:
        "infbrush viewer --out {params.out} --samples {input.samples} --store {input.store} {params.tiles}"
        " --brush {input.brush} --dataset {wildcards.ds} {params.flags} --workers {threads} > {log} 2>&1"
