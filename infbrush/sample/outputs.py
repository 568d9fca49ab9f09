"""Writing sampled images (PNG or pyramidal TIFF) and the resumable per-resolution ``index.json``.

``index.json`` (one per resolution folder)::

    {"resolution": [H, W], "settings": {...what produced the images...}, "settings_key": sha256 of settings,
     "images": [{"file", "name", "seed", "source", "source_id", "label", "label_name", "resolution",
                 "format", "settings_key"}, ...]}

An image is complete when its file exists (files are renamed into place only when fully written) and its
index entry carries the current ``settings_key``; a rerun skips complete images and makes the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.io import atomic_path, write_json

if TYPE_CHECKING:
    from infbrush.sample.tiff import PyramidOptions

FORMATS = ("auto", "png", "tiff")
PNG_MAX_SIDE = 2048  # auto format: PNG up to 2048² (one in-memory image), pyramidal TIFF above


def settings_key(settings: dict) -> str:
    """Stable hash of the settings that determine an image's pixels (weights, steps, guidance, ...)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def choose_format(fmt: str, size: tuple[int, int], png_max_side: int = PNG_MAX_SIDE) -> str:
    """'png' or 'tiff' for an image of ``size`` (H, W): ``auto`` picks TIFF when a side exceeds ``png_max_side``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    return "tiff" if max(size) > png_max_side else "png"


def uint8_bands(image, rows: int | None = None) -> Iterator[np.ndarray]:
    """Row bands (rows, W, C) uint8 of a (C, H, W) tensor in [-1, 1], converted one band at a time (default: bands
    of ≤ 2^20 pixels, at most 256 rows, so the float work space does not grow with the width)."""
    import torch

    from infbrush.sample.tiff import page_out

    _, height, width = image.shape
    rows = rows or max(1, min(256, (1 << 20) // max(width, 1)))
    for y0 in range(0, height, rows):
        source = image[:, y0:y0 + rows]  # (C, rows, W)
        band = source.float().add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        if source.device.type == "cpu" and source.numel():  # a memory-mapped DDIM state: release what was read
            span = sum((n - 1) * abs(st) for n, st in zip(source.shape, source.stride())) + 1
            page_out(source.data_ptr(), span * source.element_size())
        yield band.permute(1, 2, 0).cpu().numpy()


def write_image(path: str | os.PathLike, image, fmt: str, *, mpp: float | None = None,
                options: PyramidOptions | None = None) -> None:
    """Write a (C, H, W) tensor in [-1, 1] as PNG (``fmt='png'``) or pyramidal TIFF (``'tiff'``, stored as
    ``options`` say: :class:`PyramidOptions`' defaults when None), atomically."""
    from PIL import Image

    from infbrush.sample.tiff import PyramidOptions, write_pyramid_tiff

    channels, height, width = image.shape
    if fmt == "png":
        pixels = np.concatenate(list(uint8_bands(image)), axis=0)  # (H, W, C)
        pil = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        with atomic_path(path) as tmp:
            kwargs = {"dpi": (25400.0 / mpp, 25400.0 / mpp)} if mpp else {}
            pil.save(tmp, format="PNG", **kwargs)
    elif fmt == "tiff":
        write_pyramid_tiff(path, uint8_bands(image), height, width, channels,
                           options=options or PyramidOptions(), mpp=mpp,
                           description=f"infbrush sample {Path(path).stem}")
    else:
        raise ValueError(f"unknown output format {fmt!r}; valid: png, tiff")


class SampleIndex:
    """The index.json of one resolution folder: entries by name, rewritten atomically after each image."""

    def __init__(self, folder: str | os.PathLike, resolution: tuple[int, int], settings: dict) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "index.json"
        self.resolution = list(resolution)
        self.settings = settings
        self.key = settings_key(settings)
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
                self.entries = {e["name"]: e for e in old.get("images", [])}
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise InfbrushError(f"{self.path}: unreadable sample index ({err}); delete it to start over") from None

    def is_complete(self, name: str) -> bool:
        """True when ``name`` was written with the current settings and its file is present."""
        entry = self.entries.get(name)
        return bool(entry and entry.get("settings_key") == self.key and (self.folder / entry["file"]).is_file())

    def add(self, entry: dict) -> None:
        self.entries[entry["name"]] = {**entry, "settings_key": self.key}

    def save(self, order: list[str] | None = None) -> None:
        """Write the index; ``order`` (names) restricts and orders the entries (the final, complete list)."""
        names = order if order is not None else list(self.entries)
        write_json(self.path, {"resolution": self.resolution, "settings": self.settings, "settings_key": self.key,
                               "images": [self.entries[n] for n in names if n in self.entries]})


def read_index(path: str | os.PathLike) -> dict:
    """Load an index.json written by ``infbrush sample`` (entries' ``file`` resolved against its folder)."""
    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: sample index not found (run `infbrush sample` first)")
    try:
        index = json.loads(path.read_text())
        images = index["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InfbrushError(f"{path}: not a sample index ({err})") from None
    for entry in images:
        entry["path"] = str(path.parent / entry["file"])
    return index
