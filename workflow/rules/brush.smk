# The brush (issue 16): paint each demo dataset's example condition map (workflow/brush/) with its model and
# measure the layout control: results/<ds>/brush.json (+ PNGs in results/<ds>/brush/ for the report).
# Settings: the top-level `brush:` block of params.yaml (read through P, rule_params.py); guidance scale and
# blend width come from each legend.

rule brush:
    input:
        unpack(lambda wc: P.brush_inputs(wc.ds)),
    output:
        json=f"{RESULTS}/{{ds}}/brush.json",
        image=f"{RESULTS}/{{ds}}/brush/brush.png",
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/brush.log",
    benchmark:
        "logs/benchmarks/{ds}/brush.tsv"
    wildcard_constraints:
        ds="|".join(P.brush_maps()) or "no-brush-map",
    params:
        images=lambda wc: f"{RESULTS}/{wc.ds}/brush",
        flags=lambda wc: P.brush_flags(wc.ds),
    resources:
        mem_mb=4000,
        runtime=60,
    threads: 2
    shell:
        "infbrush brush-eval --map {input.map} --legend {input.legend} --weights {input.weights}"
        " --store {input.store} --out {output.json} --images {params.images} --no-progress {params.flags} > {log} 2>&1"
