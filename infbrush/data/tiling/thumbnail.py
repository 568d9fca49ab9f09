"""Slide thumbnails: the low-resolution image the tissue mask is computed on, and the ``<slide_id>_thumb.png``
that shows a person what was tiled (tissue tinted green, the patch grid outlined in blue)."""
from __future__ import annotations

import numpy as np


def thumbnail_size(level0_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(w, h) of a thumbnail whose longest side is ``max_side`` (never larger than the slide), as PIL's."""
    width, height = level0_size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_thumbnail(slide, max_side: int) -> np.ndarray:
    """(h, w, 3) uint8 thumbnail of an open OpenSlide slide, longest side ``max_side``, on white.

    Like ``OpenSlide.get_thumbnail``, reads the whole pyramid level best for the downsample once, but
    shrinks it with an integer box ``reduce`` (exact area average) plus a small Lanczos step instead of
    one large Lanczos resize, and composites on white only when the level has transparent pixels.
    """
    from PIL import Image

    size0 = tuple(int(v) for v in slide.dimensions)
    size = thumbnail_size(size0, max_side)
    level = slide.get_best_level_for_downsample(max(a / b for a, b in zip(size0, size)))
    region = slide.read_region((0, 0), level, slide.level_dimensions[level])  # RGBA, not premultiplied
    if region.getchannel("A").getextrema()[0] == 255:
        image = region.convert("RGB")
    else:
        image = Image.new("RGB", region.size, (255, 255, 255))
        image.paste(region, mask=region.getchannel("A"))
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.0)
    return np.asarray(image)


def grid_outline(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """(h, w) bool outlines of boxes (N, 4: x0, y0, x1, y1 inclusive pixel bounds), without a Python loop.

    Each edge is a run along one row or column; runs are marked with ±1 in a difference image and
    cumulated, so the cost is O(h·w + N) whatever the number of boxes.
    """
    h, w = shape
    x0, y0, x1, y1 = (np.clip(boxes[:, i], 0, (w - 1, h - 1)[i % 2]) for i in range(4))
    rows = np.zeros((h, w + 1), np.int32)  # horizontal edges: rows y0 and y1, columns x0..x1
    for y in (y0, y1):
        np.add.at(rows, (y, x0), 1)
        np.add.at(rows, (y, x1 + 1), -1)
    cols = np.zeros((h + 1, w), np.int32)  # vertical edges: columns x0 and x1, rows y0..y1
    for x in (x0, x1):
        np.add.at(cols, (y0, x), 1)
        np.add.at(cols, (y1 + 1, x), -1)
    return (np.cumsum(rows, axis=1)[:, :w] > 0) | (np.cumsum(cols, axis=0)[:h] > 0)


def draw_thumbnail(thumb: np.ndarray, mask: np.ndarray, coords: np.ndarray, level0_size: tuple[int, int],
                   patch_level0: int):
    """PIL image of the slide thumbnail with the tissue mask tinted green and the patch grid in blue."""
    from PIL import Image

    tinted = ((thumb.astype(np.uint16) * 7 + np.array([0, 600, 0], np.uint16)) // 10).astype(np.uint8)
    image = np.where(mask[..., None], tinted, thumb)  # (h, w, 3) uint8: 0.7 x + 0.3 (0, 200, 0) on tissue
    sx = thumb.shape[1] / level0_size[0]
    sy = thumb.shape[0] / level0_size[1]
    if len(coords):
        boxes = np.stack([coords[:, 0] * sx, coords[:, 1] * sy, (coords[:, 0] + patch_level0) * sx - 1,
                          (coords[:, 1] + patch_level0) * sy - 1], axis=1)
        boxes = np.floor(boxes).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])  # patches smaller than a thumbnail pixel
        image[grid_outline(thumb.shape[:2], boxes)] = (0, 0, 255)
    return Image.fromarray(image)
