# Stage rules: the zoomable viewer — Deep Zoom tiles of the generated images beside the real slides / patches of
# their conditions, in OpenSeadragon, linked from the report. results/<ds>/viewer/index.html opens from disk;
# preview.png (headless Chromium, where installed) is embedded in the report. OpenSeadragon comes from npm, pinned
# by package-lock.json: `infbrush viewer` runs `npm ci` when node_modules/ lacks it.


def _viewer_inputs(wc):
    root = f"{RESULTS}/{wc.ds}"
    inputs = {"npm": "package-lock.json", "store": f"{root}/images.h5",
              "samples": [f"{root}/samples/{r}/index.json" for r in DATASETS[wc.ds]["sample"]["resolutions"]]}
    if DATASETS[wc.ds].get("source") == "wsi":
        inputs["tiles"] = f"{root}/tiles/failures.tsv"
    return inputs


rule viewer:
    input:
        unpack(_viewer_inputs),
    output:
        f"{RESULTS}/{{ds}}/viewer/index.html",
    log:
        "logs/{ds}/viewer.log",
    benchmark:
        "logs/benchmarks/{ds}/viewer.tsv"
    params:
        out=lambda wc: f"{RESULTS}/{wc.ds}/viewer",
        tiles=lambda wc, input: f"--tiles {os.path.dirname(input.tiles)} --slides {DATASETS[wc.ds]['inputs']['slides']}"
        if "tiles" in input.keys() else "",
        max_images=lambda wc: param(wc.ds, "viewer.max_images", 4),
        context=lambda wc: param(wc.ds, "viewer.context", 2.0),
        preview=lambda wc: param(wc.ds, "viewer.preview", "auto"),
    priority: 10  # before the report, which links it and embeds its preview, when both can run
    threads: 2
    resources:
        mem_mb=4000,
        runtime=lambda wc: 15 if wc.ds.startswith("demo") else 120,
    shell:
        "infbrush viewer --out {params.out} --samples {input.samples} --store {input.store} {params.tiles}"
        " --dataset {wildcards.ds} --max-images {params.max_images} --context {params.context}"
        " --preview {params.preview} --workers {threads} > {log} 2>&1"


DATASET_TARGETS.append(lambda ds: [f"{RESULTS}/{ds}/viewer/index.html"] if DATASETS[ds].get("sample") else [])
