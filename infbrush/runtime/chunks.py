"""Chunks of points: how a chunked forward splits an image's points, shared by the sampler (``diffusion/``,
which checks its ``chunk_points`` before any work) and the networks' chunked evaluation (``models/``), neither
of which imports the other."""
from __future__ import annotations

from collections.abc import Callable

import torch

ReadChunk = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # (start, stop) → x (B, n, C), coords (B, n, 2)
WriteChunk = Callable[[int, int, torch.Tensor], None]  # (start, stop, ε̂ (B, n, C))


def check_chunk_points(chunk_points: int | None) -> None:
    """``chunk_points`` is None (all points in one chunk) or >= 1; ValueError naming it otherwise."""
    if chunk_points is not None and chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")


def chunk_spans(n_points: int, chunk_points: int | None) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(n_points) in chunks of ``chunk_points`` (None: one chunk)."""
    check_chunk_points(chunk_points)
    step = n_points if chunk_points is None else min(chunk_points, n_points)
    return [(s, min(s + step, n_points)) for s in range(0, n_points, max(step, 1))]
