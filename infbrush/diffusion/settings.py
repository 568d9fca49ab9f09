"""How an image function is sampled, as two objects that travel together, each default written once (torch-free,
so the commands read them when they parse).

:class:`SamplingSettings` is *what* a run computes — steps, sampler, timestep spacing, guidance, x̂_0 clipping —
and :class:`SamplingMemory` is *how it fits*: the chunking of the denoiser and where x_t lives, which change the
images by float rounding at most. The process itself (schedule, T, mollifier) is :class:`~infbrush.diffusion.
process.Diffusion`; what the network outputs (ε or v) and its channels are the model's own attributes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_CACHE_BYTES = 256 << 20  # activations kept between the passes of a chunked forward (bounded, not per pixel)


@dataclass(frozen=True)
class SamplingSettings:
    """A sampling run of the probability-flow ODE (``ddim_sample``): the same for one image or a batch.

    ``sampler`` names one of ``SAMPLERS`` (``samplers.py``): "ddim" (the paper's), "dpmpp_2m", "unipc"; ``spacing``
    one of ``SPACINGS`` (``sampling_timesteps``): "linear" in t (the paper's) or "lambda" (even in log-SNR).
    Classifier-free guidance of scale ``guidance_scale`` (1: none) at the steps with t_lo ≤ t ≤ t_hi of
    ``guidance_interval`` (None: every step; ``guidance.py``). ``clip_x0`` clips x̂_0 to [-1, 1] at each step.
    """

    steps: int = 50                                   # network evaluations per image (two at guided steps); paper: 50
    sampler: str = "ddim"
    spacing: str = "linear"
    guidance_scale: float = 1.0
    guidance_interval: tuple[int, int] | None = None
    clip_x0: bool = True


@dataclass(frozen=True)
class SamplingMemory:
    """What bounds a sampling run's memory: the denoiser runs over ``chunk_points`` points at a time (None: the
    whole image in one pass) keeping ``cache_bytes`` of activations between its passes, and with ``state_dir`` x_t
    (and a multistep sampler's history) lives in scratch files there instead of RAM (CPU only)."""

    chunk_points: int | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    state_dir: str | os.PathLike | None = None
