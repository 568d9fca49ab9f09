"""Training checkpoints: one file per step, written atomically, the last K kept, loaded safely.

A checkpoint is a plain dict of tensors and primitive containers (no pickled objects), so that
``torch.load(path, weights_only=True)`` reads it. Files are named ``ckpt_{step:08d}.pt``; a file that
cannot be read (truncated by a crash, corrupted on disk) is skipped with a warning and the previous one
is used.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infbrush.io import atomic_path

CKPT_PATTERN = re.compile(r"^ckpt_(\d{8,})\.pt$")


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    """``<ckpt_dir>/ckpt_{step:08d}.pt``."""
    return Path(ckpt_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file in ``ckpt_dir``, oldest first ([] if the folder is absent)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for path in ckpt_dir.iterdir():
        match = CKPT_PATTERN.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(ckpt_dir: str | os.PathLike, state: dict, step: int, keep: int) -> Path:
    """Write ``state`` to ``ckpt_{step:08d}.pt`` atomically (fsynced temp file, then rename); keep the last ``keep``.

    ``state`` must hold only tensors and primitive containers so that it loads with ``weights_only=True``.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    path = checkpoint_path(ckpt_dir, step)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    for _, old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file format is a zip archive


def unreadable_reason(path: str | os.PathLike, err: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in a few words a user can act on.

    torch's own messages are long (the safe-unpickler advice) or cryptic (``KeyError: 101`` for a file that is not a
    zip archive), so the file itself is looked at: empty, not a torch file at all, or a torch file cut short.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as os_err:
        return f"cannot be read ({os_err.strerror})"
    if size == 0:
        return "empty file"
    if head != ZIP_MAGIC:
        return f"not a torch checkpoint ({size:,} bytes without the zip header torch.save writes)"
    if isinstance(err, pickle.UnpicklingError):
        return "holds pickled objects that weights_only=True refuses (not written by infbrush)"
    first = (str(err).splitlines() or [""])[0]
    if "central directory" in first or "zip archive" in first or isinstance(err, EOFError):
        return f"truncated or corrupt torch file ({size:,} bytes)"
    return f"{type(err).__name__}: {first[:160]}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load one checkpoint with ``torch.load(weights_only=True)``; raises on a corrupt/truncated file."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: checkpoint is a {type(state).__name__}, expected a dict")
    return state


def load_latest_checkpoint(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict | None:
    """The newest loadable checkpoint in ``ckpt_dir`` (None if there is none).

    Unreadable files (truncated, corrupt, not a dict) are skipped with a ``UserWarning`` naming the file,
    and the previous checkpoint is tried.
    """
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load_checkpoint(path, map_location=map_location)
        except Exception as err:  # noqa: BLE001 — any failure to read means "skip this file"
            if isinstance(err, ValueError) and str(err).startswith(str(path)):
                reason = str(err)[len(str(path)) + 2:]  # load_checkpoint's own "not a dict"
            else:
                reason = unreadable_reason(path, err)
            warnings.warn(f"{path}: skipped, {reason}; trying the previous checkpoint", stacklevel=2)
    return None


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU, CUDA, numpy, python) as tensors/primitives (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
