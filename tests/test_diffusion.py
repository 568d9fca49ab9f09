"""Schedule, DDIM step, mollified noise, point sampling and the training loss (issue 5)."""
import math

import pytest
import torch

from infbrush.diffusion import (
    T, cosine_alpha_bar, ddim_step, ddim_timesteps, lattice_coords, mollified_noise_grid,
    Diffusion, PointLoss, mollified_noise_points, mollify_image, sample_points, training_loss,
)
from infbrush.models import build_model
from numeric_helpers import assert_within


@pytest.mark.numeric
def test_cosine_schedule_shape_range_and_monotone():
    ab = cosine_alpha_bar(T)
    assert ab.shape == (T,) and ab.dtype == torch.float64
    assert torch.all(ab[1:] < ab[:-1])
    assert 0.999 < float(ab[0]) < 1.0 and 0.0 < float(ab[-1]) < 1e-3
    # the cosine law: ᾱ_t ≈ f(t+1)/f(0) with f(u) = cos²((u/T + s)/(1+s) π/2) away from the beta clip
    f = lambda u: math.cos((u / T + 0.008) / 1.008 * math.pi / 2) ** 2
    # measured relative ≤ 9.0e-16 (avx2, default, native=AVX2; 1 thread)
    assert_within(float(ab[499]), f(500) / f(0), atol=0.0, rtol=1e-14, what="ᾱ_499 vs the cosine law (float64)")


@pytest.mark.numeric
def test_ddim_step_matches_the_ddim_equations():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 7, 2, generator=g), torch.randn(3, 7, 2, generator=g)
    a_t, a_prev = 0.3, 0.8
    x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
    x_prev = ddim_step(x_t, eps, a_t, a_prev)
    # eq. 12 of Song et al. with eta = 0: x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps
    # measured ≤ 2.4e-7 (avx2, default, native=AVX2; 1 thread)
    assert_within(x_prev, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps, atol=5e-6,
                  what="ddim_step vs eq. 12")
    # measured ≤ 1.8e-7 (avx2, default, native=AVX2; 1 thread)
    assert_within(ddim_step(x_t, eps, a_t, 1.0), x0, atol=2e-6, what="ddim_step to ᾱ=1 vs x0")
    # per-image ᾱ as (B,) tensors broadcast over the points
    a_ts, a_ps = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64), torch.tensor([0.8, 0.6, 0.95])
    x_t3 = a_ts.sqrt().view(3, 1, 1) * x0 + (1 - a_ts).sqrt().view(3, 1, 1) * eps
    out = ddim_step(x_t3.float(), eps, a_ts, a_ps)
    want = a_ps.double().sqrt().view(3, 1, 1) * x0 + (1 - a_ps.double()).sqrt().view(3, 1, 1) * eps
    assert out.dtype == torch.float32
    assert_within(out, want, atol=2e-6,  # measured ≤ 1.4e-7 (avx2, default, native=AVX2; 1 thread)
                  what="ddim_step with per-image ᾱ (fp32) vs eq. 12 in float64")
    with pytest.raises(ValueError, match="shape"):
        ddim_step(x_t, eps[:, :3], a_t, a_prev)


def test_ddim_timesteps():
    ts = ddim_timesteps(50)
    assert len(ts) == 50 and ts[0] == T - 1 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    with pytest.raises(ValueError):
        ddim_timesteps(0)


@pytest.mark.numeric
def test_mollified_noise_is_one_function_at_every_resolution():
    sigma = 1 / 16
    coarse = mollified_noise_grid((16, 20), 123, sigma, 3)  # (C, H, W)
    fine = mollified_noise_grid((48, 60), 123, sigma, 3)  # 3x: pixel centres of the coarse lattice recur
    assert coarse.shape == (3, 16, 20)
    # measured exactly 0 (avx2, default, native=AVX2; 1 thread); not bitwise by design: a small tolerance
    assert_within(fine[:, 1::3, 1::3], coarse, atol=1e-7, what="noise grid 48x60 subsampled vs 16x20")
    # the point evaluation is the same function
    pts = mollified_noise_points(lattice_coords((16, 20)), 123, sigma, 3)  # (N, C)
    # measured ≤ 9.5e-7 (avx2, default, native=AVX2; 1 thread)
    assert_within(pts.T.reshape(3, 16, 20), coarse, atol=1e-5, what="noise at points vs grid")
    # a different seed is a different function
    assert not torch.allclose(mollified_noise_grid((16, 20), 124, sigma, 3), coarse, atol=0.1)


