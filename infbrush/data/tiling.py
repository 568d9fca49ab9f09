"""WSI tiling: tissue mask at a low pyramid level, then a grid of patches at a target MPP or pyramid level (OpenSlide).

Per slide, two HDF5 files with the same ``coords`` (N, 2) int64, level-0 x, y of each patch's top-left corner,
each in the convention of the tool that reads it (the two tools give the attribute ``patch_size`` different
meanings, so one file cannot serve both when the read level has to be resized):

``<out>/<slide_id>.h5`` — TRIDENT's convention (``trident.IO.coords_to_h5``), read by TRIDENT's feature
    extraction and by this pipeline. ``coords`` attrs: ``patch_size`` (side at the target resolution),
    ``patch_size_level0``, ``level0_magnification``, ``target_magnification`` (TRIDENT reads the patch as
    ``patch_size * level0_magnification / target_magnification`` level-0 px, resized to ``patch_size``),
    ``overlap`` (0), ``name``, ``savetodir``, ``level0_width``, ``level0_height``, ``level0_mpp``,
    ``target_mpp``. Deliberately no ``patch_level``: CLAM reading this file fails loudly instead of
    silently reading another field of view. File attrs (this pipeline's ``read_coords``): all of the above
    plus ``patch_level`` (pyramid level read), ``read_size`` (side read at that level), ``downsample`` (of
    that level), ``target_downsample``, ``mpp_source``, ``slide_id``, ``slide_path``, ``tiling_params``
    (JSON; decides whether a finished slide can be skipped).
``<out>/clam/patches/<slide_id>.h5`` — CLAM's convention (``create_patches_fp.py``; pass ``<out>/clam`` as
    CLAM's ``--data_h5_dir``). ``coords`` attrs: ``patch_level``, ``patch_size`` (side read *at that level*),
    ``custom_downsample`` (``patch_size / target side``; CLAM's ``--custom_downsample`` when an integer, else
    use ``--target_patch_size``), ``target_patch_size``, ``downsample``, ``level_dim``,
    ``downsampled_level_dim``, ``name``, ``save_path``. CLAM's ``Whole_Slide_Bag_FP`` reads
    ``read_region(coord, patch_level, (patch_size, patch_size))`` and resizes to
    ``patch_size // custom_downsample``: the same field of view as TRIDENT and this pipeline.

Resolution: ``target_mpp`` µm/px (the slide's MPP from OpenSlide metadata, or an override: ``mpp`` for all
slides or a per-slide value), or the slide's own resolution (``target_mpp=None``: level 0, or pyramid level
``level``), which needs no MPP at all. MPP metadata outside 0.01–50 µm/px (e.g. a 72-dpi TIFF default,
352.8 µm/px) is not trusted. The level read is the coarsest pyramid level whose downsample does not exceed
the target's (never upsample); the read region is then resized to ``patch_size``.
"""
from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infbrush.data.tissue import TissueParams, tissue_fraction, tissue_mask
from infbrush.errors import InfbrushError
from infbrush.io import atomic_path
from infbrush.runtime.jobs import InputError, one_line, run_tasks, write_failures

SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif",
                    ".dcm")
LEVEL_TOLERANCE = 1.02  # a level whose downsample is within 2% above the target still counts as ≤ target
MPP_RANGE = (0.01, 50.0)  # µm/px a slide scanner can produce; metadata outside it is a default, not a measurement
CLAM_DIR = Path("clam") / "patches"  # CLAM's layout: <data_h5_dir>/patches/<slide_id>.h5


class SlideError(InputError):
    """An input problem with one slide (unreadable, no MPP, no tissue): recorded, the run goes on."""


@dataclass(frozen=True)
class TilingParams:
    """Everything that decides a slide's coords (stored with the output to make resume safe)."""

    patch_size: int = 256
    target_mpp: float | None = 1.0  # None: the slide's own resolution (level 0, or ``level``)
    level: int | None = None  # with target_mpp None: tile at this pyramid level's resolution (None = 0)
    mpp: float | None = None  # level-0 µm/px of every slide, overriding their metadata
    mask_max_side: int = 1024
    min_tissue_fraction: float = 0.5
    max_patches_per_slide: int = 0  # 0 = all
    seed: int = 0
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        if self.patch_size <= 0:
            raise InfbrushError(f"patch_size {self.patch_size}: must be > 0")
        if self.target_mpp is not None and not self.target_mpp > 0:
            raise InfbrushError(f"target_mpp {self.target_mpp}: must be > 0 (or native)")
        if self.mpp is not None and not self.mpp > 0:
            raise InfbrushError(f"mpp {self.mpp}: must be > 0")
        if self.level is not None and (self.level < 0 or self.target_mpp is not None):
            raise InfbrushError(f"level {self.level}: must be ≥ 0 and given without target_mpp")

    def to_json(self, slide_mpp: float | None = None) -> str:
        """The parameters as JSON; ``slide_mpp`` (a per-slide MPP override) is part of what made the coords."""
        data = asdict(self)
        if slide_mpp is not None:
            data["slide_mpp"] = slide_mpp
        return json.dumps(data, sort_keys=True)


