"""The diffusion process a model was trained with, as one object: what training and every sampling command share.

∞-Brush's forward process (paper sec. 3-4) is fixed by three settings: the noise schedule (the cosine ᾱ_t of
∞-Diff), the number of steps T, and the width of the mollifier that turns white noise into a noise *function*.
:class:`Diffusion` holds them, is saved in every checkpoint and export (``"diffusion"``), and is rebuilt one way
by ``infbrush sample``, ``brush`` and ``brush-eval`` (:meth:`Diffusion.of_checkpoint`). The prediction type
(ε or v) belongs to the network's output head and travels with the model (``model.prediction``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from infbrush.errors import InfbrushError

SCHEDULES = ("cosine",)


@dataclass(frozen=True)
class Diffusion:
    """Schedule, T and mollifier width (std in [0, 1] image coordinates) of a function-space diffusion. No
    defaults here: a process is built from a training config (``TrainConfig`` owns the defaults) or read back
    from a checkpoint."""

    timesteps: int
    mollify_sigma: float
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        if not 0 < self.mollify_sigma <= 0.5:
            raise ValueError(f"mollify_sigma must be in (0, 0.5], got {self.mollify_sigma}")

    def alpha_bar(self) -> torch.Tensor:
        """(T,) float64 ᾱ_t of the schedule."""
        from infbrush.diffusion.schedule import cosine_alpha_bar

        return cosine_alpha_bar(self.timesteps)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_checkpoint(cls, ckpt: dict, source: str, *, timesteps: int | None = None,
                      mollify_sigma: float | None = None) -> "Diffusion":
        """The process of a checkpoint or export: its ``diffusion`` entry, else (files written before it existed)
        its training config; ``timesteps`` / ``mollify_sigma`` (the commands' flags) override. A setting found
        nowhere is a one-line error naming the file and the flag that supplies it."""
        saved = dict(ckpt.get("diffusion") or {})
        config = ckpt.get("config") or {}
        values = {}
        for key, given in (("timesteps", timesteps), ("mollify_sigma", mollify_sigma)):
            value = given if given is not None else saved.get(key, config.get(key))
            if value is None:
                raise InfbrushError(f"{source}: the checkpoint records no '{key}'; pass --{key.replace('_', '-')}")
            values[key] = value
        try:
            return cls(timesteps=int(values["timesteps"]), mollify_sigma=float(values["mollify_sigma"]),
                       schedule=saved.get("schedule", "cosine"))
        except ValueError as err:
            raise InfbrushError(f"{source}: {err}") from None
