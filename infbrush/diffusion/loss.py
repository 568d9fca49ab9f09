"""Function-space denoising loss on random pixel subsets (paper eq. 14; ∞-Diff's simplified objective)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from infbrush.diffusion.mollifier import mollified_noise_points, mollify_image
from infbrush.diffusion.noise_levels import LossWeighting, NoiseLevels, timestep_from_u
from infbrush.diffusion.points import sample_points
from infbrush.diffusion.process import Diffusion
from infbrush.diffusion.schedule import PREDICTIONS, v_target


def stratified_timestep(u: float, slot: int, n_slots: int, T: int) -> int:
    """t in stratum ``slot`` of ``n_slots`` equal strata of {0..T-1} from u ~ U[0, 1) (uniform over the batch)."""
    return min(T - 1, int((slot + u) * T / n_slots))


def _draw_per_image(generators: list[torch.Generator], T: int, cond_drop_prob: float,
                    t_strata: tuple[list[int], int] | None = None, t_cdf: torch.Tensor | None = None):
    """Per image: timestep t, a noise seed and a keep-condition flag, each from that image's generator.

    ``t_strata`` = (slot of each image in the global batch, global batch size): image in slot k draws t from
    the k-th of B equal strata of {0..T-1}, so every batch covers the whole schedule (still U{0..T-1} per image
    marginally, the slot order being a random permutation of the data). ``t_cdf`` (T,) float64: t from that
    distribution instead of the uniform one (inverse CDF of u, or of the stratum's u when stratified).
    """
    ts, seeds, keep = [], [], []
    for i, g in enumerate(generators):
        if t_cdf is not None:
            u = float(torch.rand(1, generator=g, device=g.device))
            if t_strata is not None:
                slots, n_slots = t_strata
                u = (slots[i] + u) / n_slots
            ts.append(timestep_from_u(u, t_cdf))
        elif t_strata is None:
            ts.append(int(torch.randint(T, (1,), generator=g, device=g.device)))
        else:
            slots, n_slots = t_strata
            ts.append(stratified_timestep(float(torch.rand(1, generator=g, device=g.device)), slots[i], n_slots, T))
        seeds.append(int(torch.randint(2**62, (1,), generator=g, device=g.device)))
        keep.append(bool(torch.rand(1, generator=g, device=g.device) >= cond_drop_prob))
    return ts, seeds, keep


@dataclass(frozen=True)
class PointLoss:
    """The objective's settings that travel together (as EDM's loss object): ``n_points`` random pixels per
    image, the condition-dropout probability of classifier-free guidance, ∞-Diff's smoothed inputs
    (``mollify_data``), what the network predicts (ε or v), the law of t and each image's weight."""

    n_points: int
    cond_drop_prob: float = 0.0
    mollify_data: bool = False
    prediction: str = "eps"
    noise_levels: NoiseLevels = NoiseLevels()
    weighting: LossWeighting = LossWeighting()

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {self.cond_drop_prob}")
        if self.n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {self.n_points}")


def training_loss(
    model,
    images: torch.Tensor,
    cond: torch.Tensor | None,
    generators: list[torch.Generator],
    *,
    loss: PointLoss,
    diffusion: Diffusion,
    t_strata: tuple[list[int], int] | None = None,
) -> torch.Tensor:
    """Scalar MSE between the model's ε̂ (or v̂) and its target on ``loss.n_points`` random pixels per image.

    images (B, C, H, W) in [-1, 1]; cond (B, D) or None; one generator per image draws (in order) the
    pixel subset, t, the noise seed and the condition-dropout flag, so a DDP shard holding a subset of the
    images reproduces the single-process values. x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε with ε the mollified noise
    function (std ``diffusion.mollify_sigma`` × image side) at the points and ᾱ the process's schedule
    (``diffusion``: the same object the checkpoint saves and every sampler reads). ``loss.mollify_data`` blurs the images with the same mollifier first
    (∞-Diff's smoothed inputs); ``loss.noise_levels`` chooses the law of t and ``loss.weighting`` each image's
    weight (``infbrush.diffusion.noise_levels``; the defaults are the paper's uniform t and plain mean).
    ``t_strata``: stratified t over the global batch (see ``_draw_per_image``).
    """
    n_points, cond_drop_prob, prediction = loss.n_points, loss.cond_drop_prob, loss.prediction
    noise_levels, weighting = loss.noise_levels, loss.weighting
    alpha_bar, mollify_sigma = diffusion.alpha_bar(), diffusion.mollify_sigma  # (T,) float64
    batch, channels, height, width = images.shape
    if cond is not None and cond.shape[0] != batch:
        raise ValueError(f"cond has {cond.shape[0]} rows for {batch} images")
    if loss.mollify_data:
        images = mollify_image(images, mollify_sigma)
    coords, x0, _ = sample_points(images, n_points, generators)  # (B, N, 2), (B, N, C)
    t_cdf = None if noise_levels.uniform else noise_levels.cdf(alpha_bar)
    ts, seeds, keep = _draw_per_image(generators, alpha_bar.shape[0], cond_drop_prob, t_strata, t_cdf)
    eps = torch.stack([mollified_noise_points(coords[i], seeds[i], mollify_sigma, channels) for i in range(batch)])
    eps = eps.to(x0)
    t = torch.tensor(ts, device=images.device)
    a = alpha_bar.to(images.device)[t].to(x0.dtype).view(batch, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    cond_mask = torch.tensor(keep, device=images.device) if cond is not None else None
    out = model(x_t, coords, t, cond, (height, width), cond_mask=cond_mask)
    target = eps if prediction == "eps" else v_target(x0, eps, a)
    weights = weighting.weights(alpha_bar.to(images.device)[t], prediction)  # (B,) float64 or None
    if weights is None:
        return torch.mean((out.float() - target.float()) ** 2)
    per_image = ((out.float() - target.float()) ** 2).mean(dim=(1, 2))  # (B,)
    return torch.mean(per_image * weights.to(per_image))
