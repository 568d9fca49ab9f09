"""``infbrush tile``: tissue detection and patch grids of whole-slide images (one HDF5 of coords per slide)."""
from __future__ import annotations

import argparse
import os
import sys

HELP = ("Detect tissue and write patch coordinates per slide (OpenSlide): <out>/<slide>.h5 in TRIDENT's "
        "convention, <out>/clam/patches/<slide>.h5 in CLAM's, and a thumbnail; resumable.")
TILING_OPTIONS = {"patch_size": "patch side in pixels at the target resolution",
                  "overlap": "pixels at the target resolution shared by neighbouring patches (TRIDENT's --overlap)",
                  "mask_max_side": "longest side of the tissue-mask image",
                  "min_tissue_fraction": "keep patches at least this tissue",
                  "max_patches_per_slide": "random subset per slide (0 = all)", "seed": "seed of the per-slide subset"}
TISSUE_OPTIONS = {"median_blur": "median filter size on saturation",
                  "min_component_area": "drop tissue components below this fraction of the slide",
                  "max_hole_area": "fill holes below this fraction of the slide"}


def _threshold(text: str) -> float | None:
    return None if text.lower() in ("none", "null", "otsu") else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slides", nargs="*", metavar="SLIDE_OR_DIR",
                        help="slide files, directories or globs (optional with --slides-csv)")
    from infbrush.cli.options import add_config_options, signature_defaults
    from infbrush.data.tiling import TilingParams, tile_slides
    from infbrush.data.tissue import TissueParams

    parser.add_argument("--out", required=True, help="output directory (results/<ds>/tiles)")
    add_config_options(parser, TilingParams(), TILING_OPTIONS)  # the library owns the defaults
    add_config_options(parser, TissueParams(), TISSUE_OPTIONS)
    parser.add_argument("--target-mpp", default=None, metavar="MPP|native",
                        help="microns per pixel of the patches, or 'native': the slide's own level-0 resolution "
                             "(needs no MPP metadata) (default: %s unless --level is given)" % TilingParams().target_mpp)
    parser.add_argument("--level", type=int, default=None,
                        help="tile at this pyramid level's own resolution, as CLAM's --patch_level (no resize, no "
                             "MPP needed); excludes --target-mpp (default: none)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="level-0 microns per pixel of every slide, overriding their metadata (for slides "
                             "without trustworthy MPP) (default: from the slide's metadata)")
    parser.add_argument("--slides-csv", default=None, metavar="CSV",
                        help="batch list: column 'wsi' (slide path, relative to the CSV or working directory, or "
                             "a file name among SLIDE_OR_DIR) and optional column 'mpp' (that slide's level-0 "
                             "µm/px, overriding metadata and --mpp) (default: none)")
    parser.add_argument("--saturation-threshold", type=_threshold, default=None,
                        help="fixed saturation threshold 0..255, or 'otsu' (default: otsu)")
    parser.add_argument("--workers", type=int, default=signature_defaults(tile_slides)["workers"], help="slides processed in parallel (default: %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="exit non-zero if any slide failed (default: off)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: off)")


def parse_target_mpp(text: str | None, level: int | None) -> float | None:
    """The --target-mpp value: a number > 0, or None for 'native' / when --level is given."""
    from infbrush.errors import InfbrushError

    if level is not None:
        if text is not None:
            raise InfbrushError(f"--target-mpp {text} and --level {level}: give one of them, not both")
        if level < 0:
            raise InfbrushError(f"--level {level}: must be ≥ 0")
        return None
    if text is None:
        from infbrush.data.tiling import TilingParams

        return TilingParams().target_mpp
    if str(text).strip().lower() == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InfbrushError(f"--target-mpp {text}: not a number or 'native'") from None
    if not value > 0:
        raise InfbrushError(f"--target-mpp {text}: must be > 0 (or 'native')")
    return value


def main(args: argparse.Namespace) -> int:
    from infbrush.data.tiling import TilingParams, find_slides, read_slides_csv, tile_slides
    from infbrush.data.tissue import TissueParams
    from infbrush.errors import InfbrushError

    target_mpp = parse_target_mpp(args.target_mpp, args.level)
    if args.patch_size <= 0:
        raise InfbrushError(f"--patch-size {args.patch_size}: must be > 0")
    if not 0 <= args.overlap < args.patch_size:
        raise InfbrushError(f"--overlap {args.overlap}: must be ≥ 0 and below --patch-size {args.patch_size}")
    if args.mpp is not None and not args.mpp > 0:
        raise InfbrushError(f"--mpp {args.mpp:g}: must be > 0")
    if not 0 <= args.min_tissue_fraction <= 1:
        raise InfbrushError(f"--min-tissue-fraction {args.min_tissue_fraction} is not in [0, 1]")
    if not args.slides and not args.slides_csv:
        raise InfbrushError("no slides: give SLIDE_OR_DIR or --slides-csv")
    paths = find_slides(args.slides) if args.slides else []
    slide_mpp, failures = {}, []
    if args.slides_csv:
        listed, slide_mpp, failures = read_slides_csv(args.slides_csv, paths)
        known = {os.path.realpath(p) for p in paths}
        paths = paths + [p for p in listed if os.path.realpath(p) not in known]
        bad_rows = {os.path.realpath(p) for p, _ in failures if os.path.isfile(p)}  # e.g. a bad mpp value
        paths = [p for p in paths if os.path.realpath(p) not in bad_rows]
    if not paths and not failures:
        raise InfbrushError(f"{' '.join(args.slides)}: no slide files found")
    params = TilingParams(
        patch_size=args.patch_size, overlap=args.overlap, target_mpp=target_mpp, level=args.level, mpp=args.mpp,
        mask_max_side=args.mask_max_side,
        min_tissue_fraction=args.min_tissue_fraction, max_patches_per_slide=args.max_patches_per_slide,
        seed=args.seed, tissue=TissueParams(median_blur=args.median_blur,
                                            saturation_threshold=args.saturation_threshold,
                                            min_component_area=args.min_component_area,
                                            max_hole_area=args.max_hole_area))
    summary = tile_slides(paths, args.out, params, workers=args.workers, progress=not args.no_progress,
                          log=lambda line: print(f"infbrush tile: {line}", file=sys.stderr),
                          slide_mpp=slide_mpp, failures=failures)
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
