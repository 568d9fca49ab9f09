"""Settings of the brush, each default written once (torch-free, so the commands read them when they parse).

Two groups, each travelling as one object: :class:`PaintSettings` — how a map is painted (``paint``, the
``brush`` and ``brush-eval`` commands) — and :class:`EvalProtocol` — how a painted map is measured
(``evaluate_brush``, ``brush-eval``). Sampling defaults are the sampler's own (steps: ``SamplingSettings``;
chunk size: ``infbrush sample``'s); the judge's feature size is the control judge's (``infbrush.evaluate.control``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from infbrush.diffusion.settings import SamplingMemory, SamplingSettings
from infbrush.evaluate.control import DEFAULT_FEATURE_SIZE
from infbrush.sample.run import DEFAULT_CHUNK_POINTS


@dataclass(frozen=True)
class PaintSettings:
    """How a painted map is sampled: the same for ours, the baseline and the single-condition samples (the
    sampler, spacing and x̂_0 clipping are ``SamplingSettings``' defaults)."""

    steps: int = SamplingSettings.steps                 # DDIM steps
    guidance_scale: float | None = None                 # classifier-free guidance; None: the legend's, else 1
    guidance_interval: tuple[int, int] | None = None    # guide only T_LO <= t <= T_HI; None: every step
    chunk_points: int | None = DEFAULT_CHUNK_POINTS     # points per denoiser chunk; 0 / None: whole image at once
    method: str = "model"                               # "model" (regions inside the denoiser) or "baseline"
    method_options: Mapping[str, Any] | None = None     # keywords of the method's wrapper (e.g. ``local``)

    def guidance_for(self, legend) -> float:
        """The guidance scale to paint with: this one if given, else the legend's, else 1."""
        if self.guidance_scale is not None:
            return self.guidance_scale
        return legend.guidance_scale or 1.0

    def sampling(self, legend) -> SamplingSettings:
        """The sampler's settings for painting with ``legend``: these steps and interval, ``guidance_for`` it."""
        return SamplingSettings(steps=self.steps, guidance_scale=self.guidance_for(legend),
                                guidance_interval=self.guidance_interval)

    def memory(self, state_dir: str | os.PathLike | None = None) -> SamplingMemory:
        """The sampler's memory bounds: these chunks (0 / None: the whole image at once), x_t under ``state_dir``."""
        return SamplingMemory(chunk_points=self.chunk_points or None, state_dir=state_dir)


@dataclass(frozen=True)
class EvalProtocol:
    """How ``evaluate_brush`` measures a painted map: seeds, the judge's crops and the seam band."""

    seeds: tuple[int, ...] = (0, 1, 2, 3)  # images per method: ours, the per-region baseline, single-condition
    crop_fraction: float = 0.25            # judge crop side / image side (the judge is fit on real crops of it)
    margin_fraction: float = 0.05          # crops stay this fraction of the side away from other regions
    crops_per_region: int = 4              # per image, spread out inside each region
    band_px: float | None = None           # seam band on each side of a boundary; None: half the blend + 2 px
    judge_seed: int = 0                    # seed of the crop judge (random forest) and its real crops
    feature_size: int = DEFAULT_FEATURE_SIZE  # side the judge's crops are resized to for their features
