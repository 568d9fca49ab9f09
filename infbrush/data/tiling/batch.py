"""Tiling many slides: skip the ones already finished with the same parameters (resume), tile the rest in worker
processes, and record every slide that could not be tiled, with its reason, in ``failures.tsv``."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from infbrush.data.tiling.formats import CLAM_DIR, read_coords
from infbrush.data.tiling.inputs import slide_id_of
from infbrush.data.tiling.params import TilingParams
from infbrush.data.tiling.slide import tile_slide
from infbrush.errors import InfbrushError
from infbrush.runtime.jobs import InputError, one_line, run_tasks, write_failures


@dataclass
class TilingSummary:
    """What a tiling run did: slides tiled, slides skipped as already done, and failures (path, reason)."""

    tiled: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    internal_errors: int = 0  # failures that are not input problems (bugs): the run must not pass


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


def _preload() -> None:
    """Import the workers' libraries once in the parent, so forked workers start with them loaded."""
    import h5py  # noqa: F401
    import openslide  # noqa: F401

    try:
        import cv2  # noqa: F401
    except ImportError:
        import scipy.ndimage  # noqa: F401  (tissue.py's fallback)


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
