"""Random pixel subsets of images as (coords, values) point sets (paper sec. 4.2, 5.2).

Coordinates are pixel centres in [0, 1]²: x = (col + 0.5) / W, y = (row + 0.5) / H, stored (x, y).
"""
from __future__ import annotations

import torch

from infbrush.diffusion.mollifier import lattice_axis


def lattice_coords(size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """All pixel centres of an H×W lattice in row-major order → (H·W, 2) float32 (x, y)."""
    height, width = size
    ys, xs = torch.meshgrid(lattice_axis(height, device), lattice_axis(width, device), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def index_to_coords(pixel_index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Row-major pixel indices (...) long → pixel-centre coords (..., 2) float32 (x, y)."""
    height, width = size
    row, col = pixel_index // width, pixel_index % width
    return torch.stack([(col.double() + 0.5) / width, (row.double() + 0.5) / height], dim=-1).float()


def _distinct_indices(total: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct integers in [0, total) drawn with ``generator`` (uniform without replacement) → (n,) long."""
    dev = generator.device
    if 4 * n >= total:
        return torch.randperm(total, generator=generator, device=dev)[:n]
    picked = torch.empty(0, dtype=torch.long, device=dev)
    while picked.numel() < n:  # draw with replacement, keep first occurrences, top up
        draw = torch.randint(total, (n - picked.numel() + n // 16 + 16,), generator=generator, device=dev)
        cand = torch.cat([picked, draw])
        uniq, inverse = torch.unique(cand, return_inverse=True)
        first = torch.full((uniq.numel(),), cand.numel(), dtype=torch.long, device=dev)
        first.scatter_reduce_(0, inverse, torch.arange(cand.numel(), device=dev), reduce="amin")
        picked = cand[first.sort().values]
    return picked[:n]


def sample_points(
    images: torch.Tensor, n_points: int, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n_points`` distinct pixels per image, one generator per image.

    images (B, C, H, W) → coords (B, N, 2) float32 (x, y) in [0, 1], values (B, N, C) (images' dtype),
    pixel_index (B, N) long (row-major). Image i's subset depends only on generators[i].
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    if len(generators) != batch:
        raise ValueError(f"need one generator per image: {len(generators)} generators for {batch} images")
    if not 1 <= n_points <= height * width:
        raise ValueError(f"n_points must be in [1, {height * width}] for {height}x{width} images, got {n_points}")
    index = torch.stack([_distinct_indices(height * width, n_points, g).to(images.device) for g in generators])
    flat = images.reshape(batch, channels, height * width)
    values = torch.gather(flat, 2, index.unsqueeze(1).expand(-1, channels, -1)).transpose(1, 2)  # (B, N, C)
    return index_to_coords(index, (height, width)), values, index


def n_points_for(size: tuple[int, int], n_points: int | None = None, fraction: float | None = None) -> int:
    """Points per image from a fixed count or a fraction of the H×W pixels (exactly one must be given)."""
    if (n_points is None) == (fraction is None):
        raise ValueError("give exactly one of n_points and fraction")
    total = size[0] * size[1]
    n = n_points if n_points is not None else max(1, round(fraction * total))
    return min(int(n), total)
