"""Seams: gradient energy along region or tile boundaries against the interiors (the brush's regions, the
patch-based baseline's tiles). A seamless image scores ~1; a visible seam scores well above it."""
from __future__ import annotations

import numpy as np


def boundary_distance(index: np.ndarray) -> np.ndarray:
    """Distance (px) of every pixel centre to the nearest region boundary (between 4-neighbours); inf if none."""
    from scipy.ndimage import distance_transform_edt

    edge = np.zeros(index.shape, bool)
    dy = index[1:] != index[:-1]
    dx = index[:, 1:] != index[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    if not edge.any():
        return np.full(index.shape, np.inf)
    return distance_transform_edt(~edge)


def seam_ratio(image: np.ndarray, index: np.ndarray, band_px: float, interior_px: float) -> float | None:
    """Mean |∇gray|² within ``band_px`` of a boundary over the mean beyond ``interior_px`` (None: no boundary)."""
    dist = boundary_distance(index)
    gray = image[..., :3].astype(np.float64).mean(-1) / 255.0
    gy, gx = np.gradient(gray)
    energy = gx**2 + gy**2
    band, interior = dist <= band_px, dist > interior_px
    if not band.any() or not interior.any():
        return None
    return float(energy[band].mean() / max(energy[interior].mean(), 1e-12))


def tile_index(size: int, tile: int) -> np.ndarray:
    """(size, size) int map of the non-overlapping tile each pixel belongs to (boundaries every ``tile`` px)."""
    cells = np.arange(size) // tile
    return cells[:, None] * (-(-size // tile)) + cells[None, :]
