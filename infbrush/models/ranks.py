"""One image sampled by several processes: the chunks of points split over the ranks of a ``torch.distributed``
group, each stage's chunk partials folded in one order on every rank.

Every global stage of the denoiser is a fold of per-chunk partials (sums of splats and attention summaries, a
running top-k for the kNN grid). A single process folds them chunk after chunk, ``((p0 + p1) + p2) + …``, and
float addition is not associative: any other grouping (each rank summing its own block, then the ranks' sums)
changes the stage by rounding, which the first DDIM steps amplify (1/sqrt(ᾱ_T) ≫ 1) into differences of 1e-4 on
CPUs whose kernels round differently (AVX2). So the ranks fold in the single process's order exactly:

- the chunks are dealt round-robin (rank r holds chunks r, r + W, r + 2W, …), so round j of the chunk loop holds
  chunks jW … jW + W - 1 on ranks 0 … W - 1;
- after each round every rank all-gathers the round's W partials and folds them into its accumulator in rank
  order, which is chunk order (``RankReduce``); a rank without a chunk in the last round sends a placeholder
  that nobody folds.

Every rank then holds the single process's accumulator bit for bit, finalises every stage itself, evaluates ε̂
only on its own chunks and updates only their x_t (the DDIM update is pointwise). At the end the chunks are
sent to rank 0 (``gather_state``), which holds the whole image. At equal thread counts the image is the single
process's, bitwise. Cost: one exchange of a chunk partial (a grid-sized tensor) per chunk and stage, instead of
one accumulator per rank.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import torch
import torch.distributed as dist

from infbrush.models.chunked import ChunkShare, ReadChunk, WriteChunk, streamed_forward
from infbrush.runtime.chunks import chunk_spans


def rank_spans(n_points: int, chunk_points: int | None, rank: int, world: int) -> list[tuple[int, int]]:
    """The chunks of rank ``rank`` of ``world``, dealt round-robin: chunks rank, rank + world, … (in order)."""
    spans = chunk_spans(n_points, chunk_points)
    if world > len(spans):
        raise ValueError(f"{world} processes for {len(spans)} chunks of {chunk_points} points: every process needs "
                         f"at least one chunk; use fewer processes or a smaller --chunk-points")
    return spans[rank::world]


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


class RankReduce:
    """``StageReduce`` over the ranks: each ``add`` is one round of the round-robin chunk loop (every rank's next
    chunk); the round's partials are all-gathered and folded in rank (= chunk) order. ``close`` runs the rounds in
    which this rank has no chunk left (a placeholder is sent, and not folded)."""

    def __init__(self, model, group, rank: int, world: int, n_chunks: int):
        self.model, self.group, self.rank, self.world, self.n_chunks = model, group, rank, world, n_chunks
        self.round, self.template = 0, None

    def _exchange(self, k: int, acc: Any, part: Any | None) -> Any:
        if part is not None:
            self.template = part
        leaves, spec = _flatten(part if part is not None else self.template)
        if part is None:  # same shapes and dtypes as this rank's earlier partials (and every other rank's)
            leaves = [torch.zeros_like(leaf) for leaf in leaves]
        gathered = []
        for leaf in leaves:
            parts = [torch.empty_like(leaf) for _ in range(self.world)]
            dist.all_gather(parts, leaf.contiguous(), group=self.group)
            gathered.append(parts)
        for r in range(self.world):
            if self.round * self.world + r < self.n_chunks:  # rank r held a chunk in this round
                acc = self.model.stage_merge(k, acc, _rebuild(spec, [g[r] for g in gathered]))
        self.round += 1
        return acc

    def add(self, k: int, acc: Any, part: Any) -> Any:
        return self._exchange(k, acc, part)

    def close(self, k: int, acc: Any) -> Any:
        while self.round * self.world < self.n_chunks:
            acc = self._exchange(k, acc, None)
        self.round = 0
        return acc


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

    def stream(self, n_points: int, read: ReadChunk, write: WriteChunk, t: torch.Tensor, cond: torch.Tensor | None,
               *, chunk_points: int | None = None, cond_mask: torch.Tensor | None = None, cache_bytes: int = 0) -> None:
        """This rank's share of a streamed evaluation: its chunks are read and written, stages combined over ranks."""
        n_chunks = len(chunk_spans(n_points, chunk_points))
        streamed_forward(self.model, n_points, read, write, t, cond, chunk_points=chunk_points, cond_mask=cond_mask,
                         cache_bytes=cache_bytes,
                         share=ChunkShare(rank_spans(n_points, chunk_points, self.rank, self.world),
                                          RankReduce(self.model, self.group, self.rank, self.world, n_chunks)))

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
