"""Sparse neural operator: a Monte-Carlo kernel integral over the sampled neighbours of each point.

    (K h)(x) = ∫ κ(x - y) h(y) dy  ≈  Σ_c κ_c · mean_{j ∈ c} h(x_j) · (window cells / occupied cells)

κ is a learned depthwise kernel of compact support (``kernel_size`` cells of a fixed lattice of
``grid_size``² cells over [0, 1]²). Neighbours are found through that lattice (no all-pairs distances):
each point is splatted bilinearly onto the lattice (``index_put`` with accumulation), giving per-cell sums
and point counts; the cell means are a stratified Monte-Carlo estimate of h, κ is applied as a depthwise
convolution over the occupied cells and normalised by the occupied fraction of the window, and the result
is read back at each point bilinearly (``grid_sample``). The estimate does not depend on the sampling
density (discretisation-invariant); memory and time are O(N + grid²·kernel²·dim). The splat sums are additive over
chunks of points (``partial`` → sum → ``finalize`` → apply per chunk).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bilinear_splat(values: torch.Tensor, coords: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Sum points into lattice nodes with bilinear weights (node g at (g + 0.5) / G).

    values (B, N, C), coords (B, N, 2) (x, y) in [0, 1] → (B, C, G, G) sums. Out-of-lattice corners are
    clamped to the border node.
    """
    batch, n, channels = values.shape
    pos = coords.float() * grid_size - 0.5  # (B, N, 2) in node units
    base = torch.floor(pos)
    frac = pos - base
    base = base.long()
    b_off = (torch.arange(batch, device=values.device) * grid_size * grid_size).view(batch, 1)
    idx, wts = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            wx = frac[..., 0] if dx else 1 - frac[..., 0]
            wy = frac[..., 1] if dy else 1 - frac[..., 1]
            gx = (base[..., 0] + dx).clamp(0, grid_size - 1)
            gy = (base[..., 1] + dy).clamp(0, grid_size - 1)
            idx.append(b_off + gy * grid_size + gx)  # (B, N)
            wts.append(wx * wy)
    idx = torch.stack(idx, dim=-1).reshape(-1)  # (B·N·4,)
    contrib = (values.unsqueeze(-2) * torch.stack(wts, dim=-1).unsqueeze(-1).to(values.dtype)).reshape(-1, channels)
    out = values.new_zeros(batch * grid_size * grid_size, channels)
    # index_add sums in a fixed order; index_put(accumulate=True) adds with atomic float adds on 2+ CPU threads,
    # so its bits varied run to run and with the machine's load (and it is the slower of the two on CPU)
    out = out.index_add(0, idx, contrib)
    return out.view(batch, grid_size, grid_size, channels).permute(0, 3, 1, 2)


def bilinear_gather(field: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Read a (B, C, G, G) lattice (node g at (g + 0.5) / G) at coords (B, N, 2) → (B, N, C)."""
    grid = (coords.to(field.dtype) * 2 - 1).unsqueeze(1)  # (B, 1, N, 2), grid_sample takes (x, y)
    out = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(2).transpose(1, 2)


class SparseKernelIntegral(nn.Module):
    """h (B, N, dim) ← h + W_mix · GELU(K(LN h)(x) + W_local LN h(x)), K the normalised kernel integral."""

    def __init__(self, dim: int, grid_size: int, kernel_size: int, eps: float = 1e-3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"sparse kernel_size must be odd, got {kernel_size}")
        self.grid_size, self.kernel_size, self.eps = grid_size, kernel_size, eps
        self.norm = nn.LayerNorm(dim)
        self.kernel = nn.Parameter(torch.randn(dim, 1, kernel_size, kernel_size) / kernel_size)
        self.local = nn.Linear(dim, dim)
        self.mix = nn.Linear(dim, dim)

    def partial(self, h: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Chunk contribution: splat of [LN h, 1] → (B, dim + 1, G, G); sum these over chunks."""
        feats = torch.cat([self.norm(h), h.new_ones(*h.shape[:-1], 1)], dim=-1)
        return bilinear_splat(feats, coords, self.grid_size)

    def finalize(self, splat: torch.Tensor) -> torch.Tensor:
        """Splat sums (B, dim + 1, G, G) → kernel-integral field (B, dim, G, G).

        Stratified Monte-Carlo estimate: cell means m_c = Σ h / Σ w over each cell's points, then
        Σ_c κ_c m_c over the occupied cells of the window, rescaled by (window cells / occupied cells).
        """
        num, count = splat[:, :-1], splat[:, -1:]
        occupied = (count > self.eps).to(num.dtype)
        mean = num / count.clamp_min(self.eps) * occupied
        pad, area = self.kernel_size // 2, self.kernel_size**2
        integral = F.conv2d(mean, self.kernel.to(num.dtype), padding=pad, groups=num.shape[1])
        box = torch.ones(1, 1, self.kernel_size, self.kernel_size, device=count.device, dtype=count.dtype)
        cover = F.conv2d(occupied, box, padding=pad) / area  # fraction of the window holding points
        return integral / cover.clamp_min(1.0 / area)

    def forward(self, h: torch.Tensor, coords: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """h (B, N, dim), coords (B, N, 2), field from ``finalize`` over all points → (B, N, dim)."""
        integral = bilinear_gather(field, coords).to(h.dtype)
        return h + self.mix(F.gelu(integral + self.local(self.norm(h))))
