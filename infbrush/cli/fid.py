"""``infbrush fid``: CLIP FID, Crop FID and KID of generated images against fid_ref.npz (fid.json)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from infbrush.evaluate.scoring import FidConfig

HELP = "CLIP FID / Crop FID / KID of generated images (sample index.json) against fid-ref statistics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FidConfig(ref="", samples="", out="")  # one owner of every default: the library's config
    parser.add_argument("--ref", required=True, help="fid_ref.npz written by `infbrush fid-ref`")
    parser.add_argument("--samples", required=True, help="index.json written by `infbrush sample` (OUT/<R>/)")
    parser.add_argument("--out", required=True, help="fid.json (or ablation_cano.json)")
    parser.add_argument("--allow-rank-deficient", action="store_true",
                        help="compute FID even with fewer samples than feature dimensions (biased; flagged)")
    parser.add_argument("--clip-checkpoint", default=d.clip_checkpoint,
                        help="CLIP weights if they moved since fid-ref (must have the same sha256)")
    parser.add_argument("--inception-weights", default=d.inception_weights,
                        help="Inception weights if they moved since fid-ref (must have the same sha256)")
    parser.add_argument("--kid-seed", type=int, default=d.kid_seed, help="seed of KID's random subsets")
    parser.add_argument("--tag", default=d.tag, help="free text stored in the output (e.g. 'ablation: no CANO')")
    parser.add_argument("--store", default=d.store,
                        help="the image store fid-ref used: computes the sanity pairs (real / blurred / noise "
                             "images against the same reference) and flags every metric that fails them")
    parser.add_argument("--sanity-n", type=int, default=d.sanity_n,
                        help="images per sanity set (0 = as many as generated images)")
    parser.add_argument("--sanity-blur", type=float, default=d.sanity_blur,
                        help="Gaussian σ of the blurred set as a fraction of the image side (default 1/16)")
    parser.add_argument("--sanity-min-ratio", type=float, default=d.sanity_min_ratio,
                        help="blurred and noise sets must score at least this many times the real set")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")


def main(args: argparse.Namespace) -> int:
    from infbrush.evaluate.scoring import score_samples

    config = FidConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FidConfig)})
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
