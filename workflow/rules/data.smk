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
        **P.resources("download"),
    shell:
        "infbrush download --manifest {params.manifest} --url-template '{params.url}' --out {wildcards.dldir}"
        " --workers {threads} --no-progress > {log} 2>&1"


rule tile:
    input:
        slides=lambda wc: P.input_path(wc.ds, "inputs.slides"),
        slides_csv=lambda wc: P.input_path(wc.ds, "tiling.slides_csv"),
    output:
        failures=L.tiles("{ds}"),
    wildcard_constraints:
        ds=P.with_source("wsi"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/tile.log",
    benchmark:
        "logs/benchmarks/{ds}/tile.tsv"
    params:
        slides=P.of("inputs.slides"),
        out=lambda wc, output: os.path.dirname(output.failures),
        # --level N (the schema allows a level only with target_mpp: native), else --target-mpp MPP|native
        resolution=lambda wc: P.flags(wc.ds, "tiling.level") or P.flags(wc.ds, "tiling.target_mpp"),
        flags=P.flags_of(
            "tiling.patch_size", "tiling.overlap", "tiling.mpp", "tiling.slides_csv", "tiling.mask_max_side",
            "tiling.median_blur",
            "tiling.saturation_threshold", "tiling.min_tissue_fraction", "tiling.min_component_area",
            "tiling.max_hole_area", "tiling.max_patches_per_slide", "tiling.seed",
        ),
    threads: P.of("tiling.workers")
    resources:
        **P.resources("tile"),
    shell:
        "infbrush tile {params.slides} --out {params.out} {params.resolution} {params.flags}"
        " --workers {threads} --no-progress > {log} 2>&1"


rule extract_patches:
    input:
        tiles=L.tiles("{ds}"),
        slides=lambda wc: P.input_path(wc.ds, "inputs.slides"),
    output:
        L.images("{ds}"),
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
        slides=P.of("inputs.slides"),
        flags=P.flags_of({"embedding.input_size": "--thumb-size"}, "tiling.class_maps", "tiling.held_out_slides"),
    threads: P.of("tiling.workers")
    resources:
        **P.resources("extract_patches"),
    shell:
        "infbrush extract-patches {params.tiles} --slides {params.slides} --out {output}"
        " {params.flags} --workers {threads} --no-progress > {log} 2>&1"


rule patch_geotiff:
    input:
        tifs=lambda wc: P.input_path(wc.ds, "inputs.geotiffs"),
        landcover=lambda wc: P.input_path(wc.ds, "inputs.landcover"),
    output:
        L.images("{ds}"),
    wildcard_constraints:
        ds=P.with_source("geotiff"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/patch_geotiff.log",
    benchmark:
        "logs/benchmarks/{ds}/patch_geotiff.tsv"
    params:
        tifs=P.of("inputs.geotiffs"),
        bands=lambda wc: ",".join(map(str, P.get(wc.ds, "patching.bands"))),
        flags=P.flags_of(
            "patching.patch_size", "patching.max_nodata_fraction", {"embedding.input_size": "--thumb-size"},
            "inputs.landcover", "patching.landcover_names", "patching.held_out_fraction",
        ),
    resources:
        **P.resources("patch_geotiff"),
    shell:
        "infbrush patch-geotiff {params.tifs} --out {output} --bands {params.bands} {params.flags}"
        " --no-progress > {log} 2>&1"


rule adapt_bach:
    input:
        P.of("inputs.bach"),
    output:
        L.bach_store("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/adapt_bach.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_bach.tsv"
    params:
        flags=P.flags_of(
            "bach.image_size", {"embedding.input_size": "--thumb-size"}, "bach.test_fraction", "bach.seed"
        ),
    resources:
        **P.resources("adapt_bach"),
    shell:
        "infbrush adapt --kind bach --root {input} --out {output} {params.flags} --no-progress > {log} 2>&1"


rule adapt_celebahq:
    input:
        images=P.of("inputs.images"),
        attributes=P.of("inputs.attributes"),
    output:
        L.images("{ds}"),
    wildcard_constraints:
        ds=P.with_source("celebahq"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/adapt_celebahq.log",
    benchmark:
        "logs/benchmarks/{ds}/adapt_celebahq.tsv"
    params:
        flags=P.flags_of(
            "inputs.attribute", "inputs.mapping", "image_size", {"embedding.input_size": "--thumb-size"},
            "held_out_fraction",
        ),
    resources:
        **P.resources("adapt_celebahq"),
    shell:
        "infbrush adapt --kind celebahq --root {input.images} --attributes {input.attributes} --out {output}"
        " {params.flags} --no-progress > {log} 2>&1"
