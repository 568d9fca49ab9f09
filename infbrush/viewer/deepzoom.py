"""Deep Zoom (DZI) tiles of pyramidal TIFFs, slides, slide regions and small images (OpenSlide's DeepZoomGenerator).

A tile set is ``<folder>/<name>_files/<level>/<col>_<row>.<format>`` plus ``<folder>/<name>.dzi`` (the XML
descriptor other Deep Zoom viewers read); the viewer page embeds the same descriptor inline, so that nothing
has to be fetched with XHR (which browsers refuse for pages opened from disk).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infbrush.runtime.jobs import one_line

PYRAMID_MIN_SIDE = 1024  # a TIFF with a side above this must carry reduced-resolution levels to be zoomable
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class ViewerInputError(Exception):
    """An input problem with one image (missing, unreadable, not pyramidal): recorded, the build goes on."""


def to_rgb(image):
    """A PIL image as RGB: the first three bands of multi-band images (RGBA here means RGB + a 4th band such
    as near-infrared, not transparency), grey as grey."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "CMYK") or len(image.getbands()) >= 3:
        bands = image.split()[:3] if image.mode != "CMYK" else image.convert("RGB").split()
        return Image.merge("RGB", bands)
    return image.convert("L").convert("RGB")


def array_slide(array: np.ndarray):
    """An OpenSlide-like slide of an (H, W, C) or (H, W) uint8 array (C = 1, 3 or more; first three shown)."""
    import openslide
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3:
        array = array[..., :3] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)
    return openslide.ImageSlide(to_rgb(Image.fromarray(np.ascontiguousarray(array))))


def _describe_tiff(path: Path) -> str | None:
    """Why OpenSlide refused a TIFF, in words (strip-organised, single page ...); None if not a TIFF."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            layout = "tiled" if page.is_tiled else "strip-organised (not tiled)"
            return (f"not a tiled pyramidal TIFF: {len(tif.pages)} page(s), level 0 {page.imagewidth}×"
                    f"{page.imagelength} px {layout}; write it with `infbrush sample` or convert it with "
                    "`vips tiffsave IN OUT --tile --pyramid`")
    except Exception:  # noqa: BLE001 - not a TIFF at all: the caller says so
        return None


def open_image(path: str | os.PathLike):
    """Open a generated or real image for tiling: PNG/JPEG as an in-memory slide, anything else with OpenSlide.

    Raises ViewerInputError (one line) for a missing or unreadable file and for a TIFF without a pyramid.
    """
    import openslide
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ViewerInputError("file not found")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as image:
                image.load()
                return openslide.ImageSlide(to_rgb(image))
        except (OSError, UnidentifiedImageError) as err:
            raise ViewerInputError(f"cannot read image ({one_line(err)})") from None
    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise ViewerInputError(_describe_tiff(path) or "not an image format OpenSlide can read") from None
    except (openslide.OpenSlideError, OSError) as err:
        raise ViewerInputError(f"cannot open ({one_line(err)})") from None
    if slide.level_count == 1 and max(slide.dimensions) > PYRAMID_MIN_SIDE:
        width, height = slide.dimensions
        slide.close()
        raise ViewerInputError(f"not pyramidal: a single level of {width}×{height} px; write it with "
                               "`infbrush sample` or convert it with `vips tiffsave IN OUT --tile --pyramid`")
    return slide


def image_mpp(slide) -> float | None:
    """Level-0 µm/px of an open slide (OpenSlide's mpp-x), or None."""
    try:
        mpp = float(slide.properties.get("openslide.mpp-x", "nan"))
    except (TypeError, ValueError):
        return None
    return mpp if mpp > 0 else None


class BoundedSlide:
    """A slide seen through a level-0 box: OpenSlide's bounds properties make DeepZoomGenerator
    (``limit_bounds=True``) tile only that box, at every zoom level, from the slide's own pyramid."""

    def __init__(self, slide, box: tuple[int, int, int, int]) -> None:
        x, y, w, h = (int(v) for v in box)
        self._slide = slide
        self.properties = {**dict(slide.properties), "openslide.bounds-x": str(x), "openslide.bounds-y": str(y),
                           "openslide.bounds-width": str(w), "openslide.bounds-height": str(h)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slide, name)


@dataclass(frozen=True)
class DeepZoomOptions:
    """How every image is cut into Deep Zoom tiles: ``tile_size`` + 2 ``overlap`` px per tile (254 + 2 = 256, as
    OpenSlide's examples), ``fmt`` "jpeg" (at ``quality``) or "png", ``workers`` threads writing tiles."""

    tile_size: int = 254
    overlap: int = 1
    fmt: str = "jpeg"
    quality: int = 90
    workers: int = 1


def write_dzi(slide, folder: str | os.PathLike, name: str, *, options: DeepZoomOptions = DeepZoomOptions(),
              box: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """Write the Deep Zoom tiles of ``slide`` (of its level-0 ``box`` x, y, w, h when given) under ``folder``.

    Returns the descriptor the page embeds: url (relative to ``folder``'s parent), width, height, tile_size,
    overlap, format, levels.
    """
    from openslide.deepzoom import DeepZoomGenerator

    tile_size, overlap, fmt, quality, workers = (options.tile_size, options.overlap, options.fmt, options.quality,
                                                 options.workers)
    if fmt not in FORMATS:
        raise ValueError(f"unknown tile format {fmt!r}; valid: {', '.join(FORMATS)}")
    folder = Path(folder)
    source = BoundedSlide(slide, box) if box is not None else slide
    dz = DeepZoomGenerator(source, tile_size=tile_size, overlap=overlap, limit_bounds=box is not None)
    root = folder / f"{name}_files"
    jobs = []
    for level in range(dz.level_count):
        (root / str(level)).mkdir(parents=True, exist_ok=True)
        cols, rows = dz.level_tiles[level]
        jobs += [(level, col, row) for row in range(rows) for col in range(cols)]
    codec = {"quality": int(quality)} if fmt == "jpeg" else {"compress_level": 3}

    def save(job: tuple[int, int, int]) -> None:
        level, col, row = job
        dz.get_tile(level, (col, row)).save(root / str(level) / f"{col}_{row}.{fmt}", FORMATS[fmt], **codec)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenSlide and PIL's codecs release the GIL
            list(pool.map(save, jobs))
    else:
        for job in jobs:
            save(job)
    (folder / f"{name}.dzi").write_text(dz.get_dzi(fmt))
    width, height = dz.level_dimensions[-1]
    return {"url": f"{folder.name}/{name}_files/", "width": int(width), "height": int(height),
            "tile_size": int(tile_size), "overlap": int(overlap), "format": fmt, "levels": int(dz.level_count),
            "tiles": len(jobs)}
