"""``infbrush demo-world``: write the embedded demo world (synthetic slides, NAIP-like GeoTIFF, BACH-like set)."""
from __future__ import annotations

import argparse
import sys

HELP = "Write synthetic Aperio/TIFF slides, a NAIP-like GeoTIFF and a BACH-like labelled set (deterministic from --seed)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (replaced atomically when written)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same pixels")
    parser.add_argument("--n-slides", type=int, default=5, help="number of Aperio .svs slides (plus one generic .tiff)")
    parser.add_argument("--slide-size", type=int, nargs=2, default=[4096, 3072], metavar=("WIDTH", "HEIGHT"),
                        help="level-0 slide size in pixels at 0.5 um/px")
    parser.add_argument("--naip-size", type=int, default=2048, help="side of the NAIP-like GeoTIFF in 1 m pixels")
    parser.add_argument("--bach-per-class", type=int, default=24, help="BACH-like images per class (3/4 train, 1/4 test)")
    parser.add_argument("--bach-size", type=int, default=256, help="side of each BACH-like image in pixels")
    parser.add_argument("--force", action="store_true", help="rewrite even if a complete world with these arguments exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from infbrush.demo.world import DemoWorldConfig, generate_demo_world

    config = DemoWorldConfig(seed=args.seed, n_slides=args.n_slides, slide_size=tuple(args.slide_size),
                             naip_size=args.naip_size, bach_per_class=args.bach_per_class, bach_size=args.bach_size)
    manifest, written = generate_demo_world(args.out, config, force=args.force, progress=not args.no_progress)
    roles: dict[str, int] = {}
    for record in manifest["files"]:
        roles[record["role"]] = roles.get(record["role"], 0) + 1
    summary = ", ".join(f"{n} {role}" for role, n in roles.items())
    state = "written" if written else "already complete (same arguments; --force to rewrite)"
    print(f"infbrush demo-world: {args.out}: {state}: {summary}", file=sys.stderr)
    return 0
