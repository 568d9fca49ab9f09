"""``infbrush extract-patches``: read the tiled patches from their slides into an image store."""
from __future__ import annotations

import argparse
import sys

HELP = "Read every tiled patch from its slide (OpenSlide) into a chunked HDF5 image store with thumbnails."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.data.patches import extract_patches

    d = signature_defaults(extract_patches)  # the library owns the defaults
    parser.add_argument("tiles_dir", metavar="TILES_DIR", help="output directory of `infbrush tile`")
    parser.add_argument("--slides", required=True, nargs="+", help="slide directory, files or glob")
    parser.add_argument("--out", required=True, help="image store to write (results/<ds>/images.h5)")
    parser.add_argument("--thumb-size", type=int, default=d["thumb_size"],
                        help="side of the stored thumbnails (embedding input) (default: %(default)s)")
    parser.add_argument("--class-maps", action="store_true", default=d["class_maps"],
                        help="label patches from <slide_id>_classes.png beside each slide (demo world)")
    parser.add_argument("--held-out-slides", type=int, default=d["held_out_slides"],
                        help="hold out the last K slides (sorted by id) (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=d["workers"], help="reader processes (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from infbrush.data.patches import extract_patches

    summary = extract_patches(args.tiles_dir, args.slides, args.out, thumb_size=args.thumb_size,
                              class_maps=args.class_maps, held_out_slides=args.held_out_slides,
                              workers=args.workers, progress=not args.no_progress,
                              log=lambda line: print(f"infbrush extract-patches: {line}", file=sys.stderr))
    print(f"infbrush extract-patches: {summary['n_images']} patches from {summary['n_slides']} slides "
          f"({len(summary['held_out'])} held out) -> {args.out}; {len(summary['missing'])} tiles files skipped",
          file=sys.stderr)
    return 0
