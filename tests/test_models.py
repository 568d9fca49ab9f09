"""Denoiser pieces: sparse operator, kNN interpolation, chunked forward, conditioning, registry (issue 5)."""
import math

import pytest
import torch

from infbrush.diffusion import lattice_coords
from infbrush.models import MODELS, ChunkedDenoiser, build_model, chunked_forward, count_parameters
from infbrush.models.interp import knn_partial, knn_to_grid, knn_window
from infbrush.models.sparse import SparseKernelIntegral, bilinear_gather
from numeric_helpers import assert_within


TINY = {"name": "infbrush", "in_channels": 3, "cond_dim": 4, "cano": True, "sparse_channels": 16,
        "sparse_grid": 16, "grid_size": 8, "grid_channels": 8, "channel_mult": [1, 2], "emb_dim": 32,
        "num_heads": 2, "grid_heads": 2}


def _model(**kw):
    torch.manual_seed(0)
    model = build_model(TINY | kw).eval()
    torch.nn.init.normal_(model.head.weight, std=0.3)  # the head is zero-initialised; make outputs non-trivial
    return model


def _inputs(batch=2, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 3, generator=g)
    coords = lattice_coords((32, 32))[torch.randperm(1024, generator=g)[:n]].expand(batch, -1, -1).clone()
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x, coords, t, torch.randn(batch, 4, generator=g)


def test_sparse_operator_is_discretisation_invariant():
    torch.manual_seed(0)
    op = SparseKernelIntegral(4, grid_size=16, kernel_size=5)
    coords = lattice_coords((64, 64)).unsqueeze(0)  # (1, 4096, 2)
    x, y = coords[..., 0:1], coords[..., 1:2]
    f = lambda c: torch.cat([torch.sin(2 * math.pi * c[..., :1]), torch.cos(2 * math.pi * c[..., 1:]),
                             c[..., :1] * c[..., 1:], c[..., :1] ** 2], -1)
    g = lambda c: torch.cat([torch.cos(6 * c[..., :1]), c[..., 1:] ** 3, torch.sin(5 * c[..., 1:]), c[..., :1]], -1)
    sub = coords[:, torch.randperm(4096, generator=torch.Generator().manual_seed(1))[:1024]]  # 25% density
    integral = lambda c, fn, at: bilinear_gather(op.finalize(op.partial(fn(c), c)), at)  # (1, n, 4)
    dense, sparse = integral(coords, f, sub), integral(sub, f, sub)
    other = integral(sub, g, sub)
    err = (dense - sparse).norm() / dense.norm()
    assert err < 0.06, f"relative difference between densities {err:.3f}"
    assert (dense - other).norm() / dense.norm() > 5 * err  # a different function gives a clearly different output
    out = op(f(sub), sub, op.finalize(op.partial(f(sub), sub)))
    assert out.shape == (1, 1024, 4)


@pytest.mark.numeric
def test_knn_interpolation_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for n, grid in ((500, 8), (40, 8), (3000, 16)):
        feats, coords = torch.randn(2, n, 4, generator=g), torch.rand(2, n, 2, generator=g)
        out = knn_to_grid(knn_partial(feats, coords, grid, 3, knn_window(n, grid, 12.0)), grid)  # (B, C, G, G)
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        nodes = (torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5) / grid
        d2, idx = (torch.cdist(nodes.double().expand(2, -1, -1), coords.double()) ** 2).topk(3, largest=False)
        w = 1 / (d2 + (1e-3 / grid) ** 2)
        w = w / w.sum(-1, keepdim=True)
        ref = (w.unsqueeze(-1).float() * torch.stack([feats[b][idx[b]] for b in range(2)])).sum(2)
        assert out.shape == (2, 4, grid, grid)
        # measured ≤ 3.6e-7 (avx2, default, native=AVX2; 1 thread)
        assert_within(out, ref.transpose(1, 2).reshape(2, 4, grid, grid), atol=5e-6,
                      what=f"knn_to_grid vs brute force (n={n}, grid={grid})")


@pytest.mark.numeric
@pytest.mark.parametrize("cano,extra", [(True, {}), (False, {}),
                                        (True, {"value_skip": True, "cond_film": True, "prediction": "v"})])
def test_chunked_forward_equals_unchunked(cano, extra):
    model = _model(cano=cano, **extra)
    if model.value_skip is not None:  # zero-initialised: make the skip of x_t non-trivial
        torch.nn.init.normal_(model.value_skip.weight, std=0.3)
    x, coords, t, cond = _inputs()
    mask = torch.tensor([True, False])
    with torch.no_grad():
        full = model(x, coords, t, cond, (32, 32), cond_mask=mask)
        assert full.shape == (2, 300, 3) and full.dtype == torch.float32 and full.abs().mean() > 0.05
        for chunk in (64, 100, 299):
            got = chunked_forward(model, x, coords, t, cond, (32, 32), chunk_points=chunk, cond_mask=mask)
            # measured ≤ 1.9e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
            assert_within(got, full, atol=1e-5, rtol=1e-5, what=f"chunked_forward chunk_points={chunk} vs one pass")
        # measured ≤ 1.7e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
        assert_within(ChunkedDenoiser(model, 77)(x, coords, t, cond, (32, 32), cond_mask=mask), full, atol=1e-5,
                      rtol=1e-5, what="ChunkedDenoiser(77) vs one pass")


