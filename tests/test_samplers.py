"""The samplers of ``infbrush.diffusion.samplers`` on a known target, against diffusers' schedulers, and the
guidance wrapper.

The target is Gaussian data x_0 ~ N(μ, s²) per point: its denoiser is closed-form (a v-prediction, as the demo
models), and the probability-flow ODE keeps each point's standardised value (x_t - α_t μ) / sqrt(α_t² s² + σ_t²),
so the exact sample of a seed is known and every sampler's error can be measured, not just its moments.
"""
from __future__ import annotations

import math

import pytest
import torch

from infbrush.diffusion import SamplingMemory, SamplingSettings, cosine_alpha_bar, ddim_sample, initial_noise
from infbrush.diffusion.guidance import GuidedDenoiser, check_guidance_interval
from infbrush.diffusion.process import Diffusion
from infbrush.diffusion.samplers import SAMPLERS, make_sampler
from infbrush.diffusion.schedule import sampling_timesteps
from numeric_helpers import assert_within

AB = cosine_alpha_bar(1000)
MU, S = 0.2, 0.3
SIZE, SEEDS = (16, 16), [0, 1]


def gaussian_v(x, coords, t, cond=None, image_size=None, cond_mask=None):
    """v̂ of the exact denoiser of N(μ, s²) data: x̂_0 = μ + α s² / (α² s² + σ²) (x_t - α μ)."""
    a = AB[t].view(-1, 1, 1)
    al, si = a.sqrt(), (1 - a).sqrt()
    xd = x.double()
    x0 = MU + al * S**2 / (a * S**2 + 1 - a) * (xd - al * MU)
    eps = (xd - al * x0) / si
    return (al * eps - si * x0).to(x.dtype)


def exact_sample(size=SIZE, seeds=SEEDS) -> torch.Tensor:
    """The ODE's end point of each seed's x_T, (B, C, H, W), clipped to [-1, 1] as the sampler's output."""
    x_t = initial_noise(size, seeds, 1 / size[0], 3).double()
    a = float(AB[-1])
    x0 = MU + S * (x_t - math.sqrt(a) * MU) / math.sqrt(a * S**2 + 1 - a)
    return x0.clamp(-1, 1).view(len(seeds), *size, 3).permute(0, 3, 1, 2)


def run(sampler: str, steps: int, spacing: str = "linear", model=gaussian_v, **kw) -> torch.Tensor:
    model.prediction = "v"  # what a plain callable outputs is its attribute, as a denoiser's
    return ddim_sample(model, kw.pop("cond", None), SIZE, seeds=SEEDS,
                       diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / SIZE[0]),
                       settings=SamplingSettings(steps=steps, sampler=sampler, spacing=spacing, clip_x0=False, **kw))


def rms(a, b) -> float:
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def test_every_sampler_converges_to_the_exact_sample_of_a_gaussian_target():
    exact = exact_sample()
    errors = {name: [rms(run(name, n, "lambda"), exact) for n in (5, 10, 20, 40)] for name in SAMPLERS}
    for name, err in errors.items():
        assert err[-1] < 0.03, (name, err)  # converges (measured at 40 steps: ddim 1.8e-2, the others ≤ 1.1e-3)
        assert err[-1] < err[1] / 3, (name, err)  # and keeps improving with steps
    # second-order samplers: at 10 steps already closer than DDIM at 40 (measured 8e-3 / 1.6e-2 against 1.8e-2)
    for name in ("dpmpp_2m", "unipc"):
        assert errors[name][1] < errors["ddim"][-1], errors
    # the output has the target's moments
    out = run("unipc", 20, "lambda")
    assert abs(float(out.mean()) - MU) < 0.02 and abs(float(out.std()) - S) < 0.02


