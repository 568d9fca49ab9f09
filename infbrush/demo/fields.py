"""Smooth random fields of the demo world, shared by the slides (tissue.py) and the land cover (landcover.py).

Fields are drawn on coarse grids and resized bilinearly: through PIL for fine inputs (exact and deterministic),
through numpy gathers for coarse ones (no BLAS, so the result is bit-identical on every machine).
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def _interp_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel-centred linear interpolation indices (i0, i1) and weight of i1, each (n_out,)."""
    pos = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (pos - i0).astype(np.float32)


def resize(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float field (h, w) -> (height, width) float32 (half-pixel centres).

    Fine inputs go through PIL (C, fast); coarse ones through numpy gathers (no BLAS, so the
    result is bit-identical on every machine).
    """
    field = np.ascontiguousarray(field, dtype=np.float32)
    gh, gw = field.shape
    if gw > 256:
        img = Image.fromarray(field).resize((width, height), Image.BILINEAR)
        return np.array(img, dtype=np.float32)
    iy0, iy1, fy = _interp_axis(height, gh)
    ix0, ix1, fx = _interp_axis(width, gw)
    rows = field[iy0] * (1 - fy)[:, None] + field[iy1] * fy[:, None]  # (height, gw)
    out = rows[:, ix0]  # (height, width)
    out *= 1 - fx
    out += rows[:, ix1] * fx
    return out


def upsample2(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour 2x upsampling (h, w) -> (height, width), cropped; h >= ceil(height / 2)."""
    h, w = field.shape
    out = np.empty((h, 2, w, 2), field.dtype)
    out[...] = field[:, None, :, None]
    return out.reshape(2 * h, 2 * w)[:height, :width]


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Value noise with correlation length ``scale`` px and std about 1. Returns (height, width) float32."""
    scale = max(float(scale), 1.0)
    gh, gw = int(np.ceil(height / scale)) + 2, int(np.ceil(width / scale)) + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    big = resize(grid, int(round(gh * scale)), int(round(gw * scale)))
    oy, ox = int(scale // 2), int(scale // 2)
    return 1.5 * big[oy:oy + height, ox:ox + width]  # bilinear white noise has std 2/3


def fractal_noise(rng: np.random.Generator, height: int, width: int, scale: float, octaves: int = 3) -> np.ndarray:
    """Sum of ``octaves`` value noises at scale, scale/2, ...; std about 1. (height, width) float32."""
    total = np.zeros((height, width), np.float32)
    norm = 0.0
    for octave in range(octaves):
        amplitude = 0.5 ** octave
        total += amplitude * smooth_noise(rng, height, width, scale / 2 ** octave)
        norm += amplitude ** 2
    return total / np.float32(np.sqrt(norm))