def slide_id_of(path: str | os.PathLike) -> str:
    """The slide id: the file name without its slide extension (TCGA names keep their UUID part)."""
    name = Path(path).name
    for ext in SLIDE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def find_slides(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Slide files from files, directories (searched recursively for slide extensions) and globs.

    Files named explicitly are returned whatever their extension (a wrong one is reported when opened).
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in SLIDE_EXTENSIONS)
        elif path.exists():
            found.append(path)
        elif glob.has_magic(str(item)):
            found += sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
        else:
            raise InfbrushError(f"{item}: no such slide file or directory")
    return list(dict.fromkeys(found))


def metadata_mpp(properties: dict[str, str]) -> tuple[float | None, str]:
    """(level-0 µm/px, where it came from) from OpenSlide properties: ``openslide.mpp-x``/``-y``, else the TIFF
    resolution tags in pixels per centimetre or inch. (None, why) when absent or implausible (outside MPP_RANGE,
    as the 72 dpi = 352.8 µm/px that image writers put in by default)."""
    found: list[tuple[float, str]] = []
    for key in ("openslide.mpp-x", "openslide.mpp-y"):
        try:
            found.append((float(properties[key]), key))
        except (KeyError, ValueError):
            continue
    unit = properties.get("tiff.ResolutionUnit", "").lower()
    try:
        res = float(properties.get("tiff.XResolution", "0"))
    except ValueError:
        res = 0.0
    if res > 0 and unit in ("centimeter", "inch"):
        found.append(((1e4 if unit == "centimeter" else 25400.0) / res,
                      f"TIFF resolution {res:g} px/{'cm' if unit == 'centimeter' else 'inch'}"))
    for mpp, source in found:
        if MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
            return mpp, source
    if found:
        mpp, source = found[-1]
        return None, (f"{source} gives {mpp:g} µm/px, outside the {MPP_RANGE[0]:g}–{MPP_RANGE[1]:g} µm/px of "
                      "slide scanners (an image writer's default)")
    return None, "no openslide.mpp-x or TIFF resolution in its metadata"


def level0_mpp(properties: dict[str, str]) -> float:
    """Trustworthy microns per pixel at level 0 from OpenSlide properties; SlideError when there is none."""
    mpp, why = metadata_mpp(properties)
    if mpp is None:
        raise SlideError(no_mpp_message(why))
    return mpp


def no_mpp_message(why: str) -> str:
    return (f"no trustworthy microns-per-pixel ({why}); give it with --mpp or an mpp column in --slides-csv, "
            "or tile at the slide's own resolution with --target-mpp native or --level N")


def choose_level(level_downsamples: Sequence[float], target_downsample: float) -> int:
    """Index of the coarsest level with downsample ≤ target (within LEVEL_TOLERANCE); 0 if none."""
    best = 0
    for level, downsample in enumerate(level_downsamples):
        if downsample <= target_downsample * LEVEL_TOLERANCE and downsample >= level_downsamples[best]:
            best = level
    return best


def grid_coords(width: int, height: int, step: int) -> np.ndarray:
    """(N, 2) level-0 x, y of a non-overlapping grid of full ``step``-sized patches, row-major."""
    ys, xs = np.meshgrid(np.arange(0, height - step + 1, step), np.arange(0, width - step + 1, step),
                         indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)


def select_coords(coords: np.ndarray, mask: np.ndarray, level0_size: tuple[int, int], patch_level0: int,
                  min_fraction: float) -> np.ndarray:
    """Rows of ``coords`` (N, 2) whose patch is at least ``min_fraction`` tissue in ``mask`` (h, w)."""
    if len(coords) == 0:
        return coords
    sx = mask.shape[1] / level0_size[0]
    sy = mask.shape[0] / level0_size[1]
    boxes = np.stack([np.floor(coords[:, 0] * sx), np.floor(coords[:, 1] * sy),
                      np.ceil((coords[:, 0] + patch_level0) * sx), np.ceil((coords[:, 1] + patch_level0) * sy)],
                     axis=1).astype(np.int64)
    return coords[tissue_fraction(mask, boxes) >= min_fraction]


