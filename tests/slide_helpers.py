"""Slides for the tests, written by the demo world's own writers (infbrush/demo/writers.py): one pyramidal TIFF
writer serves the demo world and the fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from infbrush.demo.writers import write_aperio_svs, write_generic_tiff


def write_pyramidal_tiff(path: str | os.PathLike, image: np.ndarray, mpp: float, *, aperio: bool = True,
                         compression: str = "jpeg") -> int:
    """An (H, W, 3) uint8 image as a pyramidal slide OpenSlide reads (levels 4× apart): an Aperio SVS with ``MPP``
    and ``AppMag`` (10 / mpp), or a generic tiled TIFF with its resolution tags; ``compression='zlib'`` keeps the
    pixels exact. Returns the level count."""
    path = Path(path)
    if aperio:
        return write_aperio_svs(path, image, mpp, app_mag=round(10 / mpp, 6), name=path.name,
                                compression=compression)
    return write_generic_tiff(path, image, mpp, compression=compression)
