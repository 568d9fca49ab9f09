"""Region conditions in the model (issue 16): global against region-local operations, beside the per-region baseline.

One painted map, one trained model, the same seeds for every row, in one process:

* ``global``: ``RegionDenoiser(local=False)``: each point's condition through CANO and the UNO bottleneck, the
  model's global operations (self-attention over all points, the UNO's GroupNorm statistics and bottleneck
  self-attention) over the whole image;
* ``local``: ``RegionDenoiser()`` (the default): those operations per region;
* ``baseline``: ``MultiDiffusionDenoiser``, the denoiser once per region, predictions blended.

Each image is judged as ``infbrush brush-eval`` does (the demo judge fit on real crops of the same fraction of
the side, crops inside each region away from the others). Accuracy intervals are Wilson 95 % over crops (crops
of one image are correlated: optimistic). Wall seconds are per row, measured one after the other.

    python benchmarks/bench_brush_regions.py --weights results/demo_brca/label/ema.pt \
        --store results/demo_brca/images.h5 --map workflow/brush/demo_brca_map.png \
        --legend workflow/brush/demo_brca_legend.yaml --size 128 --images benchmarks/figures/brush_regions_brca

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROWS = ("global", "local", "baseline")


def main(argv=None) -> dict:
    from infbrush.brush.evaluate import crop_positions, fit_crop_judge, judge_region, to_uint8
    from infbrush.brush.run import paint
    from infbrush.brush.settings import EvalProtocol, PaintSettings
    from infbrush.cli.brush import load_painting
    from infbrush.diffusion.process import Diffusion

    protocol = EvalProtocol()

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--legend", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seeds", default=",".join(str(s) for s in protocol.seeds))
    ap.add_argument("--steps", type=int, default=PaintSettings().steps)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", help="folder for one PNG strip per row (the seeds side by side) and the map")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    args = argparse.Namespace(legend=a.legend, map=a.map, weights=a.weights, size=a.size, blend=None, device="cpu")
    model, ckpt, painting, _ = load_painting(args)
    model.eval()
    seeds = [int(s) for s in a.seeds.split(",")]
    sampling = PaintSettings(steps=a.steps, chunk_points=None)  # guidance: the legend's, else 1
    scale = sampling.guidance_for(painting.legend)
    judge, names, judge_summary = fit_crop_judge(a.store, protocol.crop_fraction, seed=protocol.judge_seed,
                                                 feature_size=protocol.feature_size)
    index = painting.weights.lattice_index((a.size, a.size))
    crop = max(8, int(round(protocol.crop_fraction * a.size)))
    margin = int(round(protocol.margin_fraction * a.size))
    common = dict(seeds=seeds, diffusion=Diffusion.of_checkpoint(ckpt, a.weights), device="cpu")
    rows = {}
    for row in a.rows:
        start = time.perf_counter()
        if row == "baseline":
            settings = replace(sampling, method="baseline")
        else:
            settings = replace(sampling, method="model", method_options={"local": row == "local"})
        images = paint(model, painting, (a.size, a.size), settings=settings, **common)
        seconds = time.perf_counter() - start
        images8 = [to_uint8(im) for im in images]
        regions = {}
        for r in painting.present:
            spec = painting.legend.regions[r]
            if spec.name not in names:
                continue
            positions = crop_positions(index, r, crop, margin, protocol.crops_per_region)
            regions[spec.name] = judge_region(judge, names, images8, positions, crop, names.index(spec.name),
                                              protocol.feature_size)
        mean = float(np.mean([s["accuracy"] for s in regions.values()]))
        rows[row] = {"mean_region_accuracy": mean, "regions": regions, "wall_seconds": seconds}
        print(f"{row:8s} mean region accuracy {mean:.3f}  "
              + "  ".join(f"{k} {v['accuracy']:.2f}" for k, v in regions.items()) + f"  ({seconds:.0f} s)", flush=True)
        if a.images:
            from PIL import Image

            Path(a.images).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(images8, axis=1)).save(Path(a.images) / f"{row}.png")
    result = {"weights": a.weights, "map": a.map, "size": a.size, "seeds": seeds, "steps": a.steps,
              "guidance_scale": scale, "crop_px": crop, "judge_real_held_out": judge_summary["real_held_out_overall"],
              "rows": rows}
    if "global" in rows and "local" in rows:
        result["local_minus_global"] = rows["local"]["mean_region_accuracy"] - rows["global"]["mean_region_accuracy"]
        result["wall_ratio_local_vs_global"] = rows["local"]["wall_seconds"] / rows["global"]["wall_seconds"]
    if "baseline" in rows and "local" in rows:
        result["local_minus_baseline"] = rows["local"]["mean_region_accuracy"] - rows["baseline"]["mean_region_accuracy"]
        result["wall_ratio_local_vs_baseline"] = rows["local"]["wall_seconds"] / rows["baseline"]["wall_seconds"]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
