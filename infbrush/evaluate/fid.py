"""CLIP FID and Crop FID (with KID) between a real image set and a generated one.

Protocol (∞-Brush Sec. 5.1, following clean-fid): **CLIP FID** — every large image, real or generated, is
resized whole to the CLIP model's input and embedded (global structure). **Crop FID** — random crops at
native resolution (:mod:`infbrush.evaluate.crops`) through clean-fid's Inception (fine detail).

FID (Heusel et al. 2017) between Gaussians fitted to the two feature sets::

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})

clean-fid evaluates the trace term with ``scipy.linalg.sqrtm`` (minutes per call for 2048-d on CPU, and
complex-valued noise when Σ is singular). We use the identity Tr((Σ₁Σ₂)^{1/2}) = Σᵢ √λᵢ with λᵢ the
eigenvalues of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2} (similar to Σ₁Σ₂), computed with ``eigh``:
the same number (tested against clean-fid's ``frechet_distance``), in seconds, real for any rank.
KID is clean-fid's ``kernel_distance`` (cubic polynomial kernel, 100 subsets of ≤ 1000), seeded.

The real set's statistics are computed once (``infbrush fid-ref`` → ``fid_ref.npz``: μ, Σ and a seeded
subset of ≤ ``kid_max`` feature rows for KID, per feature kind, plus JSON metadata) and reused.

**Sanity pairs** (a demo CLIP FID once read 0.14, "excellent", for pure speckle noise). A metric is
only reported as a result if, with the same feature extractor, the same reference statistics and sets of
the same size as the generated one, it ranks three known sets correctly: *real* images outside the
reference (the held-out split first) must score below *blurred* real images (the same images, Gaussian σ =
``blur`` × side) and *noise* images (i.i.d. uniform RGB, the real images' size) — and by a margin: the smaller
of the two must be at least ``min_ratio`` × the real value (for a negative unbiased KID:
``real + (min_ratio − 1)·|real|``, and above 0). Real < blurred < noise is recorded too (``full_order``) but
not required: which degradation is "further" depends on the features. A metric failing its check is written
with ``"trusted": false`` and the reason (:func:`sanity_verdict`); the report shows it as flagged.

Measured (demo CLIP retrained on today's 64² demo_brca store, reference 64 train rows, 32 held-out rows per
set, blur σ 4 px; CLIP FID / CLIP KID / Crop FID / Crop KID):

* demo_naip — real 0.177 / 0.0029 / 104 / 0.014; blurred 0.129 / 0.0017 / 304 / 0.230; noise 0.794 / 0.026 /
  453 / 0.558. CLIP FID and CLIP KID are **flagged** (the histology-trained demo CLIP scores blurred land cover
  closer to real than real held-out images are); Crop FID and Crop KID pass.
* demo_brca — real 0.112 / 0.0021 / 122 / 0.015; blurred 0.647 / 0.016 / 358 / 0.364; noise 0.929 / 0.021 /
  424 / 0.553. All four pass (real < blurred < noise).

A 30 %-speckle set of 32 images (the issue's failure case) then scores CLIP FID 0.74 (demo_naip) and 1.34
(demo_brca), Crop KID 0.41 and 0.48. The sanity sets cost three extra feature passes of the generated set's
size (on the shared 2-core machine ≈ 4 CPU-minutes per demo dataset, mostly Inception on the crops).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.evaluate.crops import CropProtocol, random_crops
from infbrush.evaluate.extractors import FeatureExtractor

KINDS = ("clip", "crop")
METRICS = {"clip_fid": ("clip", "fid"), "clip_kid": ("clip", "kid"), "crop_fid": ("crop", "fid"),
           "crop_kid": ("crop", "kid")}  # fid.json key -> (feature kind, distance)
SANITY_SETS = ("real", "blurred", "noise")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂); μ (D,), Σ (D, D). See the module docstring."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InfbrushError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    evals1, evecs1 = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt1 = (evecs1 * np.sqrt(np.clip(evals1, 0, None))) @ evecs1.T  # Σ₁^{1/2}, (D, D)
    middle = sqrt1 @ sigma2 @ sqrt1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, seed: int = 0) -> float:
    """clean-fid's KID (unbiased MMD², cubic kernel) between (N₁, D) and (N₂, D), with a fixed seed."""
    from cleanfid.fid import kernel_distance

    if min(len(feats1), len(feats2)) < 2:
        raise InfbrushError(f"KID needs at least 2 samples per set, got {len(feats1)} and {len(feats2)}")
    state = np.random.get_state()  # kernel_distance draws its subsets from numpy's global generator
    np.random.seed(seed)
    try:
        return kernel_distance(np.asarray(feats1, np.float64), np.asarray(feats2, np.float64))
    finally:
        np.random.set_state(state)


