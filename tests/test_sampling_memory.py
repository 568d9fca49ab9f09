"""Memory-bounded DDIM sampling: streamed chunks, x_t on disk, chunk/cache/batch independence (issue 5, 8)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from infbrush.models import chunked_forward
from infbrush.models.chunked import streamed_forward
from infbrush.runtime.chunks import chunk_spans
from numeric_helpers import assert_within
from test_sampling_core import TINY, _model, _sample  # the same tiny model and sampler


class CallLog:
    """The real model, recording the batch and the largest point count of each call it receives."""

    def __init__(self, model):
        self.model, self.batches, self.max_points = model, [], 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def stream(self, n_points, read, write, t, cond, **kwargs):  # the sampler's entry: stream through this log
        from infbrush.models.chunked import streamed_forward

        streamed_forward(self, n_points, read, write, t, cond, **kwargs)

    def begin(self, t, cond, cond_mask, n_total):
        self.batches.append(t.shape[0])
        return self.model.begin(t, cond, cond_mask, n_total)

    def segment(self, k, h, x, coords, ctx, summ):
        self.max_points = max(self.max_points, x.shape[1])
        return self.model.segment(k, h, x, coords, ctx, summ)


@pytest.mark.numeric
def test_output_does_not_depend_on_chunking_cache_or_where_x_t_lives(tmp_path):
    model = _model()
    cond = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    size = (10, 14)  # 140 points: chunks of 17 leave a short last chunk
    ref = _sample(model, cond, size, [5, 6])
    assert ref.shape == (2, 3, 10, 14) and ref.min() >= -1 and ref.max() <= 1
    for chunk in (17, 139):
        plain = _sample(model, cond, size, [5, 6], chunk_points=chunk, cache_bytes=0)
        # measured ≤ 1.6e-6 (avx2, default, native=AVX2; 1 thread)
        assert_within(plain, ref, atol=2e-5, what=f"sample chunk_points={chunk} vs one pass")
        # the activation cache only skips recomputation: identical numbers, whatever the budget
        for cache in (1 << 30, 3000) if chunk == 17 else ():
            assert torch.equal(_sample(model, cond, size, [5, 6], chunk_points=chunk, cache_bytes=cache), plain)
        on_disk = _sample(model, cond, size, [5, 6], chunk_points=chunk, state_dir=tmp_path / "state")
        assert torch.equal(on_disk, plain), chunk
    assert os.listdir(tmp_path / "state") == []  # the scratch file is anonymous: nothing is left behind
    alone = _sample(model, cond[1:], size, [6], chunk_points=17, state_dir=tmp_path / "state")
    # nor on the batch; measured ≤ 1.1e-6 (avx2, default, native=AVX2; 1 thread)
    assert_within(alone[0], ref[1], atol=2e-5,
                  what="image 1 alone, chunk_points=17 on disk vs in a batch of 2, one pass")


@pytest.mark.numeric
def test_guided_sampling_is_chunk_independent_and_scale_one_skips_the_unconditional_pass():
    model = _model()
    cond = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    log = CallLog(model)
    plain = _sample(log, cond, (8, 8), [1, 2], chunk_points=20)
    assert set(log.batches) == {2}  # guidance scale 1: the conditional pass alone
    log.batches.clear()
    guided = _sample(log, cond, (8, 8), [1, 2], chunk_points=20, guidance_scale=2.5)
    assert set(log.batches) == {4}  # conditional and unconditional rows in one batched call
    assert not torch.allclose(guided, plain, atol=1e-3)
    # measured ≤ 3.4e-6 (avx2, default, native=AVX2; 1 thread)
    assert_within(guided, _sample(model, cond, (8, 8), [1, 2], guidance_scale=2.5), atol=5e-5,
                  what="guided sample chunk_points=20 vs one pass")


@pytest.mark.numeric
def test_guidance_interval_guides_only_the_high_noise_steps():
    model = _model()
    cond = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    log = CallLog(model)
    plain = _sample(log, cond, (8, 8), [1, 2])
    log.batches.clear()
    interval = _sample(log, cond, (8, 8), [1, 2], guidance_scale=2.5, guidance_interval=(600, 999))
    assert sorted(set(log.batches)) == [2, 4]  # unguided low-noise steps run the conditional pass alone
    assert not torch.allclose(interval, plain, atol=1e-3)
    everywhere = _sample(model, cond, (8, 8), [1, 2], guidance_scale=2.5)
    assert not torch.allclose(interval, everywhere, atol=1e-3)
    # an interval above every step is no guidance; measured exactly 0 (avx2, default, native=AVX2; 1 thread):
    # bitwise by design (every step runs the same conditional pass alone)
    # (the 3 steps are t = 999, 500, 0: an interval between them holds none)
    assert_within(_sample(model, cond, (8, 8), [1, 2], guidance_scale=2.5, guidance_interval=(501, 998)), plain,
                  atol=0.0, what="guidance interval holding no step vs no guidance")


def test_the_model_never_sees_more_points_than_a_chunk():
    log = CallLog(_model())
    _sample(log, torch.randn(1, 4), (16, 16), [0], chunk_points=40)
    assert log.max_points == 40
    log.max_points = 0
    _sample(log, torch.randn(1, 4), (16, 16), [0])
    assert log.max_points == 256  # no chunking: one pass over the image


@pytest.mark.numeric
def test_streamed_forward_reads_and_writes_each_chunk_in_order_and_equals_forward():
    model = _model()
    g = torch.Generator().manual_seed(3)
    x, coords = torch.randn(2, 90, 3, generator=g), torch.rand(2, 90, 2, generator=g)
    t, cond = torch.tensor([10, 700]), torch.randn(2, 4, generator=g)
    with torch.no_grad():
        full = model(x, coords, t, cond)
        events, parts = [], []

        def read(s, e):
            events.append(("read", s, e))
            return x[:, s:e], coords[:, s:e]

        def write(s, e, eps):
            events.append(("write", s, e))
            parts.append(eps)

        streamed_forward(model, 90, read, write, t, cond, chunk_points=25, cache_bytes=0)
    spans = chunk_spans(90, 25)
    assert spans == [(0, 25), (25, 50), (50, 75), (75, 90)]
    writes = [(s, e) for kind, s, e in events if kind == "write"]
    assert writes == spans
    for s, e in spans:  # a chunk is written after its last read, so the caller may update x in place
        last_read = max(i for i, ev in enumerate(events) if ev == ("read", s, e))
        assert events.index(("write", s, e)) > last_read
    # measured ≤ 1.8e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
    assert_within(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5, what="streamed_forward chunks of 25 vs forward")
    with torch.no_grad():
        cached = chunked_forward(model, x, coords, t, cond, chunk_points=25, cache_bytes=1 << 20)
    # measured ≤ 1.8e-6 (avx2, default, native=AVX2; 1 thread); 10x would exceed the original 1e-5: kept
    assert_within(cached, full, atol=1e-5, rtol=1e-5, what="chunked_forward with activation cache vs forward")


def test_bad_chunk_and_cache_arguments_are_named():
    model = _model()
    with pytest.raises(ValueError, match="chunk_points"):
        _sample(model, None, (4, 4), [0], chunk_points=0)
    with pytest.raises(ValueError, match="cache_bytes"):
        _sample(model, None, (4, 4), [0], cache_bytes=-1)


_CHILD = textwrap.dedent("""
    import json, resource, sys, tempfile, torch
    from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
    from infbrush.models import build_model
    torch.set_num_threads(1)
    model = build_model(json.loads(sys.argv[2])).eval()
    side, scratch = int(sys.argv[1]), tempfile.mkdtemp()
    kw = dict(seeds=[0], diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / 16), settings=SamplingSettings(steps=1),
              memory=SamplingMemory(chunk_points=2048, cache_bytes=0, state_dir=scratch))
    ddim_sample(model, None, (64, 64), **kw)  # warm-up: allocator pools, kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ddim_sample(model, None, (side, side), **kw)
    print(json.dumps({"growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
""")


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_output_size():
    """16x the pixels at a fixed chunk with x_t on disk: peak RSS grows by far less than the 12 B/px state."""
    args = {**TINY, "cond_dim": 0}
    growth = {}
    for side in (128, 512):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(side), json.dumps(args)], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        growth[side] = json.loads(out.stdout.strip().splitlines()[-1])["growth_kb"] * 1024
    # the old sampler kept ~129 B/px between steps (32 MiB more at 512²); now x_t is on disk and only x_T's
    # noise bands (≤ 512 rows, 3 MiB here) and the chunk's activations are in RAM
    assert growth[512] - growth[128] < 12 * 2**20, growth
