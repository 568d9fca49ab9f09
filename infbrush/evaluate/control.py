"""Controllability: does an image generated for class k look like class k to an independent judge?

**The judge** (documented choice, paper silent) is a random forest (scikit-learn, 300 trees, balanced class
weights, seeded) on hand-made colour/texture features of the image resized to ``feature_size``² (see
:func:`image_features`: RGB/HSV moments, 16-bin RGB and HSV histograms, a 4×4×4 joint RGB histogram,
gradient-magnitude statistics at two scales and uniform LBP histograms at two radii). It is fit on the
store's real **training** images (split == 0, labelled) and its accuracy is measured on the real **held-out**
images (split == 1): the figure every control number is read against. A judge only classifies images, so
fitting it on the generator's training images leaks nothing into the score; judging with a classifier that
fails on real images would cap the control figure by construction (a judge fit on the 15 held-out patches
alone reached 0.64 on real images).

Measured on the demo stores (64² patches; features and fit take 6 s for demo_naip, 3 s for demo_brca on the
2-core machine), judge seed 0; intervals as below:

=============  =====  ========  ==========================  ============================================
store          train  held-out  overall accuracy (Wilson)   before (same train/held-out split)
=============  =====  ========  ==========================  ============================================
demo_naip      701    150       0.973 [0.933, 0.990]        48 features + logistic regression: 0.953
demo_brca      368    63        0.952 [0.869, 0.984]        48 features + logistic regression: 0.873
=============  =====  ========  ==========================  ============================================

Per class: demo_naip water 33/33, forest 45/45, field 29/31, developed 39/41; demo_brca normal 10/10,
benign 25/26, in_situ 12/14, invasive 13/13. Over judge seeds 0–4 the held-out accuracy is 0.967–0.973 (demo_naip)
and 0.952 for every seed (demo_brca).

**Mixed patches.** Labels are the majority class under a patch (``infbrush.data.geotiff.LandCover``,
``infbrush.data.patches.patch_label``); the store keeps no purity. Measured offline from the demo world's
class rasters (majority fraction under each patch): demo_brca patches are all pure (purity 1.0: its class
maps are region-level), while a quarter of demo_naip's held-out patches have purity < 0.63 (roads through
fields, water edges, building lots on grass). The judge's 4 demo_naip errors are all on mixed patches
(purity 0.36, 0.46, 0.50, 0.52): held-out accuracy 0.867 (n = 15) at purity < 0.5, 0.955 (n = 44) at
0.5–0.75, 1.000 (n = 91) at ≥ 0.75. Fitting the judge on pure training patches only (purity ≥ 0.75, 453 of
701) lowered it to 0.940 (0.600 on purity < 0.5), so it is fit on all labelled training patches, mixed ones
included, under their majority label.

**Intervals.** Per-class and overall accuracies carry a Wilson score interval (``scipy.stats.binomtest``).
The mean of per-class accuracies carries a seeded Monte-Carlo interval: each class's accuracy is drawn from
its Jeffreys posterior Beta(k + ½, n − k + ½), the draws are averaged over classes, and the central 95 % is
reported. Unlike a percentile bootstrap over images it does not collapse to [1, 1] when every image is
right, and it narrows as images are added (tested).

**What the condition carries** (``embeddings``, for an embedding-conditioned model): a generator steered by an
embedding can at best draw the class that embedding stands for. The cosine k-NN probe of DINO
(:func:`infbrush.stats.knn_predict`, k = 20) is fit on the training split's embeddings and classifies the
embedding each judged image was generated from; its per-class accuracy is the condition's ceiling, reported
beside the generated figure (``condition_probe``), so that a shortfall of the encoder is not read as one of the
generator (on demo_naip the DINO embeddings of held-out water patches lie nearest forest ones).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from infbrush.errors import InfbrushError

DEFAULT_GOAL = 0.8        # mean per-class accuracy on generated images (embedding-conditioned demos)
DEFAULT_JUDGE_GOAL = 0.9  # the judge's own accuracy on real held-out images
CONFIDENCE = 0.95
DEFAULT_FEATURE_SIZE = 64  # images are resized to this side for the judge's features
N_DRAWS = 20000           # Monte-Carlo draws of the mean-accuracy interval
CLASSIFIER = ("random forest (scikit-learn, 300 trees, balanced class weights) fit on the real training split, "
              "on colour/texture features: RGB+HSV mean/std, 16-bin RGB and HSV histograms, 4x4x4 joint RGB "
              "histogram, gradient magnitude (sigma 1, 2) mean/std/p90 and 8-bin histograms, uniform LBP "
              "histograms (P=8 R=1, P=16 R=2)")
INTERVALS = {"per_class": "Wilson score interval (scipy.stats.binomtest)",
             "mean": "central interval of the mean of per-class Jeffreys posteriors Beta(k+1/2, n-k+1/2), "
                     f"{N_DRAWS} seeded Monte-Carlo draws"}


SAMPLING_KEYS = ("guidance_scale", "steps", "step", "seed")  # the index settings a control figure depends on
PROBE_K = 20  # neighbours of the condition probe (DINO's k-NN: k = 20)


# --------------------------------------------------------------------------------------------- features
def _histogram(values: np.ndarray, bins: int, upper: float) -> np.ndarray:
    """Normalised ``bins``-bin histogram of ``values`` over [0, upper] (values above ``upper`` in the last bin)."""
    clipped = np.clip(values.ravel(), 0, upper * (1 - 1e-9))
    return np.histogram(clipped, bins=bins, range=(0, upper))[0] / clipped.size


def _texture_features(gray: np.ndarray) -> list[np.ndarray]:
    """Gradient-magnitude stats + histograms (σ = 1, 2 px) and uniform LBP histograms (R = 1, 2) of (S, S) gray."""
    from scipy.ndimage import gaussian_gradient_magnitude
    from skimage.feature import local_binary_pattern

    feats = []
    for sigma in (1.0, 2.0):
        magnitude = gaussian_gradient_magnitude(gray, sigma)
        feats += [np.array([magnitude.mean(), magnitude.std(), np.percentile(magnitude, 90)]),
                  _histogram(magnitude, 8, 0.2)]
    gray8 = np.round(gray * 255).astype(np.uint8)
    for points, radius in ((8, 1), (16, 2)):
        lbp = local_binary_pattern(gray8, P=points, R=radius, method="uniform").astype(np.int64)  # 0..P+1
        feats.append(np.bincount(lbp.ravel(), minlength=points + 2)[:points + 2] / lbp.size)
    return feats


def image_features(image: np.ndarray, feature_size: int = DEFAULT_FEATURE_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 image → (222,) float32 colour/texture features of the image resized to feature_size²."""
    from skimage.color import rgb2gray, rgb2hsv

    from infbrush.data.store import resize_image

    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {image.shape}")
    small = resize_image(np.ascontiguousarray(image[..., :3]), feature_size)  # (S, S, 3) uint8
    rgb = small.astype(np.float32) / 255.0
    hsv = rgb2hsv(rgb)
    feats = [rgb.mean(axis=(0, 1)), rgb.std(axis=(0, 1)), hsv.mean(axis=(0, 1)), hsv.std(axis=(0, 1))]
    feats += [_histogram(rgb[..., c], 16, 1.0) for c in range(3)]
    feats += [_histogram(hsv[..., c], 16, 1.0) for c in range(3)]
    joint = (small[..., 0] // 64) * 16 + (small[..., 1] // 64) * 4 + small[..., 2] // 64  # (S, S) in 0..63
    feats.append(np.bincount(joint.astype(np.int64).ravel(), minlength=64) / joint.size)
    feats += _texture_features(rgb2gray(rgb))
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


# --------------------------------------------------------------------------------------------- intervals
def wilson_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Wilson score interval [lo, hi] of a proportion ``correct`` / ``n`` (n ≥ 1)."""
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def accuracy_summary(hits: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """{n_images, correct, accuracy, ci95} of a boolean (n,) array of right/wrong calls (n ≥ 1)."""
    hits = np.asarray(hits, dtype=bool)
    correct = int(hits.sum())
    return {"n_images": int(hits.size), "correct": correct, "accuracy": float(hits.mean()),
            "ci95": wilson_interval(correct, hits.size, confidence)}


def mean_accuracy_interval(correct: Sequence[int], n: Sequence[int], *, confidence: float = CONFIDENCE,
                           seed: int = 0, draws: int = N_DRAWS) -> list[float]:
    """Interval of the mean of per-class accuracies (classes (K,) with ``correct`` of ``n`` right each).

    Each class's accuracy is drawn from Beta(k + ½, n − k + ½) (Jeffreys), the K draws are averaged, and the
    central ``confidence`` quantiles of ``draws`` such means are returned as [lo, hi].
    """
    correct, n = np.asarray(correct, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if correct.size == 0 or (n < 1).any() or (correct > n).any():
        raise InfbrushError(f"mean accuracy interval: need ≥ 1 image per class and correct ≤ n, got {correct}/{n}")
    rng = np.random.default_rng(seed)
    means = rng.beta(correct + 0.5, n - correct + 0.5, size=(draws, correct.size)).mean(axis=1)  # (draws,)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return [float(lo), float(hi)]


def class_scores(target: np.ndarray, predicted: np.ndarray, names: Sequence[str], *, seed: int = 0,
                 confidence: float = CONFIDENCE) -> dict:
    """Per-class accuracy with intervals, their mean with its interval, overall accuracy, confusion matrix.

    ``target`` and ``predicted`` are (n,) class indices into ``names``; classes absent from ``target`` are
    not scored.
    """
    from sklearn.metrics import confusion_matrix

    present = sorted(set(np.unique(target).tolist()))
    per_class = {names[k]: accuracy_summary(predicted[target == k] == k, confidence) for k in present}
    correct = [v["correct"] for v in per_class.values()]
    counts = [v["n_images"] for v in per_class.values()]
    labels = sorted(set(present) | set(np.unique(predicted).tolist()))
    overall = accuracy_summary(predicted == target, confidence)
    return {"n_images": int(target.size), "per_class": per_class,
            "mean_accuracy": float(np.mean([v["accuracy"] for v in per_class.values()])),
            "mean_ci95": mean_accuracy_interval(correct, counts, confidence=confidence, seed=seed),
            "overall_accuracy": overall["accuracy"], "overall_ci95": overall["ci95"],
            "confusion_labels": [names[k] for k in labels],
            "confusion": confusion_matrix(target, predicted, labels=labels).tolist()}


# --------------------------------------------------------------------------------------------- the judge
def make_judge(seed: int = 0):
    """An unfitted judge: a seeded random forest with balanced class weights."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=1)


def store_split(store_path: str | os.PathLike, split: int, feature_size: int = DEFAULT_FEATURE_SIZE
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, F) and labels (n,) of the store's labelled rows with ``split`` (0 train, 1 held out), names."""
    from tqdm import tqdm

    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    try:
        rows = np.flatnonzero((store.split == split) & (store.labels >= 0))
        labels = store.labels[rows]
        feats = np.stack([image_features(store.image(int(r)), feature_size)
                          for r in tqdm(rows, desc=f"real features (split {split})", unit="img", leave=False)]) \
            if rows.size else np.zeros((0, 0), np.float32)
        names = list(store.label_names or [str(k) for k in range(int(labels.max()) + 1 if rows.size else 0)])
    finally:
        store.close()
    return feats, labels, names


def fit_judge(store_path: str | os.PathLike, feature_size: int = DEFAULT_FEATURE_SIZE, seed: int = 0, *,
              confidence: float = CONFIDENCE) -> tuple[object, list[str], dict]:
    """Fit the judge on the store's real training split and score it on the real held-out split.

    Returns (fitted judge, label names, summary dict: training counts and held-out scores with intervals).
    """
    train_x, train_y, names = store_split(store_path, 0, feature_size)
    if np.unique(train_y).size < 2:
        raise InfbrushError(f"{store_path}: the training split (split == 0) has {np.unique(train_y).size} labelled "
                            "class(es); the judge needs at least 2")
    held_x, held_y, _ = store_split(store_path, 1, feature_size)
    if held_y.size == 0:
        raise InfbrushError(f"{store_path}: no labelled held-out (split == 1) images to measure the judge on")
    judge = make_judge(seed).fit(train_x, train_y)
    unseen = sorted(set(held_y.tolist()) - set(train_y.tolist()))
    if unseen:
        raise InfbrushError(f"{store_path}: held-out class(es) {[names[k] for k in unseen]} have no training image")
    real = class_scores(held_y, judge.predict(held_x), names, seed=seed, confidence=confidence)
    summary = {"classifier": CLASSIFIER, "feature_size": feature_size, "seed": seed,
               "trained_on": {"split": "train (split == 0)", "n_images": int(train_y.size),
                              "per_class": {names[k]: int((train_y == k).sum()) for k in np.unique(train_y)}},
               "real_held_out": real}
    return judge, names, summary


def generated_labels(entries: Sequence[dict], label_names: Sequence[str]) -> np.ndarray:
    """Intended class of each index entry in the store's label space (by name when given, else by index)."""
    out = []
    for e in entries:
        name = e.get("label_name")
        out.append(list(label_names).index(name) if name in label_names else int(e.get("label", -1)))
    return np.asarray(out, dtype=np.int64)


def condition_probe(store_path: str | os.PathLike, embeddings: str | os.PathLike, source_ids: Sequence[str],
                    target: np.ndarray, names: Sequence[str], *, k: int = PROBE_K, seed: int = 0,
                    confidence: float = CONFIDENCE) -> tuple[dict, list[str]]:
    """Accuracy of a cosine k-NN, fit on the training split's embeddings, on the embeddings of ``source_ids``
    (the store images the judged samples were conditioned on): what the condition itself tells of the class.
    Returns (the summary, the class name the k-NN gives each condition)."""
    from infbrush.data.conditions import load_conditions
    from infbrush.data.store import ImageStore
    from infbrush.stats import knn_predict

    store = ImageStore(store_path)
    labels, split = np.asarray(store.labels), np.asarray(store.split)
    train = np.flatnonzero((split == 0) & (labels >= 0))
    missing = [s for s in source_ids if s not in store.row_of]
    if missing:
        raise InfbrushError(f"{store_path}: {len(missing)} conditioning images are not in the store "
                            f"(first: {missing[0]!r})")
    judged = np.asarray([store.row_of[s] for s in source_ids])
    features = load_conditions(store, np.concatenate([train, judged]), embeddings=embeddings).numpy()  # (n, D)
    predicted = knn_predict(features[:len(train)], labels[train], features[len(train):], k=k)
    scores = class_scores(target, predicted, names, seed=seed, confidence=confidence)
    return {"probe": f"cosine k-NN (k={k}, distance-weighted, DINO's probe) fit on the {len(train)} training "
                     "split embeddings; it classifies the embedding each judged image was generated from",
            "embeddings": str(embeddings), "k": k, **scores}, [names[int(p)] for p in predicted]


def controllability(store_path: str | os.PathLike, index_path: str | os.PathLike, *, feature_size: int = DEFAULT_FEATURE_SIZE,
                    seed: int = 0, goal: float = DEFAULT_GOAL, judge_goal: float = DEFAULT_JUDGE_GOAL,
                    confidence: float = CONFIDENCE, embeddings: str | os.PathLike | None = None) -> dict:
    """Per-class and mean accuracy (with intervals) of the real-data judge on the images in ``index_path``; with
    ``embeddings``, also what the conditions themselves carry (:func:`condition_probe`)."""
    from tqdm import tqdm

    from infbrush.sample.outputs import read_index

    if not 0 < confidence < 1:
        raise InfbrushError(f"confidence must be in (0, 1), got {confidence}")
    judge, names, summary = fit_judge(store_path, feature_size, seed, confidence=confidence)
    index = read_index(index_path)
    entries = index["images"]
    intended = generated_labels(entries, names)
    judged = set(int(k) for k in judge.classes_)
    known = [(e, int(k)) for e, k in zip(entries, intended) if k in judged]
    if not known:
        raise InfbrushError(f"{index_path}: no generated image has a class label in {list(names)} "
                            f"(sample with --labels, --cond-text or from labelled held-out images)")
    gen = np.stack([image_features(read_generated(e["path"], 2 * feature_size), feature_size)
                    for e, _ in tqdm(known, desc="generated features", unit="img", leave=False)])
    target = np.asarray([k for _, k in known])
    predicted = judge.predict(gen)
    scores = class_scores(target, predicted, names, seed=seed, confidence=confidence)
    real = summary["real_held_out"]
    for name, v in scores["per_class"].items():  # the judge's real-image figure beside every generated one
        ref = real["per_class"].get(name)
        v["judge_real_accuracy"] = ref["accuracy"] if ref else None
        v["judge_real_ci95"] = ref["ci95"] if ref else None
        v["judge_real_n_images"] = ref["n_images"] if ref else 0
    real_mean = float(np.mean([real["per_class"][n]["accuracy"] for n in scores["per_class"] if n in real["per_class"]]))
    scores.update({"images": [{"file": e["file"], "intended": names[k], "judged": names[int(p)]}
                              for (e, k), p in zip(known, predicted)],
                   "n_unlabelled_skipped": len(entries) - len(known),
                   "judge_real_mean_accuracy": real_mean,
                   "relative_to_real": scores["mean_accuracy"] / real_mean if real_mean > 0 else None})
    summary.update({"goal": judge_goal, "goal_met": bool(real["mean_accuracy"] >= judge_goal)})
    probe = None
    if embeddings is not None:
        sources = [e.get("source_id") for e, _ in known]
        if not all(sources):
            raise InfbrushError(f"{index_path}: --embeddings needs samples conditioned on store images (a "
                                f"'source_id' per entry); {sources.count(None)} have none")
        probe, condition_classes = condition_probe(store_path, embeddings, sources, target, names, seed=seed,
                                                   confidence=confidence)
        for name, v in scores["per_class"].items():  # the condition's ceiling beside every generated figure
            v["condition_accuracy"] = probe["per_class"].get(name, {}).get("accuracy")
        for image, condition_class in zip(scores["images"], condition_classes):
            image["condition_knn"] = condition_class  # the class its condition's embedding stands for
    return {
        "store": str(store_path), "samples": str(index_path), "resolution": index.get("resolution"),
        "sampled_with": {k: (index.get("settings") or {}).get(k) for k in SAMPLING_KEYS},
        "confidence": confidence, "intervals": INTERVALS, "judge": summary, "generated": scores,
        **({"condition_probe": probe} if probe is not None else {}),
        "goal": goal, "goal_met": bool(scores["mean_accuracy"] >= goal),
        "goal_met_by_lower_bound": bool(scores["mean_ci95"][0] >= goal),
    }
