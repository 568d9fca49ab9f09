"""Measured control of layout: ``brush.json``.

For one painted map, over several seeds, three ways to make the same image side by side in one process:
**ours** (``RegionDenoiser``: each point's region condition inside the model), the **baseline**
(``MultiDiffusionDenoiser``: the denoiser once per region, predictions blended) and, per region, the
**single-condition** sample of the same size conditioned on that region's condition alone.

* **Per-region accuracy.** The demo judge (``evaluate.control``: random forest on colour/texture features,
  fit on the store's real training split) is fit here on *crops* of the real training images of the same
  fraction of the image side as the region crops (a region is part of the [0, 1]² field, so a crop inside it
  shows a fraction of a training patch's field; a judge fit on whole patches would see a zoom it never saw).
  Its accuracy on crops of the real held-out images is reported beside it. Crops are squares of
  ``crop_fraction`` of the side, placed inside each region at least ``margin_fraction`` away from any other
  region (up to ``crops_per_region`` per image, spread by farthest-point choice). Accuracy per region with a
  Wilson interval over crops (crops of one image are not independent: the interval is optimistic; the number
  of images is given), for ours, the baseline, and the single-condition samples on the very same crops (the
  ceiling set by the model's whole-image control under this protocol).
* **Seams.** Gradient energy |∇I|² of the gray image, mean over a band of ``band_px`` pixels on each side of
  the region boundaries, divided by the mean over region interiors (farther than ``interior_px`` from any
  boundary). Against real boundaries: mosaics of real held-out images of each region's class cut along the
  same map (resized to the output size, as the generated images are the model's field at that size), and
  the single-condition samples (no boundary at all: the ratio of a seamless image on this band).
* **Cost.** FLOPs of one guided denoiser evaluation at the output size (``torch.utils.flop_counter``; counts
  matmuls / convolutions / attention, not gathers or scatters) and wall time of the whole sampling, ours and
  the baseline relative to a single-condition sample of the same size, measured in the same process one after
  the other after a one-step warm-up (the machine's load average is recorded: wall times on a shared machine
  are noisy).

This module measures; the settings it measures with are :class:`~infbrush.brush.settings.PaintSettings` and
:class:`~infbrush.brush.settings.EvalProtocol`, and the images it judged come back as :class:`BrushSamples` for
the figures (:mod:`infbrush.brush.figures`), so that drawing never reruns the sampling.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from infbrush.errors import InfbrushError
from infbrush.brush.settings import EvalProtocol, PaintSettings
from infbrush.evaluate.control import DEFAULT_FEATURE_SIZE, accuracy_summary, image_features, make_judge
from infbrush.evaluate.seams import seam_ratio

if TYPE_CHECKING:
    from infbrush.diffusion.process import Diffusion

SEAM_GOAL = 1.5  # boundary gradient energy within 1.5× of the interiors
ACCURACY_GOAL = 0.8  # per-region accuracy
COST_GOAL = 1.3  # ≤ 1.3× a single-condition sample


# --------------------------------------------------------------------------------------------- geometry
def crop_positions(index: np.ndarray, region: int, crop: int, margin: int, n: int) -> list[tuple[int, int]]:
    """Up to ``n`` top-left (row, col) of crop×crop windows inside ``region`` and ≥ ``margin`` px from any other
    region, spread out (farthest-point choice from the most interior one)."""
    from scipy.ndimage import distance_transform_edt

    inside = index == region
    if not inside.any():
        return []
    allowed = distance_transform_edt(inside) > margin  # pixels ≥ margin from any other region's pixel
    h, w = index.shape
    if crop > h or crop > w:
        return []
    integral = np.pad(allowed.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[crop:, crop:] - integral[:-crop, crop:] - integral[crop:, :-crop] + integral[:-crop, :-crop]
    valid = np.argwhere(sums == crop * crop)  # (k, 2) top-left corners
    if valid.size == 0:
        return []
    centre = valid.mean(0)
    chosen = [int(np.argmin(((valid - centre) ** 2).sum(1)))]
    dist = ((valid - valid[chosen[0]]) ** 2).sum(1).astype(np.float64)
    while len(chosen) < n and dist.max() > 0:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((valid - valid[nxt]) ** 2).sum(1))
    return [(int(valid[i][0]), int(valid[i][1])) for i in chosen]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] → (H, W, 3) uint8."""
    arr = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]


