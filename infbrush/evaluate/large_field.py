"""Whole-image generation of a large field against patch-based assembly (the paper's Table 1, in miniature).

For each held-out reference field (F×F pixels of a field store) and one seed per field, shared by every method:

- ``whole_image``: the field model (trained on sparse pixel subsets of whole fields) samples the F×F field,
  conditioned on the embedding of the whole reference field (the paper: the large image resized to the encoder's
  input, one vector, sec. 5.1);
- ``patch_based`` (and ``patch_based_overlap_<o>``): the small model samples each s×s tile, conditioned on the
  embedding of that tile of the reference, the tiles assembled on the field (``infbrush.sample.tiled``), with
  hard seams or with MultiDiffusion blending over ``o`` px of overlap;
- ``patch_based_field_condition`` (optional, ``field_condition_tiles``): the same hard-seam assembly, but every
  tile conditioned on the embedding of the whole reference field, the one vector ``whole_image`` gets. Graikos
  et al.'s route tells the small model the layout (one embedding per tile); this variant takes that information
  away, so that the two methods differ only in how the field is generated, not in what they are told.

Measured as the paper measures (sec. 5.1): whole-image KID (the field resized to the feature extractor's input:
global structure), Crop KID (native-resolution s×s crops at the same positions in every set: local detail),
the seam ratio on the tile grid (gradient energy within 1 px of a tile boundary over the tiles' interiors; real
fields give the level of no seam), the cosine between the encoder's embedding of each generated field and of its
reference, and seconds per field. Differences against ``whole_image`` are paired over the references, with
95 % percentile-bootstrap intervals (references resampled jointly in every set).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from infbrush.diffusion.settings import SamplingSettings
from infbrush.evaluate.seams import seam_ratio, tile_index


@dataclass(frozen=True)
class FieldSetup:
    """What both methods sample with: steps, sampler, spacing, their guidance scales, the base seed."""

    steps: int = 20
    sampler: str = SamplingSettings.sampler
    spacing: str = SamplingSettings.spacing
    field_guidance: float = 1.0
    tile_guidance: float = 1.0
    seed: int = 0
    crops_per_field: int = 4
    bootstrap: int = 2000

    def sampling(self, guidance_scale: float) -> SamplingSettings:
        """The sampler's settings of one method: these steps, sampler and spacing, its guidance scale."""
        return SamplingSettings(steps=self.steps, sampler=self.sampler, spacing=self.spacing,
                                guidance_scale=guidance_scale)


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) in [-1, 1] → list of (H, W, 3) uint8."""
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3] for a in arr]


def sample_whole(model, diffusion, cond: torch.Tensor, field: int, seeds: list[int], setup: FieldSetup,
                 device="cpu") -> tuple[list[np.ndarray], float]:
    """The field model's F×F samples (one per seed/condition row) → (images, seconds per field)."""
    from infbrush.diffusion import ddim_sample

    start = time.perf_counter()
    images = ddim_sample(model, cond, (field, field), seeds=seeds, diffusion=diffusion,
                         settings=setup.sampling(setup.field_guidance), device=device)
    return to_uint8(images), (time.perf_counter() - start) / len(seeds)


def sample_tiled(model, diffusion, tile_cond: torch.Tensor, field: int, tile: int, overlap: int, seeds: list[int],
                 setup: FieldSetup, device="cpu") -> tuple[list[np.ndarray], float]:
    """The small model's tiles assembled on the F×F field; tile_cond (B, n_tiles, D) → (images, seconds per
    field). The noise keeps the small model's pixel width: σ_field = σ_tile · tile / field."""
    from infbrush.diffusion import ddim_sample
    from infbrush.sample.tiled import TiledDenoiser

    tiled = TiledDenoiser(model, field, tile, overlap)
    if tile_cond.shape[1] != tiled.n_tiles:
        raise ValueError(f"{tile_cond.shape[1]} tile conditions for {tiled.n_tiles} tiles")
    start = time.perf_counter()
    images = ddim_sample(tiled, tile_cond.reshape(len(seeds), -1), (field, field), seeds=seeds,
                         diffusion=replace(diffusion, mollify_sigma=diffusion.mollify_sigma * tile / field),
                         settings=setup.sampling(setup.tile_guidance), device=device)
    return to_uint8(images), (time.perf_counter() - start) / len(seeds)


