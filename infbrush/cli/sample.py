"""``infbrush sample``: EMA weights + conditions → images at any resolution (PNG / pyramidal TIFF + index.json)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infbrush.cli.options import int_list
from infbrush.errors import InfbrushError

HELP = "sample images at any resolution from exported EMA weights (PNG, or pyramidal TIFF for large ones)"


SPLITS = {"held-out": 1, "train": 0}  # --split name → the store's split value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_device_option, add_guidance_interval_option, signature_defaults
    from infbrush.diffusion.settings import SamplingSettings
    from infbrush.sample import run
    from infbrush.sample.conditions import from_held_out
    from infbrush.sample.tiff import COMPRESSIONS

    # the library owns the defaults (and run.DEFAULT_*)
    sampling, out, execution = SamplingSettings(), run.ImageOutput(), run.Execution()
    split = {value: name for name, value in SPLITS.items()}[signature_defaults(from_held_out)["split"]]
    parser.add_argument("--weights", required=True, help="exported EMA weights (results/<ds>/ema.pt)")
    parser.add_argument("--out", required=True, help="output folder; images go to OUT/<R>/ with an index.json")
    parser.add_argument("--resolution", type=int, nargs="+", required=True, metavar="R",
                        help="output side(s) in pixels (square images), e.g. 256 512 4096")
    parser.add_argument("--steps", type=int, default=sampling.steps,
                        help="sampler steps = network evaluations per image, two at guided steps (default: "
                             "%(default)s)")
    parser.add_argument("--sampler", default=sampling.sampler,
                        help="ODE sampler: ddim (the paper's), dpmpp_2m (DPM-Solver++(2M)), unipc (UniPC-bh2) "
                             "(default: %(default)s)")
    parser.add_argument("--spacing", default=sampling.spacing,
                        help="timesteps of the run: linear (even in t, the paper's DDIM) or lambda (T-1, then even in "
                             "log-SNR from sigma 80 down, as DPM-Solver; default: %(default)s)")
    parser.add_argument("--guidance-scale", type=float, default=sampling.guidance_scale,
                        help="classifier-free guidance (1 = none; default: %(default)s)")
    add_guidance_interval_option(parser, sampling.guidance_interval)
    parser.add_argument("--chunk-points", type=int, default=run.DEFAULT_CHUNK_POINTS,
                        help="points per denoiser chunk (bounds activation memory; 0 = whole image at once; "
                             "default: %(default)s)")
    parser.add_argument("--seed", type=int, default=run.DEFAULT_SEED,
                        help="image i uses seed SEED + i (default: %(default)s)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--cond-embeddings", help="embeddings.h5 of the store's images (condition on held-out images)")
    src.add_argument("--cond-text", help="text_embeddings.h5 (condition on class prompts, --per-class each)")
    src.add_argument("--labels", type=int_list("--labels"), help="comma-separated class labels (a label-conditioned model)")
    parser.add_argument("--store", help="images.h5 whose rows --cond-embeddings describes (with --cond-embeddings)")
    parser.add_argument("--split", choices=tuple(SPLITS), default=split,
                        help="which store rows give conditions (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=run.DEFAULT_PER_CLASS,
                        help="images per prompt / label; with --cond-embeddings only when --balanced: images per "
                             "class label of the held-out rows (default: %(default)s)")
    parser.add_argument("--balanced", action="store_true",
                        help="--cond-embeddings: take --per-class held-out images of every class instead of the "
                             "first --n-images rows")
    parser.add_argument("--n-images", type=int, help="at most this many images (held-out: the first N rows; "
                                                     "unconditional: required)")
    parser.add_argument("--format", choices=("auto", "png", "tiff"), default=out.fmt,
                        help="auto: PNG up to --png-max-side, pyramidal TIFF above (default: %(default)s)")
    parser.add_argument("--png-max-side", type=int, default=out.png_max_side, help="default: %(default)s")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=out.compression,
                        help="TIFF tile compression (default: %(default)s)")
    parser.add_argument("--mpp", type=float, help="microns per pixel of the training images (tiling.target_mpp)")
    parser.add_argument("--mpp-size", type=int,
                        help="image side at which --mpp holds (tiling.patch_size); output mpp = mpp·size/R. "
                             "Default: R (every output gets --mpp)")
    parser.add_argument("--mollify-sigma", type=float, help="default: the value the model was trained with")
    parser.add_argument("--timesteps", type=int, help="diffusion T; default: the value the model was trained with")
    parser.add_argument("--batch-pixels", type=int, default=execution.batch_pixels,
                        help="images per batch = max(1, this // R²) (default: %(default)s); outputs do not depend "
                             "on it")
    parser.add_argument("--state-dir", help="keep the DDIM state in a scratch file in this folder instead of RAM "
                                            "(CPU; for outputs larger than memory, e.g. 16384²)")
    add_device_option(parser)
    parser.add_argument("--amp", default=execution.precision, choices=["off", "bf16", "bf16-grid"],
                        help="precision: float32, bf16 autocast of the denoiser, or of its grid UNet only "
                             "(benchmarks/RESULTS.md: speed and accuracy of each; default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true")


def _check_condition_kind(args: argparse.Namespace, config: dict) -> None:
    """A label condition needs a label-trained model and an embedding condition an embedding-trained one."""
    trained_labels, trained_emb = config.get("cond_labels"), config.get("cond_embeddings")
    if args.labels is not None and trained_emb and not trained_labels:
        raise InfbrushError(f"--labels: {args.weights} was trained on embeddings ({trained_emb}), not on class "
                            f"labels; condition it with --cond-embeddings or --cond-text")
    if (args.cond_embeddings or args.cond_text) and trained_labels:
        flag = "--cond-embeddings" if args.cond_embeddings else "--cond-text"
        raise InfbrushError(f"{flag}: {args.weights} was trained on {trained_labels} class labels, not on "
                            f"embeddings; condition it with --labels")


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from infbrush.cli.options import check_guidance_interval_option
    from infbrush.diffusion.process import Diffusion
    from infbrush.diffusion.samplers import SAMPLERS
    from infbrush.diffusion.schedule import SPACINGS, sampling_timesteps
    from infbrush.diffusion.settings import SamplingMemory, SamplingSettings
    from infbrush.io import sha256_file
    from infbrush.sample import conditions as C
    from infbrush.runtime.distributed import cleanup_distributed, rank_layout
    from infbrush.runtime.device import resolve_device
    from infbrush.sample.run import Execution, ImageOutput, load_weights, sample_resolution, split_over_ranks

    if any(r < 1 for r in args.resolution):
        raise InfbrushError(f"--resolution must be positive, got {args.resolution}")
    if args.per_class < 1:
        raise InfbrushError(f"--per-class must be >= 1, got {args.per_class}")
    if args.batch_pixels < 1:
        raise InfbrushError(f"--batch-pixels must be >= 1, got {args.batch_pixels}")
    if not args.guidance_scale >= 0:
        raise InfbrushError(f"--guidance-scale must be >= 0 (1 = no guidance), got {args.guidance_scale}")
    if args.cond_embeddings and not args.store:
        raise InfbrushError("--cond-embeddings needs --store (the images.h5 the embeddings were computed from)")
    device = resolve_device(args.device)
    model, ckpt = load_weights(args.weights, device)
    model, device, rank = split_over_ranks(model, device)  # torchrun / srun: one image's chunks over the ranks
    config = ckpt.get("config") or {}
    cond_dim = int(ckpt["model_args"].get("cond_dim", 0))
    diffusion = Diffusion.of_checkpoint(ckpt, args.weights, timesteps=args.timesteps, mollify_sigma=args.mollify_sigma)
    mollify_sigma, timesteps = diffusion.mollify_sigma, diffusion.timesteps
    if args.spacing not in SPACINGS:
        raise InfbrushError(f"--spacing {args.spacing!r} is not a spacing; valid: {', '.join(SPACINGS)}")
    try:  # the step range has one owner, the schedule
        sampling_timesteps(args.steps, diffusion.alpha_bar(), args.spacing)
    except ValueError as err:
        raise InfbrushError(f"--steps {args.steps}: {err}") from None
    if args.sampler not in SAMPLERS:
        raise InfbrushError(f"--sampler {args.sampler!r} is not a sampler; valid: {', '.join(SAMPLERS)}")
    check_guidance_interval_option(args.guidance_interval, timesteps)
    _check_condition_kind(args, config)

    if args.cond_embeddings:
        specs = C.from_held_out(args.store, args.cond_embeddings, seed=args.seed, n_images=args.n_images,
                                split=SPLITS[args.split],
                                per_class=args.per_class if args.balanced else None)
        cond_files = [args.cond_embeddings]
    elif args.cond_text:
        specs = C.from_text(args.cond_text, per_class=args.per_class, seed=args.seed)[:args.n_images]
        cond_files = [args.cond_text]
    elif args.labels is not None:
        specs = C.from_labels(args.labels, cond_dim=cond_dim, per_class=args.per_class, seed=args.seed,
                              label_names=ckpt.get("label_names") or ())
        specs = specs[:args.n_images]
        cond_files = []
    else:
        if not args.n_images:
            raise InfbrushError("give --cond-embeddings, --cond-text or --labels, or --n-images for an "
                                "unconditional model")
        specs = C.unconditional(args.n_images, seed=args.seed)
        cond_files = []
    C.check_cond_dim(specs, cond_dim, str(args.weights))

    record = {"weights": str(args.weights), "weights_sha256": sha256_file(args.weights),
              "step": ckpt.get("step"), "steps": args.steps, "guidance_scale": args.guidance_scale,
              "guidance_interval": args.guidance_interval, "sampler": args.sampler,
              "spacing": args.spacing,
              "mollify_sigma": mollify_sigma, "timesteps": timesteps, "seed": args.seed,
              "cond_files": {str(p): sha256_file(p) for p in cond_files}, "compression": args.compression}
    interval = tuple(args.guidance_interval) if args.guidance_interval else None
    settings = SamplingSettings(steps=args.steps, sampler=args.sampler, spacing=args.spacing,
                                guidance_scale=args.guidance_scale, guidance_interval=interval)
    output = ImageOutput(fmt=args.format, png_max_side=args.png_max_side, compression=args.compression)
    execution = Execution(device=device, precision=args.amp, batch_pixels=args.batch_pixels,
                          memory=SamplingMemory(chunk_points=args.chunk_points or None, state_dir=args.state_dir))
    for r in args.resolution:
        mpp = None if args.mpp is None else args.mpp * (args.mpp_size or r) / r
        entries = sample_resolution(model, specs, Path(args.out) / str(r), (r, r), diffusion=diffusion,
                                    settings=settings, record=record, output=replace(output, mpp=mpp),
                                    execution=execution, progress=not args.no_progress)
        if rank == 0:
            print(f"{len(entries)} images at {r}x{r} in {Path(args.out) / str(r)}", file=sys.stderr)
    if rank_layout()[1] > 1:
        cleanup_distributed()
    return 0
