"""WSI tiling: tissue mask at a low pyramid level, then a grid of patches at a target MPP (OpenSlide).

One HDF5 file per slide, readable by CLAM/TRIDENT-style code::

    coords  (N, 2) int64   level-0 x, y of each patch's top-left corner
    attrs (on the file and on ``coords``): patch_size (output side, px at target_mpp), patch_size_level0,
        patch_level (pyramid level read), read_size (side read at patch_level), downsample (of patch_level),
        target_downsample, level0_mpp, level0_magnification, target_mpp, level0_width, level0_height,
        slide_id, slide_path, tiling_params (JSON, used to decide whether a finished slide can be skipped)

The level read is the coarsest pyramid level whose downsample does not exceed the target's (never
upsample); the read region is then resized to ``patch_size`` (TRIDENT's rule).
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

SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif",
                    ".dcm")
LEVEL_TOLERANCE = 1.02  # a level whose downsample is within 2% above the target still counts as ≤ target


class SlideError(Exception):
    """An input problem with one slide (unreadable, no MPP, no tissue): recorded, the run goes on."""


@dataclass(frozen=True)
class TilingParams:
    """Everything that decides a slide's coords (stored with the output to make resume safe)."""

    patch_size: int = 256
    target_mpp: float = 1.0
    mask_max_side: int = 1024
    min_tissue_fraction: float = 0.5
    max_patches_per_slide: int = 0  # 0 = all
    seed: int = 0
    tissue: TissueParams = field(default_factory=TissueParams)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


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


def level0_mpp(properties: dict[str, str]) -> float:
    """Microns per pixel at level 0 from OpenSlide properties (mpp-x, else TIFF resolution in cm/inch)."""
    for key in ("openslide.mpp-x", "openslide.mpp-y"):
        try:
            mpp = float(properties[key])
        except (KeyError, ValueError):
            continue
        if mpp > 0:
            return mpp
    unit = properties.get("tiff.ResolutionUnit", "").lower()
    try:
        res = float(properties.get("tiff.XResolution", "0"))
    except ValueError:
        res = 0.0
    if res > 0 and unit in ("centimeter", "inch"):
        return (1e4 if unit == "centimeter" else 25400.0) / res
    raise SlideError("slide has no microns-per-pixel metadata (openslide.mpp-x / TIFF resolution)")


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


def slide_geometry(slide, path: str | os.PathLike, params: TilingParams) -> dict[str, Any]:
    """Level, sizes and metadata of the patch grid of an open OpenSlide slide (the HDF5 attrs)."""
    mpp = level0_mpp(dict(slide.properties))
    target_downsample = params.target_mpp / mpp
    if target_downsample < 1 / LEVEL_TOLERANCE:
        raise SlideError(f"level-0 resolution {mpp:g} µm/px is coarser than target_mpp "
                         f"{params.target_mpp:g}")
    level = choose_level(slide.level_downsamples, target_downsample)
    downsample = float(slide.level_downsamples[level])
    patch_level0 = int(round(params.patch_size * target_downsample))
    try:
        magnification = float(slide.properties["openslide.objective-power"])
    except (KeyError, ValueError):
        magnification = 10.0 / mpp  # 0.5 µm/px ≈ 20×, 0.25 µm/px ≈ 40×
    width, height = slide.dimensions
    return {"patch_size": params.patch_size, "patch_size_level0": patch_level0, "patch_level": level,
            "read_size": max(1, int(round(patch_level0 / downsample))), "downsample": downsample,
            "target_downsample": target_downsample, "level0_mpp": mpp, "level0_magnification": magnification,
            "target_mpp": params.target_mpp, "level0_width": int(width), "level0_height": int(height)}


