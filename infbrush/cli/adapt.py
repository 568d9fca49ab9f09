"""``infbrush adapt``: local BACH or CelebA-HQ folders → image stores."""
from __future__ import annotations

import argparse
import sys

HELP = "Convert a local BACH (4 classes, train/test) or CelebA-HQ (binary attribute) folder to an image store."
KINDS = ("bach", "celebahq")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.data.adapters import CELEBA_ATTRIBUTE, adapt_bach, adapt_celebahq

    bach, celeba = signature_defaults(adapt_bach), signature_defaults(adapt_celebahq)  # the library owns the defaults
    parser.add_argument("--kind", required=True, choices=KINDS, help="dataset kind")
    parser.add_argument("--root", required=True, help="BACH folder (Photos/ or train|test/) or CelebA-HQ images")
    parser.add_argument("--out", required=True, help="image store to write")
    parser.add_argument("--image-size", type=int, required=True, help="side of the stored (square) images")
    parser.add_argument("--thumb-size", type=int, default=bach["thumb_size"],
                        help="side of the stored thumbnails (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=bach["test_fraction"],
                        help="BACH official layout: test share per class (stratified) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=bach["seed"],
                        help="BACH official layout: split seed (default: %(default)s)")
    parser.add_argument("--attributes", help="CelebA: list_attr_celeba.txt-style attribute file")
    parser.add_argument("--attribute", default=CELEBA_ATTRIBUTE,
                        help="CelebA: the binary attribute used as label (default: %(default)s)")
    parser.add_argument("--mapping", default=celeba["mapping"],
                        help="CelebA-HQ-to-CelebA-mapping.txt, when images are named by HQ index")
    parser.add_argument("--held-out-fraction", type=float, default=celeba["held_out_fraction"],
                        help="CelebA: held-out share (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from infbrush.data.adapters import adapt_bach, adapt_celebahq
    from infbrush.errors import InfbrushError

    log = lambda line: print(f"infbrush adapt: {line}", file=sys.stderr)  # noqa: E731
    if args.kind not in KINDS:
        raise InfbrushError(f"unknown --kind {args.kind!r}; valid: {', '.join(KINDS)}")
    if args.image_size <= 0:
        raise InfbrushError(f"--image-size {args.image_size} must be > 0")
    if args.kind == "bach":
        summary = adapt_bach(args.root, args.out, image_size=args.image_size, thumb_size=args.thumb_size,
                             test_fraction=args.test_fraction, seed=args.seed, progress=not args.no_progress, log=log)
    else:
        if not args.attributes:
            raise InfbrushError("--attributes is required with --kind celebahq")
        summary = adapt_celebahq(args.root, args.attributes, args.attribute, args.out, image_size=args.image_size,
                                 thumb_size=args.thumb_size, mapping=args.mapping,
                                 held_out_fraction=args.held_out_fraction, progress=not args.no_progress, log=log)
    log(f"{summary['n_images']} images -> {args.out}; {len(summary['failures'])} skipped (see failures table)")
    return 0
