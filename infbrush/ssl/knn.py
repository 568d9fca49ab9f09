"""Evaluation of frozen features on a labelled store: k-NN accuracy (probe, split, intervals: infbrush/stats.py).

The k-NN probe follows DINO (Caron et al., 2021, Sec. 4.1): cosine similarity on L2-normalised
features, k nearest training samples, distance-weighted vote.
"""
from __future__ import annotations

import numpy as np

from infbrush.stats import (accuracy_interval, knn_accuracy, knn_predict, labelled_split, majority_baseline,
                            paired_difference_interval)


def knn_report(store, encoder, baseline_encoder=None, k: int = 20, seed: int = 0,
               batch_size: int = 64, progress: bool = False) -> dict:
    """k-NN accuracy of ``encoder`` on a labelled store (train rows as memory, held-out rows as queries).

    ``baseline_encoder`` (the same network at its initialisation) is measured with the same protocol on the
    same images, so the report shows what training added: ``knn_accuracy_random_init`` and ``knn_gain`` (the
    difference) with 95 % intervals (Wilson for accuracies, paired bootstrap over images for the gain). Per-class
    accuracies (``*_per_class``, in ``classes`` order; None for a class without held-out images) show where.
    """
    from infbrush.embed.images import embed_indices

    train_idx, test_idx = labelled_split(store.labels, store.split, seed=seed)
    rows = np.concatenate([train_idx, test_idx])
    truth = store.labels[test_idx]

    def outcomes(enc) -> np.ndarray:
        features = embed_indices(store, enc, rows, batch_size=batch_size, progress=progress).numpy()  # (M, D)
        pred = knn_predict(features[:len(train_idx)], store.labels[train_idx], features[len(train_idx):], k=k)
        return pred == truth  # (n_test,) bool

    def per_class(hit: np.ndarray) -> list[float | None]:
        return [float(hit[truth == c].mean()) if (truth == c).any() else None for c in range(len(store.label_names))]

    correct = outcomes(encoder)
    report = {"knn_accuracy": float(correct.mean()), "knn_accuracy_ci95": accuracy_interval(correct), "k": k,
              "knn_accuracy_per_class": per_class(correct),
              "protocol": "cosine distance-weighted k-NN (DINO Sec. 4.1) fit on the train split's features, "
                          "scored on the held-out split",
              "chance": 1.0 / len(np.unique(store.labels[rows])),
              "majority_baseline": majority_baseline(store.labels[train_idx], truth),
              "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
              "n_test_per_class": np.bincount(truth, minlength=len(store.label_names)).tolist(),
              "classes": list(store.label_names)}
    if baseline_encoder is not None:
        base = outcomes(baseline_encoder)
        report.update(knn_accuracy_random_init=float(base.mean()), knn_accuracy_random_init_ci95=accuracy_interval(base),
                      knn_accuracy_random_init_per_class=per_class(base),
                      knn_gain=float(correct.mean() - base.mean()),
                      knn_gain_ci95=paired_difference_interval(correct, base, seed=seed))
    return report
