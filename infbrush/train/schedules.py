"""Step schedules of a training run: learning rate (warm-up, optional cosine decay) and the EMA decay warm-up.

The paper trains at a constant Adam lr of 5e-5 with EMA 0.995 (NUMBERS.md); real runs keep exactly that
(``lr_warmup = 0``, ``lr_decay = "constant"``, and the EMA warm-up reaches 0.995 after ~1,800 updates).
A minutes-long demo run gains from a short warm-up and a cosine decay (issue 12).
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
