"""Train the demo CLIP on a labelled image store and measure it (``infbrush train-clip``): the captions are the
class prompts; zero-shot accuracy on held-out images, with its interval and baselines, goes beside the checkpoint
(``democlip.json``)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from infbrush.embed.democlip import democlip_config, per_class_accuracy, save_democlip, train_democlip
from infbrush.errors import InfbrushError


@dataclass
class ClipTrainConfig:
    """A demo CLIP training run: the architecture (``democlip_config``), the optimisation and the held-out split."""

    image_size: int = 64                        # thumbnails the vision tower reads
    patch_size: int = 8
    width: int = 128                            # both towers
    layers: int = 4                             # vision layers (text tower: half)
    embed_dim: int = 64
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    holdout_fraction: float = 0.25              # held-out share per class when the store has no labelled split
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise InfbrushError("--epochs must be >= 1 and --batch-size >= 2")

    def model_cfg(self) -> dict:
        return democlip_config(self.image_size, self.patch_size, self.width, self.layers, self.embed_dim)


def train_clip_on_store(store_path: str | os.PathLike, prompts: Mapping[str, str], out: str | os.PathLike,
                        config: ClipTrainConfig) -> dict:
    """Train the demo CLIP on a labelled store's training images; measure zero-shot accuracy on held-out ones.

    Captions are the class prompts (``prompts[label_names[label]]``). Writes ``out`` and returns metrics
    (also written to ``out`` with suffix ``.json``).
    """
    import torch

    from infbrush.data.store import ImageStore

    config.check()
    model_cfg, epochs, batch_size, lr, seed = config.model_cfg(), config.epochs, config.batch_size, config.lr, config.seed
    device, holdout_fraction, progress = config.device, config.holdout_fraction, config.progress
    from infbrush.embed.encoders import load_encoder
    from infbrush.embed.images import embed_indices
    from infbrush.embed.text import zero_shot_classify
    from infbrush.io import write_json
    from infbrush.runtime.device import resolve_device
    from infbrush.stats import accuracy_interval, labelled_split, majority_baseline

    store = ImageStore(store_path)
    if not store.label_names:
        raise InfbrushError(f"{store.path}: the store has no label_names; train-clip needs labelled images")
    missing = [name for name in store.label_names if name not in prompts]
    if missing:
        raise InfbrushError(f"prompts: no prompt for class {missing[0]!r} of {store.path} "
                            f"(classes: {', '.join(store.label_names)})")
    class_prompts = {name: prompts[name] for name in store.label_names}
    train_idx, test_idx = labelled_split(store.labels, store.split, holdout_fraction, seed)
    size = model_cfg["vision_cfg"]["image_size"]
    images = np.stack([store.thumb(int(i), size) for i in train_idx])[..., :3]  # (N, S, S, 3)
    captions = [class_prompts[store.label_names[store.labels[i]]] for i in train_idx]
    dev = resolve_device(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    model, losses = train_democlip(images, captions, model_cfg, epochs=epochs, batch_size=min(batch_size, len(images)),
                                   lr=lr, seed=seed, device=dev, progress=progress)
    train_seconds, train_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    save_democlip(out, model, model_cfg, store.label_names, class_prompts,
                  steps=epochs * max(1, len(images) // min(batch_size, len(images))))

    encoder = load_encoder("open_clip", "democlip", str(out), device=str(dev))
    features = embed_indices(store, encoder, test_idx, batch_size=64, progress=False)  # (M, D)
    pred, _ = zero_shot_classify(encoder, features, class_prompts)
    truth = store.labels[test_idx]
    correct = pred.numpy() == truth
    metrics = {"zero_shot_accuracy": float(correct.mean()), "zero_shot_accuracy_ci95": accuracy_interval(correct),
               "chance": 1.0 / len(store.label_names),
               "majority_baseline": majority_baseline(store.labels[train_idx], truth),
               "per_class_accuracy": per_class_accuracy(correct, truth, store.label_names),
               "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
               "n_test_per_class": np.bincount(truth, minlength=len(store.label_names)).tolist(),
               "epochs": epochs, "first_epoch_loss": losses[0], "last_epoch_loss": losses[-1],
               "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
               "torch_threads": torch.get_num_threads(),
               "classes": list(store.label_names), "weights_sha256": encoder.weights_sha256}
    write_json(Path(out).with_suffix(".json"), metrics)
    return metrics
