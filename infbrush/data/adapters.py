"""Dataset adapters: BACH (4 histology classes) and CelebA-HQ (one binary attribute) → image stores.

BACH (ICIAR 2018, Aresta et al.) ships ``Photos/<Class>/*.tif`` (2048×1536) without test labels; the demo
world writes ``{train,test}/<Class>/*.tif``. Both layouts are read; the official one is split into a
labelled train/test set, stratified per class by a seed. CelebA-HQ is an image folder plus a
``list_attr_celeba.txt``-style table (count line, attribute names, then ``file ±1 ±1 …``); CelebA-HQ
index names (``0.jpg``) are matched to CelebA names through ``CelebA-HQ-to-CelebA-mapping.txt`` if given.
Images are centre-cropped to a square and resized to ``image_size`` (store's antialiased bicubic).
"""
from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infbrush.data.patches import CLASS_NAMES
from infbrush.data.store import THUMB_SIZE, resize_image
from infbrush.runtime.jobs import failures_path, write_failures
from infbrush.errors import InfbrushError

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
BACH_FOLDERS = {"normal": 0, "benign": 1, "insitu": 2, "invasive": 3}  # folder name, lower-case, no _/-/space
CELEBA_ATTRIBUTE = "Blond_Hair"  # the label of CelebA-HQ (Sec. 5.3: blonde vs non-blonde)


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(root: Path) -> dict[int, Path]:
    return {BACH_FOLDERS[_norm(d.name)]: d for d in sorted(root.iterdir())
            if d.is_dir() and _norm(d.name) in BACH_FOLDERS}


def find_bach(root: str | os.PathLike, test_fraction: float = 0.25, seed: int = 0) -> list[tuple[Path, int, int]]:
    """[(image path, class 0..3, split 0 train / 1 test)] of a BACH folder in either layout."""
    root = Path(root)
    if not root.is_dir():
        raise InfbrushError(f"{root}: BACH folder not found")
    splits = {s: root / s for s in ("train", "test") if (root / s).is_dir()}
    if splits:
        items = [(path, label, int(name == "test")) for name, folder in splits.items()
                 for label, class_dir in _class_folders(folder).items() for path in _images(class_dir)]
    else:
        if (root / "Photos").is_dir():
            root = root / "Photos"
        folders = _class_folders(root)
        items = []
        rng = np.random.default_rng(seed)
        for label, class_dir in sorted(folders.items()):
            paths = _images(class_dir)
            n_test = int(round(test_fraction * len(paths)))
            test = set(rng.permutation(len(paths))[:n_test].tolist())
            items += [(path, label, int(i in test)) for i, path in enumerate(paths)]
    if not items:
        raise InfbrushError(f"{root}: no BACH images (expected <Class>/*.tif or {{train,test}}/<Class>/*.tif with "
                            f"classes Normal, Benign, InSitu, Invasive)")
    return items


