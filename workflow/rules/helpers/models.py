"""What each model of a dataset is conditioned on, and so what its train, sample and control jobs read.

The main model (``variant`` '') takes the dataset's condition: class labels (embedding.kind label) or the
embeddings of its images. A variant changes it: ``label`` conditions on model.label_classes class labels,
``ablation_cano`` keeps the main condition without CANO (the paper's Table 2). ``P`` is the rules' Params.
"""
from __future__ import annotations

from infbrush import layout


def variant(wildcards) -> str:
    """The {variant} wildcard of a variant rule (label, ablation_cano); '' for the main model's rule."""
    return wildcards.get("variant", "")


def of_variant(P, ds: str, variant: str, per_variant: str, default: str):
    """A model's setting: <per_variant>[<variant>] where set for that variant (model.variant_steps,
    sample.variant_guidance_scale), else <default> (key paths)."""
    value = (P.get(ds, per_variant) or {}).get(variant) if variant else None
    return value if value is not None else P.get(ds, default)


def on_labels(P, ds: str, variant: str = "") -> bool:
    return variant == "label" or P.get(ds, "embedding.kind") == "label"


def n_classes(P, ds: str, variant: str = "") -> int:
    return P.get(ds, "model.label_classes") if variant == "label" else P.get(ds, "embedding.n_classes")


def inputs(P, ds: str, variant: str, *names: str) -> dict:
    """The named inputs of a model's job (weights: the model's, store: the dataset's images, samples: the model's
    at the first resolution) and, for an embedding-conditioned model, the embeddings of the dataset's images
    (the condition of training, of held-out sampling and of control)."""
    files = {"weights": layout.weights(ds, variant), "store": layout.images(ds),
             "samples": layout.samples(ds, P.res0(ds), variant)}
    files = {name: files[name] for name in names}
    return files if on_labels(P, ds, variant) else {**files, "embeddings": layout.embeddings(ds)}


def train_cond(P, ds: str, variant: str = "") -> str:
    """--cond-labels K, or --cond-embeddings with the train block's condition settings (cond_standardize,
    cond_neighbors); --no-cano for the ablation (model.cano false, or the ablation_cano variant)."""
    if on_labels(P, ds, variant):
        cond = f"--cond-labels {n_classes(P, ds, variant)}"
    else:
        cond = " ".join(filter(None, [f"--cond-embeddings {layout.embeddings(ds)}",
                                      P.flags(ds, "train.cond_standardize", "train.cond_neighbors")]))
    return cond + (" --no-cano" if variant == "ablation_cano" or not P.get(ds, "model.cano") else "")


def sample_cond(P, ds: str, res, variant: str = "") -> str:
    """Held-out conditions: every class sample.per_class times (sample.per_class_upscaled beyond the first
    resolution), else sample.n_images; a label-conditioned model: every class equally often."""
    per_class = P.get(ds, "sample.per_class")
    if per_class and str(res) != str(P.res0(ds)):  # 2×, 4×: fewer images (artefact and KID checks only)
        per_class = P.get(ds, "sample.per_class_upscaled") or per_class
    n_images = P.get(ds, "sample.n_images")
    if on_labels(P, ds, variant):
        k = n_classes(P, ds, variant)
        return f"--labels {','.join(map(str, range(k)))} --per-class {per_class or max(1, n_images // k)}"
    held_out = f"--cond-embeddings {layout.embeddings(ds)} --store {layout.images(ds)} --split held-out"
    if per_class:  # every class of the held-out images represented (controllability)
        return f"{held_out} --balanced --per-class {per_class}"
    return f"{held_out} --n-images {n_images}"


def sample_flags(P, ds: str, keys, variant: str = "") -> str:
    """The flags of the sample ``keys``, sample.guidance_scale read as the model's own scale
    (sample.variant_guidance_scale); mpp metadata for tiled datasets (tiling.target_mpp at tiling.patch_size)."""
    scale = of_variant(P, ds, variant, "sample.variant_guidance_scale", "sample.guidance_scale")
    flags = P.flags(ds, *keys, values={"sample.guidance_scale": scale})
    mpp = P.get(ds, "tiling.target_mpp")
    if mpp not in (None, "native"):  # native: the slides' own MPP, unknown here
        flags += f" --mpp {mpp} --mpp-size {P.get(ds, 'tiling.patch_size')}"
    return flags


def control_goals(P, ds: str, variant: str = "") -> str:
    """--goal: evaluate.control_label_goal for a label-conditioned model, evaluate.control_goal otherwise;
    --judge-goal: evaluate.control_judge_goal."""
    goal = "evaluate.control_label_goal" if on_labels(P, ds, variant) else "evaluate.control_goal"
    return P.flags(ds, {goal: "--goal"}, "evaluate.control_judge_goal", prefix="control_")
