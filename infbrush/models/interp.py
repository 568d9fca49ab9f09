"""k-nearest-neighbour interpolation of point features onto a regular grid (paper sec. 4.2; ∞-Diff).

Each grid node (g + 0.5) / G takes the k nearest points with inverse squared distance weights. Points are
on a pixel lattice and the grid is fixed, so every point proposes itself to the nodes within a window of
±``window`` cells and each node keeps its k best proposals (ties broken by the global point index); the
window is chosen from the point density so that nodes see ≫ k proposals. The running top-k is mergeable
over chunks of points, so a chunked pass equals an unchunked one. O(N · window²) time and memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class KnnState:
    """Per node top-k: dist2 (B, G², k) (inf = empty), index (B, G², k) long global point id, feats (B, G², k, C)."""

    dist2: torch.Tensor
    index: torch.Tensor
    feats: torch.Tensor


def knn_window(n_points: int, grid_size: int, expected: float = 24.0) -> int:
    """Half-width (in cells) of the proposal window so each node expects ≥ ``expected`` proposals."""
    density = max(n_points, 1) / grid_size**2
    return int(min(grid_size, max(1, math.ceil(math.sqrt(expected / density) / 2))))


@dataclass
class KnnPlan:
    """Which candidate fills which (image, node, slot) of a KnnState: a function of the coordinates alone, so a
    sampler that evaluates the same lattice at every step can reuse it (``knn_partial``'s ``cache``)."""

    shape: tuple[int, int, int]  # (batch, nodes, k)
    flat: torch.Tensor  # (S,) slot b·G²·k + node·k + rank
    rows: torch.Tensor  # (S,) row of the feature table that fills it
    dist2: torch.Tensor  # (S,)
    index: torch.Tensor  # (S,) global point id


def _apply(plan: KnnPlan, table: torch.Tensor) -> KnnState:
    """The KnnState of ``plan`` with features from ``table`` (rows, C)."""
    batch, n_nodes, k = plan.shape
    dev = table.device
    out_d = torch.full((batch * n_nodes * k,), math.inf, device=dev, dtype=plan.dist2.dtype)
    out_i = torch.full((batch * n_nodes * k,), -1, device=dev, dtype=torch.long)
    out_f = table.new_zeros(batch * n_nodes * k, table.shape[-1])
    out_d[plan.flat], out_i[plan.flat] = plan.dist2, plan.index
    # index_select, not table[rows]: a point is in several nodes' lists, and the backward of advanced indexing
    # adds those gradients with atomic float adds on 2+ CPU threads (order, hence bits, vary run to run and
    # with the machine's load); index_select's backward (index_add) sums in a fixed order.
    out_f = out_f.index_put((plan.flat,), table.index_select(0, plan.rows))
    return KnnState(out_d.view(batch, n_nodes, k), out_i.view(batch, n_nodes, k), out_f.view(batch, n_nodes, k, -1))


def _select(batch: int, n_nodes: int, k: int, node, dist2, index, rows, table) -> KnnState:
    """Keep the k best (dist2, then index) candidates of each (image, node); candidates are 1-D tensors."""
    return _apply(_plan(batch, n_nodes, k, node, dist2, index, rows), table)


def _plan(batch: int, n_nodes: int, k: int, node, dist2, index, rows) -> KnnPlan:
    """The k best (dist2, then index) candidates of each (image, node) → KnnPlan.

    Two stable sorts (by dist2, then node) order ties by arrival, so candidates with equal (node, dist2)
    must arrive in increasing point index: true within a chunk (point-major order) and across a merge when
    chunks are merged in increasing index order.
    """
    order = torch.argsort(dist2, stable=True)  # candidates arrive in increasing point index among equals
    order = order[torch.argsort(node[order], stable=True)]  # node is offset by image: b·n_nodes + node
    node_s = node[order]
    pos = torch.arange(node_s.numel(), device=node.device)
    start = torch.full((batch * n_nodes,), node_s.numel(), dtype=torch.long, device=node.device)
    start.scatter_reduce_(0, node_s, pos, reduce="amin")
    rank = pos - start[node_s]
    keep = rank < k
    sel, slot = order[keep], rank[keep]
    return KnnPlan((batch, n_nodes, k), node_s[keep] * k + slot, rows[sel], dist2[sel], index[sel])


def knn_partial(
    feats: torch.Tensor, coords: torch.Tensor, grid_size: int, k: int, window: int, index_offset: int = 0,
    cache: dict | None = None,
) -> KnnState:
    """Top-k of one chunk: feats (B, n, C), coords (B, n, 2) (x, y) in [0, 1] → KnnState over the G² nodes.

    ``cache``: a dict kept by the caller across calls; when this call's coordinates (and sizes) equal the ones it
    holds, the selection is reused and only the features are gathered (a DDIM sampler reads the same lattice at
    every step). Holds one entry (the last plan): memory of one chunk's coords, no more.
    """
    batch, n, _ = feats.shape
    key = (batch, n, grid_size, k, window, index_offset, coords.dtype, coords.device)
    if cache is not None and cache.get("key") == key and torch.equal(cache["coords"], coords):
        return _apply(cache["plan"], feats.reshape(batch * n, -1))
    plan = _knn_plan(coords, batch, n, grid_size, k, window, index_offset)
    if cache is not None:
        cache.clear()
        cache.update(key=key, coords=coords.clone(), plan=plan)
    return _apply(plan, feats.reshape(batch * n, -1))


def _knn_plan(coords: torch.Tensor, batch: int, n: int, grid_size: int, k: int, window: int,
              index_offset: int) -> KnnPlan:
    """The candidates of each point within ±window cells, and their selection (``_plan``)."""
    dev = coords.device
    pos = coords.float() * grid_size - 0.5  # node units
    base = torch.floor(pos).long()  # (B, n, 2)
    offs = torch.arange(-window + 1, window + 1, device=dev)
    gx = base[..., 0, None, None] + offs.view(1, -1)  # (B, n, 1, 2w)
    gy = base[..., 1, None, None] + offs.view(-1, 1)  # (B, n, 2w, 1)
    dx = pos[..., 0, None, None] - gx
    dy = pos[..., 1, None, None] - gy
    dist2 = (dx**2 + dy**2) / grid_size**2  # (B, n, 2w, 2w) in coordinate units
    valid = (gx >= 0) & (gx < grid_size) & (gy >= 0) & (gy < grid_size)
    node = (torch.arange(batch, device=dev).view(batch, 1, 1, 1) * grid_size**2 + gy * grid_size + gx)
    rows = torch.arange(batch * n, device=dev).view(batch, n, 1, 1)
    index = torch.arange(n, device=dev).view(1, n, 1, 1) + index_offset
    shape = dist2.shape
    node, rows, index = node.expand(shape)[valid], rows.expand(shape)[valid], index.expand(shape)[valid]
    return _plan(batch, grid_size**2, k, node, dist2[valid], index, rows)


def knn_merge(a: KnnState | None, b: KnnState) -> KnnState:
    """Top-k of the union of two states (accumulation over chunks); ``a`` may be None."""
    if a is None:
        return b
    batch, n_nodes, k = a.dist2.shape
    dev = a.dist2.device
    node = (torch.arange(batch * n_nodes, device=dev).view(batch, n_nodes, 1)).expand(batch, n_nodes, k)
    node = torch.cat([node.reshape(-1), node.reshape(-1)])
    dist2 = torch.cat([a.dist2.reshape(-1), b.dist2.reshape(-1)])
    index = torch.cat([a.index.reshape(-1), b.index.reshape(-1)])
    table = torch.cat([a.feats.reshape(batch * n_nodes * k, -1), b.feats.reshape(batch * n_nodes * k, -1)])
    valid = index >= 0
    rows = torch.arange(table.shape[0], device=dev)
    return _select(batch, n_nodes, k, node[valid], dist2[valid], index[valid], rows[valid], table)


def knn_to_grid(state: KnnState, grid_size: int, eps_cells: float = 1e-3) -> torch.Tensor:
    """Inverse-squared-distance weighted mean of each node's neighbours → (B, C, G, G); empty nodes are 0."""
    eps = (eps_cells / grid_size) ** 2
    w = torch.where(state.index >= 0, 1.0 / (state.dist2 + eps), torch.zeros_like(state.dist2))  # (B, G², k)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    grid = (w.unsqueeze(-1).to(state.feats.dtype) * state.feats).sum(2)  # (B, G², C)
    batch, _, channels = grid.shape
    return grid.transpose(1, 2).reshape(batch, channels, grid_size, grid_size)
