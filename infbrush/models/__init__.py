"""Denoiser models: registry, builder and the chunked-forward wrapper."""
from __future__ import annotations

import dataclasses

import torch

from infbrush.models.chunked import ChunkedDenoiser, chunked_forward
from infbrush.models.denoiser import InfBrushDenoiser

MODELS: dict[str, type] = {"infbrush": InfBrushDenoiser}

# Size presets (the fields of DenoiserConfig). "demo": ~0.8 M parameters, trains in minutes on 2 CPU cores
# (64² images, 16 × 1,024 points per step): a 64² UNO grid (one cell per training pixel: the grid UNet
# does the fine denoising the point path alone did not, which left grain), v-prediction and the value skip
# (no single-pixel speckle). "paper": ~85 M parameters, close to the ~78 M of the paper's Table 4 (NUMBERS.md);
# grid 128², UNO base 128 with 2 blocks per level and dropout 0.1 follow ∞-Diff's code (NUMBERS.md); the
# multipliers (1, 2, 2, 2, 4) instead of ∞-Diff's (1, 2, 4, 8, 8) (≈ 386 M here) are chosen to match ~78 M;
# sparse widths, sparse lattice 256² (≈ the mean spacing of 65,536 points in a 4096² image) and token counts
# are our choices (paper silent).
PRESETS: dict[str, dict] = {
    "demo": {"name": "infbrush", "sparse_channels": 48, "sparse_grid": 64, "sparse_kernel": 5, "fourier_freqs": 7,
             "emb_dim": 96, "cond_tokens": 4, "num_heads": 4, "grid_size": 64, "grid_channels": 24,
             "channel_mult": [1, 2, 2], "num_blocks": 1, "grid_heads": 4, "knn": 3, "dropout": 0.0,
             "prediction": "v", "value_skip": True},
    "paper": {"name": "infbrush", "sparse_channels": 128, "sparse_grid": 256, "sparse_kernel": 7, "fourier_freqs": 10,
              "emb_dim": 512, "cond_tokens": 8, "num_heads": 8, "grid_size": 128, "grid_channels": 128,
              "channel_mult": [1, 2, 2, 2, 4], "num_blocks": 2, "grid_heads": 8, "knn": 3, "dropout": 0.1,
              "prediction": "eps", "value_skip": False},
}


def model_args_from_preset(preset: str, *, in_channels: int, cond_dim: int, cano: bool = True) -> dict:
    """Plain JSON-able model arguments of a size preset with the data-dependent keys filled in."""
    if preset not in PRESETS:
        raise ValueError(f"model preset {preset!r} is not one of {sorted(PRESETS)}")
    return dict(PRESETS[preset]) | {"in_channels": int(in_channels), "cond_dim": int(cond_dim), "cano": bool(cano)}

__all__ = ["MODELS", "PRESETS", "PRECISIONS", "set_precision", "model_args_from_preset", "build_model", "count_parameters", "ChunkedDenoiser", "chunked_forward", "InfBrushDenoiser"]


def build_model(model_args: dict) -> torch.nn.Module:
    """Build a denoiser from a plain JSON-able dict: {"name": registry key, "in_channels", "cond_dim",
    "cano", size keys...}. Unknown names or keys raise ValueError naming them."""
    args = dict(model_args)
    name = args.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"model name {name!r} is not one of {sorted(MODELS)}")
    cls = MODELS[name]
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(args) - valid)
    if unknown:
        raise ValueError(f"model {name!r}: unknown keys {unknown}; valid keys are {sorted(valid)}")
    return cls(cls.Config(**args))


PRECISIONS = ("off", "bf16", "bf16-grid")  # float32 | bf16 autocast of the whole forward | of the grid UNet only


def set_precision(model: torch.nn.Module, precision: str) -> None:
    """Select how ``model`` computes: "off" (float32), "bf16" or "bf16-grid" (only the grid UNet in bf16; the
    point path stays float32). "bf16" is applied by the caller's ``torch.autocast``; this sets the grid part."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if hasattr(model, "grid_dtype"):
        model.grid_dtype = torch.bfloat16 if precision == "bf16-grid" else None


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
