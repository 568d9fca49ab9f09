"""The kNN selection reused across sampling steps (issue 13): same images, and a stale plan is never used."""
import pytest
import torch

from infbrush.diffusion import Diffusion, SamplingSettings, ddim_sample
from infbrush.models import build_model, model_args_from_preset
from infbrush.models.interp import knn_partial, knn_window

pytestmark = pytest.mark.numeric  # cached vs uncached: both tests are bitwise claims (torch.equal)

TINY = {"sparse_channels": 16, "sparse_grid": 16, "emb_dim": 32, "cond_tokens": 2, "num_heads": 2, "grid_size": 16,
        "grid_channels": 8, "channel_mult": [1, 2], "fourier_freqs": 3}


def test_cached_plan_gives_the_same_state_and_is_dropped_when_coords_change():
    g = torch.Generator().manual_seed(0)
    coords, feats = torch.rand(2, 200, 2, generator=g), torch.randn(2, 200, 5, generator=g)
    w = knn_window(200, 16, 12.0)
    cache: dict = {}
    first = knn_partial(feats, coords, 16, 3, w, cache=cache)
    assert "plan" in cache
    again = knn_partial(feats * 2, coords, 16, 3, w, cache=cache)  # same coords: plan reused, new features
    assert torch.equal(again.index, first.index) and torch.equal(again.feats, first.feats * 2)
    moved = coords.flip(1)  # other coordinates: a new plan, equal to one computed without a cache
    assert torch.equal(knn_partial(feats, moved, 16, 3, w, cache=cache).index,
                       knn_partial(feats, moved, 16, 3, w).index)


def test_sampling_with_the_cache_equals_sampling_without():
    torch.manual_seed(0)
    model = build_model(model_args_from_preset("demo", in_channels=3, cond_dim=4, cano=True) | TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))

    def sample():
        with torch.no_grad():
            return ddim_sample(model, torch.eye(4)[:2], (24, 24), seeds=[5, 6],
                               diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 24),
                               settings=SamplingSettings(steps=4, guidance_scale=2.0))

    model.train()  # no dropout in the preset: train mode only switches the cache off
    plain = sample()
    model.eval()
    cached = sample()
    assert model._knn_cache  # the eval-mode sampler kept a plan
    assert torch.equal(plain, cached)
