"""Mollified Gaussian noise as a resolution-free function of continuous coordinates (paper eq. 9, 14).

The noise function is n(p) = Σ_j w_j κ(p - p_j) / sqrt(Σ κ²): i.i.d. standard normal weights w_j on a
fixed node lattice of spacing h = 1/ceil(1/σ) ≤ σ in [0, 1]² (extended past the border), smoothed by a
truncated Gaussian kernel κ of std σ (|Δ| ≤ 3σ per axis). σ is a fraction of the image side, so the
*same function* is evaluated at any resolution or at any set of points. The weights are a counter-based
hash of (seed, node, channel), so no lattice-sized state is drawn and a point set costs O(N · taps).
Coordinates are (x, y) in [0, 1]², x along the width.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_TRUNC = 3.0  # kernel truncation radius in units of σ
_MASK32 = 0xFFFFFFFF
_OFFSET = 1 << 20  # node indices may be negative near the border; shift them before hashing


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Integer hash of int64 values in [0, 2^32) (Wellons' lowbias32 variant; products stay < 2^63)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _MASK32
    return x ^ (x >> 15)


def node_normals(seed: int, ix: torch.Tensor, iy: torch.Tensor, channels: int) -> torch.Tensor:
    """Standard normal weight of lattice nodes (ix, iy) (int64, any equal shape S) → (*S, channels), float32.

    A pure function of (seed, node, channel): the same node always gets the same weight.
    """
    s = _hash32(torch.tensor(seed & _MASK32, dtype=torch.int64) ^ _hash32(torch.tensor((seed >> 32) & _MASK32)))
    base = _hash32(_hash32(s.to(ix.device) + ix + _OFFSET) + iy + _OFFSET)  # (*S,)
    c = torch.arange(channels, device=ix.device, dtype=torch.int64)
    k = _hash32(base.unsqueeze(-1) * 2 + c * 0x9E37)  # (*S, C)
    u1 = (_hash32(k ^ 0x5BD1E995) + 0.5) / 2.0**32  # uniform in (0, 1)
    u2 = (_hash32(k + 0x68E31DA4) + 0.5) / 2.0**32
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).float()


def _lattice(sigma: float) -> tuple[int, float, int]:
    """(L nodes per side inside [0, 1], spacing h, tap radius R in nodes) for mollifier std ``sigma``."""
    if not 0 < sigma <= 0.5:
        raise ValueError(f"mollify_sigma must be in (0, 0.5] (fraction of the image side), got {sigma}")
    n_nodes = math.ceil(1.0 / sigma - 1e-9)
    h = 1.0 / n_nodes
    return n_nodes, h, math.ceil(_TRUNC * sigma / h) + 1


def _axis_weights(u: torch.Tensor, sigma: float, h: float, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis taps: node indices (..., 2R+1) int64 and normalised kernel weights (..., 2R+1) float32."""
    centre = torch.floor(u.double() / h).long()  # node whose cell holds u (node a sits at (a + 0.5) h)
    idx = centre.unsqueeze(-1) + torch.arange(-radius, radius + 1, device=u.device)  # (..., taps)
    delta = u.double().unsqueeze(-1) - (idx.double() + 0.5) * h
    w = torch.exp(-0.5 * (delta / sigma) ** 2) * (delta.abs() <= _TRUNC * sigma)
    w = w * math.sqrt(h / (sigma * math.sqrt(math.pi)))  # Σ_a κ(Δ_a)² ≈ σ√π / h per axis → unit variance
    return idx, w.float()


