"""The image store: one HDF5 file holding a dataset's large images, their thumbnails and labels.

Every later stage (embedding, training, FID) reads a dataset through this one format::

    images  (N, H, W, C) uint8   the large images, chunked in tiles of at most 512² per image, compressed
    thumbs  (N, S, S, C) uint8   each image resized to the embedding model's input size S (224 in the paper)
    ids     (N,) str             stable identifier of each image ("<slide_id>/<x>_<y>", "<tile>/<row>_<col>", file name)
    labels  (N,) int16           class index into attrs["label_names"], -1 where unknown
    split   (N,) uint8           0 = train, 1 = held out (whole slides/tiles held out, never single crops)
    attrs   dataset, source, image_size, thumb_size, channels, label_names (JSON list), plus provenance

Only ``images`` is required when reading: stores written by other tools (e.g. GeoTIFF patches) work too.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.io import atomic_path

TILE = 512  # chunk side: a 4096² image is read as 64 compressed tiles, a 256² image as one chunk
THUMB_SIZE = 224  # side of the stored thumbnails: the embedding model's input size (the paper's encoders)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, C) uint8 image to (size, size, C) with an antialiased bicubic filter (PIL)."""
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return image
    channels = image.shape[2]
    planes = [np.asarray(Image.fromarray(image[..., c]).resize((size, size), Image.BICUBIC, reducing_gap=None))
              for c in range(channels)]
    return np.stack(planes, axis=-1)


class ImageStoreWriter:
    """Append images to a new store; the file appears under its final name only after ``close()``.

    Use as a context manager; an exception inside the block leaves nothing behind.
    """

    def __init__(self, path: str | os.PathLike, *, image_size: int, channels: int = 3, thumb_size: int = THUMB_SIZE,
                 label_names: Sequence[str] = (), attrs: dict[str, Any] | None = None, batch: int = 16) -> None:
        self.path = Path(path)
        self.image_size, self.channels, self.thumb_size = image_size, channels, thumb_size
        self.label_names = list(label_names)
        self.attrs = dict(attrs or {})
        self.batch = batch
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self._h5 = None
        self.n = 0

    def __enter__(self) -> "ImageStoreWriter":
        import h5py

        self._tmp = self._atomic.__enter__()
        self._h5 = h5py.File(self._tmp, "w")
        s, c, ts = self.image_size, self.channels, self.thumb_size
        tile = min(s, TILE)
        self._h5.create_dataset("images", shape=(0, s, s, c), maxshape=(None, s, s, c), dtype="uint8",
                                chunks=(1, tile, tile, c), compression="gzip", compression_opts=4, shuffle=True)
        self._h5.create_dataset("thumbs", shape=(0, ts, ts, c), maxshape=(None, ts, ts, c), dtype="uint8",
                                chunks=(self.batch, ts, ts, c), compression="gzip", compression_opts=4)
        self._h5.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(1024,))
        self._h5.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="int16", chunks=(1024,))
        self._h5.create_dataset("split", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(1024,))
        return self

    def append(self, image: np.ndarray, image_id: str, label: int = -1, thumb: np.ndarray | None = None,
               held_out: bool = False) -> None:
        """Add one (H, W, C) uint8 image; its thumbnail is made here unless given."""
        s, c = self.image_size, self.channels
        if image.shape != (s, s, c) or image.dtype != np.uint8:
            raise InfbrushError(f"{self.path}: image {image_id!r} has shape {image.shape} {image.dtype}, "
                                f"expected ({s}, {s}, {c}) uint8")
        thumb = resize_image(image, self.thumb_size) if thumb is None else thumb
        i = self.n
        for name in ("images", "thumbs", "ids", "labels", "split"):
            self._h5[name].resize(i + 1, axis=0)
        self._h5["images"][i] = image
        self._h5["thumbs"][i] = thumb
        self._h5["ids"][i] = image_id
        self._h5["labels"][i] = label
        self._h5["split"][i] = int(held_out)
        self.n += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        h5 = self._h5
        if exc_type is None:
            h5.attrs.update({"image_size": self.image_size, "thumb_size": self.thumb_size,
                             "channels": self.channels, "label_names": json.dumps(self.label_names),
                             "n_images": self.n})
            for key, value in self.attrs.items():
                h5.attrs[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
        h5.close()
        self._atomic.__exit__(exc_type, exc, tb)


class ImageStore:
    """Read-only view of an image store; opens its HDF5 handle lazily (safe across DataLoader workers)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InfbrushError(f"{self.path}: image store not found")
        try:
            with h5py.File(self.path, "r") as h5:
                if "images" not in h5:
                    raise InfbrushError(f"{self.path}: not an image store (no 'images' dataset)")
                self.shape = tuple(h5["images"].shape)  # (N, H, W, C)
                self.attrs = dict(h5.attrs)
                self.ids = [x.decode() if isinstance(x, bytes) else str(x) for x in h5["ids"][:]] \
                    if "ids" in h5 else [str(i) for i in range(self.shape[0])]
                self.labels = h5["labels"][:].astype(np.int64) if "labels" in h5 \
                    else np.full(self.shape[0], -1, dtype=np.int64)
                self.split = h5["split"][:].astype(np.int64) if "split" in h5 \
                    else np.zeros(self.shape[0], dtype=np.int64)
                self.has_thumbs = "thumbs" in h5
        except OSError as err:
            raise InfbrushError(f"{self.path}: cannot read HDF5 ({err})") from None
        names = self.attrs.get("label_names", "[]")
        self.label_names: list[str] = json.loads(names) if isinstance(names, str) else list(names)
        self._h5 = None
        self._pid = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    @property
    def channels(self) -> int:
        return self.shape[3]

    @functools.cached_property
    def row_of(self) -> dict[str, int]:
        """The store row of each image id (samples name their conditioning image by its id)."""
        return {image_id: i for i, image_id in enumerate(self.ids)}

    def _file(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():  # one handle per process (DataLoader workers)
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def image(self, index: int) -> np.ndarray:
        """The (H, W, C) uint8 image at ``index``."""
        return self._file()["images"][index]

    def thumb(self, index: int, size: int | None = None) -> np.ndarray:
        """The (S, S, C) uint8 thumbnail at ``index`` (resized from the image if the store has none)."""
        if self.has_thumbs and (size is None or size == self._file()["thumbs"].shape[1]):
            return self._file()["thumbs"][index]
        return resize_image(self.image(index), size or THUMB_SIZE)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"] = None
        return state
