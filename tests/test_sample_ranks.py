"""One image sampled by several processes (issue 13): chunks split over ranks, stage partials combined.

Real multi-process runs: `torchrun` with 2 gloo processes (library call and the `infbrush sample` CLI) and, with
the local SLURM cluster, a 2-task `srun` job. Each result is compared with the single-process one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
from infbrush.models import build_model, model_args_from_preset
from infbrush.models.ranks import rank_spans

TINY = {"sparse_channels": 16, "sparse_grid": 16, "emb_dim": 32, "cond_tokens": 2, "num_heads": 2, "grid_size": 16,
        "grid_channels": 8, "channel_mult": [1, 2], "fourier_freqs": 3}
SIZE, CHUNK, STEPS = 32, 200, 3  # 1,024 points in 6 chunks (the last one short)

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import torch.distributed as dist
    from infbrush.diffusion import Diffusion, SamplingMemory, SamplingSettings, ddim_sample
    from infbrush.models import build_model
    from infbrush.models.ranks import RankSplitDenoiser
    from infbrush.runtime.distributed import cleanup_distributed, init_distributed

    torch.set_num_threads(int(sys.argv[3]))
    saved = torch.load(sys.argv[1], weights_only=True)
    model = build_model(saved["args"]).eval()
    model.load_state_dict(saved["state"])
    info = init_distributed("cpu")
    with torch.no_grad():
        x = ddim_sample(RankSplitDenoiser(model), saved["cond"], ({size}, {size}), seeds=[3, 4],
                        diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / {size}),
                        settings=SamplingSettings(steps={steps}, guidance_scale=2.0, sampler=sys.argv[4],
                                                  spacing=sys.argv[5]),
                        memory=SamplingMemory(chunk_points={chunk}))
    if info.rank == 0:
        torch.save(x.clone(), sys.argv[2])
    cleanup_distributed()
    """
).format(size=SIZE, steps=STEPS, chunk=CHUNK)


def _tiny_model(cond_dim: int = 4):
    torch.manual_seed(0)
    args = model_args_from_preset("demo", in_channels=3, cond_dim=cond_dim, cano=True) | TINY
    model = build_model(args).eval()
    with torch.no_grad():  # non-zero head and skip, so that ε̂ depends on every stage
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, args


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_rank_spans_split_the_chunks_contiguously_and_refuse_idle_ranks():
    spans = [rank_spans(1000, 150, r, 3) for r in range(3)]  # 7 chunks → 3, 2, 2, dealt round-robin
    assert [len(s) for s in spans] == [3, 2, 2]
    assert spans[0] == [(0, 150), (450, 600), (900, 1000)] and spans[2] == [(300, 450), (750, 900)]
    # round j of the chunk loop holds chunks 3j, 3j + 1, 3j + 2 on ranks 0, 1, 2: rank order is chunk order
    rounds = [p for j in range(3) for s in spans if j < len(s) for p in [s[j]]]
    assert rounds[0] == (0, 150) and rounds[-1] == (900, 1000)
    assert all(a[1] == b[0] for a, b in zip(rounds, rounds[1:]))
    with pytest.raises(ValueError, match="3 processes for 2 chunks"):
        rank_spans(300, 150, 0, 3)


@pytest.mark.parametrize("threads, sampler, spacing", [(1, "ddim", "linear"), (2, "ddim", "linear"),
                                                      (1, "unipc", "lambda")])
