"""Zero-shot confusion matrix of text-conditioned generations (∞-Brush appendix B.2).

Images generated from the text embeddings of the class prompts (``infbrush sample --cond-text``; each
record's label is its prompt's class) are classified by the same CLIP model's zero-shot head
(:func:`infbrush.embed.text.zero_shot_classify`: cosine similarity to the prompt embeddings, argmax).
Rows of the confusion matrix are the prompted (true) class, columns the predicted class, so row k sums to
the number of images generated for class k.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from infbrush.errors import InfbrushError
from infbrush.evaluate.images import SampleRecord, read_image


def true_labels(records: Sequence[SampleRecord], class_names: Sequence[str], source: str = "samples") -> np.ndarray:
    """Class index (N,) of each record: its ``label_name`` looked up in ``class_names``, else its ``label``."""
    labels = []
    for record in records:
        if record.label_name is not None and record.label_name in class_names:
            labels.append(list(class_names).index(record.label_name))
        elif record.label is not None and 0 <= record.label < len(class_names):
            labels.append(int(record.label))
        else:
            raise InfbrushError(f"{source}: {record.path.name} has label {record.label!r} / "
                                f"{record.label_name!r}, not one of the classes {list(class_names)}")
    return np.asarray(labels, dtype=np.int64)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows = true class, columns = predicted class (sklearn's convention)."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(true, pred, labels=list(range(n_classes))).astype(np.int64)


def embed_records(records: Sequence[SampleRecord], encoder, batch_size: int = 32) -> np.ndarray:
    """Image features (N, D) of the records' images, each resized to the encoder's input size first."""
    from tqdm import tqdm

    from infbrush.data.store import resize_image

    feats, batch = [], []
    for record in tqdm(records, desc="zero-shot images", mininterval=5):
        batch.append(resize_image(read_image(record.path), int(encoder.input_size)))
        if len(batch) == batch_size:
            feats.append(np.asarray(encoder.embed_images(np.stack(batch))))
            batch = []
    if batch:
        feats.append(np.asarray(encoder.embed_images(np.stack(batch))))
    return np.concatenate(feats)


def zero_shot_evaluate(records: Sequence[SampleRecord], encoder, prompts: Mapping[str, str], *,
                       batch_size: int = 32, source: str = "samples") -> dict:
    """Classify generated images by zero-shot; returns confusion matrix, accuracies and counts."""
    from infbrush.embed.text import zero_shot_classify

    names = list(prompts)
    true = true_labels(records, names, source)
    features = embed_records(records, encoder, batch_size)  # (N, D)
    pred, _ = zero_shot_classify(encoder, features, prompts)
    pred = np.asarray(pred, dtype=np.int64)
    matrix = confusion_matrix(true, pred, len(names))
    per_class = matrix.sum(axis=1)
    return {
        "class_names": names, "prompts": dict(prompts),
        "confusion": matrix.tolist(), "rows": "prompted class", "columns": "zero-shot prediction",
        "accuracy": float((true == pred).mean()),
        "per_class_accuracy": {n: (float(matrix[k, k] / per_class[k]) if per_class[k] else None)
                               for k, n in enumerate(names)},
        "n_images": len(records), "n_per_class": {n: int(c) for n, c in zip(names, per_class)},
        "chance": 1.0 / len(names),
    }


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike,
                   title: str = "zero-shot confusion") -> None:
    """Save a confusion-matrix heat map (counts annotated) as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infbrush.io import atomic_path

    matrix = np.asarray(matrix)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.1 * k + 2))
    ax.imshow(matrix, cmap="Blues", vmin=0)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("zero-shot prediction")
    ax.set_ylabel("prompted class")
    ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if top and matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