def subsample_coords(coords: np.ndarray, limit: int, seed: int, slide_id: str) -> np.ndarray:
    """At most ``limit`` rows of ``coords``, drawn without replacement from a per-slide seed, kept in order."""
    import zlib

    if limit <= 0 or len(coords) <= limit:
        return coords
    rng = np.random.default_rng([seed, zlib.crc32(slide_id.encode())])
    keep = np.sort(rng.choice(len(coords), size=limit, replace=False))
    return coords[keep]


def slide_geometry(slide, path: str | os.PathLike, params: TilingParams,
                   slide_mpp: float | None = None) -> dict[str, Any]:
    """Level, sizes and metadata of the patch grid of an open OpenSlide slide (the HDF5 attrs).

    ``slide_mpp`` overrides this slide's MPP (a per-slide CSV value), ``params.mpp`` that of every slide.
    """
    properties = dict(slide.properties)
    override = slide_mpp if slide_mpp is not None else params.mpp
    if override is not None:
        if not override > 0:
            raise SlideError(f"mpp override {override:g}: must be > 0")
        mpp, mpp_source = float(override), "override"
    else:
        mpp, mpp_source = metadata_mpp(properties)
    downsamples = [float(d) for d in slide.level_downsamples]
    if params.target_mpp is None:  # the slide's own resolution: level 0 or params.level; no MPP needed
        wanted = params.level or 0
        if wanted >= len(downsamples):
            raise SlideError(f"level {wanted} does not exist (the slide has {len(downsamples)} level(s), "
                             f"downsamples {', '.join(f'{d:g}' for d in downsamples)})")
        target_downsample = downsamples[wanted]
        target_mpp = mpp * target_downsample if mpp is not None else float("nan")
    else:
        if mpp is None:
            raise SlideError(no_mpp_message(mpp_source))
        target_downsample = params.target_mpp / mpp
        if target_downsample < 1 / LEVEL_TOLERANCE:
            raise SlideError(f"level-0 resolution {mpp:g} µm/px ({mpp_source}) is coarser than target_mpp "
                             f"{params.target_mpp:g}; tile at the slide's own resolution with --target-mpp native, "
                             "or give the right MPP with --mpp")
        target_mpp = float(params.target_mpp)
    level = choose_level(downsamples, target_downsample)
    downsample = downsamples[level]
    patch_level0 = int(round(params.patch_size * target_downsample))
    read_size = max(1, int(round(patch_level0 / downsample)))
    magnification = float("nan")
    if mpp_source != "override":
        try:
            magnification = float(properties["openslide.objective-power"])
        except (KeyError, ValueError):
            pass
    if not magnification > 0 and mpp is not None:
        magnification = 10.0 / mpp  # 0.5 µm/px ≈ 20×, 0.25 µm/px ≈ 40× (TRIDENT's and CLAM's rule of thumb)
    width, height = slide.dimensions
    return {"patch_size": params.patch_size, "patch_size_level0": patch_level0, "patch_level": level,
            "read_size": read_size, "downsample": downsample, "target_downsample": target_downsample,
            "level0_mpp": mpp if mpp is not None else float("nan"), "mpp_source": mpp_source,
            "level0_magnification": magnification, "target_magnification": magnification / target_downsample,
            "target_mpp": target_mpp, "level0_width": int(width), "level0_height": int(height),
            "level_dim": [int(v) for v in slide.level_dimensions[level]]}


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
    keys = ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "level0_width",
            "level0_height", "level0_mpp", "target_mpp")
    return {**{k: geometry[k] for k in keys}, "overlap": 0, "name": sid, "savetodir": save_path}


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
        grid = grid_coords(*size0, geometry["patch_size_level0"])
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


def is_done(path: Path, params: TilingParams, slide_mpp: float | None = None) -> bool:
    """True when ``path`` and its CLAM twin are finished tiles files made with the same parameters (safe to skip)."""
    clam = path.parent / CLAM_DIR / path.name
    if not path.is_file() or not clam.is_file():
        return False
    try:
        _, attrs = read_coords(path)
        _, clam_file_attrs = read_coords(clam)
    except InfbrushError:
        return False
    key = params.to_json(slide_mpp)
    return attrs.get("tiling_params") == key and clam_file_attrs.get("tiling_params") == key


