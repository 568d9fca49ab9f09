"""``infbrush brush-eval``: measured control of layout for one map (brush.json + the demo images)."""
from __future__ import annotations

import argparse
import sys

from infbrush.brush.settings import EvalProtocol
from infbrush.cli.brush import add_paint_options
from infbrush.cli.options import add_config_options, add_device_option, check_guidance_interval_option, int_list

HELP = ("measure a painted map: per-region accuracy of the real-data judge on crops inside each region, seam "
        "energy against real boundaries, cost against a single-condition sample and the per-region baseline")

PROTOCOL_OPTIONS = {  # EvalProtocol's fields offered as options (it owns the defaults); --seeds is comma-separated
    "crop_fraction": "judge crop side / image side",
    "margin_fraction": "crops stay this fraction of the side away from other regions",
    "crops_per_region": "judge crops per image inside each region",
    "judge_seed": "seed of the crop judge and its real crops",
    "feature_size": "side the judge's crops are resized to for their features",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvalProtocol()
    parser.add_argument("--map", required=True, help="condition map (PNG/TIFF)")
    parser.add_argument("--legend", required=True, help="legend YAML")
    parser.add_argument("--weights", help="exported EMA weights (default: the legend's 'weights')")
    parser.add_argument("--store", required=True, help="images.h5: the judge is fit on its real training split")
    parser.add_argument("--size", type=int, required=True, help="output side in pixels")
    parser.add_argument("--out", required=True, help="brush.json")
    parser.add_argument("--images", help="folder for the demo PNGs (brush, baseline, map, seeds, single-condition, "
                                         "real mosaic)")
    parser.add_argument("--seeds", type=int_list("--seeds"), default=list(d.seeds),
                        help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--blend", help="soft-edge width override ('8px' or a fraction of the side)")
    add_paint_options(parser)
    add_config_options(parser, d, PROTOCOL_OPTIONS)
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from infbrush.brush.evaluate import evaluate_brush
    from infbrush.brush.figures import write_figures
    from infbrush.brush.settings import PaintSettings
    from infbrush.cli.brush import load_painting
    from infbrush.cli.options import config_from_args
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
    result, samples = evaluate_brush(model, painting, diffusion, store=args.store, size=args.size,
                                     sampling=config_from_args(PaintSettings, args),
                                     protocol=config_from_args(EvalProtocol, args),
                                     device=resolve_device(args.device), progress=not args.no_progress)
    files = write_figures(args.images, painting, samples) if args.images is not None else {}
    result = {"map": args.map, "legend": args.legend, "weights": args.weights, "store": args.store, **result,
              "files": files}
    write_json(args.out, result)
    acc, seams, cost = result["mean_region_accuracy"], result["seams"], result["cost"]
    print(f"brush-eval: mean region accuracy ours {acc['ours']}, baseline {acc['baseline']}, single-condition "
          f"{acc['single_condition']}; seam ratio ours {seams['ours']['mean']}, real mosaic "
          f"{seams['real_mosaic']['mean']}; FLOPs ours/single {cost['flops_ratio_ours_vs_single']:.2f}, "
          f"baseline/single {cost['flops_ratio_baseline_vs_single']:.2f} -> {args.out}", file=sys.stderr)
    return 0
