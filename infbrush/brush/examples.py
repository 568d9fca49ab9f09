"""Example condition maps of the demo datasets (committed under workflow/brush/; ``python -m
infbrush.brush.examples`` redraws them): land-cover quadrants for demo_naip, drawn tissue regions with wavy
boundaries for demo_brca. The maps are small PNGs at their own resolution (read as functions of [0, 1]²)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAIP_COLOURS = {"water": "#2b83ba", "forest": "#1a9641", "field": "#fdae61", "developed": "#d7191c"}
BRCA_COLOURS = {"normal": "#f1b6da", "benign": "#b8e186", "in_situ": "#4dac26", "invasive": "#d01c8b"}


def _hex(c: str) -> np.ndarray:
    return np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)


def naip_quadrants(side: int = 64) -> np.ndarray:
    """(side, side, 3): water top-left, forest top-right, field bottom-left, developed bottom-right."""
    ys, xs = np.mgrid[0:side, 0:side]
    right, bottom = xs >= side // 2, ys >= side // 2
    out = np.empty((side, side, 3), np.uint8)
    for name, mask in (("water", ~right & ~bottom), ("forest", right & ~bottom), ("field", ~right & bottom),
                       ("developed", right & bottom)):
        out[mask] = _hex(NAIP_COLOURS[name])
    return out


def brca_tissue(side: int = 200) -> np.ndarray:
    """(side, side, 3): four tissue regions separated by wavy, hand-drawn-like boundaries."""
    ys, xs = (np.mgrid[0:side, 0:side] + 0.5) / side
    vertical = xs > 0.5 + 0.035 * np.sin(2 * np.pi * 2 * ys + 0.7)
    horizontal = ys > 0.5 + 0.035 * np.sin(2 * np.pi * 1.5 * xs + 1.9)
    out = np.empty((side, side, 3), np.uint8)
    for name, mask in (("in_situ", ~vertical & ~horizontal), ("invasive", vertical & ~horizontal),
                       ("normal", ~vertical & horizontal), ("benign", vertical & horizontal)):
        out[mask] = _hex(BRCA_COLOURS[name])
    return out


LEGENDS = {
    "demo_naip": ("# demo_naip brush example: land-cover quadrants (label-conditioned model, results/demo_naip/label)\n"
                  "blend: 0.08                 # soft edges: 8 % of the side\n"
                  "guidance_scale: 3.0\n"
                  "regions:\n" + "".join(f'  "{c}": {{label: {n}}}\n' for n, c in NAIP_COLOURS.items())),
    "demo_brca": ("# demo_brca brush example: drawn tissue regions (label-conditioned model, results/demo_brca/label)\n"
                  "blend: 0.08\n"
                  "guidance_scale: 3.0\n"
                  "regions:\n" + "".join(f'  "{c}": {{label: {n}}}\n' for n, c in BRCA_COLOURS.items())),
}


def write_examples(folder: str | Path = "workflow/brush") -> None:
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(naip_quadrants()).save(folder / "demo_naip_map.png")
    Image.fromarray(brca_tissue()).save(folder / "demo_brca_map.png")
    for ds, text in LEGENDS.items():
        (folder / f"{ds}_legend.yaml").write_text(text)


if __name__ == "__main__":
    write_examples()
