"""Large-patch datasets of WSIs: the coords of ``infbrush tile`` → pixels read with OpenSlide.

Two ways to serve the training images (benchmarks/bench_tiling.py measures both):

* ``SlidePatchDataset``: reads each patch from its slide on the fly (per-process OpenSlide handles);
* the **image store cache** (``extract_patches``): patches read once, resized to ``patch_size`` and
  written to a chunked, compressed HDF5 image store (infbrush/data/store.py) with a thumbnail at the
  embedding model's input size. This is the default: training reads a patch as a few compressed
  chunks instead of decoding JPEG tiles from the pyramid and resizing each time, the embedding stage
  needs the thumbnails anyway, and a store file is a single DVC-tracked artefact.

Patch ids are ``<slide_id>/<x>_<y>`` (level-0 coordinates); whole slides are held out, never single crops.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from infbrush.data.store import THUMB_SIZE
from infbrush.data.tiling import find_slides, read_coords, slide_id_of
from infbrush.runtime.jobs import failures_path, process_context, write_failures
from infbrush.errors import InfbrushError

CLASS_NAMES = ["normal", "benign", "in_situ", "invasive"]  # demo class maps: 0..3, 255 = background
BACKGROUND = 255
CHUNK = 16  # patches per worker task (fewer when large: see TASK_BYTES)
TASK_BYTES = 64 << 20  # patch pixels per worker task, bounded so that 4096² patches do not pile up


def _to_rgb(region):
    """RGB PIL image of an RGBA OpenSlide region; pixels outside the slide (transparent) become white."""
    from PIL import Image

    alpha = region.getchannel("A")
    if alpha.getextrema()[0] == 255:  # fully inside the slide: no compositing needed
        return region.convert("RGB")
    rgb = Image.new("RGB", region.size, (255, 255, 255))
    rgb.paste(region, mask=alpha)
    return rgb


def _resized(rgb, attrs: dict[str, Any]) -> np.ndarray:
    """(P, P, 3) uint8: an RGB PIL region resized to ``patch_size`` (bicubic, antialiased) if needed."""
    from PIL import Image

    patch = int(attrs["patch_size"])
    if rgb.size != (patch, patch):
        rgb = rgb.resize((patch, patch), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(rgb)


def read_patch(slide, x: int, y: int, attrs: dict[str, Any]) -> np.ndarray:
    """The (P, P, 3) uint8 patch at level-0 (x, y): read at ``patch_level`` and resized to ``patch_size``.

    Pixels outside the slide (transparent in OpenSlide) become white.
    """
    size = int(attrs["read_size"])
    region = slide.read_region((int(x), int(y)), int(attrs["patch_level"]), (size, size))  # RGBA
    return _resized(_to_rgb(region), attrs)


_HANDLES: dict[str, Any] = {}  # this process's open slides, least recently used first
_HANDLES_PID = os.getpid()
MAX_HANDLES = 4


def cached_slide(path: str):
    """An OpenSlide handle of ``path`` kept open in this process (workers reuse it across tasks, so its
    decoded-tile cache is shared by neighbouring patches); at most MAX_HANDLES stay open."""
    import openslide

    global _HANDLES_PID
    if _HANDLES_PID != os.getpid():  # a forked child: the parent's handles are not ours to use
        _HANDLES.clear()
        _HANDLES_PID = os.getpid()
    slide = _HANDLES.pop(path, None) or openslide.OpenSlide(path)
    _HANDLES[path] = slide
    while len(_HANDLES) > MAX_HANDLES:
        _HANDLES.pop(next(iter(_HANDLES))).close()
    return slide


def read_patches(task: tuple[str, np.ndarray, dict[str, Any]]) -> np.ndarray:
    """(n, P, P, 3) uint8 patches of one slide for a chunk of (n, 2) coords (a worker task).

    Uses this process's cached handle of the slide, so tiles decoded for one chunk serve the next.
    """
    path, coords, attrs = task
    slide = cached_slide(path)
    return np.stack([read_patch(slide, x, y, attrs) for x, y in coords])


def tile_height(path: str | os.PathLike, level: int) -> int:
    """Tile height of a pyramid level in pixels (OpenSlide property), 256 when the format has none."""
    import openslide

    with openslide.OpenSlide(str(path)) as slide:
        try:
            return int(slide.properties[f"openslide.level[{level}].tile-height"])
        except (KeyError, ValueError):
            return 256


def patch_tasks(path: str | os.PathLike, coords: np.ndarray, attrs: dict[str, Any],
                budget: int = TASK_BYTES) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """Worker tasks (path, coords chunk (n, 2), attrs) covering ``coords`` in order.

    A chunk holds about ``budget`` bytes of patches (CHUNK patches at most, at least one) and, where it
    can, ends where a new row of tiles of the read level starts, so that two workers rarely decode the
    same tile.
    """
    patch_bytes = int(attrs["patch_size"]) ** 2 * 3
    target = max(1, min(CHUNK, budget // patch_bytes))
    most = 4 * target if target == CHUNK else target  # large patches span many tiles: no waiting for a row
    band_rows = tile_height(path, int(attrs["patch_level"])) * float(attrs["downsample"])  # level-0 px
    bands = np.floor(coords[:, 1] / band_rows).astype(np.int64)  # (N,) tile row of each patch's top
    tasks, start = [], 0
    for i in range(1, len(coords) + 1):
        full = i - start >= target
        if i == len(coords) or (full and bands[i] != bands[i - 1]) or i - start >= most:
            tasks.append((str(path), coords[start:i], attrs))
            start = i
    return tasks


def patch_label(class_map: np.ndarray, x: int, y: int, attrs: dict[str, Any]) -> int:
    """Majority class of the (h, w) uint8 class map under a patch (background 255 ignored); −1 if none."""
    sx = class_map.shape[1] / float(attrs["level0_width"])
    sy = class_map.shape[0] / float(attrs["level0_height"])
    p0 = int(attrs["patch_size_level0"])
    x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
    x1, y1 = max(x0 + 1, int(np.ceil((x + p0) * sx))), max(y0 + 1, int(np.ceil((y + p0) * sy)))
    region = class_map[y0:y1, x0:x1].ravel()
    region = region[region != BACKGROUND]
    if region.size == 0:
        return -1
    return int(np.bincount(region).argmax())


def load_class_map(slide_path: Path) -> np.ndarray | None:
    """The (h, w) uint8 class map ``<slide_id>_classes.png`` beside a slide, or None."""
    from PIL import Image

    path = slide_path.parent / f"{slide_id_of(slide_path)}_classes.png"
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except OSError as err:
        raise InfbrushError(f"{path}: cannot read class map ({err})") from None


def match_tiles(tiles_dir: str | os.PathLike, slides: Sequence[str | os.PathLike],
                log=None) -> tuple[list[tuple[str, Path, np.ndarray, dict]], list[tuple[str, str]]]:
    """[(slide_id, slide path, coords (N, 2), attrs)] sorted by id for every tiles file whose slide is found."""
    log = log or (lambda line: print(line, file=sys.stderr))
    tiles = sorted(Path(tiles_dir).glob("*.h5"))
    if not tiles:
        raise InfbrushError(f"{tiles_dir}: no tiles (*.h5) found; run `infbrush tile` first")
    index = {slide_id_of(p): p for p in find_slides(slides)}
    matched, missing = [], []
    for tile_file in tiles:
        coords, attrs = read_coords(tile_file)
        sid = str(attrs.get("slide_id", tile_file.stem))
        path = index.get(sid)
        if path is None:
            missing.append((str(tile_file), f"slide {sid!r} not found among the slides given"))
            log(f"{tile_file}: skipped: slide {sid!r} not found among the slides given")
            continue
        if len(coords):
            matched.append((sid, path, coords, attrs))
    if not matched:
        raise InfbrushError(f"{tiles_dir}: none of the tiled slides was found in {' '.join(map(str, slides))}")
    return sorted(matched, key=lambda m: m[0]), missing


def _tasks(matched) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
    for _, path, coords, attrs in matched:
        yield from patch_tasks(path, coords, attrs)


def extract_patches(tiles_dir: str | os.PathLike, slides: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    thumb_size: int = THUMB_SIZE, class_maps: bool = False, held_out_slides: int = 0, workers: int = 1,
                    progress: bool = True, log=None) -> dict[str, Any]:
    """Write the image store ``out`` with every tiled patch; the last ``held_out_slides`` slides are held out.

    Labels come from ``<slide_id>_classes.png`` beside a slide when ``class_maps`` (majority class under
    the patch), else −1. Returns a summary dict (n_images, n_slides, held_out slide ids, missing).
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from infbrush.data.store import ImageStoreWriter

    matched, missing = match_tiles(tiles_dir, slides, log)
    sizes = {int(m[3]["patch_size"]) for m in matched}
    if len(sizes) != 1:
        raise InfbrushError(f"{tiles_dir}: tiles have different patch sizes {sorted(sizes)}; re-tile with one size")
    if not 0 <= held_out_slides < len(matched):
        raise InfbrushError(f"--held-out-slides {held_out_slides} must be in [0, {len(matched) - 1}] "
                            f"({len(matched)} slides)")
    held_out = {m[0] for m in matched[len(matched) - held_out_slides:]} if held_out_slides else set()
    maps = {sid: load_class_map(path) for sid, path, _, _ in matched} if class_maps else {}
    has_maps = any(m is not None for m in maps.values())
    first = matched[0][3]
    attrs = {"source": "wsi", "tiles_dir": str(tiles_dir), "patch_size": int(first["patch_size"]),
             "target_mpp": float(first["target_mpp"]), "slides": [m[0] for m in matched],
             "held_out_slides": sorted(held_out)}
    entries = [(sid, int(x), int(y), attrs_) for sid, _, coords, attrs_ in matched for x, y in coords]
    total = len(entries)
    with ImageStoreWriter(out, image_size=sizes.pop(), channels=3, thumb_size=thumb_size,
                          label_names=CLASS_NAMES if has_maps else [], attrs=attrs) as writer:
        pool = ProcessPoolExecutor(workers, mp_context=process_context()) if workers > 1 else None
        bar = tqdm(total=total, desc="extract-patches", unit="patch", disable=not progress)
        try:
            chunks = pool.map(read_patches, _tasks(matched)) if pool else map(read_patches, _tasks(matched))
            k = 0
            for chunk in chunks:
                for patch in chunk:
                    sid, x, y, slide_attrs = entries[k]
                    class_map = maps.get(sid)
                    label = patch_label(class_map, x, y, slide_attrs) if class_map is not None else -1
                    writer.append(patch, f"{sid}/{x}_{y}", label=label, held_out=sid in held_out)
                    k += 1
                bar.update(len(chunk))
        except Exception as err:
            import openslide

            if isinstance(err, (openslide.OpenSlideError, OSError)):
                raise InfbrushError(f"{entries[min(k, total - 1)][0]}: cannot read patch pixels ({err})") from None
            raise
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            bar.close()
    write_failures(failures_path(out), missing)
    return {"n_images": total, "n_slides": len(matched), "held_out": sorted(held_out), "missing": missing}


class SlidePatchDataset:
    """On-the-fly patches: item i is the (P, P, 3) uint8 patch of the i-th tiled coord, read from its slide.

    Keeps one OpenSlide handle per slide per process (safe with DataLoader workers).
    """

    def __init__(self, tiles_dir: str | os.PathLike, slides: Sequence[str | os.PathLike]) -> None:
        matched, _ = match_tiles(tiles_dir, slides, log=lambda line: None)
        self.entries = [(str(path), int(x), int(y), attrs) for _, path, coords, attrs in matched for x, y in coords]
        self.ids = [f"{sid}/{int(x)}_{int(y)}" for sid, _, coords, _ in matched for x, y in coords]
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.entries)

    def _slide(self, path: str):
        import openslide

        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = openslide.OpenSlide(path)
        return self._handles[path]

    def __getitem__(self, index: int) -> np.ndarray:
        path, x, y, attrs = self.entries[index]
        return read_patch(self._slide(path), x, y, attrs)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

