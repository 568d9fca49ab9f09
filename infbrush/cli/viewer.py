"""``infbrush viewer``: a zoomable page of generated images beside real slides / patches (OpenSeadragon)."""
from __future__ import annotations

import argparse
import sys

HELP = ("Deep Zoom tiles of generated images (pyramidal TIFF / PNG) beside the real slides or patches of their "
        "conditions, in an OpenSeadragon page that opens from disk; optional headless-Chromium preview.")
PREVIEW = ("auto", "always", "never")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.viewer.browser import capture_viewer
    from infbrush.viewer.build import DeepZoomOptions, GeneratedSources, RealSources, build_viewer

    # the library owns the defaults
    gen, real, tiling, run = GeneratedSources(), RealSources(), DeepZoomOptions(), signature_defaults(build_viewer)
    parser.add_argument("--out", required=True, help="output folder (results/<ds>/viewer), replaced when complete")
    parser.add_argument("--samples", nargs="*", default=list(gen.samples), metavar="INDEX_OR_DIR",
                        help="sample index.json files of `infbrush sample`, or folders holding them "
                             "(default: none)")
    parser.add_argument("--images", nargs="*", default=list(gen.images), metavar="IMAGE",
                        help="more generated images (pyramidal TIFF, PNG) without an index (default: none)")
    parser.add_argument("--brush", nargs="*", default=list(gen.brush), metavar="BRUSH_JSON",
                        help="brush.json files of `infbrush brush-eval`: the painted image beside its condition map "
                             "(default: none)")
    parser.add_argument("--store", default=real.store,
                        help="image store of the real images (results/<ds>/images.h5) (default: none)")
    parser.add_argument("--tiles", default=real.tiles,
                        help="tiles folder of a WSI dataset (results/<ds>/tiles): show real images as regions "
                             "of their slides (default: none, stored patches)")
    parser.add_argument("--slides", nargs="*", default=list(real.slides), metavar="SLIDE_OR_DIR",
                        help="where the slides are, when not at the path recorded in the tiles (default: none)")
    parser.add_argument("--dataset", default=run["dataset"],
                        help="dataset name shown (default: the parent folder of --out)")
    parser.add_argument("--max-images", type=int, default=gen.max_images,
                        help="generated images shown per sample index (default: %(default)s)")
    parser.add_argument("--context", type=float, default=real.context,
                        help="side of the real slide region shown, in condition-patch sides (default: %(default)s)")
    parser.add_argument("--tile-size", type=int, default=tiling.tile_size,
                        help="Deep Zoom tile side (default: %(default)s)")
    parser.add_argument("--overlap", type=int, default=tiling.overlap,
                        help="Deep Zoom tile overlap (default: %(default)s)")
    parser.add_argument("--format", choices=("jpeg", "png"), default=tiling.fmt,
                        help="tile format (default: %(default)s)")
    parser.add_argument("--quality", type=int, default=tiling.quality,
                        help="JPEG quality of the tiles (default: %(default)s)")
    parser.add_argument("--openseadragon", default=run["openseadragon"], metavar="DIR",
                        help="OpenSeadragon's build folder (default: node_modules/openseadragon/build/openseadragon "
                             "of the working directory or the repository, installed by `npm ci`)")
    parser.add_argument("--no-install", action="store_true",
                        help="never run `npm ci` (by default it runs, where package.json is, when OpenSeadragon "
                             "is not installed and --openseadragon is not given) (default: off)")
    parser.add_argument("--workers", type=int, default=tiling.workers,
                        help="threads writing tiles (default: %(default)s)")
    parser.add_argument("--preview", choices=PREVIEW, default="auto",
                        help="screenshot the page in headless Chromium after zooming in (preview.png, "
                             "preview.json): auto = when Chromium is installed (default: %(default)s)")
    parser.add_argument("--chromium", default=None,
                        help="Chromium executable (default: $INFBRUSH_CHROMIUM, else chromium on PATH)")
    parser.add_argument("--zoom-steps", type=int, default=signature_defaults(capture_viewer)["zoom_steps"],
                        help="mouse-wheel steps of the preview's zoom-in (default: %(default)s)")


def write_preview(out, *, executable: str | None, zoom_steps: int) -> dict:
    """Screenshot ``out/index.html`` after zooming in: ``preview.png``, ``preview-home.png``, ``preview.json``."""
    from pathlib import Path

    from infbrush.io import write_json
    from infbrush.viewer.browser import capture_viewer

    out = Path(out)
    result = capture_viewer(out / "index.html", zoom_steps=zoom_steps, executable=executable)
    (out / "preview.png").write_bytes(result.pop("png"))
    (out / "preview-home.png").write_bytes(result.pop("png_home"))
    write_json(out / "preview.json", result)
    return result


def main(args: argparse.Namespace) -> int:
    from infbrush.cli.options import config_from_args
    from infbrush.errors import InfbrushError
    from infbrush.viewer.browser import BrowserError, find_chromium
    from infbrush.viewer.build import DeepZoomOptions, GeneratedSources, RealSources, build_viewer

    for name in ("max_images", "tile_size", "workers"):
        if getattr(args, name) < 1:
            raise InfbrushError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be ≥ 1")
    if not args.context >= 1:
        raise InfbrushError(f"--context {args.context}: must be ≥ 1")
    if not 0 <= args.overlap < args.tile_size // 2:
        raise InfbrushError(f"--overlap {args.overlap}: must be in [0, tile size / 2)")
    if not 1 <= args.quality <= 100:
        raise InfbrushError(f"--quality {args.quality}: must be in [1, 100]")
    if args.preview == "always" and find_chromium(args.chromium) is None:  # fail before the work, not after
        raise InfbrushError("--preview always: Chromium not found (Debian: apt-get install chromium; or --chromium)")

    def log(line: str) -> None:
        print(f"infbrush viewer: {line}", file=sys.stderr)

    summary = build_viewer(args.out, config_from_args(GeneratedSources, args), config_from_args(RealSources, args),
                           config_from_args(DeepZoomOptions, args, fmt=args.format), dataset=args.dataset,
                           openseadragon=args.openseadragon, install=not args.no_install, log=log)
    log(f"{summary.pairs} generated images shown ({summary.tiles} tiles) in {summary.seconds:.1f} s, "
        f"{len(summary.failures)} skipped (see {args.out}/failures.tsv); open {args.out}/index.html")
    if summary.pairs == 0:
        return 1
    if args.preview == "never" or (args.preview == "auto" and find_chromium(args.chromium) is None):
        if args.preview == "auto":
            log("no preview: Chromium not found (Debian: apt-get install chromium)")
        return 0
    try:
        result = write_preview(args.out, executable=args.chromium, zoom_steps=args.zoom_steps)
    except BrowserError as err:
        if args.preview == "always":
            raise InfbrushError(f"preview: {err}") from None
        log(f"no preview: {err}")
        return 0
    log(f"preview {args.out}/preview.png ({result['seconds']:.1f} s in Chromium, "
        f"{len(result['problems'])} page errors)")
    if result["problems"]:
        log(f"page error: {result['problems'][0]}")
        return 1 if args.preview == "always" else 0
    return 0
