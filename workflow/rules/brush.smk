# The brush: paint each demo dataset's example condition map (workflow/brush/) with its model and measure the
# layout control: results/<ds>/brush.json (+ PNGs in results/<ds>/brush/ for the report).
# Settings: the top-level `brush:` block of params.yaml (brush.maps: dataset → map, legend and the variant whose
# model paints it); the sampler steps are the dataset's own sample.steps; guidance scale and blend width come
# from each legend.

rule brush:
    input:
        map=lambda wc: P.top(f"brush.maps.{wc.ds}.map"),
        legend=lambda wc: P.top(f"brush.maps.{wc.ds}.legend"),
        store=L.images("{ds}"),
        weights=lambda wc: L.weights(wc.ds, P.top(f"brush.maps.{wc.ds}.variant") or ""),
    output:
        json=L.brush("{ds}"),
        image=L.brush_image("{ds}"),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/brush.log",
    benchmark:
        "logs/benchmarks/{ds}/brush.tsv"
    wildcard_constraints:
        ds=P.names(P.brushed),
    params:
        images=lambda wc, output: os.path.dirname(output.image),
        flags=lambda wc: " ".join([
            P.flags(None, "brush.size", "brush.chunk_points", "brush.crop_fraction", "brush.margin_fraction",
                    "brush.crops_per_region"),
            P.flags(wc.ds, "sample.steps"),
            flag("--seeds", ",".join(map(str, P.top("brush.seeds") or [])) or None),
        ]),
    resources:
        **P.resources("brush"),
    threads: lambda wc: P.get(wc.ds, "sample.threads")
    shell:
        "infbrush brush-eval --map {input.map} --legend {input.legend} --weights {input.weights}"
        " --store {input.store} --out {output.json} --images {params.images} --no-progress {params.flags} > {log} 2>&1"
