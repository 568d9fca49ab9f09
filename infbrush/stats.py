"""Held-out evaluation statistics shared by the encoder reports (DINO's k-NN, the demo CLIP's zero-shot) and the
control report: a class-stratified train/held-out split of a labelled store, accuracy intervals, the majority
baseline, and the k-NN probe of frozen features (DINO, Caron et al., 2021, Sec. 4.1: cosine similarity on
L2-normalised features, k nearest training samples, distance-weighted vote)."""
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


def accuracy_interval(correct: np.ndarray, confidence: float = 0.95) -> list[float]:
    """Wilson score interval [low, high] of an accuracy from per-image 0/1 outcomes (scipy's binomtest)."""
    from scipy.stats import binomtest

    correct = np.asarray(correct, dtype=bool)
    if correct.size == 0:
        raise InfbrushError("accuracy_interval: no held-out images to score")
    ci = binomtest(int(correct.sum()), int(correct.size)).proportion_ci(confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def paired_difference_interval(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = 0.95,
                               seed: int = 0, n_resamples: int = 9999) -> list[float]:
    """Percentile-bootstrap interval of accuracy(a) − accuracy(b) on the same images (resampled in pairs)."""
    from scipy.stats import bootstrap

    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise InfbrushError(f"paired_difference_interval: need two equal-length outcome vectors of ≥ 2 images, "
                            f"got {a.shape} and {b.shape}")
    if np.all(a - b == a[0] - b[0]):  # every pair differs alike: no spread to resample
        return [float(a[0] - b[0])] * 2
    result = bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, vectorized=False,
                       confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                       random_state=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent training class (the honest 'chance' level)."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float((np.asarray(test_labels) == values[counts.argmax()]).mean())


def knn_predict(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                k: int = 20) -> np.ndarray:
    """Labels predicted by a cosine, distance-weighted k-NN classifier (scikit-learn); features (N, D)."""
    from sklearn.neighbors import KNeighborsClassifier

    k = max(1, min(k, len(train_features)))
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance")
    classifier.fit(np.asarray(train_features, dtype=np.float64), np.asarray(train_labels))
    return classifier.predict(np.asarray(test_features, dtype=np.float64))


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, k: int = 20) -> float:
    """Accuracy of a cosine, distance-weighted k-NN classifier; features (N, D)."""
    return float((knn_predict(train_features, train_labels, test_features, k) == np.asarray(test_labels)).mean())
