"""Evaluation of frozen features on a labelled store: train/held-out split and k-NN accuracy.

The k-NN probe follows DINO (Caron et al., 2021, Sec. 4.1): cosine similarity on L2-normalised
features, k nearest training samples, distance-weighted vote.
"""
from __future__ import annotations

import numpy as np

from infbrush.errors import InfbrushError


def labelled_split(labels: np.ndarray, split: np.ndarray, holdout_fraction: float = 0.25,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx) over labelled rows (label >= 0).

    Uses the store's own split (0 train / 1 held out) when it has labelled rows on both sides; otherwise
    holds out a seeded random ``holdout_fraction`` of each class.
    """
    labels, split = np.asarray(labels), np.asarray(split)
    labelled = labels >= 0
    if labelled.sum() < 4 or len(np.unique(labels[labelled])) < 2:
        raise InfbrushError(f"need labelled images of at least 2 classes, got {int(labelled.sum())} labelled")
    train = np.flatnonzero(labelled & (split == 0))
    test = np.flatnonzero(labelled & (split == 1))
    if len(train) and len(test) and len(np.unique(labels[train])) > 1:
        return train, test
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for cls in np.unique(labels[labelled]):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(rows) * holdout_fraction)) if len(rows) > 1 else 0
        test_parts.append(rows[:n_test])
        train_parts.append(rows[n_test:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, k: int = 20) -> float:
    """Accuracy of a cosine, distance-weighted k-NN classifier; features (N, D)."""
    from sklearn.neighbors import KNeighborsClassifier

    k = max(1, min(k, len(train_features)))
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance")
    classifier.fit(np.asarray(train_features, dtype=np.float64), np.asarray(train_labels))
    return float((classifier.predict(np.asarray(test_features, dtype=np.float64)) == np.asarray(test_labels)).mean())


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent training class (the honest 'chance' level)."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float((np.asarray(test_labels) == values[counts.argmax()]).mean())


def knn_report(store, encoder, baseline_encoder=None, k: int = 20, seed: int = 0,
               batch_size: int = 64, progress: bool = False) -> dict:
    """k-NN accuracy of ``encoder`` on a labelled store (train rows as memory, held-out rows as queries).

    ``baseline_encoder`` (e.g. the same architecture at random initialisation) is measured the same way,
    so the report shows what training added beyond chance and beyond an untrained network.
    """
    from infbrush.embed.images import embed_indices

    train_idx, test_idx = labelled_split(store.labels, store.split, seed=seed)
    rows = np.concatenate([train_idx, test_idx])

    def accuracy(enc) -> float:
        features = embed_indices(store, enc, rows, batch_size=batch_size, progress=progress).numpy()  # (M, D)
        return knn_accuracy(features[:len(train_idx)], store.labels[train_idx], features[len(train_idx):],
                            store.labels[test_idx], k=k)

    report = {"knn_accuracy": accuracy(encoder), "k": k, "chance": 1.0 / len(np.unique(store.labels[rows])),
              "majority_baseline": majority_baseline(store.labels[train_idx], store.labels[test_idx]),
              "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
              "classes": list(store.label_names)}
    if baseline_encoder is not None:
        report["knn_accuracy_random_init"] = accuracy(baseline_encoder)
    return report
