"""Tiling one slide, from its file to its outputs: open it (an unreadable or truncated slide is a SlideError),
place the patches, and write the TRIDENT and CLAM coordinate files and the thumbnail."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infbrush.data.tiling.formats import CLAM_DIR, clam_attrs, trident_attrs, write_coords
from infbrush.data.tiling.geometry import grid_coords, select_coords, slide_geometry, subsample_coords
from infbrush.data.tiling.inputs import SlideError, slide_id_of
from infbrush.data.tiling.params import TilingParams
from infbrush.data.tiling.thumbnail import draw_thumbnail, read_thumbnail
from infbrush.data.tissue import tissue_mask
from infbrush.io import atomic_path
from infbrush.runtime.jobs import one_line


def tile_slide(path: str | os.PathLike, out_dir: str | os.PathLike, params: TilingParams,
               slide_mpp: float | None = None) -> dict[str, Any]:
    """Tile one slide: write ``<out_dir>/<slide_id>.h5`` (TRIDENT's convention), ``<out_dir>/clam/patches/
    <slide_id>.h5`` (CLAM's) and ``<slide_id>_thumb.png``; return a summary.

    Raises SlideError for input problems (the caller records them and goes on).
    """
    import openslide
    from PIL import UnidentifiedImageError

    path, out_dir = Path(path), Path(out_dir)
    sid = slide_id_of(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise SlideError(f"cannot stat file ({one_line(err)})") from None
    if size == 0:
        raise SlideError("empty file (0 bytes)")
    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideError("not a slide format OpenSlide can read") from None
    except (openslide.OpenSlideError, UnidentifiedImageError, OSError) as err:
        raise SlideError(f"cannot open slide ({one_line(err)})") from None
    try:
        geometry = slide_geometry(slide, path, params, slide_mpp)
        thumb = read_thumbnail(slide, params.mask_max_side)  # (h, w, 3) uint8
        mask = tissue_mask(thumb, params.tissue)  # (h, w) bool
        size0 = (geometry["level0_width"], geometry["level0_height"])
        grid = grid_coords(*size0, geometry["patch_size_level0"], geometry["step_level0"])
        if len(grid) == 0:
            raise SlideError(f"slide ({size0[0]}x{size0[1]}) is smaller than one patch "
                             f"({geometry['patch_size_level0']} px at level 0)")
        coords = select_coords(grid, mask, size0, geometry["patch_size_level0"], params.min_tissue_fraction)
        if len(coords) == 0:
            raise SlideError(f"no tissue found (no patch is ≥ {params.min_tissue_fraction:g} tissue)")
        coords = subsample_coords(coords, params.max_patches_per_slide, params.seed, sid)
        # read one patch: a truncated slide often opens and fails only on pixel reads at full resolution
        x, y = (int(v) for v in coords[len(coords) // 2])
        slide.read_region((x, y), geometry["patch_level"], (geometry["read_size"],) * 2)
    except (openslide.OpenSlideError, OSError) as err:
        raise SlideError(f"cannot read slide pixels ({one_line(err)})") from None
    finally:
        slide.close()
    attrs = {**geometry, "slide_id": sid, "slide_path": str(path), "tiling_params": params.to_json(slide_mpp)}
    (out_dir / CLAM_DIR).mkdir(parents=True, exist_ok=True)
    write_coords(out_dir / CLAM_DIR / f"{sid}.h5", coords, attrs,
                 clam_attrs(geometry, sid, str(out_dir / CLAM_DIR.parent)))
    write_coords(out_dir / f"{sid}.h5", coords, attrs, trident_attrs(geometry, sid, str(out_dir)))
    with atomic_path(out_dir / f"{sid}_thumb.png") as tmp:
        draw_thumbnail(thumb, mask, coords, size0, geometry["patch_size_level0"]).save(tmp, format="PNG",
                                                                                      compress_level=1)
    return {"slide_id": sid, "path": str(path), "n_patches": int(len(coords))}
