"""Controllability: does an image generated for class k look like class k to an independent classifier?

Classifier (documented choice, paper silent): multinomial logistic regression (scikit-learn, standardised
inputs) on hand-made colour/texture features of the image resized to ``feature_size``² — per-channel RGB
and HSV mean/std, 8-bin histograms of R, G, B, gradient-magnitude mean/std and a uniform LBP histogram
(P = 8, R = 1). It is trained only on real images the diffusion model never saw (store rows with split == 1
and a known label), so it judges generations with no knowledge of the generator. Its own accuracy on real
held-out images is estimated by stratified k-fold cross-validation (k = min(5, smallest class count)) and
reported as the sanity reference; the classifier applied to the generated images is fit on all of them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from infbrush.errors import InfbrushError

CLASSIFIER = ("logistic regression (scikit-learn, standardised) on colour/texture features: RGB+HSV mean/std, "
              "8-bin RGB histograms, gradient-magnitude mean/std, uniform LBP(8,1) histogram")


def image_features(image: np.ndarray, feature_size: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 image → (48,) float32 colour/texture feature vector of the image resized to feature_size²."""
    from skimage.color import rgb2gray, rgb2hsv
    from skimage.feature import local_binary_pattern

    from infbrush.data.store import resize_image

    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {image.shape}")
    small = resize_image(np.ascontiguousarray(image[..., :3]), feature_size)  # (S, S, 3) uint8
    rgb = small.astype(np.float32) / 255.0
    hsv = rgb2hsv(rgb)
    feats = [rgb.mean(axis=(0, 1)), rgb.std(axis=(0, 1)), hsv.mean(axis=(0, 1)), hsv.std(axis=(0, 1))]
    feats += [np.histogram(small[..., c], bins=8, range=(0, 256))[0] / small[..., c].size for c in range(3)]
    gray = rgb2gray(rgb)
    gy, gx = np.gradient(gray)
    magnitude = np.hypot(gx, gy)
    feats.append(np.array([magnitude.mean(), magnitude.std()]))
    lbp = local_binary_pattern((gray * 255).astype(np.uint8), P=8, R=1, method="uniform")  # values 0..9
    feats.append(np.bincount(lbp.astype(np.int64).ravel(), minlength=10)[:10] / lbp.size)
    return np.concatenate([np.asarray(f, dtype=np.float32).ravel() for f in feats])


def read_generated(path: str | os.PathLike, min_side: int = 128) -> np.ndarray:
    """A generated image as (H, W, 3) uint8: PNG whole; pyramidal TIFF from the smallest level ≥ ``min_side``."""
    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: generated image listed in the index is missing")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            pages = sorted(tif.pages, key=lambda p: p.shape[0])
            page = next((p for p in pages if min(p.shape[:2]) >= min_side), pages[-1])
            return page.asarray()
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))


def real_held_out(store_path: str | os.PathLike, feature_size: int = 64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, F) and labels (n,) of the store's held-out (split == 1) labelled images, and label names."""
    from tqdm import tqdm

    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    rows = np.flatnonzero((store.split == 1) & (store.labels >= 0))
    if rows.size == 0:
        raise InfbrushError(f"{store_path}: no held-out (split == 1) images with a label to train the classifier on")
    labels = store.labels[rows]
    feats = np.stack([image_features(store.image(int(r)), feature_size)
                      for r in tqdm(rows, desc="real features", unit="img", leave=False)])
    names = store.label_names or [str(k) for k in range(int(labels.max()) + 1)]
    store.close()
    return feats, labels, names


def cross_validated_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Stratified k-fold accuracy of the classifier on real images (k = min(5, smallest class count))."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise InfbrushError(f"the held-out real images have only {classes.size} class(es); need at least 2")
    if counts.min() < 2:
        raise InfbrushError(f"class {int(classes[counts.argmin()])} has {int(counts.min())} held-out real image(s); "
                            f"need at least 2 per class for cross-validation")
    folds = int(min(5, counts.min()))
    scores = cross_val_score(_classifier(), features, labels,
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"folds": folds, "accuracy": float(scores.mean()), "accuracy_sd": float(scores.std()),
            "fold_accuracies": [float(s) for s in scores]}


def generated_labels(entries: Sequence[dict], label_names: Sequence[str]) -> np.ndarray:
    """Intended class of each index entry in the store's label space (by name when given, else by index)."""
    out = []
    for e in entries:
        name = e.get("label_name")
        out.append(list(label_names).index(name) if name in label_names else int(e.get("label", -1)))
    return np.asarray(out, dtype=np.int64)


def controllability(store_path: str | os.PathLike, index_path: str | os.PathLike, *, feature_size: int = 64,
                    seed: int = 0, goal: float = 0.8) -> dict:
    """Per-class and mean accuracy of the real-data classifier on the images listed in ``index_path``."""
    from sklearn.metrics import confusion_matrix
    from tqdm import tqdm

    from infbrush.sample.outputs import read_index

    feats, labels, names = real_held_out(store_path, feature_size)
    # A class with a single held-out image can be neither cross-validated nor fairly learned: leave it out
    # (recorded in the output) rather than fail the whole run.
    classes, counts = np.unique(labels, return_counts=True)
    too_few = {names[int(k)]: int(c) for k, c in zip(classes, counts) if c < 2}
    keep = np.isin(labels, classes[counts >= 2])
    feats, labels = feats[keep], labels[keep]
    reference = cross_validated_accuracy(feats, labels, seed)
    clf = _classifier().fit(feats, labels)
    index = read_index(index_path)
    entries = index["images"]
    intended = generated_labels(entries, names)
    known = [(e, k) for e, k in zip(entries, intended) if 0 <= k < len(names) and k in set(labels.tolist())]
    if not known:
        raise InfbrushError(f"{index_path}: no generated image has a class label in {list(names)} "
                            f"(sample with --labels, --cond-text or from labelled held-out images)")
    gen = np.stack([image_features(read_generated(e["path"], 2 * feature_size), feature_size)
                    for e, _ in tqdm(known, desc="generated features", unit="img", leave=False)])
    target = np.asarray([k for _, k in known])
    predicted = clf.predict(gen)
    per_class = {}
    for k in np.unique(target):
        hit = predicted[target == k] == k
        per_class[names[k]] = {"n_images": int(hit.size), "accuracy": float(hit.mean())}
    mean_acc = float(np.mean([v["accuracy"] for v in per_class.values()]))
    present = sorted(set(labels.tolist()) | set(target.tolist()))
    return {
        "classifier": CLASSIFIER, "feature_size": feature_size, "seed": seed,
        "store": str(store_path), "samples": str(index_path), "resolution": index.get("resolution"),
        "real_held_out": {"n_images": int(labels.size), "classes_left_out": too_few,
                          "per_class": {names[k]: int((labels == k).sum()) for k in np.unique(labels)},
                          "cross_validation": reference},
        "generated": {"n_images": int(target.size), "n_unlabelled_skipped": len(entries) - len(known),
                      "per_class": per_class, "mean_accuracy": mean_acc,
                      "overall_accuracy": float((predicted == target).mean()),
                      "confusion_labels": [names[k] for k in present],
                      "confusion": confusion_matrix(target, predicted, labels=present).tolist()},
        "goal_mean_accuracy": goal, "goal_met": bool(mean_acc >= goal),
    }
