"""Function-space diffusion: schedule, mollified noise, point sampling, loss and DDIM (paper sec. 3-4).

Names load with their module on first use (PEP 562), so that the torch-free ``infbrush.diffusion.settings`` can be
read by the commands' argument parsers without importing torch.
"""
from __future__ import annotations

import importlib

_MODULES = {
    "ddim": ("ddim_sample", "initial_noise"),
    "guidance": ("GuidedDenoiser",),
    "loss": ("PointLoss", "training_loss"),
    "mollifier": ("mollified_noise_points", "mollified_noise_grid", "mollify_image"),
    "points": ("sample_points", "lattice_coords", "index_to_coords", "n_points_for"),
    "process": ("Diffusion",),
    "samplers": ("SAMPLERS", "make_sampler"),
    "schedule": ("T", "cosine_alpha_bar", "ddim_step", "ddim_timesteps", "predict_x0", "eps_from_x0"),
    "settings": ("SamplingSettings", "SamplingMemory"),
}
_OWNER = {name: module for module, names in _MODULES.items() for name in names}
__all__ = list(_OWNER)


def __getattr__(name: str):
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
