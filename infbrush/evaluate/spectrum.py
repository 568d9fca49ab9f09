"""Spectral check of generated images: radially averaged power spectra of samples against real images.

Issue 12 item 5: samples drawn above the training resolution showed a regular lattice (Fourier features
aliasing at the training lattice, the sparse operator's lattice, the grid). A lattice of ``f`` cells per
image side is periodic at ``f`` cycles per image side, so it shows as spectral peaks at the 2-D frequencies
(±f, 0), (0, ±f) (and (±f, ±f) for a 2-D lattice). This module measures, per sample resolution R:

* the **radially averaged power spectrum** of the samples and of real store images resized to R² (PIL
  antialiased bicubic), in cycles per image side (1 … R/2), and their ratio samples / real;
* the **energy per radial octave band** ([1, 2), [2, 4), …, [R/4, R/2]) of both and its ratio;
* at each **lattice frequency** f given: the power summed over the 3×3 FFT bins around each lattice point
  (axes and diagonals within Nyquist), averaged over the points, relative to the real images' power there
  (``relative_to_real``), and its **prominence**: that power over 9 × the median power of the ring
  |r − f| < 2 (≈ 1 for a spectrum without a peak there). A lattice peak is reported **above the real
  images' level** when the samples' prominence exceeds ``peak_factor`` × the real images' prominence (and
  ``peak_factor``): prominence, not raw power, because real images resized up to R have almost no power
  above their own Nyquist, which a correct model at 2× may legitimately fill.

Spectra: each RGB channel minus its mean, times a 2-D Hann window (no edge discontinuity leaking power onto
the axes, where lattice peaks sit), |FFT|² summed over channels and divided by the squared pixel count and
the window's mean square: the power of a frequency in cycles per image side, so an image and its resized
copy give the same curve below the smaller one's Nyquist and resolutions can share one plot. Samples larger than ``max_side`` are analysed on
their central ``max_side``² crop (and real images on the same field of view): frequencies are converted.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from infbrush.errors import InfbrushError

DEFAULT_PEAK_FACTOR = 2.0
DEFAULT_MAX_SIDE = 2048


def power_spectrum(image: np.ndarray) -> np.ndarray:
    """(N, N, C) image → (N, N) float64 power spectrum (zero frequency at [0, 0]; see the module docstring)."""
    if image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise InfbrushError(f"power spectrum: expected a square (N, N, C) image, got {image.shape}")
    n = image.shape[0]
    hann = np.hanning(n)
    window = np.outer(hann, hann)  # (N, N)
    x = image.astype(np.float64)
    x = (x - x.mean(axis=(0, 1))) * window[..., None]
    power = (np.abs(np.fft.fft2(x, axes=(0, 1))) ** 2).sum(axis=2)
    return power / (float(n) ** 4 * float((window ** 2).mean()))


def frequency_radius(n: int) -> np.ndarray:
    """(N, N) radius in cycles per image side of each FFT bin of an N² image."""
    f = np.fft.fftfreq(n) * n
    return np.hypot(f[:, None], f[None, :])


def radial_profile(power: np.ndarray) -> np.ndarray:
    """(N, N) power → (N//2,) mean power at radii 1 … N/2 (bins of width 1 around each integer radius)."""
    n = power.shape[0]
    radius = np.rint(frequency_radius(n)).astype(np.int64).ravel()
    keep = (radius >= 1) & (radius <= n // 2)
    sums = np.bincount(radius[keep], weights=power.ravel()[keep], minlength=n // 2 + 1)
    counts = np.bincount(radius[keep], minlength=n // 2 + 1)
    return sums[1:] / np.maximum(counts[1:], 1)


def octave_bands(n: int) -> list[tuple[float, float]]:
    """Radial bands [1, 2), [2, 4), … up to N/2 (the last band closed at N/2)."""
    edges, lo = [], 1
    while lo < n // 2:
        edges.append((float(lo), float(min(2 * lo, n // 2))))
        lo *= 2
    return edges


def band_energies(power: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """(N, N) power → (B,) summed power of each radial band (last band includes its upper edge)."""
    radius = frequency_radius(power.shape[0])
    out = []
    for i, (lo, hi) in enumerate(bands):
        mask = (radius >= lo) & ((radius <= hi) if i == len(bands) - 1 else (radius < hi))
        out.append(power[mask].sum())
    return np.asarray(out)


def lattice_points(freq: float, n: int) -> list[tuple[int, int]]:
    """FFT indices (row, col) of the 2-D lattice frequencies (±f, 0), (0, ±f), (±f, ±f) within Nyquist of N²."""
    f = int(round(freq))
    if f < 1 or f > n // 2:
        return []
    signs = sorted({f, -f})  # at Nyquist +f and -f are the same bin
    points = [(s, 0) for s in signs] + [(0, s) for s in signs] + [(a, b) for a in signs for b in signs]
    return sorted({(a % n, b % n) for a, b in points})


def lattice_power(power: np.ndarray, freq: float) -> tuple[float, float]:
    """(mean over lattice points of the 3×3-bin power around each, 9 × median power of the ring |r − f| < 2)."""
    n = power.shape[0]
    points = lattice_points(freq, n)
    if not points:
        raise InfbrushError(f"lattice frequency {freq} is outside 1 … {n // 2} cycles per side of a {n}² image")
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    at_points = np.mean([sum(power[(r + dy) % n, (c + dx) % n] for dy, dx in offsets) for r, c in points])
    ring = np.abs(frequency_radius(n) - freq) < 2
    return float(at_points), float(9 * np.median(power[ring]))


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central side² window of an (H, W, C) image."""
    y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[y:y + side, x:x + side]


def real_at(image: np.ndarray, resolution: int, side: int) -> np.ndarray:
    """A real (S, S, C) image as it would be seen at ``resolution``², cropped to the central ``side``² window.

    The matching field of view (S · side / resolution pixels) is cut first and resized to side², so a
    16384² sample never needs a 16384² real image.
    """
    from infbrush.data.store import resize_image

    square = centre_crop(image, min(image.shape[:2]))
    view = max(1, int(round(square.shape[0] * side / resolution)))
    return resize_image(np.ascontiguousarray(centre_crop(square, view)), side)


def mean_spectrum(images: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """Mean (N, N) power spectrum of square images of one size, and how many there were."""
    total, count = None, 0
    for image in images:
        p = power_spectrum(image)
        if total is not None and p.shape != total.shape:
            raise InfbrushError(f"images of different sizes in one set: {p.shape} vs {total.shape}")
        total = p if total is None else total + p
        count += 1
    if count == 0:
        raise InfbrushError("no images to compute a spectrum from")
    return total / count, count


def compare_spectra(samples: np.ndarray, real: np.ndarray, lattice_freqs: Sequence[float], scale: float = 1.0,
                    peak_factor: float = DEFAULT_PEAK_FACTOR) -> dict:
    """Radial profiles, octave-band energies and lattice-frequency figures of two (N, N) mean spectra.

    ``scale`` converts a frequency in cycles per image side to cycles per analysed window (window / image).
    """
    n = samples.shape[0]
    eps = 1e-12
    radial_s, radial_r = radial_profile(samples), radial_profile(real)
    bands = octave_bands(n)
    energy_s, energy_r = band_energies(samples, bands), band_energies(real, bands)
    lattice = []
    for freq in lattice_freqs:
        f = freq * scale
        if not 1 <= round(f) <= n // 2:
            lattice.append({"freq": freq, "analysed_freq": f, "skipped": f"above Nyquist ({n // 2}) of the window"})
            continue
        (point_s, ring_s), (point_r, ring_r) = lattice_power(samples, f), lattice_power(real, f)
        prom_s, prom_r = point_s / max(ring_s, eps), point_r / max(ring_r, eps)
        lattice.append({"freq": freq, "analysed_freq": f, "samples_power": point_s, "real_power": point_r,
                        "relative_to_real": point_s / max(point_r, eps),
                        "samples_prominence": prom_s, "real_prominence": prom_r,
                        "peak_above_real": bool(prom_s > peak_factor * max(prom_r, 1.0))})
    return {"radial": {"freq": [float(k) / scale for k in range(1, n // 2 + 1)],
                       "samples": radial_s.tolist(), "real": radial_r.tolist(),
                       "ratio": (radial_s / np.maximum(radial_r, eps)).tolist()},
            "bands": [{"lo": lo / scale, "hi": hi / scale, "samples_energy": float(es), "real_energy": float(er),
                       "ratio": float(es / max(er, eps))} for (lo, hi), es, er in zip(bands, energy_s, energy_r)],
            "lattice": lattice}


def sample_set(index_path: str | os.PathLike, max_side: int) -> tuple[int, int, list]:
    """(resolution R, analysed side, records) of one sample index; all its images must be R² squares."""
    from PIL import Image

    from infbrush.evaluate.images import read_sample_index

    records = read_sample_index(index_path)
    sizes = set()
    for record in records:
        if record.path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(record.path) as tif:
                sizes.add(tuple(tif.series[0].levels[0].shape[:2]))
        else:
            with Image.open(record.path) as im:
                sizes.add((im.height, im.width))
    if len(sizes) != 1 or len({s for size in sizes for s in size}) != 1:
        raise InfbrushError(f"{index_path}: the spectral check needs square images of one size, found {sorted(sizes)}")
    resolution = sizes.pop()[0]
    return resolution, min(resolution, max_side), records


def spectrum_check(store_path: str | os.PathLike, sample_indexes: Sequence[str | os.PathLike], *,
                   lattice_freqs: Sequence[float] = (), real_split: str = "all", max_real: int = 256, seed: int = 0,
                   peak_factor: float = DEFAULT_PEAK_FACTOR, max_side: int = DEFAULT_MAX_SIDE) -> dict:
    """Spectra of each sample set against real store images at the same size (see the module docstring)."""
    from infbrush.data.store import ImageStore
    from infbrush.evaluate.images import iter_sample_images, iter_store_images, store_rows, subsample

    if not sample_indexes:
        raise InfbrushError("no sample index given (--samples)")
    store = ImageStore(store_path)
    rows = subsample(store_rows(store.split, real_split), max_real, seed)
    real_size = store.image_size
    store.close()
    if len(rows) == 0:
        raise InfbrushError(f"{store_path}: no images with split {real_split!r}")
    results, peaks = {}, []
    for index in sample_indexes:
        resolution, side, records = sample_set(index, max_side)
        if str(resolution) in results:
            raise InfbrushError(f"{index}: resolution {resolution} is given twice (--samples)")
        samples, n_samples = mean_spectrum(centre_crop(im, side) for im in iter_sample_images(records))
        real, n_real = mean_spectrum(real_at(im, resolution, side) for im in iter_store_images(store_path, rows))
        result = compare_spectra(samples, real, lattice_freqs, side / resolution, peak_factor)
        result.update({"samples": str(index), "n_samples": n_samples, "n_real": n_real, "analysed_side": side,
                       "cropped": side < resolution})
        results[str(resolution)] = result
        peaks += [{"resolution": resolution, "freq": item["freq"],
                   "samples_prominence": item["samples_prominence"], "real_prominence": item["real_prominence"]}
                  for item in result["lattice"] if item.get("peak_above_real")]
    return {"store": str(store_path), "real": {"split": real_split, "n_images": int(len(rows)),
                                               "size": [int(s) for s in real_size], "seed": seed},
            "lattice_freqs": list(lattice_freqs), "peak_factor": peak_factor, "max_side": max_side,
            "units": "cycles per image side", "window": "2-D Hann", "resolutions": results,
            "peaks_above_real": peaks, "no_lattice_peaks": not peaks}


def plot_spectrum(result: dict, out: str | os.PathLike) -> None:
    """Radial spectra (samples per resolution vs real) and their ratio, lattice frequencies marked; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infbrush.io import atomic_path

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (res, r) in enumerate(sorted(result["resolutions"].items(), key=lambda kv: int(kv[0]))):
        colour = f"C{i}"
        freq = r["radial"]["freq"]
        ax.loglog(freq, r["radial"]["samples"], color=colour, label=f"samples {res}²")
        ax.loglog(freq, r["radial"]["real"], color=colour, linestyle=":", label=f"real at {res}²")
        bx.loglog(freq, r["radial"]["ratio"], color=colour, label=f"{res}²")
    for f in result["lattice_freqs"]:
        for axis in (ax, bx):
            axis.axvline(f, color="grey", linestyle="--", linewidth=0.8)
    bx.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("cycles per image side")
    ax.set_ylabel("radially averaged power")
    bx.set_xlabel("cycles per image side")
    bx.set_ylabel("samples / real")
    ax.legend(fontsize=7)
    bx.legend(fontsize=7)
    ax.grid(alpha=0.3)
    bx.grid(alpha=0.3)
    peaks = ", ".join(f"{p['freq']:g} @ {p['resolution']}²" for p in result["peaks_above_real"]) or "none"
    fig.suptitle(f"lattice frequencies (dashed): {result['lattice_freqs']}; peaks above real: {peaks}", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
