"""``infbrush control``: label generated images with a classifier trained on held-out real images."""
from __future__ import annotations

import argparse
import sys

HELP = "controllability: per-class accuracy of a real-data classifier on images generated for each class"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="images.h5; held-out (split == 1) labelled rows train the "
                                                       "classifier")
    parser.add_argument("--samples", required=True, help="index.json written by `infbrush sample` (OUT/<R>/index.json)")
    parser.add_argument("--out", required=True, help="control.json")
    parser.add_argument("--feature-size", type=int, default=64, help="images are resized to this side for features")
    parser.add_argument("--seed", type=int, default=0, help="cross-validation fold shuffling")
    parser.add_argument("--goal", type=float, default=0.8, help="mean accuracy goal recorded in the output")


def main(args: argparse.Namespace) -> int:
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.control import controllability
    from infbrush.io import write_json

    if args.feature_size < 16:
        raise InfbrushError(f"--feature-size must be >= 16, got {args.feature_size}")
    result = controllability(args.store, args.samples, feature_size=args.feature_size, seed=args.seed,
                             goal=args.goal)
    write_json(args.out, result)
    gen, real = result["generated"], result["real_held_out"]["cross_validation"]
    print(f"controllability: mean accuracy {gen['mean_accuracy']:.3f} over {gen['n_images']} generated images "
          f"(real held-out CV accuracy {real['accuracy']:.3f}, {real['folds']} folds) -> {args.out}", file=sys.stderr)
    return 0
