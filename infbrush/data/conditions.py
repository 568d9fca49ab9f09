"""Condition vectors of image-store rows, the one definition training and sampling share: the rows' embeddings
(an ``embeddings.h5`` matched to the store by ``ids``) or one-hot class labels."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from infbrush.data.store import ImageStore
from infbrush.errors import InfbrushError
from infbrush.io import read_h5


def load_conditions(store: ImageStore, rows: np.ndarray, *, embeddings: str | os.PathLike | None = None,
                    n_classes: int | None = None) -> torch.Tensor | None:
    """Condition vectors for store ``rows`` → (len(rows), D) float32, or None (unconditional).

    ``embeddings``: an embeddings.h5 whose ``features`` rows are matched to the store by ``ids``.
    ``n_classes``: one-hot of the store's ``labels`` (every training label must be in [0, n_classes)).
    """
    if embeddings is not None and n_classes is not None:
        raise InfbrushError("give either condition embeddings or a number of label classes, not both")
    if embeddings is not None:
        path = Path(embeddings)
        data, _ = read_h5(path, "condition embeddings", arrays=("features",), strings=("ids",))
        features, emb_ids = data["features"], data["ids"]
        if features.ndim != 2 or len(features) != len(emb_ids):
            raise InfbrushError(f"{path}: 'features' {features.shape} does not match {len(emb_ids)} ids")
        where = {image_id: i for i, image_id in enumerate(emb_ids)}
        wanted = [store.ids[r] for r in rows]
        missing = [image_id for image_id in wanted if image_id not in where]
        if missing:
            raise InfbrushError(f"{path} does not match {store.path}: {len(missing)} of {len(wanted)} training image "
                                f"ids have no embedding (first: {missing[0]!r}); re-run `infbrush embed` on this store")
        cond = torch.from_numpy(np.asarray(features[[where[i] for i in wanted]], dtype=np.float32))
        if not torch.isfinite(cond).all():
            raise InfbrushError(f"{path}: 'features' contains NaN or inf")
        return cond
    if n_classes is not None:
        if n_classes < 2:
            raise InfbrushError(f"--cond-labels must be >= 2 classes, got {n_classes}")
        labels = store.labels[rows]
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            raise InfbrushError(f"{store.path}: {int(bad.sum())} training images have labels outside "
                                f"[0, {n_classes}) (first: {int(labels[bad][0])} for id {store.ids[rows[bad][0]]!r})")
        return torch.nn.functional.one_hot(torch.from_numpy(labels), n_classes).float()
    return None
