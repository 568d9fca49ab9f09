"""Condition maps: an image whose colours (or integer values) name regions, read as a function of [0, 1]².

A map of any size is a function on the unit square: the point (x, y) belongs to the region of the map pixel
under it (nearest lookup, ``floor(x · W_map)``), so a 4×4 map of quadrants and a 4096² one give the same
regions at every output size. Soft edges: the one-hot region indicators are box-filtered over a *blend
width* (a fraction of the side; pixels of the output are converted by the caller), which turns a straight
boundary into a linear ramp of that width; the weights of the regions sum to 1 everywhere. The filtered
weights live on a working raster (``raster_side`` cells a side, at least the map's own resolution and
enough cells to resolve the blend) and are read at the point coordinates bilinearly, so their cost is set
by the raster, never by the output size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from infbrush.errors import InfbrushError

MAX_MAP_SIDE = 4096  # maps larger than this are reduced (nearest) on reading
MAX_RASTER_SIDE = 2048  # soft-edge weight raster cap (R × side² float32)
MIN_BLEND_CELLS = 32  # the blend spans at least this many raster cells (ramp width within ~3 %)


def colour_key(value) -> int:
    """A legend key → packed map value: '#rrggbb' / 'rrggbb' / [r, g, b] → 0xRRGGBB; an int → itself (gray/index)."""
    if isinstance(value, bool):
        raise InfbrushError(f"legend key {value!r} is neither a colour '#rrggbb' nor an integer map value")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise InfbrushError(f"legend key {value}: integer map values must be >= 0")
        return int(value)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return (value[0] << 16) | (value[1] << 8) | value[2]
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    hexa = text[1:] if text.startswith("#") else text
    if len(hexa) == 6:
        try:
            return int(hexa, 16)
        except ValueError:
            pass
    raise InfbrushError(f"legend key {value!r} is neither a colour '#rrggbb' nor an integer map value")


def key_name(key: int, rgb: bool) -> str:
    return f"#{key:06x}" if rgb else str(key)


@dataclass
class ConditionMap:
    """values (Hm, Wm) int64 packed colours (0xRRGGBB) or integer values; ``rgb`` says which."""

    values: np.ndarray
    rgb: bool
    path: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])

    def counts(self) -> dict[int, int]:
        keys, counts = np.unique(self.values, return_counts=True)
        return {int(k): int(c) for k, c in zip(keys, counts)}


def read_map(path: str | os.PathLike, max_side: int = MAX_MAP_SIDE) -> ConditionMap:
    """Read a PNG/TIFF condition map. RGB(A) → packed colours (alpha ignored); gray / palette-index / integer
    TIFF → integer values. Maps larger than ``max_side`` are reduced by nearest sampling."""
    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: condition map not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr = page.asarray()
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode == "P":  # palette: the palette's colours name the regions
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                    arr = np.asarray(im.convert("RGB"))
                else:
                    arr = np.asarray(im)
    except InfbrushError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable image
        raise InfbrushError(f"{path}: cannot read the condition map ({type(err).__name__}: {err})") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = arr[..., :3].astype(np.int64)
        if arr.dtype != np.uint8:
            raise InfbrushError(f"{path}: colour maps must be 8-bit RGB, got {arr.dtype}")
        values, is_rgb = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], True
    elif arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
            raise InfbrushError(f"{path}: integer or colour map expected, got {arr.dtype} values")
        values, is_rgb = arr.astype(np.int64), False
    else:
        raise InfbrushError(f"{path}: a condition map must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if values.size == 0:
        raise InfbrushError(f"{path}: empty condition map")
    height, width = values.shape
    if max(height, width) > max_side:  # nearest reduction: the map is read as a function of [0, 1]² anyway
        rows = ((np.arange(min(height, max_side)) + 0.5) * height / min(height, max_side)).astype(np.int64)
        cols = ((np.arange(min(width, max_side)) + 0.5) * width / min(width, max_side)).astype(np.int64)
        values = values[np.ix_(rows, cols)]
    return ConditionMap(values, is_rgb, str(path))


def region_index(cmap: ConditionMap, keys: list[int]) -> np.ndarray:
    """(Hm, Wm) int64 region number (position in ``keys``) of every map pixel; unknown values raise, naming them."""
    counts = cmap.counts()
    missing = [k for k in counts if k not in keys]
    if missing:
        shown = ", ".join(f"{key_name(k, cmap.rgb)} ({counts[k]} px)" for k in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InfbrushError(f"{cmap.path or 'map'}: map value(s) {shown}{more} not in the legend "
                            f"(legend: {', '.join(key_name(k, cmap.rgb) for k in keys)}; anti-aliased maps need "
                            f"hard-edged colours)")
    lookup = {k: i for i, k in enumerate(keys)}
    uniq, inv = np.unique(cmap.values, return_inverse=True)
    return np.asarray([lookup[int(u)] for u in uniq], dtype=np.int64)[inv].reshape(cmap.values.shape)


def parse_blend(value, side: int | None = None) -> float:
    """Blend width → fraction of the image side. ``"8px"`` / ``"8 px"`` (needs ``side``), a float in [0, 1)
    (fraction), or 0 / None (hard edges). A width larger than the image raises, naming it."""
    if value is None:
        return 0.0
    text = str(value).strip().lower()
    if text.endswith("px"):
        try:
            px = float(text[:-2])
        except ValueError:
            raise InfbrushError(f"blend width {value!r}: expected e.g. '8px' or a fraction like 0.05") from None
        if px < 0:
            raise InfbrushError(f"blend width {value!r} must be >= 0")
        if side is None:
            raise InfbrushError(f"blend width {value!r} in pixels needs the output size")
        if px > side:
            raise InfbrushError(f"blend width {value!r} is larger than the image ({side} px)")
        return px / side
    try:
        frac = float(text)
    except ValueError:
        raise InfbrushError(f"blend width {value!r}: expected e.g. '8px' or a fraction like 0.05") from None
    if not 0 <= frac <= 1:
        raise InfbrushError(f"blend width {value!r} is larger than the image (a fraction of the side must be in "
                            f"[0, 1]; give pixels as '8px')")
    return frac


class RegionWeights:
    """Per-point region weights w_r(x, y) (sum 1 over the R regions), from a region-index map and a blend width.

    ``blend`` is a fraction of the side (0: hard edges, nearest lookup of the map). ``at(coords)`` takes
    coords (..., 2) (x, y) in [0, 1] and returns (..., R) float32.
    """

    def __init__(self, index: np.ndarray, n_regions: int, blend: float = 0.0, raster_side: int | None = None):
        if index.ndim != 2:
            raise ValueError(f"region index must be (H, W), got {index.shape}")
        if not 0 <= blend <= 1:
            raise InfbrushError(f"blend width {blend} must be a fraction of the side in [0, 1]")
        self.n_regions, self.blend = int(n_regions), float(blend)
        self.index = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))  # (Hm, Wm)
        self.raster = None
        if self.blend > 0:
            side = raster_side or min(MAX_RASTER_SIDE, max(max(index.shape), int(np.ceil(MIN_BLEND_CELLS / self.blend))))
            self.raster = self._soft_raster(side)  # (R, S, S)

    def _soft_raster(self, side: int) -> torch.Tensor:
        cells = (torch.arange(side, dtype=torch.float64) + 0.5) / side
        hm, wm = self.index.shape
        rows = (cells * hm).long().clamp(0, hm - 1)
        cols = (cells * wm).long().clamp(0, wm - 1)
        idx = self.index[rows][:, cols]  # (S, S) nearest
        onehot = F.one_hot(idx, self.n_regions).permute(2, 0, 1).float().unsqueeze(0)  # (1, R, S, S)
        width = max(1, int(round(self.blend * side)))
        if width % 2 == 0:
            width += 1
        pad = width // 2
        for dim in (3, 2):  # separable box filter, edges replicated (a boundary ramp of the blend width)
            padding = (pad, pad, 0, 0) if dim == 3 else (0, 0, pad, pad)
            kernel = (1, width) if dim == 3 else (width, 1)
            onehot = F.avg_pool2d(F.pad(onehot, padding, mode="replicate"), kernel, stride=1)
        weights = onehot[0]
        return weights / weights.sum(0, keepdim=True).clamp_min(1e-12)

    def hard_index(self, coords: torch.Tensor) -> torch.Tensor:
        """Region number of each point (nearest map pixel) → (...,) long."""
        hm, wm = self.index.shape
        index = self.index.to(coords.device)
        col = (coords[..., 0].double() * wm).floor().long().clamp(0, wm - 1)
        row = (coords[..., 1].double() * hm).floor().long().clamp(0, hm - 1)
        return index[row, col]

    def at(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., 2) → weights (..., R) float32."""
        if self.raster is None:
            return F.one_hot(self.hard_index(coords), self.n_regions).float()
        lead = coords.shape[:-1]
        grid = (coords.reshape(1, 1, -1, 2).float() * 2 - 1)
        raster = self.raster.to(coords.device).unsqueeze(0)  # (1, R, S, S)
        out = F.grid_sample(raster, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out[0, :, 0].transpose(0, 1)  # (n, R)
        out = out / out.sum(-1, keepdim=True).clamp_min(1e-12)
        return out.reshape(*lead, self.n_regions)

    def lattice(self, size: tuple[int, int]) -> torch.Tensor:
        """Weights at the pixel centres of an H×W lattice → (R, H, W)."""
        height, width = size
        ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).float()  # (H, W, 2) (x, y)
        return self.at(coords).permute(2, 0, 1)

    def lattice_index(self, size: tuple[int, int]) -> np.ndarray:
        """Hard region number at the pixel centres of an H×W lattice → (H, W) int64."""
        height, width = size
        ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self.hard_index(coords).numpy()