@pytest.mark.numeric
@pytest.mark.parametrize("spacing", ["linear", "lambda"])
@pytest.mark.parametrize("name, steps", [("dpmpp_2m", 3), ("dpmpp_2m", 12), ("unipc", 3), ("unipc", 12)])
def test_multistep_trajectory_equals_diffusers(name, steps, spacing):
    """Every state the sampler visits equals diffusers' scheduler on the same ᾱ schedule and timesteps (diffusers
    in float64; ours in float32): measured ≤ 8.1e-7 relative (avx2, default; 1 thread)."""
    import diffusers  # a dev dependency (pyproject.toml)

    ts = sampling_timesteps(steps, AB, spacing)
    if name == "dpmpp_2m":
        sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, prediction_type="v_prediction",
                                                      algorithm_type="dpmsolver++", solver_order=2,
                                                      final_sigmas_type="zero", lower_order_final=True)
    else:
        sched = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="v_prediction",
                                                  solver_order=2, solver_type="bh2", predict_x0=True,
                                                  final_sigmas_type="zero", lower_order_final=True)
    sched.set_timesteps(len(ts))
    # our schedule and timesteps, in float64 (diffusers would rebuild ᾱ from float32 betas)
    sched.timesteps = torch.tensor(ts)
    ab = AB[torch.tensor(ts)]
    sched.sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1, dtype=torch.float64)])
    x = initial_noise(SIZE, SEEDS, 1 / SIZE[0], 3).double()
    theirs = []
    for t in sched.timesteps:
        theirs.append(x.clone())
        x = sched.step(gaussian_v(x, None, torch.full((len(SEEDS),), int(t))), t, x).prev_sample
    ours = []

    def recording(x, coords, t, cond=None, image_size=None, cond_mask=None):
        ours.append(x.clone())
        return gaussian_v(x, coords, t)

    final = run(name, steps, spacing, model=recording)
    assert len(ours) == len(theirs) == len(ts)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_within(a, b, atol=1e-5 * float(b.abs().max()), what=f"{name} {spacing} state {i} vs diffusers")
    last = x.clamp(-1, 1).view(len(SEEDS), *SIZE, 3).permute(0, 3, 1, 2)
    assert_within(final, last, atol=1e-5, what=f"{name} {spacing} final vs diffusers")


@pytest.mark.numeric
@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_multistep_history_follows_the_chunks_and_the_disk(name, tmp_path):
    """The per-point history is read and written chunk by chunk like x_t: chunked equals one pass (the plain
    callable sees the same values, in pieces) and a history kept on disk equals one kept in RAM, bitwise."""
    from test_sampling_memory import _model

    model = _model()
    cond = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    common = dict(seeds=[1, 2], diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 12),
                  settings=SamplingSettings(steps=6, guidance_scale=2.0, sampler=name, spacing="lambda"))
    with torch.no_grad():
        one = ddim_sample(model, cond, (12, 12), **common)
        ram = ddim_sample(model, cond, (12, 12), memory=SamplingMemory(chunk_points=50), **common)
        disk = ddim_sample(model, cond, (12, 12), memory=SamplingMemory(chunk_points=50, state_dir=tmp_path),
                           **common)
    assert torch.equal(torch.as_tensor(disk).clone(), ram)
    # the chunked forward's own rounding (≈ 1e-7), amplified by x̂_0 clipping and the large early log-SNR steps of
    # the lambda spacing: measured ≤ 2.0e-4 (avx2; 1.3e-4 default; 1 thread); DDIM on the same spacing 2.5e-5,
    # and every sampler ≤ 3.5e-6 on the linear spacing
    assert_within(ram, one, atol=1e-3, what=f"{name}: chunk_points=50 vs one pass")
    assert one.std() > 0.05