def tile_slide(path: str | os.PathLike, out_dir: str | os.PathLike, params: TilingParams) -> dict[str, Any]:
    """Tile one slide: write ``<out_dir>/<slide_id>.h5`` and ``<slide_id>_thumb.png``; return a summary.

    Raises SlideError for input problems (the caller records them and goes on).
    """
    import openslide
    from PIL import UnidentifiedImageError

    path, out_dir = Path(path), Path(out_dir)
    sid = slide_id_of(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise SlideError(f"cannot stat file ({_one_line(err)})") from None
    if size == 0:
        raise SlideError("empty file (0 bytes)")
    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideError("not a slide format OpenSlide can read") from None
    except (openslide.OpenSlideError, UnidentifiedImageError, OSError) as err:
        raise SlideError(f"cannot open slide ({_one_line(err)})") from None
    try:
        geometry = slide_geometry(slide, path, params)
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
        raise SlideError(f"cannot read slide pixels ({_one_line(err)})") from None
    finally:
        slide.close()
    attrs = {**geometry, "slide_id": sid, "slide_path": str(path), "tiling_params": params.to_json()}
    write_coords(out_dir / f"{sid}.h5", coords, attrs)
    with atomic_path(out_dir / f"{sid}_thumb.png") as tmp:
        draw_thumbnail(thumb, mask, coords, size0, geometry["patch_size_level0"]).save(tmp, format="PNG",
                                                                                      compress_level=1)
    return {"slide_id": sid, "path": str(path), "n_patches": int(len(coords))}


def write_coords(path: Path, coords: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write the per-slide HDF5 (coords + attrs on the file and on the dataset), atomically."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            dset = h5.create_dataset("coords", data=coords.astype(np.int64))  # (N, 2) level-0 x, y
            for key, value in attrs.items():
                h5.attrs[key] = value
                dset.attrs[key] = value


def read_coords(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """(N, 2) level-0 coords and the attrs of a per-slide tiles HDF5."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return h5["coords"][:], dict(h5.attrs)
    except (OSError, KeyError) as err:
        raise InfbrushError(f"{path}: not a tiles HDF5 with 'coords' ({_one_line(err)})") from None


def is_done(path: Path, params: TilingParams) -> bool:
    """True when ``path`` is a finished tiles file made with the same parameters (safe to skip)."""
    if not path.is_file():
        return False
    try:
        _, attrs = read_coords(path)
    except InfbrushError:
        return False
    return attrs.get("tiling_params") == params.to_json()


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


def _one_line(err: BaseException) -> str:
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return text[:300]


def write_pyramidal_tiff(path: str | os.PathLike, image: np.ndarray, mpp: float, *, aperio: bool = True,
                         tile: int = 256, min_side: int = 256, factor: int = 4, compression: str = "jpeg") -> None:
    """Write an (H, W, 3) uint8 image as a tiled pyramidal TIFF that OpenSlide reads.

    ``aperio=True`` writes an Aperio SVS (ImageDescription with ``MPP`` and ``AppMag``), otherwise a
    generic tiled TIFF with the resolution in pixels per centimetre. Levels shrink by ``factor`` until
    the longest side is ≤ ``min_side``. Used by tests and benchmarks to make real pyramidal files.
    """
    import tifffile
    from PIL import Image

    levels = [image]
    while max(levels[-1].shape[:2]) > min_side:
        prev = levels[-1]
        levels.append(np.asarray(Image.fromarray(prev).resize(
            (max(1, prev.shape[1] // factor), max(1, prev.shape[0] // factor)), Image.BILINEAR)))
    height, width = image.shape[:2]
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            kwargs: dict[str, Any] = {"tile": (tile, tile), "compression": compression, "photometric": "rgb",
                                      "metadata": None, "subfiletype": 0 if i == 0 else 1}
            if aperio:
                kwargs["description"] = (f"Aperio Image Library v12.0.0\r\n{width}x{height} [0,0 {width}x{height}] "
                                         f"({tile}x{tile}) JPEG/RGB Q=90|AppMag = {10 / mpp:g}|MPP = {mpp}") \
                    if i == 0 else ""
            else:
                ppcm = 1e4 / (mpp * factor ** i)
                kwargs.update(resolution=(ppcm, ppcm), resolutionunit="CENTIMETER")
            tw.write(level, **kwargs)


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


def process_context():
    """Multiprocessing context of the worker pools: fork on Linux (workers start in milliseconds; they
    open their own OpenSlide/HDF5 handles), spawn elsewhere."""
    import multiprocessing

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def run_tasks(func, items: Sequence[Any], workers: int, *args: Any):
    """Yield (item, result, error) for ``func(item, *args)`` over items, in worker processes if workers > 1.

    A worker that dies (e.g. a native crash in a slide library) breaks the pool; the items it left
    unfinished are then rerun one process each, so the crash is attributed to the one item causing it.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    if workers <= 1 or len(items) <= 1:
        for item in items:
            try:
                yield item, func(item, *args), None
            except Exception as err:  # noqa: BLE001 - reported per item by the caller
                yield item, None, err
        return
    context = process_context()
    crashed = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(func, item, *args): item for item in items}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result(), None
            except BrokenProcessPool:
                crashed.append(futures[future])
            except Exception as err:  # noqa: BLE001
                yield futures[future], None, err
    for item in crashed:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                yield item, pool.submit(func, item, *args).result(), None
            except BrokenProcessPool:
                yield item, None, SlideError("the worker process crashed while reading this file")
            except Exception as err:  # noqa: BLE001
                yield item, None, err


def failures_path(out: str | os.PathLike) -> Path:
    """Where a stage writing ``out`` records its failures: ``failures.tsv`` beside ``images.h5``,
    ``<stem>_failures.tsv`` beside any other file (e.g. ``bach_failures.tsv``)."""
    out = Path(out)
    return out.parent / ("failures.tsv" if out.stem == "images" else f"{out.stem}_failures.tsv")


def write_failures(path: str | os.PathLike, failures: Sequence[tuple[str, str]]) -> None:
    """Write ``failures.tsv`` (columns path, reason; header only when nothing failed), atomically."""
    lines = ["path\treason"] + [f"{p}\t{r.replace(chr(9), ' ')}" for p, r in failures]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def tile_slides(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, params: TilingParams,
                workers: int = 1, progress: bool = True, log=None) -> TilingSummary:
    """Tile many slides in parallel; finished slides (same params) are skipped; failures are recorded.

    Writes ``<out_dir>/failures.tsv`` at the end; ``log`` receives one line per problem.
    """
    from tqdm import tqdm

    log = log or (lambda line: print(line, file=sys.stderr))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = TilingSummary()
    seen: dict[str, str] = {}
    todo: list[str] = []
    for path in map(str, paths):
        sid = slide_id_of(path)
        if sid in seen:
            summary.failures.append((path, f"duplicate slide id {sid!r} (also {seen[sid]})"))
            log(f"{path}: skipped: duplicate slide id {sid!r} (also {seen[sid]})")
            continue
        seen[sid] = path
        if is_done(out_dir / f"{sid}.h5", params):
            summary.skipped.append(path)
        else:
            todo.append(path)
    _preload()
    bar = tqdm(total=len(todo), desc="tile", unit="slide", disable=not progress)
    for path, result, error in run_tasks(tile_slide, todo, workers, str(out_dir), params):
        bar.update(1)
        if error is None:
            summary.tiled.append(result)
            continue
        if not isinstance(error, SlideError):
            summary.internal_errors += 1
            error = f"unexpected {type(error).__name__}: {_one_line(error)}"
        summary.failures.append((path, _one_line(error)))
        log(f"{path}: skipped: {_one_line(error)}")
    bar.close()
    write_failures(out_dir / "failures.tsv", summary.failures)
    return summary
