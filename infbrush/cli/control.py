"""``infbrush control``: label generated images with a judge fit on the real training split."""
from __future__ import annotations

import argparse
import sys

HELP = ("controllability: per-class accuracy (with 95 percent intervals) of a real-data judge on images generated for each "
        "class, beside the judge's own accuracy on real held-out images")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.evaluate.control import CONFIDENCE, DEFAULT_FEATURE_SIZE, DEFAULT_GOAL, DEFAULT_JUDGE_GOAL, controllability

    d = signature_defaults(controllability)  # the library owns the defaults

    parser.add_argument("--store", required=True, help="images.h5; labelled training rows (split == 0) fit the "
                                                       "judge, labelled held-out rows (split == 1) measure it")
    parser.add_argument("--samples", required=True, help="index.json written by `infbrush sample` (OUT/<R>/index.json)")
    parser.add_argument("--out", required=True, help="control.json")
    parser.add_argument("--feature-size", type=int, default=DEFAULT_FEATURE_SIZE,
                        help="images are resized to this side for features (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seed of the judge and of the interval draws (default: %(default)s)")
    parser.add_argument("--goal", type=float, default=DEFAULT_GOAL,
                        help=f"mean per-class accuracy goal on generated images (default {DEFAULT_GOAL})")
    parser.add_argument("--judge-goal", type=float, default=DEFAULT_JUDGE_GOAL,
                        help=f"the judge's goal on real held-out images (default {DEFAULT_JUDGE_GOAL})")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE,
                        help="interval level (default 0.95; the *ci95 keys then hold intervals at this level)")
    parser.add_argument("--embeddings", default=d["embeddings"],
                        help="embeddings.h5 the samples were conditioned on: also report how well a k-NN on the "
                             "training split's embeddings tells the class from each condition (its ceiling)")


def main(args: argparse.Namespace) -> int:
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.control import controllability
    from infbrush.io import write_json

    if args.feature_size < 16:
        raise InfbrushError(f"--feature-size must be >= 16, got {args.feature_size}")
    for flag, value in (("--goal", args.goal), ("--judge-goal", args.judge_goal)):
        if not 0 <= value <= 1:
            raise InfbrushError(f"{flag} must be in [0, 1], got {value}")
    if not 0 < args.confidence < 1:
        raise InfbrushError(f"--confidence must be in (0, 1), got {args.confidence}")
    result = controllability(args.store, args.samples, feature_size=args.feature_size, seed=args.seed,
                             goal=args.goal, judge_goal=args.judge_goal, confidence=args.confidence,
                             embeddings=args.embeddings)
    write_json(args.out, result)
    gen, real = result["generated"], result["judge"]["real_held_out"]
    print(f"controllability: mean accuracy {gen['mean_accuracy']:.3f} [{gen['mean_ci95'][0]:.3f}, "
          f"{gen['mean_ci95'][1]:.3f}] over {gen['n_images']} generated images (goal {args.goal}, met: "
          f"{result['goal_met']}); judge on {real['n_images']} real held-out images {real['mean_accuracy']:.3f} "
          f"[{real['mean_ci95'][0]:.3f}, {real['mean_ci95'][1]:.3f}] -> {args.out}", file=sys.stderr)
    if "condition_probe" in result:
        probe = result["condition_probe"]
        print(f"controllability: the conditions themselves (k-NN on their embeddings) {probe['mean_accuracy']:.3f} "
              f"[{probe['mean_ci95'][0]:.3f}, {probe['mean_ci95'][1]:.3f}]", file=sys.stderr)
    return 0