class CountingGaussian:
    """gaussian_v that counts network evaluations (rows of the batch / images)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, coords, t, cond=None, image_size=None, cond_mask=None):
        self.calls.append((int(t[0]), x.shape[0]))
        shift = torch.zeros_like(x) if cond_mask is None else (~cond_mask).view(-1, 1, 1).to(x.dtype) * 0.1
        return gaussian_v(x, coords, t) + shift  # the null condition predicts something else


def test_guidance_interval_skips_the_unconditional_pass_outside_it():
    cond = torch.zeros(len(SEEDS), 1)
    net = CountingGaussian()
    plain = run("dpmpp_2m", 6, model=net, cond=cond)
    assert all(rows == 2 for _, rows in net.calls)
    net.calls.clear()
    ts = sampling_timesteps(6, AB, "linear")  # 999, 799, 599, 400, 200, 0
    guided = run("dpmpp_2m", 6, model=net, cond=cond, guidance_scale=2.0, guidance_interval=(300, 700))
    assert [rows for _, rows in net.calls] == [2 * len(SEEDS) if 300 <= t <= 700 else len(SEEDS) for t in ts]
    assert not torch.equal(guided, plain)
    # an interval holding no step of the run is unguided sampling, bitwise
    net.calls.clear()
    none = run("dpmpp_2m", 6, model=net, cond=cond, guidance_scale=2.0, guidance_interval=(801, 998))
    assert torch.equal(none, plain) and all(rows == 2 for _, rows in net.calls)


class _StreamingGaussian(CountingGaussian):
    """The same network behind the streamed interface, in chunks of 4 points."""

    def stream(self, n_points, read, write, t, cond, *, chunk_points=None, cond_mask=None, cache_bytes=0):
        for start in range(0, n_points, 4):
            stop = min(n_points, start + 4)
            x, coords = read(start, stop)
            write(start, stop, self(x, coords, t, cond, None, cond_mask))


def test_guided_denoiser_wraps_a_plain_callable_and_the_stream_alike():
    model = CountingGaussian()
    x, coords, t = torch.randn(2, 10, 3), torch.rand(2, 10, 2), torch.full((2,), 500)
    wrapped = GuidedDenoiser(model, 3.0, (0, 999))
    direct = wrapped(x, coords, t, torch.zeros(2, 1))
    cond_out, uncond_out = gaussian_v(x, coords, t), gaussian_v(x, coords, t) + 0.1
    assert_within(direct, uncond_out + 3.0 * (cond_out - uncond_out), atol=1e-6, what="guided plain call")
    assert not hasattr(wrapped, "stream")  # a plain callable is called, not streamed
    streaming = GuidedDenoiser(_StreamingGaussian(), 3.0, (0, 999))
    parts = []
    streaming.stream(10, lambda s, e: (x[:, s:e], coords[:, s:e]), lambda s, e, out: parts.append(out), t,
                     torch.zeros(2, 1))
    assert len(parts) == 3 and torch.equal(torch.cat(parts, 1), direct)  # chunk by chunk, the same values


def test_bad_sampler_spacing_and_interval_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'euler'; valid: ddim, dpmpp_2m, unipc"):
        make_sampler("euler", AB, [999, 0])
    with pytest.raises(ValueError, match="unknown timestep spacing 'log'; valid: linear, lambda"):
        sampling_timesteps(10, AB, "log")
    with pytest.raises(ValueError, match="steps must be in"):
        sampling_timesteps(0, AB, "lambda")
    with pytest.raises(ValueError, match="reversed"):
        check_guidance_interval((700, 300), 1000)
    with pytest.raises(ValueError, match=r"outside the schedule's timesteps \[0, 999\]"):
        check_guidance_interval((300, 1000), 1000)
    assert check_guidance_interval(None, 1000) == (0, 999)


def test_lambda_spacing_starts_at_pure_noise_and_ends_at_zero():
    for steps in (1, 2, 3, 10, 50):
        ts = sampling_timesteps(steps, AB, "lambda")
        assert ts[0] == 999 and (steps == 1 or ts[-1] == 0)
        assert ts == sorted(set(ts), reverse=True) and len(ts) <= steps
    ts = sampling_timesteps(10, AB, "lambda")
    lam = [0.5 * math.log(float(AB[t]) / (1 - float(AB[t]))) for t in ts[1:]]
    gaps = [b - a for a, b in zip(lam, lam[1:])]
    assert max(gaps) < 1.5 * min(gaps)  # even in log-SNR (up to rounding to integer timesteps)
    assert lam[0] == pytest.approx(-math.log(80.0), abs=0.1)  # from EDM's σ_max = 80
