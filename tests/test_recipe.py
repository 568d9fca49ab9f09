"""Issue 27's training-recipe switches: the timestep law, Min-SNR-γ weighting, the power-function EMA; each a
pure function of (seed, step, slot), so a resumed run is the uninterrupted one bit for bit."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from infbrush.diffusion import cosine_alpha_bar
from infbrush.diffusion.loss import _draw_per_image
from infbrush.diffusion.noise_levels import LossWeighting, NoiseLevels, log_snr, timestep_from_u
from infbrush.errors import InfbrushError
from infbrush.train.data import image_generators
from infbrush.train.loop import train
from infbrush.train.schedules import power_ema_decay, power_ema_gamma
from tests.test_train import make_store, tiny_config

AB = cosine_alpha_bar(1000)


@pytest.mark.parametrize("kind", ["lognormal", "laplace"])
def test_timestep_law_puts_its_log_snr_where_the_law_says(kind):
    """Stratified draws through the inverse CDF reproduce the law's location (the mean of λ for the normal,
    the median for the Laplace) and spread, on the schedule's own discrete λ_t."""
    levels = NoiseLevels(kind)
    loc, scale = levels.params()
    pmf = levels.pmf(AB)
    assert pmf.shape == (1000,) and abs(float(pmf.sum()) - 1) < 1e-12 and (pmf >= 0).all()
    cdf = levels.cdf(AB)
    n = 4000
    ts = np.array([timestep_from_u((k + 0.5) / n, cdf) for k in range(n)])  # a perfectly stratified batch
    lam = log_snr(AB).numpy()[ts]
    centre = np.mean(lam) if kind == "lognormal" else np.median(lam)
    assert abs(centre - loc) < 0.05 * scale + 0.05, (centre, loc)
    spread = np.std(lam) if kind == "lognormal" else np.mean(np.abs(lam - loc))  # Laplace: E|λ-μ| = b
    assert abs(spread - scale) < 0.08 * scale, (spread, scale)
    # the uniform law stays the paper's: mass 1/T everywhere
    assert torch.allclose(NoiseLevels().pmf(AB), torch.full((1000,), 1e-3, dtype=torch.float64))