@pytest.mark.numeric
def test_two_gloo_ranks_sample_the_single_process_image_bitwise(tmp_path: Path, threads: int, sampler: str,
                                                                 spacing: str):
    """The ranks fold every stage's chunk partials in the single process's order (``RankReduce``), so at equal
    thread counts the image is the same bits on any CPU capability (CI runs this under ATEN_CPU_CAPABILITY=avx2
    and =default; before the order-exact fold, AVX2 at 1 thread gave a difference of 3e-4)."""
    model, args = _tiny_model()
    cond = torch.nn.functional.one_hot(torch.tensor([1, 3]), 4).float()
    torch.save({"args": args, "state": model.state_dict(), "cond": cond}, tmp_path / "model.pt")
    (tmp_path / "run.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "run.py"), str(tmp_path / "model.pt"), str(tmp_path / "two.pt"),
                           str(threads), sampler, spacing], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the ranks' thread count: matmul blocking (hence rounding) follows it
    try:
        with torch.no_grad():
            one = ddim_sample(model, cond, (SIZE, SIZE), seeds=[3, 4],
                              diffusion=Diffusion(timesteps=1000, mollify_sigma=1 / SIZE),
                              settings=SamplingSettings(steps=STEPS, guidance_scale=2.0, sampler=sampler,
                                                        spacing=spacing),
                              memory=SamplingMemory(chunk_points=CHUNK))
    finally:
        torch.set_num_threads(before)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two.shape == one.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(two, one), f"max difference {(two - one).abs().max().item():.3g}"
    assert one.std() > 0.05  # a real image, not a constant both runs could agree on trivially


def _export(tmp_path: Path) -> Path:
    model, args = _tiny_model()
    path = tmp_path / "ema.pt"
    torch.save({"model": model.state_dict(), "model_args": args, "step": 1,
                "config": {"mollify_sigma": 1 / SIZE, "timesteps": 1000, "cond_labels": 4},
                "label_names": ["a", "b", "c", "d"]}, path)
    return path


def _sample_cmd(weights: Path, out: Path, chunk: int = CHUNK) -> list[str]:
    return ["-m", "infbrush", "sample", "--weights", str(weights), "--out", str(out), "--resolution", str(SIZE),
            "--labels", "0,2", "--per-class", "1", "--steps", str(STEPS), "--guidance-scale", "2",
            "--chunk-points", str(chunk), "--device", "cpu", "--no-progress"]


def _same_outputs(a: Path, b: Path) -> None:
    files = sorted(p.name for p in (a / str(SIZE)).glob("*.png"))
    assert files == sorted(p.name for p in (b / str(SIZE)).glob("*.png")) and len(files) == 2
    for name in files:
        x = np.asarray(Image.open(a / str(SIZE) / name)).astype(int)
        y = np.asarray(Image.open(b / str(SIZE) / name)).astype(int)
        assert np.array_equal(x, y), f"{name}: max difference {np.abs(x - y).max()}"  # same bits before uint8
    ia, ib = (json.loads((d / str(SIZE) / "index.json").read_text()) for d in (a, b))
    assert [e["name"] for e in ia["images"]] == [e["name"] for e in ib["images"]]


@pytest.mark.numeric
def test_sample_cli_under_torchrun_writes_the_single_process_images_once(tmp_path: Path):
    weights = _export(tmp_path)
    one = subprocess.run([sys.executable] + _sample_cmd(weights, tmp_path / "one"), capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(launcher + _sample_cmd(weights, tmp_path / "two"), capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("2 images at") == 1  # rank 0 reports (and writes) alone
    _same_outputs(tmp_path / "one", tmp_path / "two")
    # more processes than chunks: one line naming the problem, nothing written
    bad = subprocess.run(launcher + _sample_cmd(weights, tmp_path / "bad", chunk=SIZE * SIZE),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert bad.returncode != 0 and "2 processes for 1 chunks" in bad.stderr, bad.stderr[-2000:]
    assert not list((tmp_path / "bad").rglob("*.png"))


@pytest.mark.slurm
@pytest.mark.slow
def test_sample_as_a_two_task_slurm_job(tmp_path: Path):
    from slurm_helpers import require_slurm

    require_slurm()
    weights = _export(tmp_path)
    one = subprocess.run([sys.executable] + _sample_cmd(weights, tmp_path / "one"), capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(["srun", "-n", "2", "--mem-per-cpu=2000", sys.executable] +
                         _sample_cmd(weights, tmp_path / "two"), capture_output=True, text=True, env=_env(),
                         timeout=600, cwd=tmp_path)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    _same_outputs(tmp_path / "one", tmp_path / "two")
