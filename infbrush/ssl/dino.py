"""DINO student/teacher pair (Caron et al., 2021): a timm backbone + lightly's DINO projection head.

The exported ``dino.pt`` (loads with ``weights_only=True``) holds the *teacher's* backbone, which DINO
uses for downstream features::

    {"format": "infbrush-dino", "model": timm name, "img_size": int, "patch_size": int | None, "depth": int | None,
     "global_pool": str | None,
     "embed_dim": int, "mean": [3], "std": [3], "backbone": state_dict, "step": int, "config": dict}
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch.nn as nn

from infbrush.errors import InfbrushError

FORMAT = "infbrush-dino"
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # lightly's DINOTransform normalisation (IMAGENET_NORMALIZE)
IMAGENET_STD = [0.229, 0.224, 0.225]


def build_backbone(model: str, img_size: int, patch_size: int | None = None, drop_path: float = 0.0,
                   depth: int | None = None, global_pool: str | None = None):
    """A timm backbone without classifier (``num_classes=0``) that accepts any crop size (dynamic_img_size).

    ``patch_size`` / ``depth`` (number of transformer blocks) / ``global_pool`` (``"token"``: the class token, as
    DINO; ``"avg"``: the mean of the patch tokens) override the timm model's own when set.
    """
    import timm

    if model not in timm.list_models():
        raise InfbrushError(f"unknown timm model {model!r} (see timm.list_models('vit_*'))")
    kwargs = {"img_size": img_size, "dynamic_img_size": True, "drop_path_rate": drop_path}
    if patch_size:
        kwargs["patch_size"] = patch_size
    if depth:
        kwargs["depth"] = depth
    if global_pool:
        kwargs["global_pool"] = global_pool
    try:
        return timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    except TypeError as err:
        raise InfbrushError(f"timm model {model!r} does not take img_size/patch_size/depth/global_pool ({err}); use a ViT") from None


@dataclass(frozen=True)
class BackboneSpec:
    """The backbone's architecture (the arguments of :func:`build_backbone` except the training-only drop path): set
    by the training config, recorded in ``dino.pt`` and read back from it to rebuild the same network."""

    model: str
    img_size: int
    patch_size: int | None = None
    depth: int | None = None
    global_pool: str | None = None

    @classmethod
    def of(cls, settings: Any) -> BackboneSpec:
        """The spec held by ``settings``: a training config (attributes) or a ``dino.pt``'s metadata (a dict)."""
        get = settings.get if isinstance(settings, dict) else lambda name: getattr(settings, name)
        return cls(**{f.name: get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class DinoHead:
    """lightly's DINO projection head: an MLP to ``hidden_dim``, a ``bottleneck_dim`` projection, then ``out_dim``
    prototypes in a last layer that is weight-normalised (``norm_last_layer``) and frozen for the first
    ``freeze_last_layer`` epochs."""

    out_dim: int
    hidden_dim: int
    bottleneck_dim: int
    freeze_last_layer: int
    norm_last_layer: bool = True


def untrained_backbone(spec: BackboneSpec, seed: int):
    """The backbone exactly as ``train_dino`` initialises it (torch seeded with ``seed``; rank 0), in eval mode.

    The k-NN baseline "same network, untrained": the student's (and teacher's) weights at step 0.
    """
    import torch

    torch.manual_seed(seed)
    return build_backbone(**asdict(spec)).eval()


class BackboneHead(nn.Module):
    """backbone (B, C, h, w) -> (B, D) features -> DINO head -> (B, out_dim) logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views, with_features: bool = False):
        """Head logits (B, out_dim); with ``with_features`` also the backbone features (B, D) they came from."""
        features = self.backbone(views)
        logits = self.head(features)
        return (logits, features) if with_features else logits


class DINOPair:
    """Student and teacher (backbone + head); the teacher is an EMA of the student and gets no gradients."""

    def __init__(self, backbone: BackboneSpec, head: DinoHead, drop_path: float) -> None:
        """``drop_path``: the student's stochastic depth rate (the teacher has none)."""
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        def make(drop: float) -> BackboneHead:
            net = build_backbone(**asdict(backbone), drop_path=drop)
            projection = DINOProjectionHead(net.num_features, head.hidden_dim, head.bottleneck_dim, head.out_dim,
                                            batch_norm=False, freeze_last_layer=head.freeze_last_layer,
                                            norm_last_layer=head.norm_last_layer)
            return BackboneHead(net, projection)

        self.student = make(drop_path)
        self.teacher = make(0.0)  # built, not deep-copied: weight_norm modules cannot be deep-copied
        self.teacher.load_state_dict(self.student.state_dict())
        deactivate_requires_grad(self.teacher)
        dim = self.student.backbone.num_features
        self.embed_dim = dim

    def to(self, device) -> "DINOPair":
        self.student.to(device)
        self.teacher.to(device)
        return self


def export_dino(out: str | os.PathLike, teacher_backbone, spec: BackboneSpec, *, step: int, config: dict) -> Path:
    """Write the teacher backbone of architecture ``spec`` as ``dino.pt`` (atomic)."""
    import torch

    from infbrush.io import atomic_path

    state = {"format": FORMAT, "model": spec.model, "img_size": int(spec.img_size),
             "patch_size": None if spec.patch_size is None else int(spec.patch_size),
             "depth": None if spec.depth is None else int(spec.depth), "global_pool": spec.global_pool,
             "embed_dim": int(teacher_backbone.num_features), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
             "backbone": {k: v.detach().cpu() for k, v in teacher_backbone.state_dict().items()},
             "step": int(step), "config": config}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return Path(out)


def load_dino_backbone(path: str | os.PathLike, expected_model: str | None = None):
    """(backbone in eval mode, metadata) from a ``dino.pt``; a mismatching model name or weights -> error."""
    from infbrush.runtime.weights import load_timm_weights, read_tagged_checkpoint

    state = read_tagged_checkpoint(path, FORMAT, "DINO checkpoint", "infbrush train-dino")
    if expected_model and expected_model != state["model"]:
        raise InfbrushError(f"{path}: checkpoint is a {state['model']!r}, but the model is set to {expected_model!r}")
    backbone = build_backbone(**asdict(BackboneSpec.of(state)))
    load_timm_weights(backbone, path, state["backbone"])
    meta = {k: v for k, v in state.items() if k != "backbone"}
    return backbone.eval(), meta


def dino_data_config(meta: dict) -> dict:
    """timm data config for a DINO backbone: whole image resized to ``img_size``, ImageNet normalisation."""
    size = int(meta["img_size"])
    return {"input_size": (3, size, size), "interpolation": "bicubic", "mean": tuple(meta["mean"]),
            "std": tuple(meta["std"]), "crop_pct": 1.0, "crop_mode": "center"}
