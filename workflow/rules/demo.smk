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
        flags=P.flags(
            None, "demo_world.out", "demo_world.seed", "demo_world.n_slides", "demo_world.slide_size",
            "demo_world.naip_size", "demo_world.bach_per_class", "demo_world.bach_size",
        ),
    resources:
        **P.resources("demo_world"),
    threads: 1
    shell:
        "infbrush demo-world {params.flags} --force > {log} 2>&1"
