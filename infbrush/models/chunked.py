"""Chunked evaluation of the denoiser: bounded memory for any number of points, same result as one pass.

For each global stage k: run segments 0..k on every chunk, accumulate the chunk partials, finalise; then run
all segments per chunk. Per-point work is recomputed (≈ n_stages/2 × one pass) to keep memory O(chunk).
"""
from __future__ import annotations

import torch


def chunked_forward(model, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                    image_size: tuple[int, int] | None = None, *, chunk_points: int | None,
                    cond_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ε̂ (B, N, C) of ``model`` computed over chunks of ``chunk_points`` points per image (None: one pass)."""
    n = x.shape[1]
    if chunk_points is None or chunk_points >= n:
        return model(x, coords, t, cond, image_size, cond_mask=cond_mask)
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")
    model.check_inputs(x, coords, t)
    ctx = model.begin(t, cond, cond_mask, n)
    spans = [(s, min(s + chunk_points, n)) for s in range(0, n, chunk_points)]
    summ: list = []
    for k in range(model.n_stages):
        acc = None
        for s, e in spans:
            h = model.run_to(k, x[:, s:e], coords[:, s:e], ctx, summ)
            acc = model.stage_merge(k, acc, model.stage_partial(k, h, coords[:, s:e], ctx, index_offset=s))
        summ.append(model.stage_finalize(k, acc, ctx))
    return torch.cat([model.run_to(model.n_stages, x[:, s:e], coords[:, s:e], ctx, summ) for s, e in spans], dim=1)


class ChunkedDenoiser:
    """Callable wrapper with the denoiser's signature that evaluates it in chunks of points."""

    def __init__(self, model, chunk_points: int | None):
        self.model, self.chunk_points = model, chunk_points

    def __call__(self, x, coords, t, cond=None, image_size=None, cond_mask=None) -> torch.Tensor:
        return chunked_forward(self.model, x, coords, t, cond, image_size, chunk_points=self.chunk_points,
                               cond_mask=cond_mask)
