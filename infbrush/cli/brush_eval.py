"""``infbrush brush-eval``: measured control of layout for one map (brush.json + the demo images)."""
from __future__ import annotations

import argparse
import sys

from infbrush.brush import settings
from infbrush.cli.options import (add_device_option, add_guidance_interval_option, check_guidance_interval_option,
                                  int_list)
from infbrush.evaluate.control import DEFAULT_FEATURE_SIZE
from infbrush.sample.run import DEFAULT_CHUNK_POINTS, DEFAULT_STEPS

HELP = ("measure a painted map: per-region accuracy of the real-data judge on crops inside each region, seam "
        "energy against real boundaries, cost against a single-condition sample and the per-region baseline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", required=True, help="condition map (PNG/TIFF)")
    parser.add_argument("--legend", required=True, help="legend YAML")
    parser.add_argument("--weights", help="exported EMA weights (default: the legend's 'weights')")
    parser.add_argument("--store", required=True, help="images.h5: the judge is fit on its real training split")
    parser.add_argument("--size", type=int, required=True, help="output side in pixels")
    parser.add_argument("--out", required=True, help="brush.json")
    parser.add_argument("--images", help="folder for the demo PNGs (brush, baseline, map, seeds, single-condition, "
                                         "real mosaic)")
    parser.add_argument("--seeds", type=int_list("--seeds"), default=list(settings.EVAL_SEEDS),
                        help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--blend", help="soft-edge width override ('8px' or a fraction of the side)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance-scale", type=float, help="default: the legend's, else 1")
    add_guidance_interval_option(parser)
    parser.add_argument("--chunk-points", type=int, default=DEFAULT_CHUNK_POINTS)
    parser.add_argument("--crop-fraction", type=float, default=settings.CROP_FRACTION, help="judge crop side / image side")
    parser.add_argument("--margin-fraction", type=float, default=settings.MARGIN_FRACTION,
                        help="crops stay this fraction of the side away from other regions")
    parser.add_argument("--crops-per-region", type=int, default=settings.CROPS_PER_REGION)
    parser.add_argument("--judge-seed", type=int, default=settings.JUDGE_SEED)
    parser.add_argument("--feature-size", type=int, default=DEFAULT_FEATURE_SIZE)
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from infbrush.brush.evaluate import evaluate_brush
    from infbrush.cli.brush import load_painting
    from infbrush.diffusion.process import Diffusion
    from infbrush.errors import InfbrushError
    from infbrush.io import write_json
    from infbrush.runtime.device import resolve_device

    if args.size < 8:
        raise InfbrushError(f"--size must be >= 8, got {args.size}")
    if not args.seeds:
        raise InfbrushError("--seeds names no seed")
    if not 0 < args.crop_fraction < 1 or not 0 <= args.margin_fraction < 0.5:
        raise InfbrushError(f"--crop-fraction must be in (0, 1) and --margin-fraction in [0, 0.5), got "
                            f"{args.crop_fraction}, {args.margin_fraction}")
    model, ckpt, painting, _ = load_painting(args)
    diffusion = Diffusion.of_checkpoint(ckpt, args.weights)
    check_guidance_interval_option(args.guidance_interval, diffusion.timesteps)
    scale = args.guidance_scale if args.guidance_scale is not None else (painting.legend.guidance_scale or 1.0)
    result = evaluate_brush(model, painting, store=args.store, size=args.size, seeds=args.seeds, steps=args.steps,
                            alpha_bar=diffusion.alpha_bar(), mollify_sigma=diffusion.mollify_sigma,
                            guidance_scale=scale,
                            guidance_interval=args.guidance_interval, chunk_points=args.chunk_points or None,
                            crop_fraction=args.crop_fraction, margin_fraction=args.margin_fraction,
                            crops_per_region=args.crops_per_region, judge_seed=args.judge_seed,
                            feature_size=args.feature_size, out_dir=args.images,
                            device=resolve_device(args.device), progress=not args.no_progress)
    result = {"map": args.map, "legend": args.legend, "weights": args.weights, "store": args.store, **result}
    write_json(args.out, result)
    acc, seams, cost = result["mean_region_accuracy"], result["seams"], result["cost"]
    print(f"brush-eval: mean region accuracy ours {acc['ours']}, baseline {acc['baseline']}, single-condition "
          f"{acc['single_condition']}; seam ratio ours {seams['ours']['mean']}, real mosaic "
          f"{seams['real_mosaic']['mean']}; FLOPs ours/single {cost['flops_ratio_ours_vs_single']:.2f}, "
          f"baseline/single {cost['flops_ratio_baseline_vs_single']:.2f} -> {args.out}", file=sys.stderr)
    return 0
