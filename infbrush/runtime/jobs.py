"""The per-input job runner of the data stages and the ``failures.tsv`` file they leave.

A stage runs one job per input file (a slide, a GeoTIFF, a BACH folder); an input that cannot be used raises
:class:`InputError`, is listed with its reason in ``failures.tsv`` and the batch goes on. A crash of a worker
process (a native crash in a slide library) is attributed to the one input causing it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from infbrush.io import atomic_path


class InputError(Exception):
    """A problem with one input (recorded in failures.tsv; the batch goes on)."""


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 300 characters (for logs and failures.tsv)."""
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return text[:300]


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
                yield item, None, InputError("the worker process crashed while reading this file")
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
