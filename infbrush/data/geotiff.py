"""NAIP-style GeoTIFF patching with Rasterio: non-overlapping windows → an image store with georeferencing.

Output (an image store, infbrush/data/store.py, plus)::

    window     (N, 4) int64    col_off, row_off, width, height of each patch in its source file
    transform  (N, 6) float64  the patch's geotransform in GDAL order (c, a, b, f, d, e): pixel (0, 0) of the
                               patch has its upper-left corner at (c, f) in the source CRS
    source     (N,) str        source file path
    crs_index  (N,) int16      index into attrs["crs_list"] (JSON list of WKT); attrs["crs"] is the WKT when
                               all sources share one CRS
Ids are ``<tile>/<row>_<col>`` (patch-grid row and column). Reads go one strip of patches at a time, which
suits tiled and striped files alike; uint16 data are scaled to uint8 by a per-file high percentile.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from infbrush.data.store import THUMB_SIZE
from infbrush.runtime.jobs import failures_path, write_failures
from infbrush.errors import InfbrushError
from infbrush.io import atomic_path


class GeoTiffError(Exception):
    """An input problem with one GeoTIFF (no CRS, wrong bands, all nodata): recorded, the run goes on."""


@dataclass(frozen=True)
class PatchParams:
    patch_size: int = 1024
    bands: tuple[int, ...] = (1, 2, 3)   # 1-based band indices (RGB; add 4 for NAIP NIR)
    max_nodata_fraction: float = 0.05    # patches with more nodata than this are dropped
    uint16_percentile: float = 99.8      # uint16 data: this percentile of valid pixels maps to 255


def check_source(ds, params: PatchParams) -> None:
    """Raise GeoTiffError if an open rasterio dataset cannot be patched with these parameters."""
    if ds.crs is None:
        raise GeoTiffError("file has no CRS")
    if max(params.bands) > ds.count or min(params.bands) < 1:
        raise GeoTiffError(f"file has {ds.count} bands, --bands asks for {','.join(map(str, params.bands))}")
    dtypes = {ds.dtypes[b - 1] for b in params.bands}
    if not dtypes <= {"uint8", "uint16"}:
        raise GeoTiffError(f"unsupported data type {sorted(dtypes)} (uint8 or uint16 expected)")
    if ds.width < params.patch_size or ds.height < params.patch_size:
        raise GeoTiffError(f"raster {ds.width}x{ds.height} is smaller than one {params.patch_size}² patch")


def uint16_scale(ds, params: PatchParams) -> float:
    """The value mapped to 255 for uint16 data: a high percentile of valid pixels of a decimated read."""
    factor = max(1, max(ds.width, ds.height) // 1024)
    shape = (len(params.bands), max(1, ds.height // factor), max(1, ds.width // factor))
    data = ds.read(list(params.bands), out_shape=shape, masked=True)
    valid = data.compressed()
    return float(max(1.0, np.percentile(valid, params.uint16_percentile))) if valid.size else 65535.0


def to_uint8(block: np.ndarray, scale: float | None) -> np.ndarray:
    """uint8 copy of a raster block; uint16 values are divided by ``scale`` / 255 and clipped."""
    if block.dtype == np.uint8:
        return block
    return np.clip(np.rint(block.astype(np.float32) * (255.0 / scale)), 0, 255).astype(np.uint8)


def iter_patches(ds, params: PatchParams) -> Iterator[tuple[int, int, Any, np.ndarray, float]]:
    """Yield (row, col, window, image (P, P, C) uint8, nodata fraction) over the full-patch grid."""
    import warnings

    from rasterio.errors import NodataShadowWarning
    from rasterio.windows import Window

    p = params.patch_size
    rows, cols = ds.height // p, ds.width // p
    bands = list(params.bands)
    scale = uint16_scale(ds, params) if any(ds.dtypes[b - 1] == "uint16" for b in bands) else None
    for row in range(rows):
        strip_window = Window(0, row * p, cols * p, p)
        strip = to_uint8(ds.read(bands, window=strip_window), scale)  # (C, P, cols·P)
        with warnings.catch_warnings():  # a 4-band file with nodata: the nodata value decides, as wanted
            warnings.simplefilter("ignore", NodataShadowWarning)
            valid = ds.read_masks(bands, window=strip_window).max(axis=0) > 0  # (P, cols·P): any band valid
        for col in range(cols):
            image = np.ascontiguousarray(strip[:, :, col * p:(col + 1) * p].transpose(1, 2, 0))
            nodata = 1.0 - float(valid[:, col * p:(col + 1) * p].mean())
            yield row, col, Window(col * p, row * p, p, p), image, nodata


class LandCover:
    """Majority land-cover class under a patch, from one or more class rasters (any CRS, any grid)."""

    def __init__(self, paths: Sequence[str | os.PathLike], names: Sequence[str] = ()) -> None:
        """``names[v]`` names class value v; else a ``class_names`` JSON tag of a raster; else class_<v>."""
        import rasterio

        self.sources = []
        for path in paths:
            try:
                self.sources.append(rasterio.open(path))
            except rasterio.errors.RasterioIOError as err:
                raise InfbrushError(f"{path}: cannot open land-cover raster ({err})") from None
        tags = [json.loads(s.tags().get("class_names", "null") or "null") for s in self.sources]
        self.names: list[str] | None = list(names) if names else next((n for n in tags if n), None)
        self.max_label = -1

    def label(self, bounds: tuple[float, float, float, float], crs) -> int:
        """Majority class (nodata ignored) of the first raster covering the centre of ``bounds``; −1 if none."""
        from rasterio.warp import transform_bounds
        from rasterio.windows import from_bounds

        for src in self.sources:
            left, bottom, right, top = transform_bounds(crs, src.crs, *bounds) if src.crs != crs else bounds
            cx, cy = (left + right) / 2, (bottom + top) / 2
            b = src.bounds
            if not (b.left <= cx <= b.right and b.bottom <= cy <= b.top):
                continue
            window = from_bounds(left, bottom, right, top, transform=src.transform).round_offsets().round_lengths()
            values = src.read(1, window=window, boundless=True, fill_value=src.nodata or 0).ravel()
            if src.nodata is not None:
                values = values[values != src.nodata]
            if values.size == 0:
                return -1
            label = int(np.bincount(values.astype(np.int64)).argmax())
            self.max_label = max(self.max_label, label)
            return label
        return -1

    def label_names(self) -> list[str]:
        names = list(self.names or [])
        return names + [f"class_{i}" for i in range(len(names), self.max_label + 1)]

    def close(self) -> None:
        for src in self.sources:
            src.close()


def patch_geotiffs(paths: Sequence[str | os.PathLike], out: str | os.PathLike, params: PatchParams, *,
                   thumb_size: int = THUMB_SIZE, landcover: Sequence[str | os.PathLike] = (),
                   landcover_names: Sequence[str] = (), held_out_fraction: float = 0.0, progress: bool = True,
                   log=None) -> dict[str, Any]:
    """Patch every GeoTIFF into the image store ``out``; files that cannot be used go to failures.tsv.

    The last ``ceil(held_out_fraction · rows)`` patch rows of each file are held out (a contiguous band,
    so held-out patches never border training patches on more than one side).
    """
    import h5py
    import rasterio
    from tqdm import tqdm

    from infbrush.data.store import ImageStoreWriter

    log = log or (lambda line: print(line, file=sys.stderr))
    failures: list[tuple[str, str]] = []
    windows, transforms, sources, crs_index, crs_list = [], [], [], [], []
    labels = LandCover(landcover, landcover_names) if landcover else None
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            with ImageStoreWriter(tmp, image_size=params.patch_size, channels=len(params.bands),
                                  thumb_size=thumb_size, attrs={"source": "geotiff",
                                                                "bands": list(params.bands)}) as writer:
                for path in tqdm(list(map(str, paths)), desc="patch-geotiff", unit="file", disable=not progress):
                    try:
                        _patch_one(path, params, writer, labels, held_out_fraction, windows, transforms,
                                   sources, crs_index, crs_list)
                    except GeoTiffError as err:
                        failures.append((path, str(err)))
                        log(f"{path}: skipped: {err}")
                        continue
                    except rasterio.errors.RasterioError as err:
                        reason = f"cannot read GeoTIFF ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                        failures.append((path, reason))
                        log(f"{path}: skipped: {reason}")
                        continue
                if writer.n == 0:
                    write_failures(failures_path(out), failures)
                    raise InfbrushError(f"{out}: no usable patch in {len(failures)} GeoTIFF(s); see failures.tsv")
                if labels is not None:
                    writer.label_names = labels.label_names()
            with h5py.File(tmp, "a") as h5:
                h5.create_dataset("window", data=np.asarray(windows, dtype=np.int64))  # (N, 4)
                h5.create_dataset("transform", data=np.asarray(transforms, dtype=np.float64))  # (N, 6)
                h5.create_dataset("source", data=np.asarray(sources, dtype=object), dtype=h5py.string_dtype())
                h5.create_dataset("crs_index", data=np.asarray(crs_index, dtype=np.int16))
                h5.attrs["crs_list"] = json.dumps(crs_list)
                h5.attrs["crs"] = crs_list[0] if len(crs_list) == 1 else json.dumps(crs_list)
                n_images = h5["images"].shape[0]
    finally:
        if labels is not None:
            labels.close()
    write_failures(failures_path(out), failures)
    return {"n_images": n_images, "n_files": len(set(sources)), "failures": failures}


def _patch_one(path: str, params: PatchParams, writer, labels: LandCover | None, held_out_fraction: float,
               windows: list, transforms: list, sources: list, crs_index: list, crs_list: list) -> int:
    """Append one file's usable patches to ``writer`` and the georeferencing lists; return their count.

    A read error part-way keeps the patches already appended (their metadata stay aligned row for row).
    """
    import rasterio
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform

    tile = Path(path).name.split(".")[0]
    with rasterio.open(path) as ds:
        check_source(ds, params)
        rows = ds.height // params.patch_size
        first_held_out = rows - math.ceil(held_out_fraction * rows) if held_out_fraction > 0 else rows
        wkt = ds.crs.to_wkt()
        n = 0
        for row, col, window, image, nodata in iter_patches(ds, params):
            if nodata > params.max_nodata_fraction:
                continue
            label = labels.label(window_bounds(window, ds.transform), ds.crs) if labels is not None else -1
            writer.append(image, f"{tile}/{row}_{col}", label=label, held_out=row >= first_held_out)
            windows.append([int(window.col_off), int(window.row_off), int(window.width), int(window.height)])
            transforms.append(list(window_transform(window, ds.transform).to_gdal()))
            sources.append(path)
            if wkt not in crs_list:
                crs_list.append(wkt)
            crs_index.append(crs_list.index(wkt))
            n += 1
    if n == 0:
        raise GeoTiffError(f"no patch has ≤ {params.max_nodata_fraction:g} nodata (all nodata?)")
    return n
