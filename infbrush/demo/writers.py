"""File writers of the demo world, in the formats real inputs come in: Aperio SVS and generic pyramidal tiled
TIFF slides (OpenSlide reads both), and tiled GeoTIFFs. The tests build their slides with the same writers."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

_APERIO_HEADER = "Aperio Image Library v12.0.15"
NAIP_CRS = "EPSG:26918"  # NAD83 / UTM zone 18N, as NAIP in the Chesapeake Bay watershed


def slide_pyramid(rgb: np.ndarray, factor: int = 4, min_side: int = 64) -> list[np.ndarray]:
    """Levels (h_k, w_k, 3) uint8 by box-averaging ``factor`` x; stops before a side drops under ``min_side``."""
    from PIL import Image

    levels = [rgb]
    while min(levels[-1].shape[:2]) // factor >= min_side:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(factor)))
    return levels


def _codec(compression: str, jpeg_quality: int) -> dict[str, Any]:
    """tifffile arguments of a tile codec: JPEG at ``jpeg_quality`` (what scanners write), or a lossless one
    (``zlib``, ``deflate``) for exact pixels."""
    args: dict[str, Any] = {"photometric": "rgb", "compression": compression, "metadata": None}
    if compression == "jpeg":
        args["compressionargs"] = {"level": jpeg_quality}
    return args


def write_aperio_svs(path: Path, rgb: np.ndarray, mpp: float, app_mag: float, name: str,
                     tile_size: int = 256, jpeg_quality: int = 85, compression: str = "jpeg") -> int:
    """Write rgb (H, W, 3) uint8 as an Aperio-style SVS; returns the level count.

    Page order as Aperio scanners write it: level 0 (tiled), thumbnail (stripped), levels 1..n
    (tiled, 4x apart). OpenSlide detects Aperio from a tiled first page whose ImageDescription
    starts with "Aperio"; it reads ``|key = value`` pairs as ``aperio.*`` properties (MPP, AppMag).
    """
    import tifffile
    from PIL import Image

    height, width = rgb.shape[:2]
    levels = slide_pyramid(rgb)
    thumb_factor = max(1, math.ceil(max(height, width) / 768))
    thumbnail = np.asarray(Image.fromarray(rgb).reduce(thumb_factor))
    base = f"{_APERIO_HEADER} \r\n{width}x{height} [0,0 {width}x{height}] ({tile_size}x{tile_size})"
    level0_description = (
        f"{base} JPEG/RGB Q={jpeg_quality}|AppMag = {app_mag}|StripeWidth = 2040|ScanScope ID = SS-INFBRUSH-DEMO"
        f"|Filename = {name}|Date = 01/01/26|Time = 00:00:00|Time Zone = GMT+0000|User = infbrush-demo"
        f"|MPP = {mpp}|Left = 0.000000|Top = 0.000000|OriginalWidth = {width}|OriginalHeight = {height}")
    jpeg = _codec(compression, jpeg_quality)
    with tifffile.TiffWriter(path, bigtiff=rgb.nbytes > 2**31) as tif:
        tif.write(rgb, tile=(tile_size, tile_size), description=level0_description, **jpeg)
        th, tw = thumbnail.shape[:2]
        tif.write(thumbnail, description=f"{_APERIO_HEADER} \r\n{width}x{height} -> {tw}x{th} - |AppMag = {app_mag}"
                  f"|MPP = {mpp}", **jpeg)
        for level in levels[1:]:
            lh, lw = level.shape[:2]
            tif.write(level, tile=(tile_size, tile_size),
                      description=f"{base} -> {lw}x{lh} JPEG/RGB Q={jpeg_quality}", **jpeg)
    return len(levels)


def write_generic_tiff(path: Path, rgb: np.ndarray, mpp: float, tile_size: int = 256, jpeg_quality: int = 85,
                       compression: str = "jpeg") -> int:
    """Write rgb (H, W, 3) uint8 as a generic pyramidal tiled TIFF (OpenSlide vendor ``generic-tiff``).

    Levels are top-level pages (reduced ones with NewSubfileType = 1): OpenSlide 4 builds a
    generic-tiff pyramid from top-level tiled directories and ignores SubIFDs. X/YResolution in
    pixels per centimetre give ``openslide.mpp-x``/``mpp-y``. Returns the level count.
    """
    import tifffile

    levels = slide_pyramid(rgb)
    jpeg = _codec(compression, jpeg_quality)
    with tifffile.TiffWriter(path, bigtiff=rgb.nbytes > 2**31) as tif:
        for k, level in enumerate(levels):
            level_mpp = mpp * rgb.shape[1] / level.shape[1]
            px_per_cm = 1e4 / level_mpp
            tif.write(level, tile=(tile_size, tile_size), resolution=(px_per_cm, px_per_cm),
                      resolutionunit="CENTIMETER", subfiletype=1 if k else 0, **jpeg)
    return len(levels)


def write_geotiff(path: Path, data: np.ndarray, transform: Any, nodata: int,
                  band_names: tuple[str, ...] | None = None, colormap: dict | None = None) -> None:
    """Write (bands, H, W) uint8 as a tiled, deflate-compressed GeoTIFF in NAIP_CRS."""
    import rasterio

    count, height, width = data.shape
    # 4 bands: RGB photometric with an unspecified (not alpha) extra sample for NIR, as NAIP ships
    photometric = dict(photometric="RGB", alpha="NO") if count == 4 else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype="uint8",
                       crs=NAIP_CRS, transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", interleave="pixel", **photometric) as dst:
        dst.write(data)
        for band, name in enumerate(band_names or (), start=1):
            dst.set_band_description(band, name)
        if colormap:
            dst.write_colormap(1, colormap)
