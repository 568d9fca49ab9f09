"""Classifier-free guidance as a wrapper around the denoiser (Ho & Salimans 2022), limited to an interval of
noise levels (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample and
distribution quality").

ε̂ = ε̂_∅ + s (ε̂_c - ε̂_∅) at steps whose timestep t lies in [t_lo, t_hi]; elsewhere the conditional pass alone
(one network call instead of two). The wrapper has the denoiser's own interface (``stream`` for the chunked,
streamed evaluation; a plain call otherwise), so samplers never see guidance: they ask for ε̂ at t and get it.
Guidance is affine, so guiding a v-prediction model's v̂ equals guiding its ε̂.
"""
from __future__ import annotations

import torch

from infbrush.runtime.chunks import ReadChunk, WriteChunk


def combine_guided(out: torch.Tensor, scale: float) -> torch.Tensor:
    """(2B, n, C) = [conditional; unconditional] → ε̂_∅ + s (ε̂_c - ε̂_∅), (B, n, C)."""
    cond, uncond = out.chunk(2)
    return uncond + scale * (cond - uncond)


def check_guidance_interval(interval: tuple[int, int] | None, timesteps: int) -> tuple[int, int]:
    """The interval [t_lo, t_hi] of guided timesteps (None: every step) → validated (lo, hi); ValueError naming
    the value when it is reversed or outside [0, T)."""
    if interval is None:
        return 0, timesteps - 1
    lo, hi = (int(v) for v in interval)
    if lo > hi:
        raise ValueError(f"guidance interval {lo} {hi} is reversed: give the lower timestep first")
    if lo < 0 or hi > timesteps - 1:
        raise ValueError(f"guidance interval {lo} {hi} is outside the schedule's timesteps [0, {timesteps - 1}]")
    return lo, hi


class GuidedDenoiser:
    """``model`` with classifier-free guidance of scale ``scale`` at timesteps in ``interval`` ([lo, hi]).

    Same interface as the model it wraps: ``__call__(x, coords, t, cond, size)``, and ``stream(n_points, read,
    write, t, cond, …)`` (the chunked path) when the model streams. ``t`` is one timestep for the
    whole batch (as a sampler passes it). ``gather_state`` (several processes) passes through.
    """

    def __init__(self, model, scale: float, interval: tuple[int, int]):
        self.model, self.scale, self.interval = model, float(scale), interval
        for name in ("in_channels", "prediction", "gather_state"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        if hasattr(model, "stream"):
            self.stream = self._stream

    def guided_at(self, t: int) -> bool:
        """Whether timestep t runs the unconditional pass too."""
        return self.scale != 1.0 and self.interval[0] <= t <= self.interval[1]

    @staticmethod
    def _doubled(t: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = t.shape[0]
        mask = torch.cat([torch.ones(batch, dtype=torch.bool), torch.zeros(batch, dtype=torch.bool)]).to(t.device)
        return torch.cat([t, t]), torch.cat([cond, cond]), mask

    def _stream(self, n_points: int, read: ReadChunk, write: WriteChunk, t: torch.Tensor, cond: torch.Tensor,
                *, chunk_points: int | None = None, cond_mask: torch.Tensor | None = None, cache_bytes: int = 0) -> None:
        if not self.guided_at(int(t[0])):
            self.model.stream(n_points, read, write, t, cond, chunk_points=chunk_points, cond_mask=cond_mask,
                              cache_bytes=cache_bytes)
            return

        def read2(start: int, stop: int):
            x, coords = read(start, stop)
            return torch.cat([x, x]), torch.cat([coords, coords])

        t2, cond2, mask = self._doubled(t, cond)
        self.model.stream(n_points, read2, lambda s, e, out: write(s, e, combine_guided(out, self.scale)), t2, cond2,
                          chunk_points=chunk_points, cond_mask=mask, cache_bytes=cache_bytes)

    def __call__(self, x, coords, t, cond, image_size=None, cond_mask=None) -> torch.Tensor:
        if not self.guided_at(int(t[0])):
            return self.model(x, coords, t, cond, image_size)
        t2, cond2, mask = self._doubled(t, cond)
        out = self.model(torch.cat([x, x]), torch.cat([coords, coords]), t2, cond2, image_size, cond_mask=mask)
        return combine_guided(out, self.scale)
