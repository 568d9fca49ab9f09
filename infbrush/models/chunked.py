"""Chunked evaluation of the denoiser: bounded memory for any number of points, same result as one pass.

For each global stage k: run segments 0..k on every chunk, accumulate the chunk partials, finalise; then run
all segments per chunk and hand each chunk's ε̂ to the caller. The points are *streamed*: the caller supplies
a chunk's (x, coords) on demand (``read``) and receives its ε̂ (``write``), so neither the inputs nor the
output of all points need to exist at once (the DDIM sampler computes coords from the lattice index and
updates x_t in place).

Recomputation: without a cache every pass recomputes the segment prefix (≈ n_stages/2 × one pass). With
``cache_bytes`` > 0 the last activation of each chunk is kept between passes while the total stays within
that budget (chunks in order, the rest recomputed), so a pass continues from the previous one instead of
starting again from the inputs; memory stays bounded by the budget, and the result is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from infbrush.models.staged import run_all, run_segments
from infbrush.runtime.chunks import ReadChunk, WriteChunk, check_chunk_points, chunk_spans


class StageReduce(Protocol):
    """How one stage's chunk partials become its accumulator (the hook that multi-process evaluation overrides).

    ``add`` is called once per chunk of this process, in its order; ``close`` after the last one returns the
    accumulator over *every* chunk of the image. A single process (``LocalReduce``) folds its partials with the
    model's ``stage_merge`` in chunk order; ``RankSplitDenoiser`` folds every process's partials in that same
    order, so the finalised stage is the same bits.
    """

    def add(self, k: int, acc: Any, part: Any) -> Any: ...

    def close(self, k: int, acc: Any) -> Any: ...


class LocalReduce:
    """One process: acc ← stage_merge(acc, part), chunk after chunk."""

    def __init__(self, model):
        self.model = model

    def add(self, k: int, acc: Any, part: Any) -> Any:
        return self.model.stage_merge(k, acc, part)

    def close(self, k: int, acc: Any) -> Any:
        return acc


@dataclass
class ChunkShare:
    """The chunks one of several processes evaluates (``spans``) and how every process's partials are folded
    (``reduce``), so that each finalises every stage as a single process would (``RankSplitDenoiser``)."""

    spans: list[tuple[int, int]]
    reduce: StageReduce


def streamed_forward(model, n_points: int, read: ReadChunk, write: WriteChunk, t: torch.Tensor,
                     cond: torch.Tensor | None, *, chunk_points: int | None, cond_mask: torch.Tensor | None = None,
                     cache_bytes: int = 0, share: ChunkShare | None = None) -> None:
    """ε̂ of a staged denoiser (``StagedDenoiser``, models/staged.py) over ``n_points`` points per image.

    ``read(s, e)`` gives the chunk's x (B, e-s, C) and coords (B, e-s, 2); ``write(s, e, eps)`` receives its
    ε̂ (B, e-s, C) once every global stage is done (chunks in increasing order, each exactly once, and after
    the last ``read`` of that chunk, so the caller may overwrite x in place). Peak memory: one chunk's
    activations + the stage summaries + ``cache_bytes``.

    Several processes evaluating one image (``RankSplitDenoiser``): ``share`` names the chunks this process
    evaluates (default: all of them) and the ``StageReduce`` that folds the partials of every process's chunks in
    chunk order, so each process finalises every stage exactly as a single process would.
    """
    spans, reduce = (chunk_spans(n_points, chunk_points), None) if share is None else (share.spans, share.reduce)
    ctx = model.begin(t, cond, cond_mask, n_points)
    summ: list = []
    cache: dict[int, torch.Tensor] = {}  # chunk number → output of the last segment run on it
    used = 0
    if len(spans) == 1 and reduce is None:  # one pass: no recomputation and no cache needed
        s, e = spans[0]
        x, coords = read(s, e)
        model.check_inputs(x, coords, t)
        write(s, e, run_all(model, x, coords, ctx))
        return
    reduce = LocalReduce(model) if reduce is None else reduce
    for k in range(model.n_stages + 1):
        acc = None
        for i, (s, e) in enumerate(spans):
            x, coords = read(s, e)
            if k == 0 and i == 0:
                model.check_inputs(x, coords, t)
            if i in cache:  # continue from the previous pass (segments 0..k-1 already done)
                h = model.segment(k, cache[i], x, coords, ctx, summ)
            else:
                h = run_segments(model, k, x, coords, ctx, summ)
            if k == model.n_stages:
                cache.pop(i, None)
                write(s, e, h)
                continue
            acc = reduce.add(k, acc, model.stage_partial(k, h, coords, ctx, index_offset=s))
            size = h.numel() * h.element_size()
            if i in cache:
                cache[i] = h  # same shape and dtype as the entry it replaces
            elif used + size <= cache_bytes:
                cache[i], used = h, used + size
            del h, x, coords
        if k < model.n_stages:
            acc = reduce.close(k, acc)
            summ.append(model.stage_finalize(k, acc, ctx))
            del acc


class StagedStreaming:
    """Mixin of staged denoisers (``StagedDenoiser``, models/staged.py): ``stream`` is what the
    sampler calls to evaluate ε̂ of ``n_points`` points per image, read and written chunk by chunk."""

    def stream(self, n_points: int, read: ReadChunk, write: WriteChunk, t: torch.Tensor, cond: torch.Tensor | None,
               *, chunk_points: int | None = None, cond_mask: torch.Tensor | None = None, cache_bytes: int = 0) -> None:
        streamed_forward(self, n_points, read, write, t, cond, chunk_points=chunk_points, cond_mask=cond_mask,
                         cache_bytes=cache_bytes)


def chunked_forward(model, x: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                    image_size: tuple[int, int] | None = None, *, chunk_points: int | None,
                    cond_mask: torch.Tensor | None = None, cache_bytes: int = 0) -> torch.Tensor:
    """ε̂ (B, N, C) of ``model`` computed over chunks of ``chunk_points`` points per image (None: one pass)."""
    n = x.shape[1]
    check_chunk_points(chunk_points)
    if chunk_points is None or chunk_points >= n:
        return model(x, coords, t, cond, image_size, cond_mask=cond_mask)
    model.check_inputs(x, coords, t)
    parts: list[torch.Tensor] = []
    streamed_forward(model, n, lambda s, e: (x[:, s:e], coords[:, s:e]), lambda s, e, eps: parts.append(eps), t,
                     cond, chunk_points=chunk_points, cond_mask=cond_mask, cache_bytes=cache_bytes)
    return torch.cat(parts, dim=1)


class ChunkedDenoiser:
    """Callable wrapper with the denoiser's signature that evaluates it in chunks of points."""

    def __init__(self, model, chunk_points: int | None, cache_bytes: int = 0):
        self.model, self.chunk_points, self.cache_bytes = model, chunk_points, cache_bytes

    def __call__(self, x, coords, t, cond=None, image_size=None, cond_mask=None) -> torch.Tensor:
        return chunked_forward(self.model, x, coords, t, cond, image_size, chunk_points=self.chunk_points,
                               cond_mask=cond_mask, cache_bytes=self.cache_bytes)
