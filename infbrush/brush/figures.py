"""The brush evaluation's figures: the PNG panels beside ``brush.json`` that the report shows.

Drawn from the images the measurement already judged (:class:`~infbrush.brush.evaluate.BrushSamples`), so the
figures show exactly what was scored and drawing never samples again: ours and the baseline at the first seed,
the region map in the legend's colours, every seed side by side (ours, baseline), the single-condition samples of
each region, and a real mosaic cut along the map.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from infbrush.brush.evaluate import BrushSamples, to_uint8

# figure → file name, in the order brush.json lists them
FIGURES = {"brush": "brush.png", "baseline": "baseline.png", "map": "map.png", "seeds": "seeds.png",
           "baseline_seeds": "baseline_seeds.png", "single_condition": "single_condition.png",
           "real_mosaic": "real_mosaic.png"}
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127]], np.uint8)  # integer maps' region colours


def save_png(path: Path, pixels: np.ndarray) -> None:
    """(H, W, 3) uint8 → PNG, written atomically."""
    from PIL import Image

    from infbrush.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def render_map(index: np.ndarray, painting) -> np.ndarray:
    """The hard region map at the output size in the legend's colours (integer maps: a fixed palette)."""
    colours = []
    for r, spec in enumerate(painting.legend.regions):
        if painting.rgb:
            k = spec.key
            colours.append([(k >> 16) & 255, (k >> 8) & 255, k & 255])
        else:
            colours.append(PALETTE[r % len(PALETTE)])
    return np.asarray(colours, np.uint8)[index]


def write_figures(out_dir: str | os.PathLike, painting, samples: BrushSamples) -> dict[str, str]:
    """Write the panels into ``out_dir`` → {figure: path}. The real mosaic is left out when there is none (a
    region's class is not in the store)."""
    from infbrush.sample.outputs import write_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / FIGURES["brush"], samples.ours[0], "png")
    write_image(out / FIGURES["baseline"], samples.baseline[0], "png")
    panels = {"map": render_map(samples.index, painting),
              "seeds": np.concatenate([to_uint8(im) for im in samples.ours], axis=1),
              "baseline_seeds": np.concatenate([to_uint8(im) for im in samples.baseline], axis=1),
              "single_condition": np.concatenate([samples.single[r][0] for r in painting.present], axis=1)}
    if samples.mosaics:
        panels["real_mosaic"] = samples.mosaics[0]
    for name, pixels in panels.items():
        save_png(out / FIGURES[name], pixels)
    return {k: str(out / f) for k, f in FIGURES.items() if k in panels or k in ("brush", "baseline")}
