"""What to sample: one ``SampleSpec`` per output image (its name, seed, condition vector and provenance).

Three sources of conditions, matching how the model was trained (``infbrush.data.conditions.load_conditions``):

* held-out real images: their embeddings (rows of ``embeddings.h5`` matched to the store by id, store rows
  with ``split == 1``), label = the store's label of that image (-1 unknown);
* text embeddings (``text_embeddings.h5``: features (K, D), names (K,)): ``per_class`` images per prompt,
  label = the prompt's index, label_name = its name;
* class labels: one-hot vectors of length ``cond_dim`` (a label-conditioned model).

Image i gets seed ``seed + i`` so that outputs never depend on the batch size or on which images a resumed
run still had to make.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from infbrush.errors import InfbrushError


@dataclass(frozen=True)
class SampleSpec:
    """One image to generate. ``cond`` is (D,) float32 or None (unconditional)."""

    name: str
    seed: int
    cond: np.ndarray | None = field(repr=False)
    source: str  # "held-out" | "train" (a store row's embedding) | "text" | "label" | "unconditional"
    source_id: str  # store id, prompt name or label index
    label: int = -1
    label_name: str | None = None


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def per_class_rows(rows: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` rows of each label (labels ≥ 0), in store order → (≤ K·per_class,) int64."""
    keep = np.zeros(len(rows), dtype=bool)
    for label in np.unique(labels[labels >= 0]):
        keep[np.flatnonzero(labels == label)[:per_class]] = True
    return rows[keep]


def from_held_out(store_path: str | os.PathLike, embeddings_path: str | os.PathLike, *, seed: int,
                  n_images: int | None = None, split: int = 1, per_class: int | None = None) -> list[SampleSpec]:
    """One spec per store row with ``split == split`` (first ``n_images`` of them), conditioned on its embedding.

    ``per_class``: instead, the first ``per_class`` labelled rows of every class (controllability needs every
    class represented; unlabelled rows are skipped).
    """
    from infbrush.data.store import ImageStore
    from infbrush.data.conditions import load_conditions

    store = ImageStore(store_path)
    rows = np.flatnonzero(store.split == split)
    if rows.size == 0:
        raise InfbrushError(f"{store_path}: no images with split == {split} (held out) to take conditions from")
    if per_class is not None:
        rows = per_class_rows(rows, np.asarray(store.labels)[rows], per_class)
        if rows.size == 0:
            raise InfbrushError(f"{store_path}: --per-class needs labelled images with split == {split}; none has a label")
    if n_images is not None:
        rows = rows[:n_images]
    cond = load_conditions(store, rows, embeddings=embeddings_path).numpy()  # (n, D)
    names = store.label_names
    source = "held-out" if split == 1 else "train"  # which rows the conditions came from
    specs = []
    for i, (row, vec) in enumerate(zip(rows, cond)):
        label = int(store.labels[row])
        specs.append(SampleSpec(name=f"img_{i:05d}", seed=seed + i, cond=vec, source=source,
                                source_id=store.ids[row], label=label,
                                label_name=names[label] if 0 <= label < len(names) else None))
    return specs


def from_text(text_path: str | os.PathLike, *, per_class: int, seed: int) -> list[SampleSpec]:
    """``per_class`` specs per prompt of a text_embeddings.h5 (class-major order)."""
    import h5py

    path = Path(text_path)
    if not path.is_file():
        raise InfbrushError(f"{path}: text embeddings not found")
    if per_class < 1:
        raise InfbrushError(f"--per-class must be >= 1, got {per_class}")
    with h5py.File(path, "r") as h5:
        for key in ("features", "names"):
            if key not in h5:
                raise InfbrushError(f"{path}: no '{key}' dataset (not a text embeddings file)")
        features = np.asarray(h5["features"][:], dtype=np.float32)
        names = _decode(h5["names"][:])
    if features.ndim != 2 or len(features) != len(names):
        raise InfbrushError(f"{path}: 'features' {features.shape} does not match {len(names)} names")
    specs = []
    for k, (name, vec) in enumerate(zip(names, features)):
        for j in range(per_class):
            i = len(specs)
            specs.append(SampleSpec(name=f"{name}_{j:04d}", seed=seed + i, cond=vec, source="text",
                                    source_id=name, label=k, label_name=name))
    return specs


def from_labels(labels: Sequence[int], *, cond_dim: int, per_class: int, seed: int,
                label_names: Sequence[str] = ()) -> list[SampleSpec]:
    """``per_class`` specs per class label, each conditioned on the one-hot vector of length ``cond_dim``."""
    if per_class < 1:
        raise InfbrushError(f"--per-class must be >= 1, got {per_class}")
    bad = [lab for lab in labels if not 0 <= lab < cond_dim]
    if bad:
        raise InfbrushError(f"--labels {bad} outside [0, {cond_dim}): the model's condition has {cond_dim} "
                            f"dimensions (a label-conditioned model has one per class)")
    specs = []
    for lab in labels:
        vec = np.zeros(cond_dim, dtype=np.float32)
        vec[lab] = 1.0
        name = label_names[lab] if lab < len(label_names) else None
        for j in range(per_class):
            i = len(specs)
            specs.append(SampleSpec(name=f"label{lab}_{j:04d}", seed=seed + i, cond=vec, source="label",
                                    source_id=str(lab), label=int(lab), label_name=name))
    return specs


def unconditional(n_images: int, *, seed: int) -> list[SampleSpec]:
    """``n_images`` specs without a condition (an unconditional model)."""
    return [SampleSpec(name=f"img_{i:05d}", seed=seed + i, cond=None, source="unconditional", source_id="")
            for i in range(n_images)]


def check_cond_dim(specs: Sequence[SampleSpec], cond_dim: int, source: str) -> None:
    """Raise if the conditions do not fit a model whose condition has ``cond_dim`` dimensions (0: none)."""
    dims = {int(s.cond.shape[0]) for s in specs if s.cond is not None}
    if cond_dim == 0 and dims:
        raise InfbrushError(f"{source}: the model is unconditional (cond_dim 0) but conditions were given")
    if cond_dim and any(s.cond is None for s in specs):
        raise InfbrushError(f"{source}: the model needs {cond_dim}-dimensional conditions; give --cond-embeddings, "
                            f"--cond-text or --labels")
    if dims and dims != {cond_dim}:
        raise InfbrushError(f"{source}: conditions have dimension {sorted(dims)[0]} but the model expects {cond_dim}")
