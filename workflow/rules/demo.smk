# The embedded demo world: synthetic slides, a NAIP-like GeoTIFF and a BACH-like labelled set.
DEMO = config["demo_world"]


rule demo_world:
    output:
        manifest=f"{DEMO['out']}/manifest.json",
        slides=directory(f"{DEMO['out']}/slides"),
        naip=f"{DEMO['out']}/naip/demo_naip.tif",
        landcover=f"{DEMO['out']}/naip/demo_naip_landcover.tif",
        bach=directory(f"{DEMO['out']}/bach"),
    log:
        "logs/demo_world.log",
    benchmark:
        "logs/benchmarks/demo_world.tsv"
    params:
        out=DEMO["out"],
        seed=DEMO["seed"],
        n_slides=DEMO["n_slides"],
        slide_size=" ".join(map(str, DEMO["slide_size"])),
        naip_size=DEMO["naip_size"],
        bach_per_class=DEMO["bach_per_class"],
        bach_size=DEMO["bach_size"],
    resources:
        mem_mb=4000,
        runtime=20,
    threads: 1
    shell:
        "infbrush demo-world --out {params.out} --seed {params.seed} --n-slides {params.n_slides}"
        " --slide-size {params.slide_size} --naip-size {params.naip_size}"
        " --bach-per-class {params.bach_per_class} --bach-size {params.bach_size} --force > {log} 2>&1"
