"""The brush: paint conditions into regions of one image — condition maps, legends, region-aware
denoising (``RegionDenoiser``) and the MultiDiffusion-style baseline (``MultiDiffusionDenoiser``).

Names are imported on first use (PEP 562), so that ``infbrush.brush.settings`` stays torch-free for the commands'
argument parsers."""
from __future__ import annotations

import importlib

_HOME = {
    "Legend": "legend", "RegionSpec": "legend", "load_legend": "legend", "parse_legend": "legend",
    "ConditionMap": "maps", "RegionWeights": "maps", "parse_blend": "maps", "read_map": "maps", "region_index": "maps",
    "MultiDiffusionDenoiser": "model", "RegionCondition": "model", "RegionDenoiser": "model",
    "Painting": "run", "paint": "run", "prepare": "run",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'infbrush.brush' has no attribute {name!r}")
    return getattr(importlib.import_module(f"infbrush.brush.{_HOME[name]}"), name)
