"""``infbrush brush``: paint conditions into regions of one image (a condition map + a legend → PNG / TIFF)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infbrush.brush.settings import PaintSettings
from infbrush.cli.options import (add_config_options, add_device_option, add_guidance_interval_option,
                                  check_guidance_interval_option, config_from_args)
from infbrush.errors import InfbrushError
from infbrush.sample.run import DEFAULT_SEED
from infbrush.sample.tiff import COMPRESSIONS, PyramidOptions

HELP = ("paint conditions into regions of one image: a condition map (PNG/TIFF) + a legend (YAML) → PNG, or "
        "pyramidal TIFF for large outputs")


def add_paint_options(parser: argparse.ArgumentParser) -> None:
    """The sampling options of ``brush`` and ``brush-eval``: :class:`PaintSettings` owns their defaults."""
    d = PaintSettings()
    add_config_options(parser, d, {"steps": "DDIM steps"})
    parser.add_argument("--guidance-scale", type=float, default=d.guidance_scale,
                        help="classifier-free guidance (default: the legend's, else 1)")
    add_guidance_interval_option(parser, d.guidance_interval)
    add_config_options(parser, d, {"chunk_points": "points per denoiser chunk (bounds activation memory; 0 = whole "
                                                   "image at once)"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", required=True, help="condition map (PNG/TIFF, any size; colours or integer values "
                                                     "name the regions; read as a function of [0, 1]²)")
    parser.add_argument("--legend", required=True, help="legend YAML: region colour/value -> condition "
                                                        "(label, text, embedding, image or unconditional)")
    parser.add_argument("--size", type=int, required=True, help="output side in pixels (square)")
    parser.add_argument("--out", required=True, help="output image: .png, or .tif/.tiff (pyramidal TIFF)")
    parser.add_argument("--weights", help="exported EMA weights (default: the legend's 'weights')")
    parser.add_argument("--blend", help="soft-edge width: pixels ('8px') or a fraction of the side (0.05); "
                                        "default: the legend's 'blend', else hard edges")
    parser.add_argument("--method", choices=("model", "baseline"), default=PaintSettings().method,
                        help="model: each point's region condition inside the denoiser (default); baseline: the "
                             "denoiser once per region, predictions blended (MultiDiffusion-style reference)")
    add_paint_options(parser)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the initial noise (default: %(default)s)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=PyramidOptions.compression,
                        help="TIFF tile compression (default: %(default)s)")
    parser.add_argument("--mollify-sigma", type=float, help="default: the value the model was trained with")
    parser.add_argument("--timesteps", type=int, help="diffusion T; default: the value the model was trained with")
    parser.add_argument("--state-dir", help="keep the DDIM state in a scratch file here instead of RAM (CPU)")
    add_device_option(parser)
    parser.add_argument("--no-progress", action="store_true")


def output_format(out: str | Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return "png"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    raise InfbrushError(f"--out {out}: give a .png or .tif/.tiff file")


def load_painting(args: argparse.Namespace, model_ckpt=None):
    """(model, ckpt, painting, legend data) from --weights/--legend/--map/--size/--blend."""
    from infbrush.brush.legend import parse_legend, read_legend_yaml
    from infbrush.brush.maps import read_map
    from infbrush.brush.run import prepare
    from infbrush.runtime.device import resolve_device
    from infbrush.sample.run import load_weights

    data = read_legend_yaml(args.legend)
    weights = args.weights or data.get("weights")
    if not weights:
        raise InfbrushError("give --weights (or 'weights:' in the legend)")
    args.weights = str(weights)
    if model_ckpt is None:
        model, ckpt = load_weights(weights, resolve_device(args.device))
    else:
        model, ckpt = model_ckpt
    config = ckpt.get("config") or {}
    cond_dim = int(ckpt["model_args"].get("cond_dim", 0))
    legend = parse_legend(data, cond_dim=cond_dim, label_names=ckpt.get("label_names") or (),
                          label_model=bool(config.get("cond_labels")), source=str(args.legend),
                          base_dir=Path(args.legend).parent)
    cmap = read_map(args.map)
    painting = prepare(cmap, legend, args.size, cond_dim, args.blend)
    return model, ckpt, painting, data


def main(args: argparse.Namespace) -> int:
    from infbrush.brush.run import paint
    from infbrush.diffusion.process import Diffusion
    from infbrush.io import write_json
    from infbrush.sample.outputs import write_image
    from infbrush.runtime.device import resolve_device

    if args.size < 1:
        raise InfbrushError(f"--size must be positive, got {args.size}")
    if args.steps < 1:
        raise InfbrushError(f"--steps must be >= 1, got {args.steps}")
    fmt = output_format(args.out)
    model, ckpt, painting, _ = load_painting(args)
    diffusion = Diffusion.of_checkpoint(ckpt, args.weights, timesteps=args.timesteps, mollify_sigma=args.mollify_sigma)
    check_guidance_interval_option(args.guidance_interval, diffusion.timesteps)
    settings = config_from_args(PaintSettings, args)
    scale = settings.guidance_for(painting.legend)
    start = time.perf_counter()
    images = paint(model, painting, (args.size, args.size), seeds=[args.seed], diffusion=diffusion, settings=settings,
                   device=resolve_device(args.device), state_dir=args.state_dir, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, images[0], fmt, options=PyramidOptions(compression=args.compression))
    regions = [{"key": k, "name": r.name, "kind": r.kind, "value": r.value, "label": r.label,
                "guidance_scale": r.guidance_scale, "present": i in painting.present}
               for i, (k, r) in enumerate(zip(painting.key_names(), painting.legend.regions))]
    write_json(str(args.out) + ".json", {
        "map": str(args.map), "legend": str(args.legend), "weights": str(args.weights), "size": args.size,
        "format": fmt, "method": args.method, "blend_fraction": painting.blend, "steps": args.steps,
        "guidance_scale": scale, "seed": args.seed, "seconds": round(seconds, 2), "regions": regions})
    print(f"brush: {len(painting.present)} regions, {args.size}x{args.size} in {seconds:.1f} s -> {args.out}",
          file=sys.stderr)
    return 0
