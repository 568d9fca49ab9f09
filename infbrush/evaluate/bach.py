"""BACH downstream experiment (∞-Brush appendix B.3: 79% with real training data → 83% with real + synthetic).

Protocol (the paper does not describe its classifier; ours, documented here):

* Features: the frozen encoder (the dataset's conditioning encoder, e.g. Quilt) embeds each image resized
  to its input size (PIL bicubic, as the embedding stage); features are L2-normalised.
* Classifier: a linear probe, ``sklearn.linear_model.LogisticRegression`` (multinomial, L-BFGS,
  ``max_iter=5000``), its inverse regularisation ``C`` chosen from ``C_GRID`` by accuracy on a validation
  split of the real training images.
* For each seed: a stratified split of the real BACH training images (``split == 0``) into fit
  (1 − ``val_fraction``) and validation parts (``train_test_split(random_state=seed)``). Arm **real**: fit
  images only. Arm **real + synthetic**: fit images plus, for each of them, the one synthetic image
  generated from its embedding (``infbrush sample --cond-embeddings`` on the BACH store's training rows;
  matched by ``source_id`` = store id, same label). Both arms choose C on the same real validation images
  and are tested on the BACH test split (``split == 1``). Reported: mean ± sd (ddof 1) over seeds.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.evaluate.images import SampleRecord, read_image

C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
PAPER = {"real": 0.79, "real_plus_synthetic": 0.83}  # appendix B.3 (NUMBERS.md)


def embed_images(images: Iterable[np.ndarray], encoder, batch_size: int = 32) -> np.ndarray:
    """L2-normalised features (N, D) float64 of (H, W, 3) uint8 images resized to the encoder's input.

    ``images`` may be a generator: at most ``batch_size`` images are held at once.
    """
    from infbrush.data.store import resize_image

    size = int(encoder.input_size)
    feats, batch = [], []

    def flush() -> None:
        feats.append(np.asarray(encoder.embed_images(np.stack(batch)), dtype=np.float64))
        batch.clear()

    for image in images:
        batch.append(resize_image(np.ascontiguousarray(image[..., :3]), size))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    feats = np.concatenate(feats)  # (N, D)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def match_synthetic(records: Sequence[SampleRecord], ids: Sequence[str], labels: np.ndarray,
                    source: str = "synthetic") -> dict[int, SampleRecord]:
    """Store row → its synthetic record (by ``condition_id`` = store id); labels must agree."""
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    matched: dict[int, SampleRecord] = {}
    for record in records:
        row = row_of.get(record.condition_id)
        if row is None:
            raise InfbrushError(f"{source}: {record.path.name} was generated from {record.condition_id!r}, "
                                "which is not an image of the BACH store")
        if record.label is not None and record.label >= 0 and record.label != labels[row]:
            raise InfbrushError(f"{source}: {record.path.name} has label {record.label} but its source image "
                                f"{record.condition_id!r} has label {labels[row]}")
        matched.setdefault(row, record)  # one synthetic image per real image
    return matched


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 c_grid: Sequence[float] = C_GRID):
    """Fit LogisticRegression for each C, keep the best on validation; returns (model, C, val accuracy)."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=5000).fit(train_x, train_y)
        acc = float((model.predict(val_x) == val_y).mean())
        if best is None or acc > best[2]:
            best = (model, float(c), acc)
    return best


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": values}


def bach_downstream(store_path: str | os.PathLike, records: Sequence[SampleRecord], encoder,
                    seeds: Sequence[int] = (0, 1, 2), *, val_fraction: float = 0.2, c_grid: Sequence[float] = C_GRID,
                    batch_size: int = 32, source: str = "synthetic") -> dict:
    """Run the protocol of the module docstring; returns accuracies of both arms and the counts."""
    from sklearn.model_selection import train_test_split

    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    labels = store.labels
    train_rows = np.flatnonzero((store.split == 0) & (labels >= 0))
    test_rows = np.flatnonzero((store.split == 1) & (labels >= 0))
    if len(train_rows) < 4 or len(test_rows) < 1:
        raise InfbrushError(f"{store_path}: needs labelled train (split 0) and test (split 1) images, "
                            f"has {len(train_rows)} and {len(test_rows)}")
    synthetic = match_synthetic(records, store.ids, labels, source)
    synthetic = {row: rec for row, rec in synthetic.items() if row in set(train_rows.tolist())}
    if not synthetic:
        raise InfbrushError(f"{source}: no synthetic image was generated from a BACH training image")
    rows = np.concatenate([train_rows, test_rows])
    size = int(encoder.input_size)
    feats = dict(zip(rows.tolist(), embed_images((store.thumb(int(r), size) for r in rows), encoder, batch_size)))
    syn_rows = sorted(synthetic)
    syn_feats = dict(zip(syn_rows, embed_images((read_image(synthetic[r].path) for r in syn_rows), encoder,
                                                batch_size)))
    test_x, test_y = np.stack([feats[r] for r in test_rows]), labels[test_rows]

    arms: dict[str, dict[str, list]] = {arm: {"acc": [], "C": []} for arm in ("real", "real_plus_synthetic")}
    for seed in seeds:
        fit_rows, val_rows = train_test_split(train_rows, test_size=val_fraction, random_state=seed,
                                              stratify=labels[train_rows])
        val_x, val_y = np.stack([feats[r] for r in val_rows]), labels[val_rows]
        fit_x, fit_y = np.stack([feats[r] for r in fit_rows]), labels[fit_rows]
        extra = [r for r in fit_rows if r in syn_feats]
        aug_x = np.concatenate([fit_x, np.stack([syn_feats[r] for r in extra])])
        aug_y = np.concatenate([fit_y, labels[extra]])
        for arm, (x, y) in {"real": (fit_x, fit_y), "real_plus_synthetic": (aug_x, aug_y)}.items():
            model, c, _ = linear_probe(x, y, val_x, val_y, c_grid)
            arms[arm]["acc"].append(float((model.predict(test_x) == test_y).mean()))
            arms[arm]["C"].append(c)
    result = {arm: {**_summary(v["acc"]), "C": v["C"]} for arm, v in arms.items()}
    result.update({
        "delta_mean": result["real_plus_synthetic"]["mean"] - result["real"]["mean"],
        "seeds": list(seeds), "n_train": int(len(train_rows)), "n_test": int(len(test_rows)),
        "n_synthetic": len(synthetic), "val_fraction": val_fraction, "c_grid": list(c_grid),
        "class_names": store.label_names, "paper": PAPER,
        "classifier": "L2-normalised frozen features, sklearn LogisticRegression (lbfgs), C by validation",
    })
    return result
