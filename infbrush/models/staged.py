"""The staged denoiser's interface, written down: what a sampler, the chunked driver, the rank split and the brush
rely on.

The denoiser (paper Fig. 2) is a chain of *segments*, pointwise given what came before, separated by *stages*,
the operations that are global over the points of an image (kernel integrals, the self-attention summary, the
kNN grid and its UNet). A stage is three steps, so that it can be computed over chunks of points and over
processes with the same result:

    part = stage_partial(k, h, coords, ctx)   one chunk's contribution (sums, running top-k)
    acc  = stage_merge(k, acc, part)          fold it into the accumulator, chunk after chunk
    summ.append(stage_finalize(k, acc, ctx))  what segment k + 1 reads (fields, summaries, the grid)

``begin`` computes what does not depend on the points (time and condition embeddings, token summaries) into a
context. ``run_all`` is the whole chain on one chunk holding every point; ``models.chunked.streamed_forward``
runs it over many chunks in bounded memory, and ``models.ranks`` over several processes.

Where the condition enters is a second interface, ``ConditionHooks``: the context carries the object whose
hooks the segments and stages call. The plain denoiser is its own hooks (one condition per image); the brush's
``RegionDenoiser`` supplies hooks that give each region its own condition, and reuses every segment and stage
of the model unchanged.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch


class ConditionHooks(Protocol):
    """The places where the condition reaches the points (every shape per chunk: B images, n points, d channels)."""

    def cano_attend(self, h: torch.Tensor, coords: torch.Tensor, ctx: Any, coord_summary: Any) -> torch.Tensor:
        """CANO: cross-attention of the points to the time, condition and coordinate sources, (B, n, d) → (B, n, d)."""

    def attention_summary(self, h: torch.Tensor, coords: torch.Tensor, ctx: Any) -> Any:
        """One chunk's partial of the linear self-attention summary (Σ k̃ vᵀ, Σ k̃)."""

    def attention_apply(self, h: torch.Tensor, coords: torch.Tensor, ctx: Any, summary: Any) -> torch.Tensor:
        """The self-attention read from the finished summary, residual included: (B, n, d) → (B, n, d)."""

    def grid_unet(self, grid: torch.Tensor, ctx: Any) -> torch.Tensor:
        """The UNO on the kNN grid (B, Cg, G, G), cross-attending to the condition tokens; its residual output."""

    def finish_output(self, out: torch.Tensor, coords: torch.Tensor, ctx: Any) -> torch.Tensor:
        """The prediction (B, n, C) as the sampler receives it (per-point guidance of the brush; else unchanged)."""


class StagedDenoiser(Protocol):
    """What ``streamed_forward``, ``RankSplitDenoiser`` and the samplers call on a denoiser."""

    n_stages: int
    in_channels: int
    prediction: str  # "eps" or "v": what the output of the last segment means

    def begin(self, t: torch.Tensor, cond: torch.Tensor | None, cond_mask: torch.Tensor | None, n_total: int) -> Any:
        """The per-call context: t (B,), cond (B, D) | None, cond_mask (B,) bool | None, points per image."""

    def segment(self, k: int, h: torch.Tensor | None, x: torch.Tensor, coords: torch.Tensor, ctx: Any,
                summ: list) -> torch.Tensor:
        """Segment k (0 … n_stages) on one chunk, given the finished stages ``summ[:k]``."""

    def stage_partial(self, k: int, h: torch.Tensor, coords: torch.Tensor, ctx: Any, index_offset: int = 0) -> Any:
        """Stage k's contribution of one chunk (h: output of segment k; index_offset: the chunk's first point)."""

    def stage_merge(self, k: int, acc: Any, part: Any) -> Any:
        """Fold a chunk's partial into the accumulator (None at the first chunk)."""

    def stage_finalize(self, k: int, acc: Any, ctx: Any) -> Any:
        """The accumulator over every chunk → what segment k + 1 reads."""

    def check_inputs(self, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor) -> None:
        """Shape checks: x (B, N, C), coords (B, N, 2), t (B,)."""


def run_segments(model: StagedDenoiser, k: int, x: torch.Tensor, coords: torch.Tensor, ctx: Any,
                 summ: list) -> torch.Tensor:
    """Segments 0 … k on one chunk, recomputing the prefix (the chunked driver's pass k)."""
    h = None
    for j in range(k + 1):
        h = model.segment(j, h, x, coords, ctx, summ)
    return h


def run_all(model: StagedDenoiser, x: torch.Tensor, coords: torch.Tensor, ctx: Any) -> torch.Tensor:
    """Every segment and stage on one chunk that holds all the points of its images → the prediction (B, N, C)."""
    summ: list = []
    h = model.segment(0, None, x, coords, ctx, summ)
    for k in range(model.n_stages):
        summ.append(model.stage_finalize(k, model.stage_partial(k, h, coords, ctx), ctx))
        h = model.segment(k + 1, h, x, coords, ctx, summ)
    return h
