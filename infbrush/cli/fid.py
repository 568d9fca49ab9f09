"""``infbrush fid``: CLIP FID, Crop FID and KID of generated images against fid_ref.npz (fid.json)."""
from __future__ import annotations

import argparse
import sys

from infbrush.cli.options import add_config_options, config_from_args
from infbrush.evaluate.scoring import FidConfig

HELP = "CLIP FID / Crop FID / KID of generated images (sample index.json) against fid-ref statistics"


OPTIONS = {
    "clip_checkpoint": "CLIP weights if they moved since fid-ref (must have the same sha256)",
    "inception_weights": "Inception weights if they moved since fid-ref (must have the same sha256)",
    "kid_seed": "seed of KID's random subsets", "tag": "free text stored in the output (e.g. 'ablation: no CANO')",
    "store": "the image store fid-ref used: computes the sanity pairs (real / blurred / noise images against the "
             "same reference) and flags every metric that fails them",
    "sanity_n": "images per sanity set (0 = as many as generated images)",
    "sanity_blur": "Gaussian σ of the blurred set as a fraction of the image side",
    "sanity_min_ratio": "blurred and noise sets must score at least this many times the real set",
    "batch_size": "", "device": "auto | cpu | cuda | cuda:N",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, help="fid_ref.npz written by `infbrush fid-ref`")
    parser.add_argument("--samples", required=True, help="index.json written by `infbrush sample` (OUT/<R>/)")
    parser.add_argument("--out", required=True, help="fid.json (or ablation_cano.json)")
    parser.add_argument("--allow-rank-deficient", action="store_true",
                        help="compute FID even with fewer samples than feature dimensions (biased; flagged)")
    add_config_options(parser, FidConfig(ref="", samples="", out=""), OPTIONS)  # the library owns the defaults


def main(args: argparse.Namespace) -> int:
    from infbrush.evaluate.scoring import score_samples

    config = config_from_args(FidConfig, args)
    result = score_samples(config)
    crop_text = f", Crop FID {result['crop_fid']:.3f}" if result["crop_fid"] is not None else ""
    print(f"fid: CLIP FID {result['clip_fid']:.3f}{crop_text} ({result['n_generated']} generated vs "
          f"{result['n_real']} real) -> {args.out}", file=sys.stderr)
    for metric, verdict in result["trust"].items():
        if verdict["trusted"] is False:
            print(f"fid: warning: {metric} flagged, not a result: {verdict['reason']}", file=sys.stderr)
    if any(v for v in result["rank_deficient"].values()):
        print("fid: warning: rank-deficient covariance (fewer samples than feature dimensions): FID is biased, "
              "compare KID", file=sys.stderr)
    return 0
