"""Which slides a tiling run reads: slide files found on disk or listed in a batch CSV, their slide ids, and the
error a slide that cannot be used raises (recorded; the run goes on)."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

from infbrush.errors import InfbrushError
from infbrush.runtime.jobs import InputError, one_line

SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif",
                    ".dcm")


class SlideError(InputError):
    """An input problem with one slide (unreadable, no MPP, no tissue): recorded, the run goes on."""


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
