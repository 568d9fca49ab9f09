"""``infbrush patch-geotiff``: non-overlapping patches of GeoTIFFs (Rasterio) into a georeferenced image store."""
from __future__ import annotations

import argparse
import sys

HELP = "Cut GeoTIFFs into non-overlapping patches (Rasterio) into an image store keeping CRS and transforms."


def _bands(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(b) for b in text.replace(" ", "").split(",") if b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands {text!r}: expected 1-based band numbers like 1,2,3") from None
    if not bands or min(bands) < 1:
        raise argparse.ArgumentTypeError(f"--bands {text!r}: expected 1-based band numbers like 1,2,3")
    return bands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.data.geotiff import PatchParams, patch_geotiffs

    p, d = PatchParams(), signature_defaults(patch_geotiffs)  # the library owns the defaults
    parser.add_argument("tifs", nargs="+", metavar="TIF", help="GeoTIFF files, directories or globs")
    parser.add_argument("--out", required=True, help="image store to write (results/<ds>/images.h5)")
    parser.add_argument("--patch-size", type=int, required=True, help="patch side in pixels")
    parser.add_argument("--bands", type=_bands, default=p.bands,
                        help="1-based bands, e.g. 1,2,3 or 1,2,3,4 (default: %(default)s)")
    parser.add_argument("--max-nodata-fraction", type=float, default=p.max_nodata_fraction,
                        help="drop patches with more nodata (default: %(default)s)")
    parser.add_argument("--thumb-size", type=int, default=d["thumb_size"],
                        help="side of the stored thumbnails (default: %(default)s)")
    parser.add_argument("--landcover", nargs="*", default=list(d["landcover"]),
                        help="land-cover rasters: label = majority class (default: %(default)s)")
    parser.add_argument("--landcover-names", nargs="*", default=list(d["landcover_names"]),
                        help="name of each land-cover class value 0, 1, … (default: %(default)s: the raster's "
                             "class_names tag)")
    parser.add_argument("--held-out-fraction", type=float, default=d["held_out_fraction"],
                        help="hold out the last rows of patches of each file (fraction of rows) (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def find_tifs(items: list[str]) -> list[str]:
    """GeoTIFF paths from files, directories (*.tif, *.tiff, recursively) and globs."""
    import glob
    from pathlib import Path

    from infbrush.errors import InfbrushError

    found: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
        elif path.exists():
            found.append(item)
        elif glob.has_magic(item):
            found += sorted(glob.glob(item, recursive=True))
        else:
            raise InfbrushError(f"{item}: no such GeoTIFF file or directory")
    return list(dict.fromkeys(found))


def main(args: argparse.Namespace) -> int:
    from infbrush.data.geotiff import PatchParams, patch_geotiffs
    from infbrush.errors import InfbrushError

    if args.patch_size <= 0:
        raise InfbrushError(f"--patch-size {args.patch_size} must be > 0")
    if not 0 <= args.held_out_fraction < 1:
        raise InfbrushError(f"--held-out-fraction {args.held_out_fraction} is not in [0, 1)")
    paths = find_tifs(args.tifs)
    if not paths:
        raise InfbrushError(f"{' '.join(args.tifs)}: no GeoTIFF files found")
    params = PatchParams(patch_size=args.patch_size, bands=args.bands, max_nodata_fraction=args.max_nodata_fraction)
    summary = patch_geotiffs(paths, args.out, params, thumb_size=args.thumb_size, landcover=args.landcover,
                             landcover_names=args.landcover_names,
                             held_out_fraction=args.held_out_fraction, progress=not args.no_progress,
                             log=lambda line: print(f"infbrush patch-geotiff: {line}", file=sys.stderr))
    print(f"infbrush patch-geotiff: {summary['n_images']} patches from {summary['n_files']} files -> {args.out}; "
          f"{len(summary['failures'])} files skipped (see failures.tsv)", file=sys.stderr)
    return 0
