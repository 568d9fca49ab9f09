"""``infbrush demo-world``: write the embedded demo world (synthetic slides, NAIP-like GeoTIFF, BACH-like set)."""
from __future__ import annotations

import argparse
import sys

HELP = "Write synthetic Aperio/TIFF slides, a NAIP-like GeoTIFF and a BACH-like labelled set (deterministic from --seed)."


OPTIONS = {"seed": "seed; the same seed gives the same pixels",
           "n_slides": "number of Aperio .svs slides (plus one generic .tiff)",
           "slide_size": "level-0 slide WIDTH HEIGHT in pixels at 0.5 um/px",
           "naip_size": "side of the NAIP-like GeoTIFF in 1 m pixels",
           "bach_per_class": "BACH-like images per class (3/4 train, 1/4 test)",
           "bach_size": "side of each BACH-like image in pixels"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_config_options
    from infbrush.demo.world import DemoWorldConfig

    parser.add_argument("--out", required=True, help="output directory (replaced atomically when written)")
    add_config_options(parser, DemoWorldConfig(), OPTIONS)  # the library owns the defaults
    parser.add_argument("--force", action="store_true", help="rewrite even if a complete world with these arguments exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from infbrush.cli.options import config_from_args
    from infbrush.demo.world import DemoWorldConfig, generate_demo_world

    config = config_from_args(DemoWorldConfig, args)
    manifest, written = generate_demo_world(args.out, config, force=args.force, progress=not args.no_progress)
    roles: dict[str, int] = {}
    for record in manifest["files"]:
        roles[record["role"]] = roles.get(record["role"], 0) + 1
    summary = ", ".join(f"{n} {role}" for role, n in roles.items())
    state = "written" if written else "already complete (same arguments; --force to rewrite)"
    print(f"infbrush demo-world: {args.out}: {state}: {summary}", file=sys.stderr)
    return 0