class FeatureStats:
    """Streaming mean and covariance (float64, shifted sums) of ``total`` feature rows, keeping a seeded
    subset of at most ``kid_max`` rows for KID."""

    def __init__(self, dim: int, total: int, kid_max: int, seed: int) -> None:
        self.dim, self.total, self.n = dim, total, 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(dim)
        self._outer = np.zeros((dim, dim))
        rng = np.random.default_rng(seed)
        keep = rng.choice(total, size=min(total, kid_max), replace=False) if total > 0 else np.array([], int)
        self._keep = np.zeros(total, dtype=bool)
        self._keep[keep] = True
        self._kid: list[np.ndarray] = []

    def update(self, feats: np.ndarray) -> None:
        """Add a batch (B, D)."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise InfbrushError(f"expected features of shape (B, {self.dim}), got {feats.shape}")
        if self.n + len(feats) > self.total:
            raise InfbrushError(f"more feature rows than announced ({self.n + len(feats)} > {self.total})")
        if self._shift is None:
            self._shift = feats.mean(axis=0)
        centred = feats - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self._kid.append(feats[self._keep[self.n:self.n + len(feats)]].astype(np.float32))
        self.n += len(feats)

    @property
    def mean(self) -> np.ndarray:
        return self._shift + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (as ``np.cov(feats, rowvar=False)``), (D, D)."""
        m = self._sum / self.n
        return (self._outer - self.n * np.outer(m, m)) / (self.n - 1)

    @property
    def kid_feats(self) -> np.ndarray:
        return np.concatenate(self._kid) if self._kid else np.zeros((0, self.dim), np.float32)


@dataclass
class SetStats:
    """μ, Σ, KID rows and count of one feature kind of one image set."""

    mu: np.ndarray
    sigma: np.ndarray
    kid_feats: np.ndarray
    n: int

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> "SetStats":
        if stats.n != stats.total:
            raise InfbrushError(f"expected {stats.total} feature rows, got {stats.n}")
        return cls(stats.mean, stats.cov, stats.kid_feats, stats.n)

    @classmethod
    def from_feats(cls, feats: np.ndarray) -> "SetStats":
        feats = np.asarray(feats, np.float64)
        return cls(feats.mean(axis=0), np.cov(feats, rowvar=False), feats.astype(np.float32), len(feats))


def collect_set_stats(images: Iterable[np.ndarray], n_images: int, clip: FeatureExtractor | None,
                      inception: FeatureExtractor | None, protocol: CropProtocol | None, set_tag: int, *,
                      batch_size: int = 32, kid_max: int = 10000, seed: int = 0,
                      desc: str = "features") -> tuple[dict[str, SetStats], list[tuple[int, int]]]:
    """CLIP features of each whole image and Inception features of its crops, streamed.

    Returns ({"clip": SetStats, "crop": SetStats} for the extractors given, distinct (H, W) sizes seen).
    """
    from tqdm import tqdm

    stats: dict[str, FeatureStats] = {}
    if clip is not None:
        stats["clip"] = FeatureStats(clip.dim, n_images, kid_max, seed)
    if inception is not None:
        if protocol is None:
            raise InfbrushError("Crop FID needs a crop protocol")
        stats["crop"] = FeatureStats(inception.dim, n_images * protocol.crops_per_image, kid_max, seed + 1)
    pending: dict[str, list[np.ndarray]] = {kind: [] for kind in stats}
    extractors = {"clip": clip, "crop": inception}
    sizes: list[tuple[int, int]] = []

    def flush(kind: str, force: bool = False) -> None:
        while pending[kind] and (force or len(pending[kind]) >= batch_size):
            batch, pending[kind] = pending[kind][:batch_size], pending[kind][batch_size:]
            stats[kind].update(extractors[kind].forward(np.stack(batch)))

    count = 0
    for index, image in enumerate(tqdm(images, total=n_images, desc=desc, mininterval=5)):
        if (image.shape[0], image.shape[1]) not in sizes:
            sizes.append((image.shape[0], image.shape[1]))
        if "clip" in stats:
            pending["clip"].append(clip.prepare(image))
        if "crop" in stats:
            pending["crop"].extend(inception.prepare(c) for c in random_crops(image, protocol, index, set_tag))
        for kind in stats:
            flush(kind)
        count += 1
    for kind in stats:
        flush(kind, force=True)
    if count != n_images:
        raise InfbrushError(f"{desc}: expected {n_images} images, got {count}")
    return {kind: SetStats.from_stats(s) for kind, s in stats.items()}, sizes


def check_rank(n: int, dim: int, what: str, allow_rank_deficient: bool) -> bool:
    """True if ``n`` samples of ``dim``-d features give a rank-deficient covariance; raise unless allowed."""
    if n < 2:
        raise InfbrushError(f"{what}: {n} sample(s); FID needs at least 2 (and more than {dim} for full rank)")
    deficient = n <= dim
    if deficient and not allow_rank_deficient:
        raise InfbrushError(
            f"{what}: {n} samples for {dim}-d features: the covariance is not full rank (clean-fid needs more "
            f"samples than feature dimensions, here > {dim}); use more images or crops, or pass "
            "--allow-rank-deficient (the FID is then biased; KID stays unbiased)")
    return deficient


