"""Prompt embeddings (``text_embeddings.h5``) and the zero-shot head shared by train-clip and evaluation.

Zero-shot classification as in CLIP (Radford et al., 2021) and Quilt: class prompts -> text features,
cosine similarity with L2-normalised image features, scaled by the model's logit scale, softmax, argmax.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from infbrush.errors import InfbrushError


def parse_prompts(items: Sequence[str]) -> dict[str, str]:
    """Class prompts from CLI items: one JSON/YAML file (mapping name -> prompt) or ``NAME=PROMPT`` items."""
    items = list(items)
    if len(items) == 1 and "=" not in items[0]:
        path = Path(items[0])
        if not path.is_file():
            raise InfbrushError(f"{path}: prompts file not found (give a JSON/YAML file or NAME=PROMPT items)")
        try:
            import yaml

            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except Exception as err:  # noqa: BLE001
            raise InfbrushError(f"{path}: cannot parse prompts ({str(err).splitlines()[0]})") from None
        if isinstance(data, Mapping) and isinstance(data.get("prompts"), Mapping):
            data = data["prompts"]
        if not isinstance(data, Mapping) or not data or \
                not all(isinstance(v, str) and v.strip() for v in data.values()):
            raise InfbrushError(f"{path}: prompts must be a non-empty mapping of class name -> prompt text")
        return {str(k): str(v) for k, v in data.items()}
    prompts: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise InfbrushError(f"prompt {item!r}: expected NAME=PROMPT")
        if name.strip() in prompts:
            raise InfbrushError(f"prompt {name.strip()!r} given twice")
        prompts[name.strip()] = text.strip()
    if not prompts:
        raise InfbrushError("no prompts given")
    return prompts


def _prompt_list(prompts: Mapping[str, str] | Sequence[str]) -> list[str]:
    return list(prompts.values()) if isinstance(prompts, Mapping) else list(prompts)


def zero_shot_classify(encoder, image_features, prompts: Mapping[str, str] | Sequence[str]):
    """Zero-shot class of each image: argmax over prompts of the scaled cosine similarity.

    image_features: (N, D) tensor/array from ``encoder.embed_images``; prompts: K prompts (a mapping keeps
    its order, class index = position). Returns (pred (N,) int64 tensor, probs (N, K) float32 tensor).
    """
    import torch

    text = encoder.embed_text(_prompt_list(prompts))                           # (K, D), normalised
    image = torch.as_tensor(np.asarray(image_features), dtype=torch.float32)   # (N, D)
    if image.ndim != 2 or image.shape[1] != text.shape[1]:
        raise InfbrushError(f"image features of shape {tuple(image.shape)} do not match the text features "
                            f"({text.shape[1]} dims) of encoder {encoder.name!r}")
    image = torch.nn.functional.normalize(image, dim=-1)
    logits = encoder.logit_scale * image @ text.T                              # (N, K)
    probs = logits.softmax(dim=-1)
    return probs.argmax(dim=-1), probs


def write_text_embeddings(out: str | os.PathLike, encoder, prompts: Mapping[str, str]) -> Path:
    """Embed class prompts and write ``features`` (K, D), ``names`` (K,), ``prompts`` (K,) atomically."""
    import h5py

    from infbrush.io import atomic_path

    names, texts = list(prompts.keys()), list(prompts.values())
    features = encoder.embed_text(texts).numpy().astype(np.float32)  # (K, D)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("features", data=features)
            h5.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            h5.create_dataset("prompts", data=np.array(texts, dtype=object), dtype=h5py.string_dtype())
            h5.attrs.update({"encoder": encoder.name, "weights_sha256": encoder.weights_sha256,
                             "normalized": True, "logit_scale": float(encoder.logit_scale),
                             "prompts_json": json.dumps(dict(prompts))})
    return Path(out)


def read_text_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, list[str], list[str], dict]:
    """(features (K, D) float32, names, prompts, attrs) from a ``text_embeddings.h5``."""
    from infbrush.io import read_h5

    data, attrs = read_h5(path, "text embeddings", arrays=("features",), strings=("names", "prompts"))
    features, names, texts = data["features"].astype(np.float32), data["names"], data["prompts"]
    if not (len(features) == len(names) == len(texts)):
        raise InfbrushError(f"{path}: {len(features)} feature rows for {len(names)} names")
    return features, names, texts, attrs