def thumbnail_size(level0_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(w, h) of a thumbnail whose longest side is ``max_side`` (never larger than the slide), as PIL's."""
    width, height = level0_size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_thumbnail(slide, max_side: int) -> np.ndarray:
    """(h, w, 3) uint8 thumbnail of an open OpenSlide slide, longest side ``max_side``, on white.

    Like ``OpenSlide.get_thumbnail``, reads the whole pyramid level best for the downsample once, but
    shrinks it with an integer box ``reduce`` (exact area average) plus a small Lanczos step instead of
    one large Lanczos resize, and composites on white only when the level has transparent pixels.
    """
    from PIL import Image

    size0 = tuple(int(v) for v in slide.dimensions)
    size = thumbnail_size(size0, max_side)
    level = slide.get_best_level_for_downsample(max(a / b for a, b in zip(size0, size)))
    region = slide.read_region((0, 0), level, slide.level_dimensions[level])  # RGBA, not premultiplied
    if region.getchannel("A").getextrema()[0] == 255:
        image = region.convert("RGB")
    else:
        image = Image.new("RGB", region.size, (255, 255, 255))
        image.paste(region, mask=region.getchannel("A"))
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.0)
    return np.asarray(image)


def grid_outline(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """(h, w) bool outlines of boxes (N, 4: x0, y0, x1, y1 inclusive pixel bounds), without a Python loop.

    Each edge is a run along one row or column; runs are marked with ±1 in a difference image and
    cumulated, so the cost is O(h·w + N) whatever the number of boxes.
    """
    h, w = shape
    x0, y0, x1, y1 = (np.clip(boxes[:, i], 0, (w - 1, h - 1)[i % 2]) for i in range(4))
    rows = np.zeros((h, w + 1), np.int32)  # horizontal edges: rows y0 and y1, columns x0..x1
    for y in (y0, y1):
        np.add.at(rows, (y, x0), 1)
        np.add.at(rows, (y, x1 + 1), -1)
    cols = np.zeros((h + 1, w), np.int32)  # vertical edges: columns x0 and x1, rows y0..y1
    for x in (x0, x1):
        np.add.at(cols, (y0, x), 1)
        np.add.at(cols, (y1 + 1, x), -1)
    return (np.cumsum(rows, axis=1)[:, :w] > 0) | (np.cumsum(cols, axis=0)[:h] > 0)


def draw_thumbnail(thumb: np.ndarray, mask: np.ndarray, coords: np.ndarray, level0_size: tuple[int, int],
                   patch_level0: int):
    """PIL image of the slide thumbnail with the tissue mask tinted green and the patch grid in blue."""
    from PIL import Image

    tinted = ((thumb.astype(np.uint16) * 7 + np.array([0, 600, 0], np.uint16)) // 10).astype(np.uint8)
    image = np.where(mask[..., None], tinted, thumb)  # (h, w, 3) uint8: 0.7 x + 0.3 (0, 200, 0) on tissue
    sx = thumb.shape[1] / level0_size[0]
    sy = thumb.shape[0] / level0_size[1]
    if len(coords):
        boxes = np.stack([coords[:, 0] * sx, coords[:, 1] * sy, (coords[:, 0] + patch_level0) * sx - 1,
                          (coords[:, 1] + patch_level0) * sy - 1], axis=1)
        boxes = np.floor(boxes).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])  # patches smaller than a thumbnail pixel
        image[grid_outline(thumb.shape[:2], boxes)] = (0, 0, 255)
    return Image.fromarray(image)


@dataclass
class TilingSummary:
    """What a tiling run did: slides tiled, slides skipped as already done, and failures (path, reason)."""

    tiled: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    internal_errors: int = 0  # failures that are not input problems (bugs): the run must not pass


def _preload() -> None:
    """Import the workers' libraries once in the parent, so forked workers start with them loaded."""
    import h5py  # noqa: F401
    import openslide  # noqa: F401

    try:
        import cv2  # noqa: F401
    except ImportError:
        import scipy.ndimage  # noqa: F401  (tissue.py's fallback)


