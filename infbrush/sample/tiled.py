"""Patch-based assembly of a large field from a small-image model (the route of Graikos et al., CVPR 2024).

The field (F×F pixels) is covered by tiles of the small model's training size s, at a stride s - overlap. Each
tile is an image of its own for the small model: its pixels are read on the tile's own s×s lattice of [0, 1]²
and it is conditioned on its own vector (the embedding of that tile of a reference field). :class:`TiledDenoiser`
evaluates every tile at once (one batch of B·n_tiles small images) and blends the tiles' predictions where they
overlap with separable linear ramps (MultiDiffusion, Bar-Tal et al. 2023, the blending Graikos et al. build on);
without overlap the tiles are sampled independently and meet at hard seams. It has the denoiser's plain-call
interface, so every sampler, guidance and the per-image seeds work on the whole field unchanged: image i of a run
depends only on seeds[i] and its tiles' conditions.

Geometry: tile j covers rows r_j … r_j + s - 1 and columns c_j … c_j + s - 1 (row-major over the tile grid);
``tile_grid`` refuses a stride that does not end exactly at the field's edge (no partial tiles, no padding).
"""
from __future__ import annotations

import torch

from infbrush.diffusion.points import lattice_coords


def tile_grid(field: int, tile: int, overlap: int = 0) -> list[tuple[int, int]]:
    """(row, col) of the top-left corner of each tile, row-major → n_tiles pairs; ValueError naming the value
    when the tiles do not cover the field exactly."""
    if tile < 1 or field < tile:
        raise ValueError(f"tile size {tile} must be in [1, field size {field}]")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile size {tile})")
    stride = tile - overlap
    if (field - tile) % stride:
        raise ValueError(f"tiles of {tile} px at stride {stride} (overlap {overlap}) do not divide a {field} px "
                         f"field: (field - tile) must be a multiple of the stride")
    starts = range(0, field - tile + 1, stride)
    return [(r, c) for r in starts for c in starts]


def blend_weights(tile: int, overlap: int) -> torch.Tensor:
    """(tile, tile) float64 weights: 1 inside, linear ramps over ``overlap`` px at every edge (> 0 everywhere,
    so a pixel that one tile alone covers keeps that tile's value exactly)."""
    ramp = torch.ones(tile, dtype=torch.float64)
    if overlap:
        edge = torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1)  # (overlap,) in (0, 1)
        ramp[:overlap] = edge
        ramp[tile - overlap:] = edge.flip(0)
    return ramp[:, None] * ramp[None, :]


class TiledDenoiser:
    """A field-sized denoiser made of a small-image ``model`` evaluated on tiles.

    ``__call__(x (B, F·F, C), coords, t (B,), cond (B, n_tiles·D), image_size (F, F), cond_mask (B,) | None)``
    → (B, F·F, C): ``cond`` holds each image's tile conditions, tile-major (the ``conditions`` of tile j are
    columns j·D … j·D + D - 1), so a guidance wrapper can double the batch as for any model.
    """

    def __init__(self, model, field: int, tile: int, overlap: int = 0):
        self.model, self.field, self.tile, self.overlap = model, field, tile, overlap
        self.corners = tile_grid(field, tile, overlap)
        self.weights = blend_weights(tile, overlap).float()
        for name in ("in_channels", "prediction"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    @property
    def n_tiles(self) -> int:
        return len(self.corners)

    def __call__(self, x, coords, t, cond, image_size=None, cond_mask=None) -> torch.Tensor:
        batch, n, channels = x.shape
        f, s, k = self.field, self.tile, self.n_tiles
        if n != f * f:
            raise ValueError(f"a tiled field needs the whole {f}x{f} lattice in one call, got {n} points")
        grid = x.view(batch, f, f, channels)
        tiles = torch.stack([grid[:, r:r + s, c:c + s] for r, c in self.corners], 1)  # (B, k, s, s, C)
        tile_cond = None if cond is None else cond.reshape(batch * k, -1)  # (B·k, D)
        mask = None if cond_mask is None else cond_mask.repeat_interleave(k)
        lattice = lattice_coords((s, s), x.device).expand(batch * k, -1, -1)
        args = (tiles.reshape(batch * k, s * s, channels), lattice, t.repeat_interleave(k), tile_cond, (s, s))
        out = self.model(*args, cond_mask=mask) if mask is not None else self.model(*args)
        out = out.view(batch, k, s, s, channels).float()
        w = self.weights.to(out.device).view(1, s, s, 1)
        acc = out.new_zeros(batch, f, f, channels)
        norm = out.new_zeros(1, f, f, 1)
        for j, (r, c) in enumerate(self.corners):
            acc[:, r:r + s, c:c + s] += out[:, j] * w
            norm[:, r:r + s, c:c + s] += w
        return (acc / norm).view(batch, f * f, channels)


def tile_images(fields, corners: list[tuple[int, int]], tile: int) -> list:
    """Cut (H, W, C) arrays (or tensors) into the tiles at ``corners`` → one list of tiles per field, row-major."""
    return [[field[r:r + tile, c:c + tile] for r, c in corners] for field in fields]
