"""One image sampled by several processes (issue 13): the chunks of points split over the ranks of a
``torch.distributed`` group, each stage's partials combined across ranks.

Every global stage of the denoiser is a merge of per-chunk partials (sums of splats and attention summaries,
a running top-k for the kNN grid), so the chunks can live on different processes: rank r evaluates a contiguous
block of the chunks, merges its partials, and the ranks exchange their accumulators (``all_gather``) and merge
them in rank order — the order of the chunks, which keeps the kNN tie-breaking of a single process. Each rank
then finalises every stage itself, evaluates ε̂ only on its own chunks and updates only their x_t (the DDIM
update is pointwise). At the end the blocks are sent to rank 0 (``gather_state``), which holds the whole image.
The result equals the single-process image up to float summation order (≈ 1e-7 relative per stage).
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import torch
import torch.distributed as dist

from infbrush.models.chunked import ReadChunk, WriteChunk, streamed_forward
from infbrush.runtime.chunks import chunk_spans


def rank_spans(n_points: int, chunk_points: int | None, rank: int, world: int) -> list[tuple[int, int]]:
    """The contiguous block of chunks of rank ``rank`` of ``world`` (chunks split as evenly as possible)."""
    spans = chunk_spans(n_points, chunk_points)
    if world > len(spans):
        raise ValueError(f"{world} processes for {len(spans)} chunks of {chunk_points} points: every process needs "
                         f"at least one chunk; use fewer processes or a smaller --chunk-points")
    base, extra = divmod(len(spans), world)
    start = rank * base + min(rank, extra)
    return spans[start:start + base + (rank < extra)]


def _flatten(tree: Any) -> tuple[list[torch.Tensor], Any]:
    """Tensors of a nested accumulator (tensors, tuples, lists, dicts, dataclasses, None) and its structure."""
    leaves: list[torch.Tensor] = []

    def walk(node):
        if isinstance(node, torch.Tensor):
            leaves.append(node)
            return ("t", len(leaves) - 1)
        if node is None:
            return ("n",)
        if isinstance(node, (tuple, list)):
            return ("s", type(node), [walk(x) for x in node])
        if isinstance(node, dict):
            return ("d", {k: walk(v) for k, v in node.items()})
        if is_dataclass(node):
            return ("c", type(node), {f.name: walk(getattr(node, f.name)) for f in fields(node)})
        raise TypeError(f"cannot exchange a stage accumulator of type {type(node).__name__}")

    return leaves, walk(tree)


def _rebuild(spec: Any, leaves: list[torch.Tensor]) -> Any:
    kind = spec[0]
    if kind == "t":
        return leaves[spec[1]]
    if kind == "n":
        return None
    if kind == "s":
        return spec[1](_rebuild(s, leaves) for s in spec[2])
    if kind == "d":
        return {k: _rebuild(v, leaves) for k, v in spec[1].items()}
    return spec[1](**{k: _rebuild(v, leaves) for k, v in spec[2].items()})


class RankSplitDenoiser(torch.nn.Module):
    """Wraps a staged denoiser (``stage_merge`` and ``stream``'s protocol) so that ``ddim_sample`` on every rank of
    ``group`` samples the same image together: same arguments on every rank; rank 0 gets the whole result."""

    def __init__(self, model, group=None):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("RankSplitDenoiser needs torch.distributed to be initialised (torchrun / srun)")
        self.model, self.group = model, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        for name in ("in_channels", "prediction"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def _combine(self, k: int, acc: Any) -> Any:
        """Stage k's accumulator over every rank: all-gather, then merge in rank (= chunk) order."""
        leaves, spec = _flatten(acc)
        gathered = []
        for leaf in leaves:
            parts = [torch.empty_like(leaf) for _ in range(self.world)]
            dist.all_gather(parts, leaf.contiguous(), group=self.group)
            gathered.append(parts)
        total = None
        for r in range(self.world):
            total = self.model.stage_merge(k, total, _rebuild(spec, [g[r] for g in gathered]))
        return total

    def stream(self, n_points: int, read: ReadChunk, write: WriteChunk, t: torch.Tensor, cond: torch.Tensor | None,
               *, chunk_points: int | None = None, cond_mask: torch.Tensor | None = None, cache_bytes: int = 0) -> None:
        """This rank's share of a streamed evaluation: its chunks are read and written, stages combined over ranks."""
        streamed_forward(self.model, n_points, read, write, t, cond, chunk_points=chunk_points, cond_mask=cond_mask,
                         cache_bytes=cache_bytes, spans=rank_spans(n_points, chunk_points, self.rank, self.world),
                         combine=self._combine)

    def gather_state(self, n_points: int, read, write, chunk_points: int | None) -> None:
        """Send every rank's chunks of x to rank 0 (one chunk at a time, so memory stays bounded)."""
        for r in range(1, self.world):
            for s, e in rank_spans(n_points, chunk_points, r, self.world):
                if self.rank == r:
                    dist.send(read(s, e).contiguous(), dst=0, group=self.group)
                elif self.rank == 0:
                    buf = read(s, e).clone()  # right shape and dtype; overwritten
                    dist.recv(buf, src=r, group=self.group)
                    write(s, e, buf)
        dist.barrier(group=self.group)
