"""The per-slide coordinate files, in the conventions of the tools that read them (CLAM, TRIDENT).

Per slide, two HDF5 files with the same ``coords`` (N, 2) int64, level-0 x, y of each patch's top-left corner,
each in the convention of the tool that reads it (the two tools give the attribute ``patch_size`` different
meanings, so one file cannot serve both when the read level has to be resized):

``<out>/<slide_id>.h5`` — TRIDENT's convention (``trident.IO.coords_to_h5``), read by TRIDENT's feature
    extraction and by this pipeline. ``coords`` attrs: ``patch_size`` (side at the target resolution),
    ``patch_size_level0``, ``level0_magnification``, ``target_magnification`` (TRIDENT reads the patch as
    ``patch_size * level0_magnification / target_magnification`` level-0 px, resized to ``patch_size``),
    ``overlap`` (px shared by neighbouring patches at the target resolution), ``name``, ``savetodir``,
    ``level0_width``, ``level0_height``, ``level0_mpp``, ``target_mpp``. Deliberately no ``patch_level``:
    CLAM reading this file fails loudly instead of silently reading another field of view. File attrs (this
    pipeline's ``read_coords``): all of the above plus ``patch_level`` (pyramid level read), ``read_size``
    (side read at that level), ``downsample`` (of that level), ``step_level0`` (the grid's level-0 step),
    ``target_downsample``, ``mpp_source``, ``slide_id``, ``slide_path``, ``tiling_params``
    (JSON; decides whether a finished slide can be skipped).
``<out>/clam/patches/<slide_id>.h5`` — CLAM's convention (``create_patches_fp.py``; pass ``<out>/clam`` as
    CLAM's ``--data_h5_dir``). ``coords`` attrs: ``patch_level``, ``patch_size`` (side read *at that level*),
    ``custom_downsample`` (``patch_size / target side``; CLAM's ``--custom_downsample`` when an integer, else
    use ``--target_patch_size``), ``target_patch_size``, ``downsample``, ``level_dim``,
    ``downsampled_level_dim``, ``name``, ``save_path``. CLAM's ``Whole_Slide_Bag_FP`` reads
    ``read_region(coord, patch_level, (patch_size, patch_size))`` and resizes to
    ``patch_size // custom_downsample``: the same field of view as TRIDENT and this pipeline.

Each file is written under a temporary name and renamed when complete, so a crash never leaves a file that
looks finished.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.io import atomic_path
from infbrush.runtime.jobs import one_line

CLAM_DIR = Path("clam") / "patches"  # CLAM's layout: <data_h5_dir>/patches/<slide_id>.h5


def clam_attrs(geometry: dict[str, Any], sid: str, save_path: str) -> dict[str, Any]:
    """The ``coords`` attrs of CLAM's convention: ``patch_size`` is the side read at ``patch_level``."""
    read, target = int(geometry["read_size"]), int(geometry["patch_size"])
    ratio = read / target
    custom = int(round(ratio)) if abs(ratio - round(ratio)) < 1e-9 else ratio
    level_dim = geometry["level_dim"]
    return {"patch_level": int(geometry["patch_level"]), "patch_size": read, "custom_downsample": custom,
            "target_patch_size": target, "downsample": [float(geometry["downsample"])] * 2,
            "level_dim": level_dim, "downsampled_level_dim": level_dim, "name": sid, "save_path": save_path,
            "patch_size_level0": int(geometry["patch_size_level0"]), "level0_mpp": geometry["level0_mpp"]}


def trident_attrs(geometry: dict[str, Any], sid: str, save_path: str) -> dict[str, Any]:
    """The ``coords`` attrs of TRIDENT's convention: ``patch_size`` at the target magnification."""
    keys = ("patch_size", "patch_size_level0", "overlap", "level0_magnification", "target_magnification",
            "level0_width", "level0_height", "level0_mpp", "target_mpp")
    return {**{k: geometry[k] for k in keys}, "name": sid, "savetodir": save_path}


def write_coords(path: Path, coords: np.ndarray, attrs: dict[str, Any],
                 coords_attrs: dict[str, Any] | None = None) -> None:
    """Write a per-slide HDF5 atomically: ``coords`` with ``coords_attrs`` (a tool's convention; ``attrs`` when
    None) and the file-level ``attrs`` (this pipeline's)."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            dset = h5.create_dataset("coords", data=coords.astype(np.int64))  # (N, 2) level-0 x, y
            for key, value in attrs.items():
                h5.attrs[key] = value
            for key, value in (attrs if coords_attrs is None else coords_attrs).items():
                dset.attrs[key] = value


def read_coords(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """(N, 2) level-0 coords and the attrs of a per-slide tiles HDF5."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return h5["coords"][:], dict(h5.attrs)
    except (OSError, KeyError) as err:
        raise InfbrushError(f"{path}: not a tiles HDF5 with 'coords' ({one_line(err)})") from None
