"""DINO training as one run (``infbrush train-dino``): train (resumable), then measure the teacher by k-NN on the
store's labels against the same network untrained, and write ``dino.json`` beside ``dino.pt``."""
from __future__ import annotations

from pathlib import Path

from infbrush.ssl.train import DinoConfig


def train_and_evaluate(store: str, out: str, export: str, config: DinoConfig, *, device: str = "auto",
                       stop_after: int | None = None, progress: bool = True, on_data_change: str = "error",
                       knn_k: int = 20) -> dict | None:
    """Train DINO on ``store`` in the run folder ``out`` (checkpoints, metrics.jsonl) and export the teacher's
    backbone to ``export`` (the vocabulary of ``infbrush train``: ``--out`` run folder, ``--export`` weights); on
    the main process write the k-NN report beside it (``export`` with ``.json``) and return it; None when
    training stopped for a requeue (preemption)."""
    from infbrush.io import write_json
    from infbrush.ssl.train import train_dino

    export = Path(export)
    summary = train_dino(store, export, Path(out), config, device=device, stop_after=stop_after, progress=progress,
                         restart_stale=on_data_change == "restart")
    if summary is None:
        return None
    if not summary["is_main"]:
        return {}
    report = evaluate_dino(store, export, config.model, knn_k, config.seed, device)
    report.update(steps=summary["steps"], epochs=summary["epochs"], last_loss=summary["last_loss"],
                  steps_this_call=summary["steps_this_call"],
                  train_seconds_this_call=summary["train_seconds_this_call"],
                  train_cpu_seconds_this_call=summary["train_cpu_seconds_this_call"],
                  torch_threads=torch_threads())
    write_json(export.with_suffix(".json"), report)
    return report


def torch_threads() -> int:
    """Intra-op threads torch trained with (for reading ``train_seconds_this_call``)."""
    import torch

    return torch.get_num_threads()


def evaluate_dino(store_path, out, model: str, k: int, seed: int, device: str) -> dict:
    """k-NN accuracy of the trained teacher and of the same network untrained (its step-0 weights, rebuilt from
    the training seed), same protocol and images, with 95 % intervals and the gain between them."""
    from infbrush.data.store import ImageStore
    from infbrush.embed.encoders import load_encoder, timm_encoder
    from infbrush.runtime.weights import sha256_state_dict
    from infbrush.ssl.dino import BackboneSpec, dino_data_config, load_dino_backbone, untrained_backbone
    from infbrush.ssl.knn import knn_report

    store = ImageStore(store_path)
    if not (store.labels >= 0).any():  # no labels: not measured
        return {"knn_accuracy": None}
    encoder = load_encoder("dino", model, str(out), device=device)
    _, meta = load_dino_backbone(out)
    random_backbone = untrained_backbone(BackboneSpec.of(meta), int(meta["config"].get("seed", seed)))
    baseline = timm_encoder("dino", "random-init", random_backbone, dino_data_config(meta),
                            sha256_state_dict(random_backbone.state_dict()), encoder.device)
    return knn_report(store, encoder, baseline, k=k, seed=seed)
