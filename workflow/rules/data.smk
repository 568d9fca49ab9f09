# Stage rules: data — downloads, WSI tiling, large-patch image stores, GeoTIFF patching, BACH / CelebA-HQ adapters.
# results/<ds>/images.h5 comes from exactly one rule per dataset, chosen by datasets.<ds>.source
# (wsi: extract_patches, geotiff: patch_geotiff, celebahq: adapt_celebahq) through rule-level wildcard constraints.
DOWNLOADS = P.downloads()


rule download:
    output:
        "{dldir}/failures.tsv",
    wildcard_constraints:
        dldir="|".join(map(re.escape, DOWNLOADS)) or "(?!)",
    conda:
        CONDA_ENV
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


rule tile:
    input:
        slides=lambda wc: P.input_path(wc.ds, "inputs.slides"),
        slides_csv=lambda wc: P.input_path(wc.ds, "tiling.slides_csv"),
    output:
        failures=f"{RESULTS}/{{ds}}/tiles/failures.tsv",
    wildcard_constraints:
        ds=P.with_source("wsi"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/tile.log",
    benchmark:
        "logs/benchmarks/{ds}/tile.tsv"
    params:
        slides=P.value_of("inputs.slides"),
        out=lambda wc, output: os.path.dirname(output.failures),
        resolution=lambda wc: P.tile_resolution_flags(wc.ds),
        flags=P.flags_of({
            "tiling.patch_size": "--patch-size", "tiling.mpp": "--mpp", "tiling.slides_csv": "--slides-csv",
            "tiling.mask_max_side": "--mask-max-side", "tiling.median_blur": "--median-blur",
            "tiling.saturation_threshold": "--saturation-threshold",
            "tiling.min_tissue_fraction": "--min-tissue-fraction",
            "tiling.min_component_area": "--min-component-area", "tiling.max_hole_area": "--max-hole-area",
            "tiling.max_patches_per_slide": "--max-patches-per-slide", "tiling.seed": "--seed",
        }),
    threads: lambda wc: P.get(wc.ds, "tiling.workers")
    resources:
        **P.resources(mem_mb=2000, mem_mb_per_thread=1500, runtime=(30, 12 * 60)),
    shell:
        "infbrush tile {params.slides} --out {params.out} {params.resolution} {params.flags}"
        " --workers {threads} --no-progress > {log} 2>&1"


rule extract_patches:
    input:
        tiles=f"{RESULTS}/{{ds}}/tiles/failures.tsv",
        slides=lambda wc: P.input_path(wc.ds, "inputs.slides"),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=P.with_source("wsi"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/extract_patches.log",
    benchmark:
        "logs/benchmarks/{ds}/extract_patches.tsv"
    params:
        tiles=lambda wc, input: os.path.dirname(input.tiles),
        slides=P.value_of("inputs.slides"),
        flags=P.flags_of({
            "embedding.input_size": "--thumb-size", "tiling.class_maps": "--class-maps",
            "tiling.held_out_slides": "--held-out-slides",
        }),
    threads: lambda wc: P.get(wc.ds, "tiling.workers")
    resources:
        **P.resources(mem_mb=4000, mem_mb_per_thread=2000, runtime=(30, 24 * 60)),
    shell:
        "infbrush extract-patches {params.tiles} --slides {params.slides} --out {output}"
        " {params.flags} --workers {threads} --no-progress > {log} 2>&1"


rule patch_geotiff:
    input:
        tifs=lambda wc: P.input_path(wc.ds, "inputs.geotiffs"),
        landcover=lambda wc: P.input_path(wc.ds, "inputs.landcover"),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=P.with_source("geotiff"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/patch_geotiff.log",
    benchmark:
        "logs/benchmarks/{ds}/patch_geotiff.tsv"
    params:
        tifs=P.value_of("inputs.geotiffs"),
        bands=lambda wc: ",".join(map(str, P.get(wc.ds, "patching.bands"))),
        flags=P.flags_of({
            "patching.patch_size": "--patch-size", "patching.max_nodata_fraction": "--max-nodata-fraction",
            "embedding.input_size": "--thumb-size", "inputs.landcover": "--landcover",
            "patching.landcover_names": "--landcover-names", "patching.held_out_fraction": "--held-out-fraction",
        }),
    resources:
        **P.resources(mem_mb=8000, runtime=(30, 12 * 60)),
    shell:
        "infbrush patch-geotiff {params.tifs} --out {output} --bands {params.bands} {params.flags}"
        " --no-progress > {log} 2>&1"


rule adapt_bach:
    input:
        P.value_of("inputs.bach"),
    output:
        f"{RESULTS}/{{ds}}/bach.h5",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/adapt_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_bach.tsv"
    params:
        flags=P.flags_of({
            "bach.image_size": "--image-size", "embedding.input_size": "--thumb-size",
            "bach.test_fraction": "--test-fraction", "bach.seed": "--seed",
        }),
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "infbrush adapt --kind bach --root {input} --out {output} {params.flags} --no-progress > {log} 2>&1"


rule adapt_celebahq:
    input:
        images=P.value_of("inputs.images"),
        attributes=P.value_of("inputs.attributes"),
    output:
        f"{RESULTS}/{{ds}}/images.h5",
    wildcard_constraints:
        ds=P.with_source("celebahq"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/adapt_celebahq.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_celebahq.tsv"
    params:
        flags=P.flags_of({
            "inputs.attribute": "--attribute", "inputs.mapping": "--mapping", "image_size": "--image-size",
            "embedding.input_size": "--thumb-size", "held_out_fraction": "--held-out-fraction",
        }),
    resources:
        mem_mb=4000,
        runtime=6 * 60,
    shell:
        "infbrush adapt --kind celebahq --root {input.images} --attributes {input.attributes} --out {output}"
        " {params.flags} --no-progress > {log} 2>&1"
