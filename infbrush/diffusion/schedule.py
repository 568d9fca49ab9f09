"""Noise schedule and the DDIM update (paper eq. 9; DDIM of Song et al. 2021, eta = 0).

All schedule math is float64; ᾱ_t (``alpha_bar[t]``) is the signal fraction at step t in [0, T).
"""
from __future__ import annotations

import math

import torch

T: int = 1000


def cosine_alpha_bar(T: int = T, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, as used by ∞-Diff): ``(T,)`` float64 ᾱ_t.

    ᾱ_t = Π_{i<=t} (1 - β_i) with β_i = min(1 - f(i+1)/f(i), max_beta), f(u) = cos²((u/T + s)/(1 + s) · π/2).
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # (T,)
    return torch.cumprod(1 - betas, dim=0)


def _as_factor(a: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """ᾱ as a float64 tensor broadcastable against ``like`` (B, ...): floats, 0-d or (B,) tensors."""
    a = torch.as_tensor(a, dtype=torch.float64, device=like.device)
    if a.dim() == 1:
        a = a.reshape(-1, *([1] * (like.dim() - 1)))
    return a


def _coef(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A float64 coefficient cast to ``like``'s dtype (the coefficients are computed in float64; the
    elementwise update runs in the state's dtype so a 4096² state is not copied to float64)."""
    return c.to(like.dtype)


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """x̂_0 = (x_t - sqrt(1-ᾱ_t) ε) / sqrt(ᾱ_t); same shape and dtype as ``x_t``."""
    a = _as_factor(alpha_bar_t, x_t)
    return (x_t - _coef((1 - a).sqrt(), x_t) * eps) * _coef(1 / a.sqrt(), x_t)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """ε = (x_t - sqrt(ᾱ_t) x_0) / sqrt(1-ᾱ_t), the noise consistent with a (clipped) x̂_0."""
    a = _as_factor(alpha_bar_t, x_t)
    return (x_t - _coef(a.sqrt(), x_t) * x0) * _coef(1 / (1 - a).sqrt(), x_t)


PREDICTIONS = ("eps", "v")


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """v = sqrt(ᾱ_t) ε - sqrt(1-ᾱ_t) x_0 (Salimans & Ho 2022, eq. 11), the v-prediction training target."""
    a = _as_factor(alpha_bar_t, x0)
    return _coef(a.sqrt(), x0) * eps - _coef((1 - a).sqrt(), x0) * x0


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """ε = sqrt(1-ᾱ_t) x_t + sqrt(ᾱ_t) v: at high noise ε̂ → x_t exactly, so network errors are scaled by
    sqrt(ᾱ_t) ≪ 1 where x̂_0 = (x_t - sqrt(1-ᾱ_t) ε̂)/sqrt(ᾱ_t) would amplify them by 1/sqrt(ᾱ_t) ≫ 1."""
    a = _as_factor(alpha_bar_t, x_t)
    return _coef((1 - a).sqrt(), x_t) * x_t + _coef(a.sqrt(), x_t) * v.to(x_t.dtype)


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """x̂_0 = sqrt(ᾱ_t) x_t - sqrt(1-ᾱ_t) v̂ (Salimans & Ho 2022), exact in float32 at every noise level, where
    ``predict_x0(x_t, eps_from_v(…))`` divides a cancellation by sqrt(ᾱ_t) (1e-4.6 at t = T - 1 of the cosine
    schedule: float32 keeps no digit of x̂_0 there)."""
    a = _as_factor(alpha_bar_t, x_t)
    return _coef(a.sqrt(), x_t) * x_t - _coef((1 - a).sqrt(), x_t) * v.to(x_t.dtype)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: torch.Tensor | float,
    alpha_bar_prev: torch.Tensor | float,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0, ε-prediction), a pure function.

    x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 - ᾱ_prev) ε with x̂_0 = (x_t - sqrt(1-ᾱ_t) ε) / sqrt(ᾱ_t).
    ``x_t``, ``eps``: (B, ...) same shape; ᾱ: floats, 0-d tensors or (B,) tensors. Returns x_t's shape/dtype.
    """
    if x_t.shape != eps.shape:
        raise ValueError(f"ddim_step: x_t {tuple(x_t.shape)} and eps {tuple(eps.shape)} differ in shape")
    a_t = _as_factor(alpha_bar_t, x_t)
    a_prev = _as_factor(alpha_bar_prev, x_t)
    # x_prev = c_x · x_t + c_e · ε with c_x = sqrt(ᾱ_prev/ᾱ_t), c_e = sqrt(1-ᾱ_prev) - sqrt(ᾱ_prev (1-ᾱ_t)/ᾱ_t)
    c_x = (a_prev / a_t).sqrt()
    c_e = (1 - a_prev).sqrt() - (a_prev * (1 - a_t) / a_t).sqrt()
    return _coef(c_x, x_t) * x_t + _coef(c_e, x_t) * eps.to(x_t.dtype)


def ddim_timesteps(steps: int, T: int = T) -> list[int]:
    """Decreasing, evenly spaced timesteps for a ``steps``-step DDIM run, from T-1 down to 0."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


SPACINGS = ("linear", "lambda")
EDM_SIGMA_MAX = 80.0  # the largest noise level EDM samples from (Karras et al. 2022, Table 1)


def sampling_timesteps(steps: int, alpha_bar: torch.Tensor, spacing: str = "linear") -> list[int]:
    """Decreasing timesteps of a ``steps``-step sampling run over the schedule ``alpha_bar`` (T,).

    "linear": evenly spaced in t from T-1 to 0 (``ddim_timesteps``, the paper's DDIM). "lambda": T-1 (where x_T
    is drawn), then ``steps`` - 1 timesteps evenly spaced in the half log-SNR λ_t = log sqrt(ᾱ_t / (1 - ᾱ_t)) from
    σ = sqrt((1-ᾱ)/ᾱ) = 80 (EDM's σ_max; the cosine schedule's last steps reach σ = 2·10⁴, noise levels where
    one step suffices) down to λ_0, each rounded to the nearest timestep: the discretisation DPM-Solver is derived
    for (Lu et al. 2022, sec. 3.3). Rounding can merge neighbours near t = 0, so a run may hold fewer than ``steps``
    distinct timesteps (never more).
    """
    T = alpha_bar.shape[0]
    if spacing == "linear":
        return ddim_timesteps(steps, T)
    if spacing != "lambda":
        raise ValueError(f"unknown timestep spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    a = alpha_bar.to(torch.float64)
    lam = 0.5 * (a.log() - (1 - a).log())  # (T,), increasing as t decreases
    lam_lo = max(float(lam[-1]), -math.log(EDM_SIGMA_MAX))
    # (two steps: T-1 and 0, as "linear")
    targets = torch.linspace(lam_lo if steps > 2 else float(lam[0]), float(lam[0]), steps - 1, dtype=torch.float64)
    ts = [T - 1] + (lam.view(1, -1) - targets.view(-1, 1)).abs().argmin(dim=1).tolist()
    return sorted(set(ts), reverse=True)