def read_slides_csv(csv_path: str | os.PathLike, found: Sequence[str | os.PathLike] = ()
                    ) -> tuple[list[Path], dict[str, float], list[tuple[str, str]]]:
    """Slides and per-slide MPP of a batch CSV (TRIDENT's ``--custom_list_of_wsis`` layout).

    Columns: ``wsi`` (or ``slide`` / ``path``): a slide file, absolute, relative to the CSV's folder or to the
    working directory, or the file name / slide id of one of ``found`` (slides given on the command line);
    ``mpp`` (optional; empty = use the slide's metadata): its level-0 µm/px. Returns (slides, {slide path: mpp},
    failures (CSV row, reason)) — rows naming no existing slide or with a bad ``mpp`` are failures of that row
    only. A CSV that cannot be read or has no slide column is an InfbrushError.
    """
    import csv

    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InfbrushError(f"{csv_path}: cannot read the slides CSV ({one_line(err)})") from None
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in rows]
    column = next((c for c in ("wsi", "slide", "path") if c in columns), None)
    if column is None:
        raise InfbrushError(f"{csv_path}: no 'wsi' column naming the slides (columns: {', '.join(columns) or 'none'})")
    by_name: dict[str, Path] = {}
    for path in map(Path, found):
        by_name.setdefault(path.name, path)
        by_name.setdefault(slide_id_of(path), path)
    slides: list[Path] = []
    mpps: dict[str, float] = {}
    failures: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):
        name = row.get(column, "")
        where = f"{csv_path}:{line}"
        if not name:
            failures.append((where, f"empty {column!r}"))
            continue
        candidates = [Path(name), csv_path.parent / name] if not Path(name).is_absolute() else [Path(name)]
        path = next((c for c in candidates if c.is_file()), None) or by_name.get(name)
        if path is None:
            failures.append((name, f"slide listed in {csv_path} (line {line}) does not exist"))
            continue
        text = row.get("mpp", "")
        if text:
            try:
                mpp = float(text)
            except ValueError:
                failures.append((str(path), f"mpp {text!r} in {csv_path} (line {line}) is not a number"))
                continue
            if not mpp > 0 or mpp != mpp:
                failures.append((str(path), f"mpp {text} in {csv_path} (line {line}) must be > 0"))
                continue
            mpps[str(path)] = mpp
        slides.append(path)
    return slides, mpps, failures


def _tile_task(item: tuple[str, float | None], out_dir: str, params: TilingParams) -> dict[str, Any]:
    path, slide_mpp = item
    return tile_slide(path, out_dir, params, slide_mpp)


def tile_slides(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, params: TilingParams,
                workers: int = 1, progress: bool = True, log=None, slide_mpp: dict[str, float] | None = None,
                failures: Sequence[tuple[str, str]] = ()) -> TilingSummary:
    """Tile many slides in parallel; finished slides (same params) are skipped; failures are recorded.

    ``slide_mpp`` maps a slide path to its level-0 MPP (overriding metadata and ``params.mpp``); ``failures``
    are problems found before tiling (e.g. CSV rows naming no slide), listed with the others. Writes
    ``<out_dir>/failures.tsv`` at the end; ``log`` receives one line per problem.
    """
    from tqdm import tqdm

    log = log or (lambda line: print(line, file=sys.stderr))
    slide_mpp = {os.path.realpath(k): v for k, v in (slide_mpp or {}).items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = TilingSummary()
    for path, reason in failures:
        summary.failures.append((str(path), reason))
        log(f"{path}: skipped: {reason}")
    seen: dict[str, str] = {}
    todo: list[tuple[str, float | None]] = []
    for path in map(str, paths):
        sid = slide_id_of(path)
        if sid in seen:
            if os.path.realpath(seen[sid]) != os.path.realpath(path):
                summary.failures.append((path, f"duplicate slide id {sid!r} (also {seen[sid]})"))
                log(f"{path}: skipped: duplicate slide id {sid!r} (also {seen[sid]})")
            continue
        seen[sid] = path
        mpp = slide_mpp.get(os.path.realpath(path))
        if is_done(out_dir / f"{sid}.h5", params, mpp):
            summary.skipped.append(path)
        else:
            todo.append((path, mpp))
    _preload()
    bar = tqdm(total=len(todo), desc="tile", unit="slide", disable=not progress)
    for (path, _), result, error in run_tasks(_tile_task, todo, workers, str(out_dir), params):
        bar.update(1)
        if error is None:
            summary.tiled.append(result)
            continue
        if not isinstance(error, InputError):
            summary.internal_errors += 1
            error = f"unexpected {type(error).__name__}: {one_line(error)}"
        summary.failures.append((path, one_line(error)))
        log(f"{path}: skipped: {one_line(error)}")
    bar.close()
    write_failures(out_dir / "failures.tsv", summary.failures)
    return summary
