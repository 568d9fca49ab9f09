"""Synthetic NAIP-like aerial imagery (R, G, B, NIR at 1 m) with a matching land-cover raster.

Structure at several scales: a meandering river and ponds (water: dark, very low NIR), a road
network along parcel boundaries (developed), rectangular parcels that are fields (crop rows,
bare soil or hay; high NIR for green crops), forest (high, crown-textured NIR) or developed
lots with buildings, and an irregular nodata collar as NAIP quarter-quad tiles have after
reprojection. Pixel values are uint8 with 0 reserved for nodata.
"""
from __future__ import annotations

import numpy as np

from infbrush.demo import portable
from infbrush.demo.fields import fractal_noise, resize, smooth_noise

LANDCOVER_NAMES: tuple[str, ...] = ("water", "forest", "field", "developed")
WATER, FOREST, FIELD, DEVELOPED = range(4)
NODATA_LABEL = 255  # land-cover value outside the valid footprint
NODATA_VALUE = 0  # image value outside the valid footprint (all bands)

# (R, G, B, NIR) base reflectance as NAIP digital numbers
_WATER = np.array([38, 58, 66, 16], np.float32)
_FOREST = np.array([52, 78, 56, 150], np.float32)
_CROPS = np.array([[92, 128, 70, 185], [150, 128, 102, 112], [170, 160, 110, 140], [110, 140, 80, 165]], np.float32)
_ROAD = np.array([132, 132, 128, 96], np.float32)
_LAWN = np.array([100, 122, 82, 150], np.float32)
_ROOFS = np.array([[175, 170, 165, 150], [90, 88, 90, 80], [150, 95, 80, 105], [200, 200, 198, 190]], np.float32)


def _split_parcels(rng: np.random.Generator, y0: int, x0: int, y1: int, x1: int, depth: int,
                   out: list[tuple[int, int, int, int, int]]) -> None:
    """Recursive guillotine cuts into parcels of 60-400 m; appends (y0, x0, y1, x1, depth of cut)."""
    h, w = y1 - y0, x1 - x0
    if max(h, w) < 120 or (max(h, w) < 400 and rng.random() < 0.3):
        out.append((y0, x0, y1, x1, depth))
        return
    if h > w:
        cut = y0 + int(h * rng.uniform(0.3, 0.7))
        _split_parcels(rng, y0, x0, cut, x1, depth + 1, out)
        _split_parcels(rng, cut, x0, y1, x1, depth + 1, out)
    else:
        cut = x0 + int(w * rng.uniform(0.3, 0.7))
        _split_parcels(rng, y0, x0, y1, cut, depth + 1, out)
        _split_parcels(rng, y0, cut, y1, x1, depth + 1, out)


