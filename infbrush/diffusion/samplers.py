"""Samplers of the probability-flow ODE as pointwise update rules (DDIM, DPM-Solver++(2M), UniPC).

Every sampler here is deterministic and *pointwise*: the new value of a point depends only on that point's
current value, the denoiser's prediction there and the point's own history (earlier predictions, the previous
state). So the driver (``diffusion/ddim.py``) can stream the image chunk by chunk, split it over ranks or keep it
on disk, and a sampler only says how one chunk moves from step i to step i + 1:

    sampler = SAMPLERS[name](alpha_bar, ts)                 # float64 coefficients, once per run
    x_next, hist = sampler.step(i, x, x0, eps, hist)       # one chunk: x, x̂_0, ε̂ (B, n, C); hist: name → (B, n, C)

``buffers`` names the per-point history a sampler carries (each is a (B, N, C) float32 state like x_t); ``x0`` and
``eps`` are the denoiser's prediction at x (after guidance and clipping; consistent: x = α x̂_0 + σ ε̂).

Notation (Lu et al. 2022; Zhao et al. 2023): α_t = sqrt(ᾱ_t), σ_t = sqrt(1 - ᾱ_t), λ_t = log(α_t / σ_t); a run
visits ts[0] > ts[1] > … > ts[-1] and ends at ᾱ = 1 (σ = 0, λ = ∞), where each sampler returns x̂_0.
Network evaluations per image: one per step, two at guided steps (``guidance.py``).
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from infbrush.diffusion.schedule import _coef, ddim_step


class Sampler(Protocol):
    """A pointwise multistep sampler over the timesteps ``ts`` (decreasing) of the ᾱ schedule."""

    buffers: tuple[str, ...]

    def step(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
             hist: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def _levels(alpha_bar: torch.Tensor, ts: list[int]) -> tuple[list[float], list[float], list[float]]:
    """α, σ, λ (float64) at ts and at the end of the run (ᾱ = 1: α = 1, σ = 0, λ = ∞); len(ts) + 1 each."""
    a = [float(alpha_bar[t]) for t in ts] + [1.0]
    alpha = [math.sqrt(v) for v in a]
    sigma = [math.sqrt(1.0 - v) for v in a]
    lam = [math.log(al) - math.log(si) if si > 0 else math.inf for al, si in zip(alpha, sigma)]
    return alpha, sigma, lam


def _combine(x: torch.Tensor, terms: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """Σ c_k v_k in x's dtype (coefficients float64 until the multiply, as ``ddim_step``)."""
    out = None
    for c, v in terms:
        if c == 0.0:
            continue
        term = _coef(torch.tensor(c, dtype=torch.float64), x) * v.to(x.dtype)
        out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(x)


class DDIM:
    """DDIM, eta = 0 (Song et al. 2021; paper eq. 9): x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s) ε̂. First order,
    no history: the sampler the paper uses (50 steps), computed exactly as ``ddim_step``."""

    buffers: tuple[str, ...] = ()

    def __init__(self, alpha_bar: torch.Tensor, ts: list[int]):
        self.a = [float(alpha_bar[t]) for t in ts] + [1.0]

    def step(self, i, x, x0, eps, hist):
        return ddim_step(x, eps, self.a[i], self.a[i + 1]), hist


