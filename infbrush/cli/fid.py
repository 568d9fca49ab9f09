"""``infbrush fid``: CLIP FID, Crop FID and KID of generated images against fid_ref.npz (fid.json)."""
from __future__ import annotations

import argparse
import sys

HELP = "CLIP FID / Crop FID / KID of generated images (sample index.json) against fid-ref statistics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", required=True, help="fid_ref.npz written by `infbrush fid-ref`")
    parser.add_argument("--samples", required=True, help="index.json written by `infbrush sample` (OUT/<R>/)")
    parser.add_argument("--out", required=True, help="fid.json (or ablation_cano.json)")
    parser.add_argument("--allow-rank-deficient", action="store_true",
                        help="compute FID even with fewer samples than feature dimensions (biased; flagged)")
    parser.add_argument("--clip-checkpoint", default=None,
                        help="CLIP weights if they moved since fid-ref (must have the same sha256)")
    parser.add_argument("--inception-weights", default=None,
                        help="Inception weights if they moved since fid-ref (must have the same sha256)")
    parser.add_argument("--kid-seed", type=int, default=0, help="seed of KID's random subsets")
    parser.add_argument("--tag", default="", help="free text stored in the output (e.g. 'ablation: no CANO')")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def _same_weights(kind: str, want: dict, got: dict, ref: str) -> None:
    from infbrush.errors import InfbrushError

    if want.get("weights_sha256") != got.get("weights_sha256"):
        raise InfbrushError(f"{ref}: {kind} weights differ from the ones the reference was computed with "
                            f"(sha256 {want.get('weights_sha256')} vs {got.get('weights_sha256')}); rerun fid-ref")


def main(args: argparse.Namespace) -> int:
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.crops import GENERATED, CropProtocol
    from infbrush.evaluate.extractors import load_clip_extractor, load_inception, resolve_device
    from infbrush.evaluate.fid import check_rank, collect_set_stats, compare_stats, load_reference
    from infbrush.evaluate.images import iter_sample_images, read_sample_index
    from infbrush.io import sha256_file, write_json

    device = resolve_device(args.device)
    real, meta = load_reference(args.ref)
    records = read_sample_index(args.samples)
    try:
        clip = load_clip_extractor(meta["clip_model"], args.clip_checkpoint or meta.get("clip_checkpoint"), device)
    except ValueError as err:
        raise InfbrushError(f"{args.ref}: {err}") from None
    _same_weights("CLIP", meta["clip"], clip.describe(), args.ref)
    inception, protocol = None, None
    if "crop" in real:
        inception = load_inception(args.inception_weights or meta.get("inception_weights"), device)
        _same_weights("Inception", meta["inception"], inception.describe(), args.ref)
        p = meta["crop_protocol"]
        protocol = CropProtocol(p["crop_size"], p["crops_per_image"], p["seed"])
    for kind, dim, n_gen in (("clip", clip.dim, len(records)),
                             ("crop", inception.dim if inception else 0,
                              len(records) * (protocol.crops_per_image if protocol else 0))):
        if kind in real:  # fail before the expensive feature pass
            what = "CLIP FID" if kind == "clip" else "Crop FID"
            check_rank(real[kind].n, dim, f"{what} (real set, {args.ref})", args.allow_rank_deficient)
            check_rank(n_gen, dim, f"{what} (generated set, {args.samples})", args.allow_rank_deficient)
    generated, sizes = collect_set_stats(iter_sample_images(records), len(records), clip, inception, protocol,
                                         GENERATED, batch_size=args.batch_size, kid_max=meta["kid_max_feats"],
                                         seed=meta["seed"], desc="generated images")
    clip_result = compare_stats(real["clip"], generated["clip"], clip.dim, "CLIP FID",
                                args.allow_rank_deficient, args.kid_seed)
    crop_result = compare_stats(real["crop"], generated["crop"], inception.dim, "Crop FID",
                                args.allow_rank_deficient, args.kid_seed) if inception else None
    resolutions = sorted({int(max(s)) for s in sizes})
    real_sizes = sorted({int(max(s)) for s in meta["image_sizes"]})
    if protocol and resolutions != real_sizes:
        print(f"fid: warning: generated images are {resolutions} px, real ones {real_sizes} px: the crops cover "
              "different fields of view", file=sys.stderr)
    result = {
        "clip_fid": clip_result["fid"], "crop_fid": crop_result["fid"] if crop_result else None,
        "clip_kid": clip_result["kid"], "crop_kid": crop_result["kid"] if crop_result else None,
        "n_real": meta["n_images"], "n_generated": len(records),
        "n_crops": {"real": crop_result["n_real"], "generated": crop_result["n_generated"]} if crop_result else None,
        "resolution": resolutions[0] if len(resolutions) == 1 else resolutions,
        "real_resolution": real_sizes[0] if len(real_sizes) == 1 else real_sizes,
        "crop_protocol": meta["crop_protocol"],
        "rank_deficient": {"clip": clip_result["rank_deficient"],
                           "crop": crop_result["rank_deficient"] if crop_result else None},
        "feature_extractors": {"clip": clip.describe(), "inception": inception.describe() if inception else None},
        "seeds": {"sample_seeds": [r.seed for r in records], "crop_seed": protocol.seed if protocol else None,
                  "kid_seed": args.kid_seed, "reference_seed": meta["seed"]},
        "reference": {"path": str(args.ref), "sha256": sha256_file(args.ref), "store": meta["store"],
                      "split": meta["split"]},
        "samples": str(args.samples), "tag": args.tag,
        "details": {"clip": clip_result, "crop": crop_result},
    }
    write_json(args.out, result)
    crop_text = f", Crop FID {result['crop_fid']:.3f}" if crop_result else ""
    print(f"fid: CLIP FID {result['clip_fid']:.3f}{crop_text} ({len(records)} generated vs {meta['n_images']} "
          f"real) -> {args.out}", file=sys.stderr)
    if any(v for v in result["rank_deficient"].values()):
        print("fid: warning: rank-deficient covariance (fewer samples than feature dimensions): FID is biased, "
              "compare KID", file=sys.stderr)
    return 0
