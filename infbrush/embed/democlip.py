"""The demo's own small CLIP: an open_clip model from a custom architecture config, trained with ClipLoss.

The demo world has no Quilt weights, so the pipeline trains a tiny CLIP (ViT vision tower on 64² thumbnails,
small text transformer) on the demo images and their class captions, then uses it through exactly the same
embedding and zero-shot code as Quilt (``load_encoder("open_clip", "democlip", checkpoint)``).

Checkpoint (``democlip.pt``, loads with ``weights_only=True``)::

    {"format": "infbrush-democlip", "model_cfg": open_clip architecture dict, "preprocess_cfg": {mean, std},
     "state_dict": ..., "label_names": [...], "prompts": {name: prompt}, "steps": int}
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from infbrush.errors import InfbrushError

FORMAT = "infbrush-democlip"
PREPROCESS_CFG = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                  "interpolation": "bicubic", "resize_mode": "shortest"}  # open_clip's (OpenAI) defaults


def democlip_config(image_size: int = 64, patch_size: int = 8, width: int = 128, layers: int = 4,
                    embed_dim: int = 64, context_length: int = 32) -> dict:
    """An open_clip architecture dict for a tiny CLIP (ViT vision tower, causal text transformer)."""
    if image_size % patch_size:
        raise InfbrushError(f"democlip: image_size {image_size} is not a multiple of patch_size {patch_size}")
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "patch_size": patch_size, "width": width, "layers": layers,
                       "head_width": 32},
        "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": width,
                     "heads": max(1, width // 32), "layers": max(1, layers // 2)},
    }


def build_democlip(model_cfg: dict, device="cpu"):
    """(model, preprocess_val, tokenizer) built by ``open_clip.create_model`` from the custom config."""
    from infbrush.embed.open_clip_configs import open_clip_from_config

    model, _, preprocess, tokenizer = open_clip_from_config(model_cfg, PREPROCESS_CFG, None, device)
    return model, preprocess, tokenizer


def load_democlip(path: str | os.PathLike, device="cpu"):
    """(model in eval mode, preprocess_val, tokenizer) from a ``democlip.pt``."""
    from infbrush.runtime.weights import read_tagged_checkpoint

    ckpt = read_tagged_checkpoint(path, FORMAT, "demo CLIP checkpoint", "infbrush train-clip")
    model, preprocess, tokenizer = build_democlip(ckpt["model_cfg"], device)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise InfbrushError(f"{path}: weights do not fit its model config ({str(err).splitlines()[0][:200]})") from None
    return model.eval(), preprocess, tokenizer


def augment(images):
    """Random flips and 90° rotations of a (B, C, S, S) batch (histology and aerial images have no up)."""
    import torch

    k = int(torch.randint(0, 4, ()).item())
    images = torch.rot90(images, k, dims=(2, 3))
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def warmup_cosine(step: int, total: int, warmup: int, base: float, final: float = 0.0) -> float:
    """Linear warm-up to ``base`` then cosine decay to ``final`` (float64 Python math)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_democlip(images: np.ndarray, captions: list[str], model_cfg: dict, *, epochs: int, batch_size: int,
                   lr: float, weight_decay: float = 0.1, seed: int = 0, device="cpu", progress: bool = True):
    """Train a CLIP from scratch with open_clip's ClipLoss on (N, S, S, 3) uint8 images and N captions.

    Returns (model in eval mode, list of per-epoch mean losses).
    """
    import open_clip
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    model, _, tokenizer = build_democlip(model_cfg, device)
    mean = torch.tensor(PREPROCESS_CFG["mean"], device=device)[None, :, None, None]
    std = torch.tensor(PREPROCESS_CFG["std"], device=device)[None, :, None, None]
    size = model_cfg["vision_cfg"]["image_size"]
    if images.shape[1:3] != (size, size):
        raise InfbrushError(f"democlip: images are {images.shape[1:3]}, the model expects {size}²")
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()          # (N, 3, S, S) uint8
    unique = sorted(set(captions))
    tokens = tokenizer(unique).to(device)                                         # (K, L)
    caption_index = torch.tensor([unique.index(c) for c in captions])             # (N,)
    loss_fn = open_clip.ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    n = len(pixels)
    steps_per_epoch = max(1, n // batch_size)
    total = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    bar = tqdm(total=total, desc="train-clip", disable=not progress)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        epoch_loss = 0.0
        for b in range(steps_per_epoch):
            index = order[b * batch_size:(b + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(step, total, max(1, total // 10), lr)
            x = augment(pixels[index].to(device).float() / 255.0)                  # (B, 3, S, S) in [0, 1]
            x = (x - mean) / std
            image_features = model.encode_image(x, normalize=True)                  # (B, D)
            class_text = model.encode_text(tokens, normalize=True)                  # (K, D): each caption once
            text_features = class_text[caption_index[index].to(device)]             # (B, D)
            loss = loss_fn(image_features, text_features, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            epoch_loss += float(loss.detach())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        losses.append(epoch_loss / steps_per_epoch)
    bar.close()
    return model.eval(), losses


def save_democlip(out: str | os.PathLike, model, model_cfg: dict, label_names: list[str],
                  prompts: Mapping[str, str], steps: int) -> Path:
    """Write ``democlip.pt`` atomically (weights_only-loadable)."""
    import torch

    from infbrush.io import atomic_path

    state = {"format": FORMAT, "model_cfg": model_cfg, "preprocess_cfg": dict(PREPROCESS_CFG),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "label_names": list(label_names), "prompts": dict(prompts), "steps": int(steps)}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return Path(out)


def per_class_accuracy(correct: np.ndarray, truth: np.ndarray, label_names: list[str]) -> dict:
    """{class name: accuracy on its held-out images} (None for a class without held-out images)."""
    return {name: (float(correct[truth == c].mean()) if (truth == c).any() else None)
            for c, name in enumerate(label_names)}
