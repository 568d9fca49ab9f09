# The brush (issue 16): paint each demo dataset's example condition map (workflow/brush/) with its model and
# measure the layout control: results/<ds>/brush.json (+ PNGs in results/<ds>/brush/ for the report).
# Settings: the top-level `brush:` block of params.yaml; guidance scale and blend width come from each legend.

BRUSH = config.get("brush") or {}
BRUSH_MAPS = BRUSH.get("maps") or {}


def _brush_inputs(wc):
    entry = BRUSH_MAPS[wc.ds]
    variant = entry.get("variant")
    root = f"results/{wc.ds}"
    return {"map": entry["map"], "legend": entry["legend"], "store": f"{root}/images.h5",
            "weights": f"{root}/{variant}/ema.pt" if variant else f"{root}/ema.pt"}


def _brush_flags(wc):
    flags = {"--size": BRUSH.get("size"), "--steps": BRUSH.get("steps"), "--chunk-points": BRUSH.get("chunk_points"),
             "--crop-fraction": BRUSH.get("crop_fraction"), "--margin-fraction": BRUSH.get("margin_fraction"),
             "--crops-per-region": BRUSH.get("crops_per_region")}
    out = [f"{k} {v}" for k, v in flags.items() if v is not None]
    if BRUSH.get("seeds"):
        out.append("--seeds " + ",".join(str(s) for s in BRUSH["seeds"]))
    return " ".join(out)


rule brush:
    input:
        unpack(_brush_inputs),
    output:
        json="results/{ds}/brush.json",
        image="results/{ds}/brush/brush.png",
    log:
        "logs/{ds}/brush.log",
    benchmark:
        "logs/benchmarks/{ds}/brush.tsv"
    wildcard_constraints:
        ds="|".join(BRUSH_MAPS) or "no-brush-map",
    params:
        images="results/{ds}/brush",
        flags=_brush_flags,
    resources:
        mem_mb=4000,
        runtime=60,
    threads: 1
    shell:
        "infbrush brush-eval --map {input.map} --legend {input.legend} --weights {input.weights}"
        " --store {input.store} --out {output.json} --images {params.images} --no-progress {params.flags} > {log} 2>&1"
