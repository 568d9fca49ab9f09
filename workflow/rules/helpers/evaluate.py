"""What a dataset's evaluation reads and which files finish its chain, decided from params.

Which measurements a dataset has follows from its settings (prompts: zero-shot; inputs.bach: BACH; evaluate.control,
evaluate.spectrum, evaluate.ablation_cano; embedding.train: the encoder's own scores; brush.maps: the brush;
large_field: the whole-image model against patch-based assembly),
never from its name. ``P`` is the rules' Params.
"""
from __future__ import annotations

from infbrush import layout


def clip_checkpoint(P, ds: str):
    """Weights of the FID CLIP: evaluate.clip_checkpoint, else the dataset's own encoder's when it is that model."""
    same = P.get(ds, "embedding.model") == P.get(ds, "evaluate.clip_model")
    return P.get(ds, "evaluate.clip_checkpoint") or (P.get(ds, "embedding.checkpoint") if same else None)


def synthetic_res(P, ds: str) -> int:
    """Resolution of the zero-shot and BACH synthetic images (evaluate.synthetic_resolution, else the first)."""
    return P.get(ds, "evaluate.synthetic_resolution") or P.res0(ds)


def tile_size(P, ds: str) -> int:
    """The training size of the patch-based baseline's model (large_field.tiles_from): its patch or image size."""
    small = P.get(ds, "large_field.tiles_from")
    return P.get(small, "patching.patch_size") or P.get(small, "tiling.patch_size") or P.get(small, "image_size")


def report_inputs(P, ds: str) -> dict:
    """Everything the report shows for this dataset; the report itself tolerates any of them missing."""
    optional = {"zeroshot": (P.has_prompts(ds), layout.zeroshot(ds)),
                "bach": (P.get(ds, "inputs.bach"), layout.bach_scores(ds)),
                "control": (P.get(ds, "evaluate.control"), layout.control(ds)),
                "control_label": (P.get(ds, "evaluate.control") and "label" in P.variants(ds),
                                  layout.control(ds, "label")),
                "dino": (P.trains(ds, "dino"), layout.dino_scores(ds)),
                "democlip": (P.trains(ds, "open_clip"), layout.clip_scores(ds)),
                "spectrum": (P.get(ds, "evaluate.spectrum"), layout.spectrum(ds)),
                "ablation": (P.get(ds, "evaluate.ablation_cano"), layout.ablation_cano(ds)),
                "brush": (P.brushed(ds), layout.brush(ds)),
                "large_field": (P.get(ds, "large_field"), layout.large_field(ds))}
    return {"fid": layout.fid(ds),
            "samples": [layout.samples(ds, r) for r in P.get(ds, "sample.resolutions")],
            "viewer": layout.viewer(ds),  # viewer.smk builds it; the report links its preview
            **{name: path for name, (wanted, path) in optional.items() if wanted}}


def targets(P, ds: str) -> list[str]:
    """The files that make up a dataset's finished chain (the report needs most of them)."""
    out = [layout.images(ds)] + ([layout.bach_store(ds)] if P.get(ds, "inputs.bach") else [])
    out += [layout.embeddings(ds)] if P.get(ds, "embedding.kind") != "label" else []
    out += [layout.text_embeddings(ds)] if P.has_prompts(ds) else []
    out += [layout.weights(ds)] + [layout.weights(ds, v) for v in P.variants(ds)]
    return out + [layout.report(ds), layout.viewer(ds)]


def default_targets(P) -> list[str]:
    """The chains of default_datasets: what a bare `snakemake` builds."""
    return [path for ds in P.top("default_datasets") for path in targets(P, ds)]
