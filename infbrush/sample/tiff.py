"""Progressive tiled pyramidal TIFF writer (OpenSlide "generic-tiff" layout, readable by QuPath).

The image arrives as row bands from a generator, top to bottom, so the full-resolution image never
sits in memory. Layout:

    page 0          level 0, H × W, tiled (tile × tile), JPEG (YCbCr 2×2, as Aperio SVS) or deflate (RGB)
    page k ≥ 1      level k, ceil(H / f^k) × ceil(W / f^k), same tiling/compression, f = level_factor
    XResolution / YResolution in pixels per centimetre (1e4 / mpp) with ResolutionUnit = CENTIMETER,
    which OpenSlide reports as ``openslide.mpp-x`` / ``openslide.mpp-y``. BigTIFF when the uncompressed
    pyramid exceeds ~4 GB (classic TIFF offsets are 32-bit).

Memory: level 0 is written while the bands arrive, one row of tiles at a time; each finished tile row is
box-downsampled into level 1, which is kept in a temporary memory-mapped file beside the output (so RAM
holds one band, one tile row and the OS page cache). Level k+1 is made the same way while level k is
written from its memory map. The output is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.io import atomic_path

COMPRESSIONS = ("jpeg", "deflate")
BIGTIFF_BYTES = 2**32 - 2**25  # classic TIFF: 32-bit offsets; keep 32 MiB headroom for IFDs and tables


@dataclass(frozen=True)
class PyramidInfo:
    """What was written: level sizes (height, width), downsample per level, tile side, compression, mpp."""

    path: Path
    level_shapes: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    tile: int
    compression: str
    mpp: float | None
    bigtiff: bool


def level_shapes(height: int, width: int, tile: int, level_factor: int = 2) -> list[tuple[int, int]]:
    """Sizes of the pyramid levels: divide by ``level_factor`` (ceil) until the level fits in one tile."""
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((math.ceil(h / level_factor), math.ceil(w / level_factor)))
    return shapes


def needs_bigtiff(shapes: Iterable[tuple[int, int]], channels: int) -> bool:
    """True when the uncompressed pyramid would not fit below classic TIFF's 4 GB offset limit."""
    return sum(h * w * channels for h, w in shapes) >= BIGTIFF_BYTES


