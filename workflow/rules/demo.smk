# The embedded demo world: synthetic slides, a NAIP-like GeoTIFF and a BACH-like labelled set (`infbrush demo-world`).
DEMO_OUT = P.top("demo_world.out")


rule demo_world:
    output:
        manifest=f"{DEMO_OUT}/manifest.json",
        slides=directory(f"{DEMO_OUT}/slides"),
        naip=f"{DEMO_OUT}/naip/demo_naip.tif",
        landcover=f"{DEMO_OUT}/naip/demo_naip_landcover.tif",
        bach=directory(f"{DEMO_OUT}/bach"),
    conda:
        CONDA_ENV
    log:
        "logs/demo_world.log",
    benchmark:
        "logs/benchmarks/demo_world.tsv"
    params:
        flags=P.top_flags({
            "demo_world.out": "--out", "demo_world.seed": "--seed", "demo_world.n_slides": "--n-slides",
            "demo_world.slide_size": "--slide-size", "demo_world.naip_size": "--naip-size",
            "demo_world.bach_per_class": "--bach-per-class", "demo_world.bach_size": "--bach-size",
        }),
    resources:
        mem_mb=4000,
        runtime=20,
    threads: 1
    shell:
        "infbrush demo-world {params.flags} --force > {log} 2>&1"