def _valid_footprint(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Irregular quadrilateral footprint inset 4-6 % from each corner. Returns (H, W) bool."""
    inset = rng.uniform(0.005, 0.06, (4, 2)) * np.array([height, width])
    corners = np.array([[inset[0, 0], inset[0, 1]], [inset[1, 0], width - 1 - inset[1, 1]],
                        [height - 1 - inset[2, 0], width - 1 - inset[2, 1]], [height - 1 - inset[3, 0], inset[3, 1]]])
    yy, xx = np.ogrid[0:height, 0:width]
    valid = np.ones((height, width), bool)
    for k in range(4):  # inside = right of every clockwise edge (y down, x right)
        (ay, ax), (by, bx) = corners[k], corners[(k + 1) % 4]
        valid &= (bx - ax) * (yy - ay) - (by - ay) * (xx - ax) >= 0
    return valid


def render_naip(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a NAIP-like tile. Returns image (4, H, W) uint8 (R, G, B, NIR; 0 = nodata) and
    land-cover labels (H, W) uint8 (indices into LANDCOVER_NAMES, 255 = nodata)."""
    # the parcel pattern lives on a canvas rotated by a small angle about the tile centre
    angle = rng.uniform(-0.25, 0.25)
    side = int(np.ceil(portable.hypot(height, width))) + 2
    parcels: list[tuple[int, int, int, int, int]] = []
    _split_parcels(rng, 0, 0, side, side, 0, parcels)
    n_parcels = len(parcels)
    pid_canvas = np.zeros((side, side), np.int32)
    for k, (y0, x0, y1, x1, _) in enumerate(parcels):
        pid_canvas[y0:y1, x0:x1] = k
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height / 2.0, width / 2.0
    v = (yy - cy) * portable.cos(angle) - (xx - cx) * portable.sin(angle) + side / 2.0  # canvas row
    u = (yy - cy) * portable.sin(angle) + (xx - cx) * portable.cos(angle) + side / 2.0  # canvas column
    vi = np.clip(v.astype(np.int32), 0, side - 1)
    ui = np.clip(u.astype(np.int32), 0, side - 1)
    pid = pid_canvas[vi, ui]  # (H, W)

    # land use per parcel, spatially coherent through a coarse "wildness" field
    wild = smooth_noise(rng, side // 64 + 1, side // 64 + 1, 4.0)
    centre = np.array([[(p[0] + p[2]) // 128, (p[1] + p[3]) // 128] for p in parcels])
    p_wild = wild[centre[:, 0], centre[:, 1]] + rng.normal(0, 0.6, n_parcels)
    use = np.where(p_wild > 0.5, FOREST, FIELD)
    use[rng.random(n_parcels) < 0.22] = DEVELOPED  # demo classes near balance
    labels = use[pid].astype(np.uint8)

    # roads (8-12 m wide) along the top and left edges of about half the parcels
    road_canvas = np.zeros((side, side), bool)
    for y0, x0, y1, x1, _ in parcels:
        if rng.random() < 0.5:
            half = int(rng.integers(4, 7))
            road_canvas[max(0, y0 - half):y0 + half, x0:x1] = True
            road_canvas[y0:y1, max(0, x0 - half):x0 + half] = True
    road = road_canvas[vi, ui]

    # buildings in developed parcels, aligned with the parcel grid
    building_canvas = np.zeros((side, side), np.int8)  # roof type + 1, 0 = none
    for k in np.flatnonzero(use == DEVELOPED):
        y0, x0, y1, x1, _ = parcels[k]
        for _ in range(int((y1 - y0) * (x1 - x0) / 1500)):
            bh, bw = rng.integers(8, 28, 2)
            by, bx = rng.integers(y0 + 6, max(y0 + 7, y1 - bh - 6)), rng.integers(x0 + 6, max(x0 + 7, x1 - bw - 6))
            building_canvas[by:by + bh, bx:bx + bw] = rng.integers(1, len(_ROOFS) + 1)
    roof = building_canvas[vi, ui]

    # water: a meandering river across the tile plus ponds where a smooth field is high
    t = yy if rng.random() < 0.5 else xx
    across = xx if t is yy else yy
    extent = width if t is yy else height
    n_along = max(height, width)
    meander = extent * rng.uniform(0.25, 0.75) + 0.1 * extent * fractal_noise(rng, 1, n_along, 500.0)[0]
    river_half = np.maximum(7.0, 13.0 + 5.0 * fractal_noise(rng, 1, n_along, 200.0)[0])
    idx = t.astype(np.int32)
    water = np.abs(across - meander[idx]) < river_half[idx]
    qh, qw = -(-height // 4), -(-width // 4)  # ponds, drawn at 1/4 resolution
    ponds = resize(fractal_noise(rng, qh, qw, 45.0, octaves=4), 4 * qh, 4 * qw)[:height, :width]
    water |= ponds > 1.2  # ponds common enough that water is not a rare class
    labels[water] = WATER
    labels[roof > 0] = DEVELOPED
    labels[road] = DEVELOPED  # bridges cross the river

    # reflectance per class, with texture
    image = np.empty((4, height, width), np.float32)
    crop = rng.integers(0, len(_CROPS), n_parcels)[pid]  # (H, W)
    row_period = rng.uniform(3.0, 6.0, n_parcels)[pid]
    row_along_u = (rng.random(n_parcels) < 0.5)[pid]
    rows = portable.sin(2 * np.pi * np.where(row_along_u, u, v) / row_period)  # crop rows
    crowns = smooth_noise(rng, height, width, 3.0) + 0.6 * smooth_noise(rng, height, width, 9.0)  # tree crowns
    patchy = smooth_noise(rng, height, width, 40.0)
    for band in range(4):
        field_value = _CROPS[crop, band] * (1.0 + 0.06 * rows + 0.05 * patchy)
        forest_value = _FOREST[band] * (1.0 + 0.22 * crowns)
        lawn_value = _LAWN[band] * (1.0 + 0.08 * patchy)
        water_value = _WATER[band] * (1.0 + 0.05 * patchy)
        value = np.where(labels == FOREST, forest_value, field_value)
        value = np.where(use[pid] == DEVELOPED, lawn_value, value)
        value = np.where(water, water_value, value)
        value = np.where(roof > 0, _ROOFS[np.maximum(roof - 1, 0), band], value)
        value = np.where(road, _ROAD[band], value)
        image[band] = value
    image += rng.normal(0.0, 2.0, image.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(image), 1, 255).astype(np.uint8)  # 0 is reserved for nodata

    valid = _valid_footprint(rng, height, width)
    image[:, ~valid] = NODATA_VALUE
    labels[~valid] = NODATA_LABEL
    return image, labels