def downsample_rows(rows: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter (mean of factor × factor blocks, edge-replicated at odd borders): (h, W, C) uint8 →
    (ceil(h/f), ceil(W/f), C) uint8."""
    h, w, c = rows.shape
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        rows = np.pad(rows, ((0, ph), (0, pw), (0, 0)), mode="edge")
    total = np.zeros((rows.shape[0] // factor, rows.shape[1] // factor, c), dtype=np.uint16)  # ≤ 16 · 255
    for dy in range(factor):
        for dx in range(factor):
            total += rows[dy::factor, dx::factor]
    total += factor * factor // 2  # round half up
    total //= factor * factor
    return total.astype(np.uint8)


def _rebuffer(bands: Iterable[np.ndarray], height: int, width: int, channels: int, rows: int,
              source: str) -> Iterator[np.ndarray]:
    """Re-cut bands of any height into blocks of exactly ``rows`` rows (the last may be shorter)."""
    pending: list[np.ndarray] = []
    n_pending = 0
    seen = 0
    for band in bands:
        band = np.asarray(band)
        if band.ndim == 2 and channels == 1:
            band = band[..., None]
        if band.ndim != 3 or band.shape[1:] != (width, channels) or band.dtype != np.uint8:
            raise InfbrushError(f"{source}: band of shape {band.shape} {band.dtype} does not match an image "
                                f"of width {width} with {channels} channel(s), uint8")
        seen += band.shape[0]
        if seen > height:
            raise InfbrushError(f"{source}: bands hold more than the declared {height} rows")
        pending.append(band)
        n_pending += band.shape[0]
        while n_pending >= rows:
            block = np.concatenate(pending, axis=0) if len(pending) > 1 else pending[0]
            yield block[:rows]
            rest = block[rows:]
            pending, n_pending = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if seen != height:
        raise InfbrushError(f"{source}: bands hold {seen} rows, expected {height}")
    if n_pending:
        yield np.concatenate(pending, axis=0)


_MADV_PAGEOUT = 21  # Linux ≥ 5.4: reclaim these pages now (file-backed: written back, dropped from RSS)


def page_out(start: int, nbytes: int) -> None:
    """Drop the resident pages of [start, start + nbytes) from this process if they are file-backed (memory maps
    of the DDIM state or of a pyramid level, read once, top to bottom), so peak RSS stays bounded by one band
    whatever the image size. Anonymous memory is left alone (no swap: the kernel keeps it); data never changes.
    Best effort: a no-op where madvise or MADV_PAGEOUT is missing."""
    if nbytes <= 0 or _libc() is None:
        return
    page = 4096
    first = start - start % page
    _libc().madvise(ctypes.c_void_p(first), ctypes.c_size_t(start + nbytes - first), _MADV_PAGEOUT)


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def page_out_array(a: np.ndarray) -> None:
    """``page_out`` of a C-contiguous numpy array's bytes (a band of a memory map)."""
    if a.size and a.flags.c_contiguous:
        page_out(a.ctypes.data, a.nbytes)


def _tiles_of_row(block: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Full (tile, tile, C) tiles of one tile row, left to right, edge-replicated past the image border."""
    h, w, _ = block.shape
    if h < tile or w % tile:
        block = np.pad(block, ((0, tile - h), (0, (-w) % tile), (0, 0)), mode="edge")
    for x0 in range(0, block.shape[1], tile):
        yield np.ascontiguousarray(block[:, x0:x0 + tile])  # a copy: a held tile must not pin its row


def _level_tiles(blocks: Iterator[np.ndarray], tile: int, factor: int, next_level: np.ndarray | None,
                 progress=None) -> Iterator[np.ndarray]:
    """Yield one level's tiles in row-major order; each tile row is downsampled into ``next_level``."""
    rows_next = tile // factor
    for i, block in enumerate(blocks):  # (≤ tile, W, C)
        # downsample first: tifffile stops pulling once it has the last tile, so nothing after it would run
        if next_level is not None:
            small = downsample_rows(block, factor)  # (≤ tile/f, ceil(W/f), C)
            target = next_level[i * rows_next:i * rows_next + small.shape[0]]
            target[...] = small
            page_out_array(target)  # written back to the scratch file; read again for the next level
        if progress is not None:
            progress.update(block.shape[0])
        yield from _tiles_of_row(block, tile)


def _memmap_blocks(level: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    for y0 in range(0, level.shape[0], tile):
        view = level[y0:y0 + tile]
        block = np.array(view)  # a copy (ascontiguousarray would return the mapped view itself)
        page_out_array(view)
        yield block


@dataclass(frozen=True)
class PyramidOptions:
    """How the pyramid is stored, whatever the image: square ``tile`` side (a multiple of 16, for JPEG's 2×2
    chroma subsampling; 256 or 512 as SVS), ``level_factor`` between levels (2 or 4), ``compression`` ("jpeg" at
    ``quality``, or "deflate"), ``bigtiff`` (None: only when the pyramid needs 64-bit offsets)."""

    tile: int = 256
    compression: str = "jpeg"
    quality: int = 90
    level_factor: int = 2
    bigtiff: bool | None = None

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {self.compression!r}; valid: {', '.join(COMPRESSIONS)}")
        if self.level_factor not in (2, 4):
            raise ValueError(f"level_factor must be 2 or 4, got {self.level_factor}")
        if self.tile % 16 or self.tile < 16 or self.tile % self.level_factor:
            raise ValueError(f"tile must be a positive multiple of 16, got {self.tile}")


def write_pyramid_tiff(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    height: int,
    width: int,
    channels: int = 3,
    *,
    options: PyramidOptions = PyramidOptions(),
    mpp: float | None = None,
    description: str | None = None,
    progress: bool = False,
) -> PyramidInfo:
    """Write row ``bands`` ((rows, width, channels) uint8 each, top to bottom, any heights summing to
    ``height``) as a tiled pyramidal TIFF at ``path``, atomically. Returns the levels written.

    ``options``: tiling, level factor, compression (:class:`PyramidOptions`); ``mpp``: microns per pixel of
    level 0 (written as resolution in pixels/cm); ``description``: ImageDescription of level 0.
    """
    import tifffile
    from tqdm import tqdm

    path = Path(path)
    tile, level_factor, compression = options.tile, options.level_factor, options.compression
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    if mpp is not None and not mpp > 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    shapes = level_shapes(height, width, tile, level_factor)
    big = needs_bigtiff(shapes, channels) if options.bigtiff is None else bool(options.bigtiff)
    photometric = "rgb" if channels == 3 else "minisblack"
    tiff_args: dict = dict(tile=(tile, tile), photometric=photometric, metadata=None, software="infbrush")
    if compression == "jpeg":
        tiff_args.update(compression="jpeg", compressionargs={"level": int(options.quality)})
    else:
        tiff_args.update(compression="zlib", compressionargs={"level": 6}, predictor=True)
    if mpp is not None:
        tiff_args.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")

    bar = tqdm(total=sum(h for h, _ in shapes), desc=path.name, unit="row", disable=not progress)
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(prefix=".pyramid.", dir=path.parent) as work:
        blocks: Iterator[np.ndarray] = _rebuffer(bands, height, width, channels, tile, str(path))
        with tifffile.TiffWriter(tmp, bigtiff=big) as tif:
            for k, (h, w) in enumerate(shapes):
                nxt = None
                if k + 1 < len(shapes):
                    nh, nw = shapes[k + 1]
                    nxt = np.lib.format.open_memmap(Path(work) / f"level{k + 1}.npy", mode="w+", dtype=np.uint8,
                                                    shape=(nh, nw, channels))
                tiles = _level_tiles(blocks, tile, level_factor, nxt, bar)
                if channels == 1:  # tifffile reads a trailing axis of 1 as image depth: grey tiles go as (tile, tile)
                    tiles = (t[..., 0] for t in tiles)
                tif.write(tiles, shape=(h, w) if channels == 1 else (h, w, channels), dtype=np.uint8,
                          buffersize=tile * tile * channels * math.ceil(w / tile),
                          description=description if k == 0 else None,
                          subfiletype=0 if k == 0 else 1, **tiff_args)
                if k == 0 and next(blocks, None) is not None:  # runs _rebuffer's end-of-input checks
                    raise InfbrushError(f"{path}: bands hold more than the declared {height} rows")
                if nxt is not None:
                    nxt.flush()
                    blocks = _memmap_blocks(nxt, tile)
            del nxt, blocks
    bar.close()
    return PyramidInfo(path=path, level_shapes=tuple(shapes),
                       level_downsamples=tuple(float(level_factor**k) for k in range(len(shapes))),
                       tile=tile, compression=compression, mpp=mpp, bigtiff=big)


def array_bands(image: np.ndarray, rows: int = 256) -> Iterator[np.ndarray]:
    """Row bands of an in-memory (H, W, C) uint8 image (for small images and tests)."""
    for y0 in range(0, image.shape[0], rows):
        yield image[y0:y0 + rows]
