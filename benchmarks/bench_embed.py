"""Embedding throughput (images/s) vs batch size, through ``Encoder.embed_images`` (preprocessing included).

Encoders: the demo DINO backbone (timm vit_tiny_patch16_224 at 64²) and the demo CLIP architecture (open_clip,
64²), both at random initialisation (throughput does not depend on the weights). CPU always; GPU when present.
Last line of output: one JSON object.
"""
from __future__ import annotations

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


def encoders(device):
    from infbrush.embed.democlip import build_democlip, democlip_config
    from infbrush.embed.encoders import Encoder, sha256_state_dict, timm_encoder
    from infbrush.ssl.dino import IMAGENET_MEAN, IMAGENET_STD, build_backbone, dino_data_config

    backbone = build_backbone("vit_tiny_patch16_224", 64)
    meta = {"img_size": 64, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    yield timm_encoder("dino", "vit_tiny_patch16_224@64", backbone, dino_data_config(meta), "-", device)
    clip, preprocess, tokenizer = build_democlip(democlip_config(), device)
    clip.eval()
    yield Encoder(kind="open_clip", name="democlip@64", model=clip, preprocess=preprocess,
                  image_forward=lambda x: clip.encode_image(x, normalize=True), input_size=64, dim=64,
                  weights_sha256=sha256_state_dict(clip.state_dict()), normalized=True, device=device,
                  tokenizer=tokenizer)


def throughput(encoder, batch_size: int, min_images: int, rng) -> float:
    images = rng.integers(0, 256, (batch_size, 64, 64, 3), dtype=np.uint8)
    encoder.embed_images(images)  # warm-up
    done, start = 0, time.perf_counter()
    while done < min_images:
        encoder.embed_images(images)
        done += batch_size
    if str(encoder.device).startswith("cuda"):
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> None:
    rng = np.random.default_rng(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for encoder in encoders(device):
            for batch_size in (1, 8, 32) if device.type == "cpu" else (32, 128, 512):
                rate = throughput(encoder, batch_size, 64 if device.type == "cpu" else 2048, rng)
                results.append({"device": device.type, "encoder": encoder.name, "batch_size": batch_size,
                                "images_per_s": round(rate, 1)})
                print(f"{device.type:4s} {encoder.name:26s} batch {batch_size:4d}: {rate:8.1f} images/s", flush=True)
    print(json.dumps({"benchmark": "embed_throughput", "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
