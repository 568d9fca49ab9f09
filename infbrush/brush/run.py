"""Painting: map + legend + trained model → one image, through ``ddim_sample`` (chunked, bounded memory)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import torch

from infbrush.brush.legend import Legend
from infbrush.brush.maps import ConditionMap, RegionWeights, parse_blend, region_index
from infbrush.brush.model import METHODS, RegionCondition
from infbrush.brush.settings import PaintSettings
from infbrush.errors import InfbrushError

if TYPE_CHECKING:
    from infbrush.diffusion.process import Diffusion


@dataclass
class Painting:
    """A resolved map: the region weights and the per-region conditions."""

    legend: Legend
    weights: RegionWeights
    region: RegionCondition
    blend: float  # fraction of the side
    present: list[int]  # regions that occur in the map
    rgb: bool = True  # the map names regions by colour (else by integer value)

    def key_names(self) -> list[str]:
        return self.legend.key_names(self.rgb)


def prepare(cmap: ConditionMap, legend: Legend, size: int, cond_dim: int, blend=None) -> Painting:
    """Check the map against the legend and build the region weights (blend: the legend's unless given)."""
    index = region_index(cmap, legend.keys)
    blend_frac = parse_blend(blend if blend is not None else legend.blend, size)
    weights = RegionWeights(index, len(legend.regions), blend_frac)
    present = sorted(set(int(v) for v in torch.unique(torch.from_numpy(index)).tolist()))
    region = RegionCondition.from_specs(legend.regions, weights, cond_dim)
    return Painting(legend, weights, region, blend_frac, present, cmap.rgb)


def paint(model, painting: Painting, size: tuple[int, int], *, seeds: Sequence[int], diffusion: Diffusion,
          settings: PaintSettings = PaintSettings(), device=None, state_dir: str | os.PathLike | None = None,
          progress: bool = False) -> torch.Tensor:
    """Sample len(seeds) images of the painted map with the process ``diffusion`` → (B, C, H, W) in [-1, 1].

    ``settings.method``: "model" (region conditions inside the denoiser) or "baseline" (MultiDiffusion-style,
    one denoiser pass per region, predictions blended); ``settings.method_options`` go to its wrapper (e.g.
    ``local``); ``settings.guidance_scale`` None takes the legend's. A map holding a single region is a plain
    conditional sample (the model without any wrapper), as ``infbrush sample`` would make it.
    """
    from infbrush.diffusion import ddim_sample

    if settings.method not in METHODS:
        raise InfbrushError(f"brush method {settings.method!r} is not one of {sorted(METHODS)}")
    region = painting.region
    batch = len(seeds)
    sampling = settings.sampling(painting.legend)
    guidance_scale = sampling.guidance_scale
    common = dict(seeds=list(seeds), diffusion=diffusion, memory=settings.memory(state_dir), device=device,
                  progress=progress)
    if len(painting.present) == 1:  # one region: the plain conditional (or unconditional) sample
        r = painting.present[0]
        spec = painting.legend.regions[r]
        scale = spec.guidance_scale if spec.guidance_scale is not None else guidance_scale
        cond = None if spec.cond is None else torch.as_tensor(spec.cond).float().unsqueeze(0).repeat(batch, 1)
        return ddim_sample(model, cond, size, settings=replace(sampling, guidance_scale=scale), **common)
    wrapper = METHODS[settings.method](model, region, guidance_scale, **(settings.method_options or {}))
    any_cond = bool(region.has_cond.any())
    dummy = torch.zeros(batch, 1) if any_cond else None  # each region's condition lives in the wrapper
    scale = guidance_scale
    if region.guidance is not None and scale == 1.0:
        scale = max(g if g is not None else 1.0 for g in region.guidance)  # guided pass needed for per-region scales
        wrapper.guidance_scale = scale
    return ddim_sample(wrapper, dummy, size, settings=replace(sampling, guidance_scale=scale if any_cond else 1.0),
                       **common)