class DPMSolverPP2M:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; data prediction, multistep, second order).

    h_i = λ_{i+1} - λ_i, r_i = h_{i-1} / h_i, D_i = (1 + 1/(2 r_i)) x̂_0,i - 1/(2 r_i) x̂_0,i-1 (D_0 = x̂_0,0),
    x_{i+1} = (σ_{i+1}/σ_i) x_i + α_{i+1} (1 - e^{-h_i}) D_i. First order at the first step and at the last
    (to σ = 0, where it returns x̂_0), as diffusers' ``DPMSolverMultistepScheduler`` (lower_order_final).
    """

    buffers = ("x0_prev",)

    def __init__(self, alpha_bar: torch.Tensor, ts: list[int]):
        alpha, sigma, lam = _levels(alpha_bar, ts)
        n = len(ts)
        self.coefs: list[tuple[float, float, float]] = []  # (c_x, c_x0, c_x0_prev) per step
        for i in range(n):
            if sigma[i + 1] == 0.0:  # the last step: x̂_0
                self.coefs.append((0.0, 1.0, 0.0))
                continue
            h = lam[i + 1] - lam[i]
            phi = alpha[i + 1] * -math.expm1(-h)  # α_{i+1} (1 - e^{-h})
            c_x = sigma[i + 1] / sigma[i]
            if i == 0:
                self.coefs.append((c_x, phi, 0.0))
                continue
            r = (lam[i] - lam[i - 1]) / h
            self.coefs.append((c_x, phi * (1 + 1 / (2 * r)), -phi / (2 * r)))

    def step(self, i, x, x0, eps, hist):
        c_x, c_0, c_1 = self.coefs[i]
        terms = [(c_x, x), (c_0, x0)] + ([(c_1, hist["x0_prev"])] if c_1 else [])
        return _combine(x, terms), {"x0_prev": x0}


class UniPC:
    """UniPC-bh2, order 2 (Zhao et al. 2023; data prediction), as diffusers' ``UniPCMultistepScheduler``
    (solver_order=2, solver_type="bh2", lower_order_final): at each step after the first, the corrector UniC
    refines the current x with the prediction just made there (no extra network call), then the predictor UniP
    takes the step. History: the previous state x_{i-1} and the predictions x̂_0,i-1, x̂_0,i-2.
    """

    buffers = ("x_prev", "x0_prev", "x0_prev2")

    def __init__(self, alpha_bar: torch.Tensor, ts: list[int]):
        self.alpha, self.sigma, self.lam = _levels(alpha_bar, ts)
        n = len(ts)
        # order of the predictor at step i: 1 at the first step (no history) and at the last (lower_order_final)
        self.order = [1 if i == 0 or i == n - 1 else 2 for i in range(n)]

    def _phi(self, s: int, t: int) -> tuple[float, float]:
        """(h, h φ_1 = e^{-h} - 1) for the move from level s to level t; bh2's B(h) is the same e^{-h} - 1."""
        h = self.lam[t] - self.lam[s]
        return h, math.expm1(-h)

    def _base(self, s: int, t: int) -> tuple[float, float]:
        """x_t = c_x x_s + c_m m_s: the first-order part shared by predictor and corrector."""
        _, hp1 = self._phi(s, t)
        return self.sigma[t] / self.sigma[s], -self.alpha[t] * hp1

    def _predict(self, i, x, m0, m1):
        """UniP from level i (x, x̂_0 = m0; m1 = x̂_0 at level i - 1) to level i + 1."""
        c_x, c_m = self._base(i, i + 1)
        terms = [(c_x, x), (c_m, m0)]
        if self.order[i] == 2:
            h, b_h = self._phi(i, i + 1)
            r1 = (self.lam[i - 1] - self.lam[i]) / h
            k = -self.alpha[i + 1] * b_h * 0.5 / r1  # rhos_p = [0.5] · D1, D1 = (m1 - m0) / r1
            terms += [(k, m1), (-k, m0)]
        return _combine(x, terms)

    def _correct(self, i, x_prev, m_prev, m_prev2, m_new):
        """UniC at level i: refine the predictor's x_i from x_{i-1} with x̂_0 at i - 1 (m_prev), i - 2 (m_prev2,
        when the step into i was second order) and the new prediction at i (m_new)."""
        s = i - 1
        c_x, c_m = self._base(s, i)
        h, hp1 = self._phi(s, i)
        b_h = hp1
        hh = -h
        h_phi_k = hp1 / hh - 1  # φ-function recursion of UniPC (Zhao et al. 2023, eq. 7; B(h) = e^{-h} - 1)
        terms = [(c_x, x_prev), (c_m, m_prev)]
        if self.order[s] == 1:
            rho = [0.5]
            r1 = None
        else:
            r1 = (self.lam[s - 1] - self.lam[s]) / h
            b1 = h_phi_k / b_h
            b2 = (h_phi_k / hh - 0.5) * 2 / b_h
            # solve [[1, 1], [r1, 1]] ρ = [b1, b2]
            rho_1 = (b1 - b2) / (1 - r1)
            rho = [rho_1, b1 - rho_1]
        scale = -self.alpha[i] * b_h
        if r1 is not None:  # ρ_1 · D1 with D1 = (m_prev2 - m_prev) / r1
            k = scale * rho[0] / r1
            terms += [(k, m_prev2), (-k, m_prev)]
        terms += [(scale * rho[-1], m_new), (-scale * rho[-1], m_prev)]  # ρ_last · (m_new - m_prev)
        return _combine(x_prev, terms)

    def step(self, i, x, x0, eps, hist):
        if i > 0:
            x = self._correct(i, hist["x_prev"], hist["x0_prev"], hist["x0_prev2"], x0)
        x_next = self._predict(i, x, x0, hist.get("x0_prev") if i > 0 else None)
        prev = hist["x0_prev"] if i > 0 else torch.zeros_like(x0)
        return x_next, {"x_prev": x, "x0_prev": x0, "x0_prev2": prev}


SAMPLERS: dict[str, type] = {"ddim": DDIM, "dpmpp_2m": DPMSolverPP2M, "unipc": UniPC}


def make_sampler(name: str, alpha_bar: torch.Tensor, ts: list[int]) -> Sampler:
    """The sampler ``name`` over timesteps ``ts`` of ``alpha_bar``; ValueError listing the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](alpha_bar.to(torch.float64), ts)
