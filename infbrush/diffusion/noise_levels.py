"""Where training spends its (image, t) draws and how much each counts.

Two settings that travel together through ``training_loss``, each a small frozen object with pure functions:

- :class:`NoiseLevels` — the distribution of the training timestep. ``uniform`` is ∞-Diff's / the paper's
  t ~ U{0..T-1}. ``lognormal`` is EDM's ln σ ~ N(P_mean, P_std) (Karras et al. 2022, eq. in Table 1, "p_train";
  σ = sqrt((1-ᾱ)/ᾱ), so log-SNR λ = -2 ln σ ~ N(-2 P_mean, 2 P_std): defaults 2.4, 2.4 from P_mean = -1.2,
  P_std = 1.2). ``laplace`` is λ ~ Laplace(μ, b) (Hang et al. 2024, "Improved Noise Schedule for Diffusion
  Training", μ = 0, b = 0.5). A continuous law on λ becomes a law on the discrete t by giving each t the mass of
  its λ-bin (edges halfway between neighbouring λ_t), so every t keeps the exact ᾱ_t of the schedule.
- :class:`LossWeighting` — the per-image weight of the squared error. ``none`` is the plain mean (today's);
  ``min_snr`` is Min-SNR-γ (Hang et al., ICCV 2023, eq. 8 and its v-prediction form): w = min(SNR, γ) / SNR for
  ε-prediction, min(SNR, γ) / (SNR + 1) for v-prediction, SNR = ᾱ/(1-ᾱ).

All math is float64; each draw is a function of one u ∈ [0, 1) from the image's own generator, so DDP shards and
resumed runs draw exactly what one uninterrupted process draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# name → (default location, default scale) of log-SNR λ; None: the discrete uniform law (no parameters)
T_DISTS: dict[str, tuple[float, float] | None] = {
    "uniform": None,
    "lognormal": (2.4, 2.4),   # EDM: ln σ ~ N(-1.2, 1.2²) ⇔ λ = -2 ln σ ~ N(2.4, 2.4²)
    "laplace": (0.0, 0.5),     # Hang et al. 2024: λ ~ Laplace(0, 0.5)
}
LOSS_WEIGHTINGS = ("none", "min_snr")


def log_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """λ_t = log(ᾱ_t / (1 - ᾱ_t)) → (T,) float64 (decreasing in t)."""
    a = alpha_bar.to(torch.float64)
    return torch.log(a) - torch.log1p(-a)


def _law_cdf(kind: str, x: torch.Tensor, loc: float, scale: float) -> torch.Tensor:
    """P(λ ≤ x) of the named law (float64)."""
    z = (x - loc) / scale
    if kind == "lognormal":
        return 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))  # Laplace


@dataclass(frozen=True)
class NoiseLevels:
    """The training timestep's distribution: ``kind`` in :data:`T_DISTS`, ``loc`` / ``scale`` of log-SNR λ
    (None: the kind's published default; ignored by ``uniform``)."""

    kind: str = "uniform"
    loc: float | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in T_DISTS:
            raise ValueError(f"unknown timestep distribution {self.kind!r}; valid: {', '.join(T_DISTS)}")
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"timestep distribution scale must be > 0, got {self.scale}")

    @property
    def uniform(self) -> bool:
        return self.kind == "uniform"

    def params(self) -> tuple[float, float]:
        """(loc, scale) of λ with the kind's defaults filled in."""
        default = T_DISTS[self.kind] or (0.0, 1.0)
        return (default[0] if self.loc is None else float(self.loc),
                default[1] if self.scale is None else float(self.scale))

    def pmf(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """(T,) float64 probability of each timestep: the law's mass on t's λ-bin."""
        T = alpha_bar.shape[0]
        if self.uniform:
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        lam = log_snr(alpha_bar)  # (T,) decreasing
        mids = 0.5 * (lam[1:] + lam[:-1])  # (T-1,) edges between t and t+1
        inf = torch.tensor([math.inf], dtype=torch.float64)
        upper, lower = torch.cat([inf, mids]), torch.cat([mids, -inf])  # bin of t: (lower, upper]
        loc, scale = self.params()
        mass = _law_cdf(self.kind, upper, loc, scale) - _law_cdf(self.kind, lower, loc, scale)
        return mass.clamp(min=0) / mass.sum()

    def cdf(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """(T,) float64 cumulative probability of t ≤ k (the last entry is exactly 1)."""
        c = torch.cumsum(self.pmf(alpha_bar), 0)
        c[-1] = 1.0
        return c


def timestep_from_u(u: float, cdf: torch.Tensor) -> int:
    """Inverse CDF: the smallest t with cdf[t] > u, for u ∈ [0, 1) (a stratified u gives a stratified t)."""
    return min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True)), cdf.shape[0] - 1)


@dataclass(frozen=True)
class LossWeighting:
    """Per-image loss weight: ``kind`` in :data:`LOSS_WEIGHTINGS`; ``gamma`` of Min-SNR-γ (paper: 5)."""

    kind: str = "none"
    gamma: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {self.kind!r}; valid: {', '.join(LOSS_WEIGHTINGS)}")
        if not self.gamma > 0:
            raise ValueError(f"min-SNR gamma must be > 0, got {self.gamma}")

    def weights(self, alpha_bar_t: torch.Tensor, prediction: str) -> torch.Tensor | None:
        """(B,) float64 weights for the images' ᾱ_t, or None for the plain mean."""
        if self.kind == "none":
            return None
        a = alpha_bar_t.to(torch.float64)
        snr = a / (1 - a)
        clipped = torch.clamp(snr, max=self.gamma)
        return clipped / (snr + 1) if prediction == "v" else clipped / snr