def load_square(path: Path, size: int) -> np.ndarray:
    """The image at ``path`` as (size, size, 3) uint8: RGB, centre-cropped to a square, resized."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_image(np.ascontiguousarray(rgb[top:top + side, left:left + side]), size)


def write_images(items: Sequence[tuple[Path, int, int, str]], out: str | os.PathLike, *, image_size: int,
                 thumb_size: int, label_names: Sequence[str], attrs: dict[str, Any], progress: bool = True,
                 log=None) -> dict[str, Any]:
    """Write (path, label, split, id) items to an image store; unreadable images go to the failures table."""
    from PIL import UnidentifiedImageError
    from tqdm import tqdm

    from infbrush.data.store import ImageStoreWriter

    log = log or (lambda line: print(line, file=sys.stderr))
    failures: list[tuple[str, str]] = []
    with ImageStoreWriter(out, image_size=image_size, channels=3, thumb_size=thumb_size, label_names=label_names,
                          attrs=attrs) as writer:
        for path, label, split, image_id in tqdm(items, desc="adapt", unit="image", disable=not progress):
            try:
                image = load_square(path, image_size)
            except (OSError, UnidentifiedImageError, ValueError) as err:
                reason = f"cannot read image ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                failures.append((str(path), reason))
                log(f"{path}: skipped: {reason}")
                continue
            writer.append(image, image_id, label=label, held_out=bool(split))
        if writer.n == 0:
            write_failures(failures_path(out), failures)
            raise InfbrushError(f"{out}: none of the {len(items)} images could be read")
        n = writer.n
    write_failures(failures_path(out), failures)
    return {"n_images": n, "failures": failures}


def adapt_bach(root: str | os.PathLike, out: str | os.PathLike, *, image_size: int, thumb_size: int = THUMB_SIZE,
               test_fraction: float = 0.25, seed: int = 0, progress: bool = True, log=None) -> dict[str, Any]:
    """BACH → image store with labels 0..3 (normal, benign, in_situ, invasive) and split 0 train / 1 test."""
    items = [(path, label, split, f"{path.parent.name}/{path.name}")
             for path, label, split in find_bach(root, test_fraction, seed)]
    return write_images(items, out, image_size=image_size, thumb_size=thumb_size, label_names=CLASS_NAMES,
                        attrs={"source": "bach", "root": str(root), "test_fraction": test_fraction, "seed": seed},
                        progress=progress, log=log)


def read_attributes(path: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """Attribute names and {file name: (A,) int8 of ±1} from a ``list_attr_celeba.txt``-style file."""
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise InfbrushError(f"{path}: cannot read attribute file ({err})") from None
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]  # the count line
    if len(lines) < 2:
        raise InfbrushError(f"{path}: attribute file has no header and rows")
    names = lines[0]
    table = {}
    for number, row in enumerate(lines[1:], start=3):
        if len(row) != len(names) + 1:
            raise InfbrushError(f"{path}: line {number} has {len(row) - 1} values, expected {len(names)}")
        try:
            table[row[0]] = np.array([int(v) for v in row[1:]], dtype=np.int8)
        except ValueError:
            raise InfbrushError(f"{path}: line {number} has a non-integer attribute value") from None
    return names, table


def read_hq_mapping(path: str | os.PathLike) -> dict[str, str]:
    """{CelebA-HQ index as str: CelebA file name} from ``CelebA-HQ-to-CelebA-mapping.txt`` (idx orig_idx orig_file)."""
    rows = [line.split() for line in Path(path).read_text().splitlines()[1:] if line.strip()]
    return {row[0]: row[-1] for row in rows}


def adapt_celebahq(images: str | os.PathLike, attributes: str | os.PathLike, attribute: str,
                   out: str | os.PathLike, *, image_size: int, thumb_size: int = THUMB_SIZE, mapping: str | None = None,
                   held_out_fraction: float = 0.0, progress: bool = True, log=None) -> dict[str, Any]:
    """CelebA-HQ → image store with label 1 where ``attribute`` is +1, else 0.

    Images are held out deterministically by a hash of their file name (``held_out_fraction`` of them).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    folder = Path(images)
    if not folder.is_dir():
        raise InfbrushError(f"{folder}: CelebA-HQ image folder not found")
    names, table = read_attributes(attributes)
    if attribute not in names:
        raise InfbrushError(f"{attributes}: no attribute {attribute!r}; valid: {', '.join(names)}")
    column = names.index(attribute)
    hq = read_hq_mapping(mapping) if mapping else {}
    items, failures = [], []
    for path in _images(folder):
        key = path.name if path.name in table else hq.get(path.stem, "")
        if key not in table:
            failures.append((str(path), f"no row in {attributes}"))
            continue
        label = int(table[key][column] > 0)
        held_out = (zlib.crc32(path.name.encode()) % 10_000) < held_out_fraction * 10_000
        items.append((path, label, int(held_out), path.name))
    if not items:
        raise InfbrushError(f"{folder}: no image matches a row of {attributes} (give --mapping for CelebA-HQ names)")
    for path, reason in failures[:5]:
        log(f"{path}: skipped: {reason}")
    if len(failures) > 5:
        log(f"... and {len(failures) - 5} more images without attributes")
    summary = write_images(items, out, image_size=image_size, thumb_size=thumb_size,
                           label_names=[f"not_{attribute}", attribute],
                           attrs={"source": "celebahq", "attribute": attribute}, progress=progress, log=log)
    summary["failures"] = failures + summary["failures"]
    write_failures(failures_path(out), summary["failures"])
    return summary
