# Stage rules: data — downloads, WSI tiling, large-patch image stores, GeoTIFF patching, BACH / CelebA-HQ adapters.
# results/<ds>/images.h5 comes from exactly one rule per dataset, chosen by datasets.<ds>.source
# (wsi: extract_patches, geotiff: patch_geotiff, celebahq: adapt_celebahq) through rule-level wildcard constraints.
import glob as _glob
import re as _re


def _only(source):
    """Regex of the datasets with this source (never matches when there is none)."""
    names = [ds for ds, block in DATASETS.items() if block.get("source") == source]
    return "|".join(map(_re.escape, names)) or "(?!)"


def _download_dir(ds):
    block = DATASETS[ds]
    key = {"wsi": "slides", "geotiff": "geotiffs"}.get(block.get("source"))
    return block["inputs"].get(key) if key and block["inputs"].get("download") else None


# download directory -> its manifest and URL template (datasets sharing slides share one download)
DOWNLOADS = {_download_dir(ds): DATASETS[ds]["inputs"]["download"] for ds in DATASETS if _download_dir(ds)}


def _input_path(ds, key):
    """Snakemake input for inputs.<key>: the download's failures.tsv, the path itself, or nothing for a glob."""
    path = DATASETS[ds]["inputs"][key]
    if path in DOWNLOADS:
        return f"{path}/failures.tsv"
    return [] if _glob.has_magic(path) else path


rule download:
    output:
        "{dldir}/failures.tsv",
    wildcard_constraints:
        dldir="|".join(map(_re.escape, DOWNLOADS)) or "(?!)",
    log:
        "logs/download/{dldir}.log",
    benchmark:
        "logs/benchmarks/download/{dldir}.tsv"
    params:
        manifest=lambda wc: DOWNLOADS[wc.dldir]["manifest"],
        url=lambda wc: DOWNLOADS[wc.dldir]["url"],
    threads: 4
    resources:
        mem_mb=1000,
        runtime=24 * 60,
    shell:
        "infbrush download --manifest {params.manifest} --url-template '{params.url}' --out {wildcards.dldir}"
        " --workers {threads} --no-progress > {log} 2>&1"


def _tile_resolution_flags(ds):
    """--target-mpp MPP|native or --level N (the schema allows a level only with target_mpp: native), plus the
    MPP overrides (--mpp, --slides-csv) of tiling.*."""
    level = param(ds, "tiling.level")
    flags = [f"--level {level}"] if level is not None else [f"--target-mpp {DATASETS[ds]['tiling']['target_mpp']}"]
    if param(ds, "tiling.mpp") is not None:
        flags.append(f"--mpp {param(ds, 'tiling.mpp')}")
    if param(ds, "tiling.slides_csv"):
        flags.append(f"--slides-csv {param(ds, 'tiling.slides_csv')}")
    return " ".join(flags)


rule tile:
    input:
        slides=lambda wc: _input_path(wc.ds, "slides"),
        slides_csv=lambda wc: param(wc.ds, "tiling.slides_csv", []),
    output:
        failures=f"{RESULTS}/{{ds}}/tiles/failures.tsv",
    wildcard_constraints:
        ds=_only("wsi"),
    log:
        "logs/{ds}/tile.log",
    benchmark:
        "logs/benchmarks/{ds}/tile.tsv"
    params:
        slides=cfg("inputs.slides"),
        out=lambda wc: f"{RESULTS}/{wc.ds}/tiles",
        patch_size=cfg("tiling.patch_size"),
        resolution=lambda wc: _tile_resolution_flags(wc.ds),
        mask_max_side=cfg("tiling.mask_max_side"),
        median_blur=cfg("tiling.median_blur"),
        saturation_threshold=lambda wc: param(wc.ds, "tiling.saturation_threshold", "otsu"),
        min_tissue_fraction=cfg("tiling.min_tissue_fraction"),
        min_component_area=cfg("tiling.min_component_area"),
        max_hole_area=cfg("tiling.max_hole_area"),
        max_patches=cfg("tiling.max_patches_per_slide"),
        seed=lambda wc: param(wc.ds, "tiling.seed", 0),
    threads: lambda wc: DATASETS[wc.ds]["tiling"]["workers"]
    resources:
        mem_mb=lambda wc, threads: 2000 + 1500 * threads,
        runtime=lambda wc: 30 if wc.ds.startswith("demo") else 12 * 60,
    shell:
        "infbrush tile {params.slides} --out {params.out} --patch-size {params.patch_size}"
        " {params.resolution} --mask-max-side {params.mask_max_side} --median-blur {params.median_blur}"
        " --saturation-threshold {params.saturation_threshold} --min-tissue-fraction {params.min_tissue_fraction}"
        " --min-component-area {params.min_component_area} --max-hole-area {params.max_hole_area}"
        " --max-patches-per-slide {params.max_patches} --seed {params.seed} --workers {threads} --no-progress"
        " > {log} 2>&1"