def crop_corners(field: int, crop: int, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` crop corners drawn once (the same positions in every field and set)."""
    rng = np.random.default_rng(seed)
    return [(int(r), int(c)) for r, c in rng.integers(0, field - crop + 1, size=(n, 2))]


def _kid(a: np.ndarray, b: np.ndarray) -> float:
    from infbrush.evaluate.fid import kernel_inception_distance

    return kernel_inception_distance(a, b)


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's polynomial kernel (x·y / D + 1)³ between (N, D) and (M, D) → (N, M) float64."""
    return (np.asarray(x, np.float64) @ np.asarray(y, np.float64).T / x.shape[1] + 1.0) ** 3


def _kid_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD² of two equal-sized sets from their kernel matrices (m, m): clean-fid's KID when its subset
    is the whole set (every subset of m rows out of m is the same set)."""
    m = len(kxx)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def paired_kid_difference(a: np.ndarray, b: np.ndarray, real: np.ndarray, n_boot: int, seed: int,
                          group: int = 1) -> list[float]:
    """95 % interval of KID(a, real) - KID(b, real), references resampled jointly (rows come in ``group``s of
    the same reference, e.g. the crops of one field). a, b, real: (N, D) paired row by row.

    The kernel matrices are computed once and each resample indexes them: the same estimator as clean-fid's KID
    on the resampled rows (equal set sizes), without 100 subsets × 2 kernels per resample."""
    if not len(a) == len(b) == len(real) or len(real) % group:
        raise ValueError(f"paired KID needs equal sets in whole groups of {group}: {len(a)}, {len(b)}, {len(real)}")
    k_rr = _cubic_kernel(real, real)
    k_a, k_ar = _cubic_kernel(a, a), _cubic_kernel(a, real)
    k_b, k_br = _cubic_kernel(b, b), _cubic_kernel(b, real)
    rng = np.random.default_rng(seed)
    n_ref = len(real) // group
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        pick = rng.integers(0, n_ref, n_ref)
        rows = (pick[:, None] * group + np.arange(group)[None, :]).reshape(-1)
        sub = np.ix_(rows, rows)
        diffs[i] = (_kid_from_kernels(k_a[sub], k_rr[sub], k_ar[sub])
                    - _kid_from_kernels(k_b[sub], k_rr[sub], k_br[sub]))
    return _interval(diffs)


def mean_interval(values: np.ndarray, n_boot: int, seed: int) -> dict:
    """Mean of per-reference values with its 95 % bootstrap interval."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    boots = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    return {"mean": float(values.mean()), "ci95": _interval(boots)}


def compare_fields(real: list[np.ndarray], methods: dict[str, list[np.ndarray]], seconds: dict[str, float], *,
                   tile: int, inception, encoder, setup: FieldSetup, reference: str = "whole_image",
                   baselines: dict[str, list[np.ndarray]] | None = None) -> dict:
    """Every method's metrics against the real reference fields (the same order: method[i] was made for real[i])
    → the ``large_field.json`` body: ``methods.<name>`` with ``whole_image_kid``, ``crop_kid``, ``seam_ratio``,
    ``embedding_similarity``, ``seconds_per_image`` and paired differences against ``reference``; ``real``.

    ``baselines``: image sets measured the same way but not made for the references (``baselines.<name>``
    without time or differences), e.g. real training fields: the KID a perfect generator would reach with this
    many images, and the embedding similarity of a real field that ignores its condition."""
    field = real[0].shape[0]
    corners = crop_corners(field, tile, setup.crops_per_field, setup.seed)
    index = tile_index(field, tile)

    def crops(images):
        return [im[r:r + tile, c:c + tile] for im in images for r, c in corners]

    def seams(images):
        return np.asarray([seam_ratio(im, index, band_px=1.0, interior_px=tile / 8) for im in images], np.float64)

    real_whole, real_crop = inception.features(real), inception.features(crops(real))
    real_emb = np.asarray(encoder.embed_images(real), np.float64)
    feats, out, measured, n_boot = {}, {}, {}, setup.bootstrap
    for name, images in {**methods, **(baselines or {})}.items():
        whole, crop = inception.features(images), inception.features(crops(images))
        emb = np.asarray(encoder.embed_images(images), np.float64)
        cosine = np.sum(emb * real_emb, 1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(real_emb, axis=1) + 1e-12)
        feats[name] = (whole, crop, cosine, seams(images))
        measured[name] = {"whole_image_kid": _kid(whole, real_whole), "crop_kid": _kid(crop, real_crop),
                          "seam_ratio": mean_interval(feats[name][3], n_boot, setup.seed),
                          "embedding_similarity": mean_interval(cosine, n_boot, setup.seed)}
    for name in methods:
        out[name] = {**measured[name], "seconds_per_image": round(seconds[name], 3)}
    base = feats[reference]
    for name in methods:
        if name == reference:
            continue
        whole, crop, cosine, seam = feats[name]
        out[name]["minus_" + reference] = {
            "whole_image_kid_ci95": paired_kid_difference(whole, base[0], real_whole, n_boot, setup.seed),
            "crop_kid_ci95": paired_kid_difference(crop, base[1], real_crop, n_boot, setup.seed,
                                                   group=len(corners)),
            "embedding_similarity": mean_interval(cosine - base[2], n_boot, setup.seed),
            "seam_ratio": mean_interval(seam - base[3], n_boot, setup.seed)}
    body = {"n_fields": len(real), "field_size": field, "tile_size": tile, "crop_positions": corners,
            "methods": out, "real": {"seam_ratio": mean_interval(seams(real), n_boot, setup.seed)},
            "notes": {"kid": "clean-fid's unbiased KID on Inception features; whole-image: the field resized to 299²; "
                              "crop: native-resolution tile-sized crops at crop_positions",
                      "seam_ratio": "gradient energy within 1 px of the tile grid's boundaries over the interiors "
                                    "(> tile/8 px from a boundary); real fields give the level of no seam",
                      "intervals": "95 % percentile bootstrap over the reference fields (paired for differences)"}}
    if baselines:
        body["baselines"] = {name: measured[name] for name in baselines}
        body["notes"]["baselines"] = ("real_train_fields: as many training fields as references, not made for them: "
                                      "KID at the level of a perfect generator with this many images, the embedding "
                                      "similarity of a real field that ignores its condition")
    return body


def gallery(real: list[np.ndarray], methods: dict[str, list[np.ndarray]], n: int = 4) -> np.ndarray:
    """Rows of reference | each method, for the first ``n`` references → (n·F, (1 + M)·F + gaps, 3) uint8."""
    rows = []
    for i in range(min(n, len(real))):
        cells = [real[i]] + [images[i] for images in methods.values()]
        gap = np.full((real[i].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for cell in cells for x in (cell, gap)][:-1], 1))
    return np.concatenate(rows, 0)


@dataclass(frozen=True)
class LargeFieldRun:
    """One comparison: the two models, the reference fields and the encoder that made both models' conditions."""

    field_weights: str                     # the whole-image model (trained on sparse subsets of whole fields)
    field_store: str                       # images.h5 of the fields; held-out rows are the references
    field_embeddings: str                  # embeddings.h5 of those fields (the whole-image model's conditions)
    tile_weights: str                      # the small model (trained on tile-sized patches)
    tile_size: int                         # its training size s
    encoder_kind: str
    encoder_model: str
    encoder_checkpoint: str | None = None
    overlaps: tuple[int, ...] = (0,)       # patch-based variants: 0 = hard seams; o > 0 = blended over o px
    field_condition_tiles: bool = False    # also: hard-seam tiles all conditioned on the whole field's embedding
    n_fields: int = 32
    batch_fields: int = 1                  # fields per sampling batch (outputs do not depend on it); 1 keeps a
    #                                        call near 65k points, past which the demo network's time per point
    #                                        grows (benchmarks/RESULTS.md, issue 29)
    setup: FieldSetup = FieldSetup()
    device: str = "cpu"


FIELD_CONDITION = "patch_based_field_condition"


def method_name(overlap: int) -> str:
    return "patch_based" if overlap == 0 else f"patch_based_overlap_{overlap}"


def run_large_field(run: LargeFieldRun, progress: bool = True) -> tuple[dict, dict[str, list[np.ndarray]],
                                                                          list[np.ndarray]]:
    """Sample every method for the first ``n_fields`` held-out fields and measure them → (large_field.json body,
    generated fields per method, real reference fields)."""
    from tqdm import tqdm

    from infbrush.data.conditions import load_conditions
    from infbrush.data.store import ImageStore
    from infbrush.diffusion.process import Diffusion
    from infbrush.embed.encoders import load_encoder
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.extractors import load_inception
    from infbrush.sample.run import load_weights
    from infbrush.sample.tiled import tile_grid, tile_images

    store = ImageStore(run.field_store)
    height, width = store.image_size
    if height != width:
        raise InfbrushError(f"{run.field_store}: fields must be square, got {height}x{width}")
    held = np.flatnonzero(np.asarray(store.split) == 1)
    if len(held) < max(2, run.n_fields):
        raise InfbrushError(f"{run.field_store}: {len(held)} held-out fields, fewer than the {run.n_fields} "
                            f"references asked for (--n-fields)")
    rows = held[:run.n_fields]
    def grid(overlap: int) -> list[tuple[int, int]]:
        try:
            return tile_grid(height, run.tile_size, overlap)
        except ValueError as err:
            raise InfbrushError(f"--tile-size {run.tile_size} / --overlap {overlap}: {err}") from None

    # the patch-based variants: (method, overlap, tile corners, whether each tile gets its own tile's embedding)
    variants = [(method_name(o), o, grid(o), True) for o in run.overlaps]
    if run.field_condition_tiles:
        variants.append((FIELD_CONDITION, 0, grid(0), False))

    def rgb(at: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(store.image(int(r))[..., :3]) for r in at]

    real = rgb(rows)
    train_rows = np.flatnonzero(np.asarray(store.split) == 0)
    train_rows = np.sort(np.random.default_rng(run.setup.seed).permutation(train_rows)[:len(rows)])
    real_train = rgb(train_rows)
    field_cond = load_conditions(store, rows, embeddings=run.field_embeddings)  # (n, D)
    encoder = load_encoder(run.encoder_kind, run.encoder_model, run.encoder_checkpoint, run.device)
    field_model, field_ckpt = load_weights(run.field_weights, run.device)
    tile_model, tile_ckpt = load_weights(run.tile_weights, run.device)
    field_diffusion = Diffusion.of_checkpoint(field_ckpt, run.field_weights)
    tile_diffusion = Diffusion.of_checkpoint(tile_ckpt, run.tile_weights)
    setup = run.setup
    seeds = [setup.seed + i for i in range(len(rows))]
    methods: dict[str, list[np.ndarray]] = {"whole_image": []}
    methods.update({name: [] for name, *_ in variants})
    seconds = {name: 0.0 for name in methods}
    bar = tqdm(total=len(rows) * len(methods), desc="large fields", unit="field", disable=not progress)
    with torch.no_grad():
        for start in range(0, len(rows), run.batch_fields):
            part = slice(start, start + run.batch_fields)
            images, sec = sample_whole(field_model, field_diffusion, field_cond[part], height, seeds[part], setup,
                                       run.device)
            methods["whole_image"] += images
            seconds["whole_image"] += sec * len(images)
            bar.update(len(images))
            for name, overlap, corners, own_tile in variants:
                if own_tile:  # each tile: the embedding of its tile of the reference
                    tiles = tile_images(real[part], corners, run.tile_size)
                    tile_cond = torch.stack([encoder.embed_images(t) for t in tiles])  # (b, n_tiles, D)
                else:  # every tile: the whole field's embedding (as the encoder sees it)
                    tile_cond = encoder.embed_images(real[part])[:, None].expand(-1, len(corners), -1)
                images, sec = sample_tiled(tile_model, tile_diffusion, tile_cond, height, run.tile_size, overlap,
                                           seeds[part], setup, run.device)
                methods[name] += images
                seconds[name] += sec * len(images)
                bar.update(len(images))
    bar.close()
    seconds = {name: total / len(rows) for name, total in seconds.items()}
    result = compare_fields(real, methods, seconds, tile=run.tile_size, inception=load_inception(device=run.device),
                            encoder=encoder, setup=setup,
                            baselines={"real_train_fields": real_train} if len(real_train) >= 2 else None)
    result.update({"field_weights": run.field_weights, "tile_weights": run.tile_weights,
                   "field_store": run.field_store, "reference_rows": [int(r) for r in rows], "seeds": seeds,
                   "baseline_rows": {"real_train_fields": [int(r) for r in train_rows]},
                   "encoder": {"kind": run.encoder_kind, "model": run.encoder_model},
                   "setup": {k: getattr(setup, k) for k in setup.__dataclass_fields__},
                   "field_step": field_ckpt.get("step"), "tile_step": tile_ckpt.get("step")})
    return result, methods, real
