"""Image sources for evaluation: rows of an image store, or the images listed in a sample ``index.json``.

``infbrush sample`` writes ``<dir>/<name>.png`` (small) or ``<dir>/<name>.tiff`` (tiled pyramidal TIFF)
plus ``<dir>/index.json`` (``infbrush.sample.outputs``): ``{"resolution", "settings", "images": [{"file"
(relative to the index), "name", "seed", "source", "source_id" (store id / prompt name), "label",
"label_name", "resolution", ...}]}``. A plain JSON list of such records is read too.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from infbrush.errors import InfbrushError

SPLITS = {"all": None, "train": 0, "held_out": 1}


@dataclass(frozen=True)
class SampleRecord:
    """One generated image: its file, the seed and condition it came from, its label (-1 unknown)."""

    path: Path
    seed: int | None
    condition_id: str | None
    label: int | None
    label_name: str | None
    resolution: int | None


def read_sample_index(index_path: str | os.PathLike) -> list[SampleRecord]:
    """Parse ``index.json`` into records whose paths are resolved against the index's folder."""
    index_path = Path(index_path)
    if not index_path.is_file():
        raise InfbrushError(f"{index_path}: sample index not found")
    try:
        data = json.loads(index_path.read_text())
    except json.JSONDecodeError as err:
        raise InfbrushError(f"{index_path}: not valid JSON ({err})") from None
    entries = data.get("images") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InfbrushError(f"{index_path}: expected a list of image records or an object with 'images'")
    if not entries:
        raise InfbrushError(f"{index_path}: lists no images")
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "file" not in entry:
            raise InfbrushError(f"{index_path}: record {i} has no 'file'")
        cond = entry.get("source_id", entry.get("condition_id"))
        resolution = entry.get("resolution")
        label = entry.get("label")
        records.append(SampleRecord(
            path=(index_path.parent / entry["file"]).resolve(),
            seed=entry.get("seed"),
            condition_id=None if cond is None else str(cond),
            label=None if label is None else int(label),
            label_name=entry.get("label_name"),
            resolution=int(max(resolution)) if isinstance(resolution, list) else resolution,
        ))
    missing = [str(r.path) for r in records if not r.path.is_file()]
    if missing:
        raise InfbrushError(f"{index_path}: {len(missing)} listed image(s) missing, first: {missing[0]}")
    return records


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG or (pyramidal) TIFF as (H, W, 3) uint8; TIFFs are read at full resolution (level 0)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                image = tif.series[0].levels[0].asarray()
        else:
            from PIL import Image

            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as err:
        raise InfbrushError(f"{path}: cannot decode image ({err})") from None
    return to_rgb_uint8(image, path)


def to_rgb_uint8(image: np.ndarray, source: str | os.PathLike = "image") -> np.ndarray:
    """(H, W) / (H, W, 1|3|4) uint8 → (H, W, 3) uint8 (grey repeated, alpha or extra bands dropped)."""
    if image.dtype != np.uint8:
        raise InfbrushError(f"{source}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise InfbrushError(f"{source}: expected an (H, W, C) image, got shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def store_rows(split_column: np.ndarray, split: str) -> np.ndarray:
    """Row indices of an image store whose ``split`` column matches ``split`` (all | train | held_out)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    code = SPLITS[split]
    rows = np.arange(len(split_column))
    return rows if code is None else rows[np.asarray(split_column) == code]


def subsample(rows: Sequence[int], max_n: int | None, seed: int) -> np.ndarray:
    """At most ``max_n`` of ``rows``, drawn without replacement with ``seed`` and returned sorted."""
    rows = np.asarray(rows)
    if max_n is None or max_n <= 0 or len(rows) <= max_n:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=max_n, replace=False))


def iter_store_images(store_path: str | os.PathLike, rows: Sequence[int]) -> Iterator[np.ndarray]:
    """Yield the (H, W, 3) uint8 images of ``rows`` from an image store, one at a time."""
    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    try:
        for row in rows:
            yield to_rgb_uint8(store.image(int(row)), f"{store_path}[{row}]")
    finally:
        store.close()


def iter_sample_images(records: Sequence[SampleRecord]) -> Iterator[np.ndarray]:
    """Yield the (H, W, 3) uint8 images of sample records, one at a time."""
    for record in records:
        yield read_image(record.path)