rule extract_patches:
    input:
        tiles=f"{RESULTS}/{{ds}}/tiles/failures.tsv",
        slides=lambda wc: _input_path(wc.ds, "slides"),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=_only("wsi"),
    log:
        "logs/{ds}/extract_patches.log",
    benchmark:
        "logs/benchmarks/{ds}/extract_patches.tsv"
    params:
        tiles=lambda wc: f"{RESULTS}/{wc.ds}/tiles",
        slides=cfg("inputs.slides"),
        thumb_size=cfg("embedding.input_size"),
        class_maps=lambda wc: "--class-maps" if param(wc.ds, "tiling.class_maps", wc.ds.startswith("demo")) else "",
        held_out=lambda wc: param(wc.ds, "tiling.held_out_slides", 1 if wc.ds.startswith("demo") else 0),
    threads: lambda wc: DATASETS[wc.ds]["tiling"]["workers"]
    resources:
        mem_mb=lambda wc, threads: 4000 + 2000 * threads,
        runtime=lambda wc: 30 if wc.ds.startswith("demo") else 24 * 60,
    shell:
        "infbrush extract-patches {params.tiles} --slides {params.slides} --out {output}"
        " --thumb-size {params.thumb_size} {params.class_maps} --held-out-slides {params.held_out}"
        " --workers {threads} --no-progress > {log} 2>&1"


rule patch_geotiff:
    input:
        tifs=lambda wc: _input_path(wc.ds, "geotiffs"),
        landcover=lambda wc: param(wc.ds, "inputs.landcover", []),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=_only("geotiff"),
    log:
        "logs/{ds}/patch_geotiff.log",
    benchmark:
        "logs/benchmarks/{ds}/patch_geotiff.tsv"
    params:
        tifs=cfg("inputs.geotiffs"),
        patch_size=cfg("patching.patch_size"),
        bands=lambda wc: ",".join(map(str, DATASETS[wc.ds]["patching"]["bands"])),
        max_nodata=cfg("patching.max_nodata_fraction"),
        thumb_size=cfg("embedding.input_size"),
        landcover=lambda wc, input: f"--landcover {input.landcover}" if input.landcover else "",
        landcover_names=lambda wc: " ".join(["--landcover-names", *param(wc.ds, "patching.landcover_names", [])])
        if param(wc.ds, "patching.landcover_names") else "",
        held_out=lambda wc: param(wc.ds, "patching.held_out_fraction", 0.1),
    resources:
        mem_mb=8000,
        runtime=lambda wc: 30 if wc.ds.startswith("demo") else 12 * 60,
    shell:
        "infbrush patch-geotiff {params.tifs} --out {output} --patch-size {params.patch_size} --bands {params.bands}"
        " --max-nodata-fraction {params.max_nodata} --thumb-size {params.thumb_size} {params.landcover}"
        " {params.landcover_names}"
        " --held-out-fraction {params.held_out} --no-progress > {log} 2>&1"


rule adapt_bach:
    input:
        lambda wc: DATASETS[wc.ds]["inputs"]["bach"],
    output:
        f"{RESULTS}/{{ds}}/bach.h5",
    log:
        "logs/{ds}/adapt_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_bach.tsv"
    params:
        image_size=lambda wc: param(wc.ds, "bach.image_size", config["demo_world"]["bach_size"]),
        thumb_size=cfg("embedding.input_size"),
        test_fraction=lambda wc: param(wc.ds, "bach.test_fraction", 0.25),
        seed=lambda wc: param(wc.ds, "bach.seed", 0),
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "infbrush adapt --kind bach --root {input} --out {output} --image-size {params.image_size}"
        " --thumb-size {params.thumb_size} --test-fraction {params.test_fraction} --seed {params.seed}"
        " --no-progress > {log} 2>&1"


rule adapt_celebahq:
    input:
        images=cfg("inputs.images"),
        attributes=cfg("inputs.attributes"),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=_only("celebahq"),
    log:
        "logs/{ds}/adapt_celebahq.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_celebahq.tsv"
    params:
        attribute=cfg("inputs.attribute"),
        image_size=cfg("image_size"),
        thumb_size=lambda wc: param(wc.ds, "embedding.input_size", 64),
        mapping=lambda wc: f"--mapping {m}" if (m := param(wc.ds, "inputs.mapping")) else "",
        held_out=lambda wc: param(wc.ds, "held_out_fraction", 0.0),
    resources:
        mem_mb=4000,
        runtime=6 * 60,
    shell:
        "infbrush adapt --kind celebahq --root {input.images} --attributes {input.attributes}"
        " --attribute {params.attribute} {params.mapping} --out {output} --image-size {params.image_size}"
        " --thumb-size {params.thumb_size} --held-out-fraction {params.held_out} --no-progress > {log} 2>&1"


def _data_targets(ds):
    block = DATASETS[ds]
    targets = [f"{RESULTS}/{ds}/images.h5"] if block.get("source") in ("wsi", "geotiff", "celebahq") else []
    if (block.get("inputs") or {}).get("bach"):
        targets.append(f"{RESULTS}/{ds}/bach.h5")
    return targets


DATASET_TARGETS.append(_data_targets)