def test_stratified_draws_follow_the_law_and_the_default_path_is_untouched():
    cdf = NoiseLevels("laplace").cdf(AB)
    slots, batch = list(range(16)), 16
    ts = []
    for step in range(64):
        ts += _draw_per_image(image_generators(0, step, range(batch)), 1000, 0.1, (slots, batch), cdf)[0]
    lam = log_snr(AB).numpy()[np.array(ts)]
    assert abs(np.median(lam)) < 0.1  # Laplace(0, 0.5): half the draws on either side of SNR = 1
    # each batch keeps one draw per stratum of the law's CDF: sorted λ of a batch decrease with the slot
    one = _draw_per_image(image_generators(0, 0, range(batch)), 1000, 0.1, (slots, batch), cdf)[0]
    assert one == sorted(one)
    # without a law the uniform stratified draws are those of issue 12 (no change to trained demo models)
    a = _draw_per_image(image_generators(3, 5, range(4)), 1000, 0.1, (list(range(4)), 4))
    b = _draw_per_image(image_generators(3, 5, range(4)), 1000, 0.1, (list(range(4)), 4), None)
    assert a == b and [t // 250 for t in a[0]] == [0, 1, 2, 3]


def test_min_snr_weights_in_both_predictions():
    a = AB[[0, 500, 999]]
    snr = a / (1 - a)
    w_v = LossWeighting("min_snr", 5.0).weights(a, "v")
    w_eps = LossWeighting("min_snr", 5.0).weights(a, "eps")
    assert torch.allclose(w_v, torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / (snr + 1))
    assert torch.allclose(w_eps, torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr)
    assert w_v[0] < 1e-3 and w_eps[2] == 1.0  # low noise weighed down (v); high noise unclipped (ε: weight 1)
    assert LossWeighting().weights(a, "v") is None


def test_power_ema_matches_edm2_and_averages_a_fixed_share_of_the_run():
    assert power_ema_gamma(0.05) == pytest.approx(16.97, abs=0.01)  # EDM2's table: σ_rel 0.05 ↔ γ 16.97
    assert power_ema_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    gamma = power_ema_gamma(0.10)
    for n in (100, 1000):  # EMA of θ_s = s / n: the average weighs step s by s^γ → mean (γ+1)/(γ+2) of the run
        avg = 0.0
        for s in range(n):
            avg = power_ema_decay(gamma, s) * avg + (1 - power_ema_decay(gamma, s)) * (s + 1) / n
        assert avg == pytest.approx((gamma + 1) / (gamma + 2), abs=0.01)
    assert power_ema_decay(gamma, 0) == 0.0  # the first update copies the live weights


def test_recipe_switches_resume_bit_exactly(tmp_path):
    store = make_store(tmp_path / "images.h5", n=8, held_out=(7,), labels=[0, 1] * 4)
    recipe = dict(cond_labels=2, stratify_t=True, t_dist="lognormal", loss_weighting="min_snr", ema_kind="power",
                  ema_std=0.1, ckpt_every=3)
    assert train(tiny_config(tmp_path / "a", store, steps=6, **recipe)) == 0
    assert train(tiny_config(tmp_path / "b", store, steps=3, **recipe)) == 0
    assert train(tiny_config(tmp_path / "b", store, steps=6, **recipe)) == 0  # resumes from step 3
    a = torch.load(tmp_path / "a" / "ema.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "ema.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train(tiny_config(tmp_path / "c", store, steps=6, cond_labels=2, stratify_t=True)) == 0
    plain = torch.load(tmp_path / "c" / "ema.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # the switches change what is learned


def test_bad_recipe_flags_are_one_line_errors(tmp_path):
    from infbrush.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    base = ["--store", "s.h5", "--out", "o", "--uncond"]
    for extra, message in ((["--t-dist", "gamma"], "--t-dist: unknown timestep distribution 'gamma'; valid: "
                                                    "uniform, lognormal, laplace"),
                           (["--t-dist", "laplace", "--t-dist-scale", "0"], "--t-dist: .*scale must be > 0"),
                           (["--loss-weighting", "p2"], "--loss-weighting: unknown loss weighting 'p2'; valid"),
                           (["--loss-weighting", "min_snr", "--min-snr-gamma", "-1"], "--loss-weighting: .*gamma"),
                           (["--ema-kind", "karras"], "--ema-kind 'karras' is not one of rate, power"),
                           (["--ema-kind", "power", "--ema-std", "0.5"], "--ema-std: power EMA std")):
        with pytest.raises(InfbrushError, match=message):
            cli.config_from_args(parser.parse_args(base + extra))
    cfg = cli.config_from_args(parser.parse_args(base + ["--t-dist", "lognormal", "--loss-weighting", "min_snr",
                                                         "--ema-kind", "power", "--ema-std", "0.05"]))
    assert (cfg.t_dist, cfg.loss_weighting, cfg.ema_kind, cfg.ema_std) == ("lognormal", "min_snr", "power", 0.05)
    with pytest.raises(InfbrushError, match="training recipe: unknown timestep"):  # the library checks too
        train(tiny_config(tmp_path, make_store(tmp_path / "i.h5"), cond_labels=None, t_dist="beta"))


def test_diffusion_object_is_saved_and_read_one_way(tmp_path):
    """Every checkpoint and export records the process; commands rebuild it from there (or from the training
    config of older files), flags override, and a missing setting names the file and the flag."""
    from infbrush.diffusion.process import Diffusion

    store = make_store(tmp_path / "images.h5")
    assert train(tiny_config(tmp_path, store, steps=2, timesteps=500)) == 0
    export = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert export["diffusion"] == {"timesteps": 500, "mollify_sigma": 1 / 16, "schedule": "cosine"}
    assert Diffusion.of_checkpoint(export, "ema.pt") == Diffusion(500, 1 / 16)
    older = {"config": {"timesteps": 1000, "mollify_sigma": 0.01}}  # written before the "diffusion" entry
    assert Diffusion.of_checkpoint(older, "old.pt", timesteps=250) == Diffusion(250, 0.01)
    assert torch.equal(Diffusion(250, 0.01).alpha_bar(), cosine_alpha_bar(250))
    with pytest.raises(InfbrushError, match=r"^bare\.pt: the checkpoint records no 'mollify_sigma'; pass "
                                            r"--mollify-sigma$"):
        Diffusion.of_checkpoint({"config": {"timesteps": 10}}, "bare.pt")
    with pytest.raises(InfbrushError, match="x.pt: mollify_sigma must be in"):
        Diffusion.of_checkpoint(older, "x.pt", mollify_sigma=2.0)