# --------------------------------------------------------------------------------------------- judge on crops
def real_crops(store_path, split: int, fraction: float, per_image: int, seed: int, feature_size: int):
    """Features (n, F) and labels (n,) of ``per_image`` random square crops (``fraction`` of the side) of the
    store's labelled rows with ``split``; label names."""
    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    rng = np.random.default_rng(seed + 1000 * split)
    feats, labels = [], []
    try:
        rows = np.flatnonzero((store.split == split) & (store.labels >= 0))
        for r in rows:
            image = store.image(int(r))
            h, w = image.shape[:2]
            side = max(4, int(round(fraction * min(h, w))))
            for _ in range(per_image):
                y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
                feats.append(image_features(image[y:y + side, x:x + side], feature_size))
                labels.append(int(store.labels[r]))
        names = list(store.label_names)
    finally:
        store.close()
    return np.stack(feats), np.asarray(labels), names


def fit_crop_judge(store_path, fraction: float, *, per_image: int = 2, seed: int = EvalProtocol.judge_seed,
                   feature_size: int = EvalProtocol.feature_size):
    """(judge, names, summary): the demo judge fit on real training crops, scored on real held-out crops."""
    train_x, train_y, names = real_crops(store_path, 0, fraction, per_image, seed, feature_size)
    held_x, held_y, _ = real_crops(store_path, 1, fraction, per_image, seed, feature_size)
    judge = make_judge(seed).fit(train_x, train_y)
    pred = judge.predict(held_x)
    per_class = {names[k]: accuracy_summary(pred[held_y == k] == k) for k in np.unique(held_y)}
    return judge, names, {"crop_fraction": fraction, "crops_per_image": per_image,
                          "n_train_crops": int(train_y.size), "real_held_out_crops": per_class,
                          "real_held_out_overall": accuracy_summary(pred == held_y)}


def judge_region(judge, names: Sequence[str], images: Sequence[np.ndarray], positions: list[tuple[int, int]],
                 crop: int, target: int, feature_size: int = DEFAULT_FEATURE_SIZE) -> dict:
    """Accuracy (with interval) of the judge on the ``crop``-px crops at ``positions`` of every image, against
    class ``target``; with crop and image counts, images judged right on most crops, and what crops were read as."""
    crops = [im[y:y + crop, x:x + crop] for im in images for (y, x) in positions]
    pred = judge.predict(np.stack([image_features(c, feature_size) for c in crops]))
    hits = pred == target
    summary = accuracy_summary(hits)
    summary["n_images"] = len(images)
    summary["n_crops"] = int(hits.size)
    summary["images_majority_correct"] = int((hits.reshape(len(images), len(positions)).mean(1) > 0.5).sum())
    summary["judged_as"] = {names[int(k)]: int((pred == k).sum()) for k in np.unique(pred)}
    return summary