def test_mollified_noise_statistics():
    sigma = 1 / 64
    n = mollified_noise_grid((256, 256), 7, sigma, 2)
    assert abs(float(n.mean())) < 0.05 and abs(float(n.std()) - 1.0) < 0.05
    # neighbour correlation follows the Gaussian kernel: corr(d) = exp(-d² / (4σ²))
    corr = torch.corrcoef(torch.stack([n[0, :, :-1].flatten(), n[0, :, 1:].flatten()]))[0, 1]
    assert float(corr) == pytest.approx(math.exp(-(1 / 256) ** 2 / (4 * sigma**2)), abs=0.02)
    with pytest.raises(ValueError, match="mollify_sigma"):
        mollified_noise_grid((8, 8), 0, 0.0, 1)


@pytest.mark.numeric
def test_mollify_image_keeps_constants_and_smooths():
    img = torch.full((1, 3, 32, 32), 0.25)
    # measured ≤ 3.0e-8 (avx2, default, native=AVX2; 1 thread)
    assert_within(mollify_image(img, 1 / 32), img, atol=5e-7, what="mollified constant vs constant")
    rough = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(mollify_image(rough, 1 / 32).std()) < 0.5 * float(rough.std())


@pytest.mark.numeric
def test_sample_points_without_replacement_and_per_image_seeds():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 12, 10, generator=g) * 2 - 1
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    coords, values, index = sample_points(images, 40, gens)
    assert coords.shape == (2, 40, 2) and values.shape == (2, 40, 3) and index.shape == (2, 40)
    assert coords.dtype == torch.float32 and index.dtype == torch.long
    for b in range(2):
        assert index[b].unique().numel() == 40
        row, col = index[b] // 10, index[b] % 10
        assert torch.equal(values[b], images[b][:, row, col].T)
        # measured exactly 0 (avx2, default, native=AVX2; 1 thread); not bitwise by design: a small tolerance
        assert_within(coords[b], torch.stack([(col + 0.5) / 10, (row + 0.5) / 12], -1), atol=1e-7,
                      what="sampled coords vs pixel centres of their index")
    # image 1 alone with the same generator seed gets the same subset
    _, _, alone = sample_points(images[1:], 40, [torch.Generator().manual_seed(6)])
    assert torch.equal(alone[0], index[1])
    # the dense path (n close to H·W) is also without replacement
    _, _, full = sample_points(images[:1], 120, [torch.Generator().manual_seed(0)])
    assert full[0].sort().values.tolist() == list(range(120))
    with pytest.raises(ValueError, match="n_points"):
        sample_points(images, 121, gens)
    with pytest.raises(ValueError, match="generator"):
        sample_points(images, 4, gens[:1])


def _tiny(cond_dim=4):
    return build_model({"name": "infbrush", "in_channels": 3, "cond_dim": cond_dim, "cano": True,
                        "sparse_channels": 16, "sparse_grid": 16, "grid_size": 8, "grid_channels": 8,
                        "channel_mult": [1, 2], "emb_dim": 32, "num_heads": 2, "grid_heads": 2})


@pytest.mark.numeric
def test_training_loss_reproducible_and_shardable():
    torch.manual_seed(0)
    model = _tiny().eval()
    torch.nn.init.normal_(model.head.weight, std=0.2)
    g = torch.Generator().manual_seed(3)
    images, cond = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, torch.randn(2, 4, generator=g)
    ab = cosine_alpha_bar()

    def loss(idx, seeds):
        return training_loss(model, images[idx], cond[idx], [torch.Generator().manual_seed(s) for s in seeds],
                             loss=PointLoss(64, cond_drop_prob=0.3), diffusion=Diffusion(len(ab), 1 / 16))

    both = loss(slice(0, 2), (10, 11))
    assert both.dim() == 0 and torch.isfinite(both)
    # measured exactly 0 (avx2, default, native=AVX2; 1 thread): bitwise by design
    # (the same computation, same seeds, again)
    assert_within(loss(slice(0, 2), (10, 11)), both, atol=0.0, what="training loss, rerun")
    # a DDP shard holding one image with its generator reproduces its share of the single-process loss
    halves = loss(slice(0, 1), (10,)) + loss(slice(1, 2), (11,))
    # measured ≤ 1.2e-7 (default; exactly 0 on avx2, native=AVX2; 1 thread)
    assert_within(halves / 2, both, atol=2e-6, what="training loss, mean of per-image shards vs batch")
    assert not torch.allclose(both, loss(slice(0, 2), (12, 13)))
    both.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
