"""WSI tiling: tissue mask at a low pyramid level, then a grid of patches at a target MPP or pyramid level (OpenSlide).

Per slide it writes the patch coordinates twice, in TRIDENT's and in CLAM's HDF5 convention (the two give
``patch_size`` different meanings), and a thumbnail showing the tissue and the patches. One idea a module, as
TRIDENT keeps them:

- :mod:`~infbrush.data.tiling.params`: the parameters that decide a slide's coords (kept with the output).
- :mod:`~infbrush.data.tiling.inputs`: which slides: discovery, slide ids, the batch CSV, the per-slide error.
- :mod:`~infbrush.data.tiling.geometry`: MPP, pyramid level and the patch grid kept on tissue.
- :mod:`~infbrush.data.tiling.formats`: the TRIDENT / CLAM coordinate files, written and read.
- :mod:`~infbrush.data.tiling.thumbnail`: the thumbnail the mask is computed on, and the one drawn for people.
- :mod:`~infbrush.data.tiling.slide`: one slide from file to outputs.
- :mod:`~infbrush.data.tiling.batch`: many slides, with resume and ``failures.tsv``.

The names below are the public interface; import them from here.
"""
from infbrush.data.tiling.batch import TilingSummary, is_done, tile_slides
from infbrush.data.tiling.formats import CLAM_DIR, clam_attrs, read_coords, trident_attrs, write_coords
from infbrush.data.tiling.geometry import (LEVEL_TOLERANCE, MPP_RANGE, choose_level, grid_coords, level0_mpp,
                                           metadata_mpp, no_mpp_message, select_coords, slide_geometry,
                                           subsample_coords)
from infbrush.data.tiling.inputs import SLIDE_EXTENSIONS, SlideError, find_slides, read_slides_csv, slide_id_of
from infbrush.data.tiling.params import TilingParams
from infbrush.data.tiling.slide import tile_slide
from infbrush.data.tiling.thumbnail import draw_thumbnail, grid_outline, read_thumbnail, thumbnail_size

__all__ = [
    "CLAM_DIR", "LEVEL_TOLERANCE", "MPP_RANGE", "SLIDE_EXTENSIONS", "SlideError", "TilingParams", "TilingSummary",
    "choose_level", "clam_attrs", "draw_thumbnail", "find_slides", "grid_coords", "grid_outline", "is_done",
    "level0_mpp", "metadata_mpp", "no_mpp_message", "read_coords", "read_slides_csv", "read_thumbnail",
    "select_coords", "slide_geometry", "slide_id_of", "subsample_coords", "thumbnail_size", "tile_slide",
    "tile_slides", "trident_attrs", "write_coords",
]