@pytest.mark.numeric
def test_chunked_forward_on_a_full_lattice_with_ties():
    model = _model()  # 32² lattice onto an 8² grid: every grid node is equidistant from 4 pixels
    coords = lattice_coords((32, 32)).unsqueeze(0)
    x, t, cond = torch.randn(1, 1024, 3), torch.tensor([500]), torch.randn(1, 4)
    with torch.no_grad():
        full = model(x, coords, t, cond, (32, 32))
        # measured ≤ 1.4e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
        assert_within(chunked_forward(model, x, coords, t, cond, (32, 32), chunk_points=100), full, atol=1e-5,
                      rtol=1e-5, what="chunked_forward chunk_points=100 vs one pass, tied lattice")


@pytest.mark.numeric
def test_outputs_do_not_depend_on_the_batch():
    model = _model()
    x, coords, t, cond = _inputs()
    with torch.no_grad():
        both = model(x, coords, t, cond, (32, 32))
        alone = model(x[1:], coords[1:], t[1:], cond[1:], (32, 32))
    # measured ≤ 1.2e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
    assert_within(both[1:], alone, atol=1e-5, rtol=1e-5, what="image 1 in a batch of 2 vs alone")


@pytest.mark.numeric
def test_condition_and_null_condition():
    model = _model()
    x, coords, t, cond = _inputs()
    with torch.no_grad():
        cond_out = model(x, coords, t, cond, (32, 32))
        null_out = model(x, coords, t, None, (32, 32))
        masked = model(x, coords, t, cond, (32, 32), cond_mask=torch.tensor([False, True]))
        other = model(x, coords, t, torch.randn(2, 4), (32, 32))
    # measured exactly 0 (avx2, default, native=AVX2; 1 thread); not bitwise by design: a small tolerance
    assert_within(masked[0], null_out[0], atol=1e-7, what="cond_mask=False row vs cond=None")
    assert_within(masked[1], cond_out[1], atol=1e-7, what="cond_mask=True row vs unmasked")
    assert not torch.allclose(cond_out, other, atol=1e-4)  # the condition changes the output
    ablation = _model(cano=False)
    assert count_parameters(ablation) < count_parameters(model)
    with pytest.raises(ValueError, match="cond"):
        model(x, coords, t, torch.randn(2, 5), (32, 32))


def test_unconditional_model_and_time_dependence():
    model = _model(cond_dim=0, in_channels=4)
    g = torch.Generator().manual_seed(0)
    x, coords = torch.randn(1, 200, 4, generator=g), torch.rand(1, 200, 2, generator=g)
    with torch.no_grad():
        a = model(x, coords, torch.tensor([10]), None, (64, 64))
        b = model(x, coords, torch.tensor([900.0]), None, (64, 64))
    assert a.shape == (1, 200, 4) and not torch.allclose(a, b, atol=1e-4)


def test_presets_build():
    from infbrush.models import PRESETS, model_args_from_preset

    args = model_args_from_preset("demo", in_channels=4, cond_dim=8, cano=False)
    assert args["in_channels"] == 4 and args["cond_dim"] == 8 and args["cano"] is False and set(PRESETS) >= {"demo"}
    assert 3e5 < count_parameters(build_model(args)) < 2e6
    with pytest.raises(ValueError, match="demo"):
        model_args_from_preset("huge", in_channels=3, cond_dim=0)


def test_build_model_validates():
    assert MODELS["infbrush"] is type(build_model({"name": "infbrush"}))
    with pytest.raises(ValueError, match="infbrush"):
        build_model({"name": "nope"})
    with pytest.raises(ValueError, match="bogus"):
        build_model(TINY | {"bogus": 1})
    x, coords, t, cond = _inputs()
    with pytest.raises(ValueError, match="coords"):
        _model()(x, coords[:, :10], t, cond, (32, 32))


def test_training_step_repeats_bit_for_bit_on_two_threads():
    """Two intra-op threads, as the pipeline trains and samples: the same forward and backward, repeated, gives
    the same bits. The lattice splat and the kNN gather's backward add many points into one node or row; with
    atomic float adds (index_put accumulate, advanced indexing's backward) the order of those adds, hence the
    rounding, followed the threads' timing and changed with the machine's load."""
    model = _model()
    g = torch.Generator().manual_seed(1)
    n = 4096  # one image, enough points that both threads share its lattice nodes
    x = torch.randn(1, n, 3, generator=g)
    coords = torch.rand(1, n, 2, generator=g)
    t, cond = torch.tensor([500]), torch.randn(1, 4, generator=g)
    torch.set_num_threads(2)  # the autouse fixture restores its own setting afterwards
    results = set()
    for _ in range(8):
        model.zero_grad()
        out = model(x, coords, t, cond, (64, 64))
        out.square().mean().backward()
        blob = b"".join(p.grad.numpy().tobytes() for p in model.parameters() if p.grad is not None)
        results.add(hash(out.detach().numpy().tobytes() + blob))
    assert len(results) == 1, f"{len(results)} different results in 8 repeats of one forward + backward"
