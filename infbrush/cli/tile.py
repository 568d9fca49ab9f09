"""``infbrush tile``: tissue detection and patch grids of whole-slide images (one HDF5 of coords per slide)."""
from __future__ import annotations

import argparse
import sys

HELP = "Detect tissue and write a patch-coordinate HDF5 + thumbnail per slide (OpenSlide); resumable."


def _threshold(text: str) -> float | None:
    return None if text.lower() in ("none", "null", "otsu") else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slides", nargs="+", metavar="SLIDE_OR_DIR", help="slide files, directories or globs")
    parser.add_argument("--out", required=True, help="output directory (results/<ds>/tiles)")
    parser.add_argument("--patch-size", type=int, default=256, help="patch side in pixels at --target-mpp")
    parser.add_argument("--target-mpp", type=float, default=1.0, help="microns per pixel of the patches")
    parser.add_argument("--mask-max-side", type=int, default=1024, help="longest side of the tissue-mask image")
    parser.add_argument("--median-blur", type=int, default=7, help="median filter size on saturation")
    parser.add_argument("--saturation-threshold", type=_threshold, default=None,
                        help="fixed saturation threshold 0..255, or 'otsu' (default)")
    parser.add_argument("--min-tissue-fraction", type=float, default=0.5, help="keep patches at least this tissue")
    parser.add_argument("--min-component-area", type=float, default=0.001,
                        help="drop tissue components below this fraction of the slide")
    parser.add_argument("--max-hole-area", type=float, default=0.0005,
                        help="fill holes below this fraction of the slide")
    parser.add_argument("--max-patches-per-slide", type=int, default=0, help="random subset per slide (0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-slide subset")
    parser.add_argument("--workers", type=int, default=1, help="slides processed in parallel")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any slide failed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from infbrush.data.tiling import TilingParams, find_slides, tile_slides
    from infbrush.data.tissue import TissueParams
    from infbrush.errors import InfbrushError

    if args.patch_size <= 0 or args.target_mpp <= 0:
        raise InfbrushError(f"--patch-size ({args.patch_size}) and --target-mpp ({args.target_mpp}) must be > 0")
    if not 0 <= args.min_tissue_fraction <= 1:
        raise InfbrushError(f"--min-tissue-fraction {args.min_tissue_fraction} is not in [0, 1]")
    paths = find_slides(args.slides)
    if not paths:
        raise InfbrushError(f"{' '.join(args.slides)}: no slide files found")
    params = TilingParams(
        patch_size=args.patch_size, target_mpp=args.target_mpp, mask_max_side=args.mask_max_side,
        min_tissue_fraction=args.min_tissue_fraction, max_patches_per_slide=args.max_patches_per_slide,
        seed=args.seed, tissue=TissueParams(median_blur=args.median_blur,
                                            saturation_threshold=args.saturation_threshold,
                                            min_component_area=args.min_component_area,
                                            max_hole_area=args.max_hole_area))
    summary = tile_slides(paths, args.out, params, workers=args.workers, progress=not args.no_progress,
                          log=lambda line: print(f"infbrush tile: {line}", file=sys.stderr))
    n_patches = sum(r["n_patches"] for r in summary.tiled)
    print(f"infbrush tile: {len(summary.tiled)} slides tiled ({n_patches} patches), {len(summary.skipped)} "
          f"already done, {len(summary.failures)} skipped as failed (see {args.out}/failures.tsv)",
          file=sys.stderr)
    if summary.internal_errors:
        return 1
    if not summary.tiled and not summary.skipped:
        return 1
    if args.strict and summary.failures:
        return 1
    return 0
