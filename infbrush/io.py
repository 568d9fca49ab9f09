"""Atomic output: every file is written under a temporary name and renamed when complete."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place only if the block succeeds.

    Works for files and directories (the block may create either at the yielded path). The temporary
    name keeps the final suffix so that libraries choosing a format by extension still work.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = final.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # let the caller create a file or a directory
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: nothing was written to the temporary path {tmp}")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (flushed and fsynced so a kill never leaves a partial line behind)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def h5_strings(values) -> list[str]:
    """HDF5 string rows (stored as bytes or str) as Python strings."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_h5(path: str | os.PathLike, what: str, *, arrays: tuple[str, ...] = (), strings: tuple[str, ...] = ()
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """({name: numpy array or list of str}, file attrs) of the named datasets of an HDF5 file; a missing file, a
    missing dataset or an unreadable file is one InfbrushError naming the file and ``what`` it should be."""
    import h5py

    from infbrush.errors import InfbrushError

    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: {what} not found")
    try:
        with h5py.File(path, "r") as h5:
            for key in arrays + strings:
                if key not in h5:
                    raise InfbrushError(f"{path}: no '{key}' dataset (not a {what} file)")
            data: dict[str, Any] = {key: h5[key][:] for key in arrays}
            data.update({key: h5_strings(h5[key][:]) for key in strings})
            return data, dict(h5.attrs)
    except OSError as err:
        raise InfbrushError(f"{path}: not a {what} file ({err})") from None
