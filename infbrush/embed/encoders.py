"""Image (and text) encoders behind one interface: any open_clip model, any timm model, or our DINO checkpoint.

``load_encoder(kind, model, checkpoint, device)`` returns an :class:`Encoder` whose ``embed_images`` takes
uint8 images (B, H, W, C), applies the encoder's *own* preprocessing (open_clip's preprocess transform,
timm's data config) and returns (B, D) float32 features. Weights are never fetched when ``HF_HUB_OFFLINE=1``;
a model that is not available locally raises an :class:`InfbrushError` that says how to provide it.

Sources of weights:
  open_clip  ``hf-hub:org/repo`` (Hugging Face cache or download), ``local-dir:DIR`` or ``checkpoint=DIR``
             (a downloaded hub folder: open_clip_config.json + weights), a built-in architecture name with
             ``checkpoint`` = weights file or pretrained tag, or ``democlip`` + the demo CLIP checkpoint.
  timm       a timm model name; ``checkpoint`` = local weights file (else timm's pretrained weights).
  dino       ``infbrush train-dino`` output (the teacher's backbone), ``model`` = its timm name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from infbrush.embed.open_clip_configs import open_clip_from_config
from infbrush.errors import InfbrushError
from infbrush.runtime.device import resolve_device
from infbrush.runtime.weights import load_timm_weights, sha256_state_dict

ENCODER_KINDS = ("open_clip", "timm", "dino")
TEXT_ENCODER_KINDS = ("open_clip",)  # the kinds with a text tower (prompt embeddings, zero-shot)


@dataclass
class Encoder:
    """A frozen image encoder with its preprocessing; ``embed_text`` only for open_clip models."""

    kind: str
    name: str
    model: Any                                   # torch.nn.Module in eval mode on ``device``
    preprocess: Callable                         # PIL.Image -> (C, S, S) float tensor
    image_forward: Callable                      # (B, C, S, S) -> (B, D)
    input_size: int
    dim: int
    weights_sha256: str
    normalized: bool
    device: Any = "cpu"
    tokenizer: Callable | None = None            # list[str] -> (K, L) int tokens
    logit_scale: float = 100.0                   # CLIP's learned temperature (zero-shot logits)
    extra: dict = field(default_factory=dict)

    def embed_images(self, images: np.ndarray | Sequence[np.ndarray]):
        """uint8 images (B, H, W, C) -> (B, D) float32 CPU tensor (AMP on GPU)."""
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(np.asarray(img)[..., :3])) for img in images])
        batch = batch.to(self.device)  # (B, C, S, S)
        with torch.inference_mode(), _autocast(self.device):
            features = self.image_forward(batch)  # (B, D)
        return features.float().cpu()

    def embed_text(self, prompts: Sequence[str]):
        """K prompts -> (K, D) float32 CPU tensor, L2-normalised (open_clip encoders only)."""
        import torch

        if self.tokenizer is None:
            raise InfbrushError(f"encoder {self.name!r} ({self.kind}) has no text tower; use an open_clip model")
        tokens = self.tokenizer(list(prompts)).to(self.device)  # (K, L)
        with torch.inference_mode(), _autocast(self.device):
            features = self.model.encode_text(tokens, normalize=True)  # (K, D)
        return features.float().cpu()


def _autocast(device):
    import contextlib

    import torch

    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return contextlib.nullcontext()


def _sha256(path: str | os.PathLike) -> str:
    from infbrush.io import sha256_file

    return sha256_file(path)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _missing_hub_model(model: str, reason: str) -> InfbrushError:
    repo = model.split(":", 1)[-1]
    state = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache" if _hub_offline() else reason
    return InfbrushError(
        f"model {model!r} is not available ({state}); download it where there is internet "
        f"(`huggingface-cli download {repo} --local-dir DIR`), copy DIR here and set embedding.checkpoint: DIR")


def _in_hf_cache(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename), str)


# ----------------------------------------------------------------------------------------------- open_clip

def _open_clip_parts(model: str, checkpoint: str | None, device) -> tuple[Any, Callable, Callable, str, str]:
    """(clip_model, preprocess_val, tokenizer, weights_path, display name) for any supported open_clip source."""
    import open_clip

    if model == "democlip":
        from infbrush.embed.democlip import load_democlip

        if not checkpoint:
            raise InfbrushError("model 'democlip' needs embedding.checkpoint (the file written by `infbrush train-clip`)")
        clip, preprocess, tokenizer = load_democlip(checkpoint, device)
        return clip, preprocess, tokenizer, checkpoint, "democlip"

    if checkpoint and Path(checkpoint).is_dir():
        model = f"local-dir:{checkpoint}"
        checkpoint = None
    if model.startswith("local-dir:"):
        folder = Path(model.split(":", 1)[1])
        if not (folder / "open_clip_config.json").is_file():
            raise InfbrushError(f"{folder}: not an open_clip model folder (no open_clip_config.json)")
        from open_clip.factory import _find_checkpoint_in_dir

        weights = _find_checkpoint_in_dir(folder)
        if weights is None:
            raise InfbrushError(f"{folder}: no weights file (*.safetensors, *.bin, *.pth) beside open_clip_config.json")
        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(model, device=device)
        except RuntimeError as err:
            raise InfbrushError(f"{weights}: cannot load ({str(err).splitlines()[0][:300]})") from None
        return clip, preprocess, open_clip.get_tokenizer(model), weights, model

    if model.startswith("hf-hub:"):
        repo = model.split(":", 1)[1]
        if checkpoint:  # a weights file copied from the hub repo: the architecture comes from a config beside it
            weights = Path(checkpoint)
            if not weights.is_file():
                raise InfbrushError(f"{weights}: checkpoint file not found")
            config_path = weights.parent / "open_clip_config.json"
            if not config_path.is_file():
                raise InfbrushError(f"{weights}: no open_clip_config.json beside it; copy the whole hub folder "
                                    f"(`huggingface-cli download {repo} --local-dir DIR`) and set checkpoint: DIR")
            config = json.loads(config_path.read_text())
            clip, _, preprocess, tokenizer = open_clip_from_config(
                config["model_cfg"], config.get("preprocess_cfg"), weights, device)
            return clip, preprocess, tokenizer, str(weights), model
        from open_clip.pretrained import download_pretrained_from_hf

        if _hub_offline() and not _in_hf_cache(repo, "open_clip_config.json"):
            raise _missing_hub_model(model, "not in the Hugging Face cache")
        try:
            weights = download_pretrained_from_hf(repo)  # cache hit offline; download when online
            clip, _, preprocess = open_clip.create_model_and_transforms(model, device=device)
            tokenizer = open_clip.get_tokenizer(model)
        except Exception as err:  # noqa: BLE001 — hub/network/cache errors all mean "not available"
            raise _missing_hub_model(model, str(err).strip().splitlines()[0][:200]) from None
        return clip, preprocess, tokenizer, weights, model

    if model not in open_clip.list_models():
        raise InfbrushError(f"unknown open_clip model {model!r}; use 'democlip', 'hf-hub:ORG/REPO', 'local-dir:DIR' "
                            f"or one of open_clip.list_models() (e.g. {', '.join(open_clip.list_models()[:5])}, ...)")
    if not checkpoint:
        raise InfbrushError(f"open_clip model {model!r} needs weights: set embedding.checkpoint to a weights file "
                            f"or a pretrained tag ({', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'})")
    if Path(checkpoint).is_file():
        weights = checkpoint
    else:
        cfg = open_clip.get_pretrained_cfg(model, checkpoint)
        if not cfg:
            raise InfbrushError(f"{checkpoint}: neither a file nor a pretrained tag of open_clip model {model!r}")
        try:
            weights = open_clip.download_pretrained(cfg)
        except Exception as err:  # noqa: BLE001
            raise _missing_hub_model(f"{model}:{checkpoint}", str(err).splitlines()[0][:200]) from None
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device)
    except RuntimeError as err:
        raise InfbrushError(f"{weights}: weights do not fit open_clip model {model!r} "
                            f"({str(err).strip().splitlines()[0][:300]})") from None
    return clip, preprocess, open_clip.get_tokenizer(model), weights, model


def _load_open_clip(model: str, checkpoint: str | None, device) -> Encoder:
    import torch

    clip, preprocess, tokenizer, weights, name = _open_clip_parts(model, checkpoint, device)
    clip.eval()
    size = clip.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    with torch.inference_mode():
        dim = int(clip.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    logit_scale = float(clip.logit_scale.exp().clamp(max=100).item()) if hasattr(clip, "logit_scale") else 100.0
    return Encoder(kind="open_clip", name=name, model=clip, preprocess=preprocess,
                   image_forward=lambda x: clip.encode_image(x, normalize=True), input_size=size, dim=dim,
                   weights_sha256=_sha256(weights), normalized=True, device=device, tokenizer=tokenizer,
                   logit_scale=logit_scale)


# ----------------------------------------------------------------------------------------------- timm / DINO

def timm_encoder(kind: str, name: str, backbone, data_config: dict, weights_sha256: str, device) -> Encoder:
    import timm.data
    import torch

    backbone.eval().to(device)
    preprocess = timm.data.create_transform(**data_config, is_training=False)
    size = int(data_config["input_size"][-1])
    with torch.inference_mode():
        dim = int(backbone(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    return Encoder(kind=kind, name=name, model=backbone, preprocess=preprocess, image_forward=backbone,
                   input_size=size, dim=dim, weights_sha256=weights_sha256, normalized=False, device=device)


def _load_timm(model: str, checkpoint: str | None, device) -> Encoder:
    import timm

    if model not in timm.list_models() and not model.startswith("hf-hub:") and "." not in model:
        raise InfbrushError(f"unknown timm model {model!r} (see timm.list_models())")
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir():  # a downloaded hub folder
            found = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
            if not found:
                raise InfbrushError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
            path = found[0]
        if not path.is_file():
            raise InfbrushError(f"{path}: checkpoint file not found")
        backbone = timm.create_model(model, pretrained=False, num_classes=0)
        load_timm_weights(backbone, path)
        sha = _sha256(path)
    else:
        try:
            backbone = timm.create_model(model, pretrained=True, num_classes=0)
        except Exception as err:  # noqa: BLE001 — offline / missing weights
            raise _missing_hub_model(model, str(err).strip().splitlines()[0][:200]) from None
        sha = sha256_state_dict(backbone.state_dict())
    data_config = timm.data.resolve_data_config({}, model=backbone)
    return timm_encoder("timm", model, backbone, data_config, sha, device)


def _load_dino(model: str, checkpoint: str | None, device) -> Encoder:
    from infbrush.ssl.dino import dino_data_config, load_dino_backbone

    if not checkpoint:
        raise InfbrushError("kind 'dino' needs embedding.checkpoint (the file written by `infbrush train-dino`)")
    backbone, meta = load_dino_backbone(checkpoint, expected_model=model)
    return timm_encoder("dino", f"dino:{meta['model']}", backbone, dino_data_config(meta), _sha256(checkpoint),
                        device)


ENCODER_LOADERS: dict[str, Callable[[str, str | None, Any], Encoder]] = {
    "open_clip": _load_open_clip,
    "timm": _load_timm,
    "dino": _load_dino,
}


def load_encoder(kind: str, model: str, checkpoint: str | None = None, device: str = "cpu") -> Encoder:
    """Load an encoder by kind ("open_clip" | "timm" | "dino"), model name and optional local checkpoint."""
    import torch

    if kind not in ENCODER_LOADERS:
        raise ValueError(f"unknown encoder kind {kind!r}; valid: {', '.join(ENCODER_LOADERS)}")
    if checkpoint is not None and str(checkpoint).strip() in ("", "null", "None"):
        checkpoint = None
    dev = torch.device(resolve_device(device)) if isinstance(device, str) else device
    return ENCODER_LOADERS[kind](model, None if checkpoint is None else str(checkpoint), dev)