def mollified_noise_points(coords: torch.Tensor, seed: int, sigma: float, channels: int) -> torch.Tensor:
    """Noise function at points: coords (N, 2) in [0, 1]² (x, y) → (N, channels) float32, unit variance."""
    if coords.dim() != 2 or coords.shape[-1] != 2:
        raise ValueError(f"coords must be (N, 2), got {tuple(coords.shape)}")
    _, h, radius = _lattice(sigma)
    ix, wx = _axis_weights(coords[:, 0], sigma, h, radius)  # (N, taps)
    iy, wy = _axis_weights(coords[:, 1], sigma, h, radius)
    taps = 2 * radius + 1
    if coords.shape[0] == 0:
        return coords.new_zeros(0, channels)
    x0, y0 = int(ix.min()), int(iy.min())
    span_x, span_y = int(ix.max()) - x0 + 1, int(iy.max()) - y0 + 1
    if span_x * span_y < coords.shape[0] * taps * taps:
        # The node weights once per node of the bounding box, then gathered: the same values (a pure function
        # of seed and node) at a fraction of the hashes when points are denser than the nodes (training).
        gx = torch.arange(x0, x0 + span_x, device=ix.device).view(1, -1).expand(span_y, -1)
        gy = torch.arange(y0, y0 + span_y, device=iy.device).view(-1, 1).expand(-1, span_x)
        table = node_normals(seed, gx, gy, channels)  # (span_y, span_x, C)
        nodes = table[(iy - y0).unsqueeze(2), (ix - x0).unsqueeze(1)]  # (N, taps_y, taps_x, C)
    else:
        nodes = node_normals(seed, ix.unsqueeze(1).expand(-1, taps, -1), iy.unsqueeze(2).expand(-1, -1, taps),
                             channels)
    w = wy.unsqueeze(2) * wx.unsqueeze(1)  # (N, taps_y, taps_x)
    return torch.einsum("nyx,nyxc->nc", w, nodes)


def lattice_axis(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel-centre coordinates (i + 0.5) / n of an n-pixel axis, (n,) float32."""
    return (torch.arange(n, device=device, dtype=torch.float64) + 0.5).div(n).float()


def noise_bands(
    size: tuple[int, int], seed: int, sigma: float, channels: int, device: torch.device | str = "cpu",
    rows_per_block: int = 512,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The noise function on the H×W pixel-centre lattice, one band of rows at a time.

    Yields (first row, band (channels, rows, W) float32) for bands of ``rows_per_block`` rows, top to bottom.
    Separable evaluation n = K_y · W · K_xᵀ, so memory is O(rows·W + rows·L) whatever H.
    """
    height, width = size
    if rows_per_block < 1:
        raise ValueError(f"rows_per_block must be >= 1, got {rows_per_block}")
    _, h, radius = _lattice(sigma)
    ix, wx = _axis_weights(lattice_axis(width, device), sigma, h, radius)  # (W, taps)
    lo_x, hi_x = int(ix.min()), int(ix.max())
    kx_t = torch.zeros(width, hi_x - lo_x + 1, device=device)  # dense (W, Lx) banded matrix
    kx_t.scatter_(1, ix - lo_x, wx)
    kx_t = kx_t.T  # (Lx, W)
    y_all = lattice_axis(height, device)
    for r0 in range(0, height, rows_per_block):
        iy, wy = _axis_weights(y_all[r0:r0 + rows_per_block], sigma, h, radius)  # (rows, taps)
        lo_y, hi_y = int(iy.min()), int(iy.max())
        ky = torch.zeros(iy.shape[0], hi_y - lo_y + 1, device=device)
        ky.scatter_(1, iy - lo_y, wy)
        gy, gx = torch.meshgrid(
            torch.arange(lo_y, hi_y + 1, device=device), torch.arange(lo_x, hi_x + 1, device=device), indexing="ij"
        )
        nodes = node_normals(seed, gx, gy, channels).permute(2, 0, 1)  # (C, Ly, Lx)
        yield r0, ky @ nodes @ kx_t  # (C, rows, W)


def mollified_noise_grid(
    size: tuple[int, int], seed: int, sigma: float, channels: int, device: torch.device | str = "cpu",
    rows_per_block: int = 512,
) -> torch.Tensor:
    """The same noise function on the H×W pixel-centre lattice → (channels, H, W) float32 (see ``noise_bands``)."""
    height, width = size
    out = torch.empty(channels, height, width, device=device)
    for r0, band in noise_bands(size, seed, sigma, channels, device, rows_per_block):
        out[:, r0:r0 + band.shape[1]] = band
    return out


def mollify_image(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Truncated-Gaussian blur (std ``sigma`` × image side, |Δ| ≤ 3σ) of (B, C, H, W) images, reflect padding."""
    out = images
    for axis, n in ((2, images.shape[2]), (3, images.shape[3])):
        s = sigma * n
        r = max(1, math.ceil(_TRUNC * s))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / s) ** 2)
        k = (k / k.sum()).to(images)
        if r >= n:
            raise ValueError(f"mollify_sigma {sigma} is too wide for an image side of {n} pixels")
        if axis == 2:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(out.shape[1], 1, -1, 1),
                           groups=out.shape[1])
        else:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(out.shape[1], 1, 1, -1),
                           groups=out.shape[1])
    return out
