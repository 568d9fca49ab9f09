"""Step schedules of a training run: learning rate (warm-up, optional cosine decay) and the EMA decay warm-up.

The paper trains at a constant Adam lr of 5e-5 with EMA 0.995 (NUMBERS.md); real runs keep exactly that
(``lr_warmup = 0``, ``lr_decay = "constant"``, and the EMA warm-up reaches 0.995 after ~1,800 updates).
A minutes-long demo run gains from a short warm-up and a cosine decay.
"""
from __future__ import annotations

import math

LR_DECAYS = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, warmup: int = 0, decay: str = "constant", final: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up over ``warmup`` steps,
    then constant or cosine from 1 down to ``final`` at ``total_steps``."""
    if decay not in LR_DECAYS:
        raise ValueError(f"lr decay {decay!r} is not one of {', '.join(LR_DECAYS)}")
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay(rate: float, updates: int) -> float:
    """EMA decay after ``updates`` earlier updates: min(rate, (1 + n) / (10 + n)) (the warm-up of the
    TensorFlow / Karras EMA), so the average forgets the initial weights early and equals ``rate`` later."""
    return min(rate, (1.0 + updates) / (10.0 + updates))


EMA_KINDS = ("rate", "power")


def power_ema_gamma(std: float) -> float:
    """The exponent γ of a power-function EMA whose averaging profile has relative width ``std`` (EDM2's
    σ_rel; Karras et al. 2024, eq. 3): the largest real root of γ³ + 7γ² + (16 - σ⁻²)γ + (12 - σ⁻²) = 0,
    i.e. σ_rel² = (γ+1) / ((γ+2)²(γ+3))."""
    import numpy as np

    if not 0 < std < 12 ** -0.5:
        raise ValueError(f"power EMA std must be in (0, {12 ** -0.5:.4f}), got {std}")
    roots = np.roots([1.0, 7.0, 16.0 - std ** -2, 12.0 - std ** -2])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


def power_ema_decay(gamma: float, updates: int) -> float:
    """Decay of the power-function EMA after ``updates`` earlier updates: (1 - 1/(n+1))^(γ+1) (EDM2, eq. 2 with
    t = n + 1). The average weighs the weights of step s by s^γ, so its length is a fixed fraction of the run
    at every step: a short run and a long one average over the same share of their training."""
    return (1.0 - 1.0 / (updates + 1)) ** (gamma + 1.0)
