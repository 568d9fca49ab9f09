"""Settings of the brush, each default written once (torch-free, so the commands read them when they parse).

Two groups, each travelling as one object: :class:`PaintSettings` — how a map is painted (``paint``, the
``brush`` and ``brush-eval`` commands) — and :class:`EvalProtocol` — how a painted map is measured
(``evaluate_brush``, ``brush-eval``). Sampling defaults (DDIM steps, chunk size) are the sampler's own
(``infbrush.sample.run``); the judge's feature size is the control judge's (``infbrush.evaluate.control``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from infbrush.evaluate.control import DEFAULT_FEATURE_SIZE
from infbrush.sample.run import DEFAULT_CHUNK_POINTS, DEFAULT_STEPS


@dataclass(frozen=True)
class PaintSettings:
    """How a painted map is sampled: the same for ours, the baseline and the single-condition samples."""

    steps: int = DEFAULT_STEPS                          # DDIM steps
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

    @property
    def chunk(self) -> int | None:
        """Points per chunk as the sampler takes them (None: the whole image at once)."""
        return self.chunk_points or None


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