def save_reference(path: str | os.PathLike, stats: dict[str, SetStats], meta: dict) -> None:
    """Write ``fid_ref.npz``: ``<kind>_mu``, ``<kind>_sigma``, ``<kind>_kid_feats``, ``<kind>_n``, ``meta``."""
    from infbrush.io import atomic_path

    arrays = {"meta": np.array(json.dumps(meta))}
    for kind, s in stats.items():
        arrays.update({f"{kind}_mu": s.mu, f"{kind}_sigma": s.sigma, f"{kind}_kid_feats": s.kid_feats,
                       f"{kind}_n": np.array(s.n)})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_reference(path: str | os.PathLike) -> tuple[dict[str, SetStats], dict]:
    """Read ``fid_ref.npz`` back as ({kind: SetStats}, meta)."""
    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: FID reference statistics not found (run `infbrush fid-ref`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            stats = {kind: SetStats(data[f"{kind}_mu"], data[f"{kind}_sigma"], data[f"{kind}_kid_feats"],
                                    int(data[f"{kind}_n"])) for kind in KINDS if f"{kind}_mu" in data}
    except (OSError, ValueError, KeyError) as err:
        raise InfbrushError(f"{path}: not an infbrush FID reference file ({err})") from None
    return stats, meta


def compare_stats(real: SetStats, generated: SetStats, dim: int, what: str, allow_rank_deficient: bool,
                  kid_seed: int = 0) -> dict:
    """FID and KID of one feature kind, with the counts and whether the covariances were rank-deficient."""
    deficient = [check_rank(real.n, dim, f"{what} (real set)", allow_rank_deficient),
                 check_rank(generated.n, dim, f"{what} (generated set)", allow_rank_deficient)]
    return {"fid": frechet_distance(real.mu, real.sigma, generated.mu, generated.sigma),
            "kid": kernel_inception_distance(real.kid_feats, generated.kid_feats, seed=kid_seed),
            "n_real": real.n, "n_generated": generated.n, "dim": dim, "rank_deficient": any(deficient)}


# --------------------------------------------------------------------------------------------- sanity pairs
def noise_images(n: int, shape: tuple[int, int, int], seed: int) -> Iterator[np.ndarray]:
    """``n`` images of i.i.d. uniform uint8 noise of ``shape`` (H, W, 3), seeded."""
    rng = np.random.default_rng([seed, 7])
    for _ in range(n):
        yield rng.integers(0, 256, size=shape, dtype=np.uint8)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) uint8 image blurred by a Gaussian of ``sigma`` pixels in each spatial axis (reflecting edges)."""
    from scipy.ndimage import gaussian_filter

    return np.clip(np.round(gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))), 0, 255
                   ).astype(np.uint8)


def sanity_rows(split: np.ndarray, reference_rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` store rows outside the reference set, held-out (split == 1) rows first, drawn with ``seed``.

    ``split`` is the store's (N,) split column. Raises when fewer than 2 rows lie outside the reference.
    """
    rng = np.random.default_rng(seed)
    outside = np.setdiff1d(np.arange(len(split)), reference_rows)
    held, other = outside[split[outside] == 1], outside[split[outside] != 1]
    rows = np.concatenate([rng.permutation(held), rng.permutation(other)])[:n]
    if len(rows) < 2:
        raise InfbrushError(f"only {len(rows)} real image(s) lie outside the FID reference set: the sanity pairs "
                            "need at least 2 (build the reference with fid-ref --split train or --max-images)")
    return np.sort(rows)


def sanity_verdict(values: dict[str, float], min_ratio: float = 2.0) -> dict:
    """Whether a metric passes its sanity order, from its values for the ``real``, ``blurred``, ``noise`` sets.

    Returns {"trusted": bool, "full_order": real < blurred < noise, "separation": min(blurred, noise) / real
    (None unless real > 0), "reason": one line}.
    """
    real, blur, noise = (float(values[k]) for k in SANITY_SETS)
    low_name, low = min((("blurred", blur), ("noise", noise)), key=lambda kv: kv[1])
    needed = real + (min_ratio - 1) * abs(real)
    text = f"real {real:.4g}, blurred {blur:.4g}, noise {noise:.4g}"
    if not np.isfinite([real, blur, noise]).all():
        trusted, reason = False, f"not finite ({text})"
    elif low <= real:
        trusted, reason = False, (f"{low_name} images score {low:.4g}, not above real images' {real:.4g}: the metric "
                                  f"cannot tell {low_name} images from real ones ({text})")
    elif low < needed or low <= 0:
        trusted, reason = False, (f"{low_name} images score {low:.4g}, less than {min_ratio:g}x real images' "
                                  f"{real:.4g}: too little separation ({text})")
    else:
        trusted, reason = True, f"passes: {text}"
    return {"trusted": trusted, "full_order": bool(real < blur < noise),
            "separation": float(low / real) if real > 0 and np.isfinite(low) else None, "reason": reason}


def sanity_table(values: dict[str, dict[str, float]], min_ratio: float = 2.0) -> dict[str, dict]:
    """{metric: verdict} from {set name: {metric: value}} (metrics missing from any set are left out)."""
    metrics = [m for m in METRICS if all(values[s].get(m) is not None for s in SANITY_SETS)]
    return {m: sanity_verdict({s: values[s][m] for s in SANITY_SETS}, min_ratio) for m in metrics}