# --------------------------------------------------------------------------------------------- cost
def guided_call_flops(denoiser, n_points: int, size: tuple[int, int], chunk_points: int | None, batch: int = 1,
                      guided: bool = True, cond: torch.Tensor | None = None) -> int:
    """FLOPs of one (guided) denoiser evaluation over an H×W lattice, streamed as the sampler does."""
    from torch.utils.flop_counter import FlopCounterMode

    from infbrush.diffusion.points import index_to_coords
    from infbrush.models.chunked import streamed_forward

    b = 2 * batch if guided else batch
    dev = next(denoiser.parameters()).device
    coords_all = index_to_coords(torch.arange(n_points, device=dev), size)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(1, n_points, denoiser.in_channels, generator=gen).to(dev)
    mask = torch.cat([torch.ones(batch, dtype=torch.bool), torch.zeros(batch, dtype=torch.bool)]).to(dev) \
        if guided else None
    t = torch.full((b,), 500, device=dev, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        streamed_forward(denoiser, n_points,
                         lambda s, e: (x[:, s:e].expand(b, -1, -1), coords_all[s:e].unsqueeze(0).expand(b, -1, -1)),
                         lambda s, e, eps: None, t, None if cond is None else cond.repeat(b // cond.shape[0], 1),
                         chunk_points=chunk_points, cond_mask=mask)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------- main
@dataclass
class BrushSamples:
    """The images one evaluation judged, handed to the figures so that drawing does not sample again."""

    index: np.ndarray                      # (H, W) hard regions at the output pixels
    ours: torch.Tensor                     # (B, C, H, W) in [-1, 1], one image per seed
    baseline: torch.Tensor                 # (B, C, H, W) in [-1, 1]
    single: dict[int, list[np.ndarray]]    # region → its single-condition samples, (H, W, 3) uint8 per seed
    mosaics: list[np.ndarray]              # real mosaics cut along the map (empty: a region's class is not stored)


def evaluate_brush(model, painting, diffusion: Diffusion, *, store: str | os.PathLike, size: int,
                   sampling: PaintSettings = PaintSettings(), protocol: EvalProtocol = EvalProtocol(), device="cpu",
                   progress: bool = False) -> tuple[dict, BrushSamples]:
    """Render ours / baseline / single-condition for the protocol's seeds at size², judge region crops, seams,
    cost → (the brush.json dict, the samples for the figures). Ours paints with ``sampling`` as given (its
    method options included), the baseline with the same steps and guidance."""
    from infbrush.brush.run import paint
    from infbrush.diffusion import ddim_sample
    from infbrush.brush.model import MultiDiffusionDenoiser, RegionDenoiser

    legend, region = painting.legend, painting.region
    present = painting.present
    if len(present) < 2:
        raise InfbrushError("brush evaluation needs a map with at least two regions")
    seeds = list(protocol.seeds)
    single, memory = sampling.sampling(legend), sampling.memory()  # single-condition: same steps, guidance, chunks
    steps, guidance_scale, chunk_points = single.steps, single.guidance_scale, memory.chunk_points
    sampling = replace(sampling, guidance_scale=guidance_scale)
    lattice = (size, size)
    index = painting.weights.lattice_index(lattice)  # (H, W) hard regions at the output pixels
    blend_px = painting.blend * size
    band = float(protocol.band_px if protocol.band_px is not None else max(2.0, blend_px / 2 + 2))
    interior = max(3 * band, protocol.margin_fraction * size + band)
    load_before = os.getloadavg()
    common = dict(seeds=seeds, diffusion=diffusion, memory=memory, device=device)
    how = dict(seeds=seeds, diffusion=diffusion, device=device, progress=progress)

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    # warm-up (thread pools, first-call allocations) so that the first timed method does not pay for it
    ddim_sample(model, None if region.conds is None else region.conds[:1].repeat(len(seeds), 1), lattice,
                settings=replace(single, steps=1), **common)
    ours, t_ours = timed(lambda: paint(model, painting, lattice, settings=replace(sampling, method="model"), **how))
    base, t_base = timed(lambda: paint(model, painting, lattice, **how,
                                       settings=replace(sampling, method="baseline", method_options=None)))
    singles, t_single = {}, {}
    for r in present:
        spec = legend.regions[r]
        cond = None if spec.cond is None else torch.as_tensor(spec.cond).float().unsqueeze(0).repeat(len(seeds), 1)
        singles[r], t_single[r] = timed(lambda: ddim_sample(model, cond, lattice, settings=single, progress=progress,
                                                            **common))
    load_after = os.getloadavg()
    ours8 = [to_uint8(im) for im in ours]
    base8 = [to_uint8(im) for im in base]
    single8 = {r: [to_uint8(im) for im in ims] for r, ims in singles.items()}

    # ---- per-region accuracy
    crop_fraction, crops_per_region = protocol.crop_fraction, protocol.crops_per_region
    feature_size = protocol.feature_size
    judge, names, judge_summary = fit_crop_judge(store, crop_fraction, seed=protocol.judge_seed,
                                                 feature_size=feature_size)
    crop = max(8, int(round(crop_fraction * size)))
    margin = int(round(protocol.margin_fraction * size))
    regions_out = []
    for r in present:
        spec = legend.regions[r]
        entry = {"key": painting.key_names()[r], "name": spec.name, "kind": spec.kind, "value": spec.value,
                 "area_fraction": float((index == r).mean())}
        target = names.index(spec.name) if spec.name in names else None  # the region's class, by name
        positions = crop_positions(index, r, crop, margin, crops_per_region)
        entry["crops_per_image"] = len(positions)
        if target is None or not positions:
            entry["accuracy"] = None
            entry["why_not_scored"] = ("no class of the judge" if target is None else
                                       f"no {crop}px crop fits {margin}px away from other regions")
            regions_out.append(entry)
            continue
        entry["class"] = names[target]
        for what, images in (("ours", ours8), ("baseline", base8), ("single_condition", single8[r])):
            entry[what] = judge_region(judge, names, images, positions, crop, target, feature_size)
        real = judge_summary["real_held_out_crops"].get(names[target])
        entry["judge_real_crops_accuracy"] = real["accuracy"] if real else None
        regions_out.append(entry)
    scored = [e for e in regions_out if e.get("ours")]

    def mean_of(what):
        return float(np.mean([e[what]["accuracy"] for e in scored])) if scored else None

    # ---- seams
    seams = {"ours": [seam_ratio(im, index, band, interior) for im in ours8],
             "baseline": [seam_ratio(im, index, band, interior) for im in base8]}
    seams["single_condition"] = [seam_ratio(im, index, band, interior) for ims in single8.values() for im in ims]
    mosaics = real_mosaics(store, legend, present, index, len(seeds), size)
    seams["real_mosaic"] = [seam_ratio(im, index, band, interior) for im in mosaics]
    seam_summary = {k: {"mean": _mean(v), "min": _min(v), "max": _max(v), "per_image": v} for k, v in seams.items()}

    # ---- cost
    flops = {"ours": guided_call_flops(RegionDenoiser(model, region, guidance_scale), size * size, lattice,
                                       chunk_points),
             "baseline": guided_call_flops(MultiDiffusionDenoiser(model, region, guidance_scale), size * size, lattice,
                                           chunk_points)}
    first = next((legend.regions[r].cond for r in present if legend.regions[r].cond is not None), None)
    flops["single_condition"] = guided_call_flops(
        model, size * size, lattice, chunk_points, cond=None if first is None else torch.as_tensor(first).float()[None])
    t_single_mean = float(np.mean(list(t_single.values())))
    cost = {"flops_per_guided_call": flops,
            "flops_ratio_ours_vs_single": flops["ours"] / flops["single_condition"],
            "flops_ratio_baseline_vs_single": flops["baseline"] / flops["single_condition"],
            "flops_ratio_ours_vs_baseline": flops["ours"] / flops["baseline"],
            "wall_seconds": {"ours": t_ours, "baseline": t_base, "single_condition_mean": t_single_mean,
                             "single_condition_per_region": {legend.regions[r].name: t for r, t in t_single.items()}},
            "wall_ratio_ours_vs_single": t_ours / t_single_mean,
            "wall_ratio_baseline_vs_single": t_base / t_single_mean,
            "wall_ratio_ours_vs_baseline": t_ours / t_base,
            "images_per_run": len(seeds), "load_average_before": list(load_before),
            "load_average_after": list(load_after), "cpu_count": os.cpu_count(),
            "note": "wall times measured one after the other in one process on a shared machine (see load "
                    "averages); FLOPs count matmul/conv/attention only (torch FlopCounterMode)"}

    acc = {k: mean_of(k) for k in ("ours", "baseline", "single_condition")}
    seam_ours = seam_summary["ours"]["mean"]
    result = {
        "size": size, "seeds": seeds, "steps": steps, "guidance_scale": guidance_scale,
        "blend_fraction": painting.blend, "blend_px": blend_px,
        "protocol": {"crop_px": crop, "crop_fraction": crop_fraction, "margin_px": margin,
                     "crops_per_region_max": crops_per_region, "seam_band_px": band, "seam_interior_px": interior,
                     "judge": judge_summary,
                     "intervals": "Wilson 95% over crops (crops of one image are correlated: optimistic)"},
        "regions": regions_out,
        "mean_region_accuracy": acc,
        "seams": seam_summary,
        "cost": cost,
        "goals": {"region_accuracy": ACCURACY_GOAL, "seam_ratio": SEAM_GOAL, "cost_ratio": COST_GOAL,
                  "region_accuracy_met": bool(scored) and all(e["ours"]["accuracy"] >= ACCURACY_GOAL for e in scored),
                  "ours_matches_or_beats_baseline": acc["ours"] is not None and acc["ours"] >= acc["baseline"],
                  "seam_met": seam_ours is not None and seam_ours <= SEAM_GOAL,
                  "cost_met_flops": cost["flops_ratio_ours_vs_single"] <= COST_GOAL,
                  "cost_met_wall": cost["wall_ratio_ours_vs_single"] <= COST_GOAL,
                  "cheaper_than_baseline": cost["flops_ratio_ours_vs_baseline"] < 1},
    }
    return result, BrushSamples(index, ours, base, single8, mosaics)


def _mean(v):
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def _min(v):
    v = [x for x in v if x is not None]
    return float(np.min(v)) if v else None


def _max(v):
    v = [x for x in v if x is not None]
    return float(np.max(v)) if v else None


def real_mosaics(store_path, legend, present: list[int], index: np.ndarray, n: int, size: int) -> list[np.ndarray]:
    """``n`` mosaics of real held-out images, each region filled from an image of its class (i-th of the
    class), resized to the output size and cut along the hard map (the boundaries of real cut-and-paste)."""
    from infbrush.data.store import ImageStore, resize_image

    store = ImageStore(store_path)
    try:
        names = list(store.label_names)
        rows_by_class = {}
        for r in present:
            name = legend.regions[r].name
            if name not in names:
                return []
            k = names.index(name)
            rows = np.flatnonzero((store.split == 1) & (store.labels == k))
            if rows.size == 0:
                rows = np.flatnonzero(store.labels == k)
            rows_by_class[r] = rows
        out = []
        for i in range(n):
            canvas = np.zeros((size, size, 3), np.uint8)
            for r in present:
                rows = rows_by_class[r]
                image = resize_image(store.image(int(rows[i % rows.size]))[..., :3], size)
                canvas[index == r] = image[index == r]
            out.append(canvas)
        return out
    finally:
        store.close()
