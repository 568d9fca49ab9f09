"""Two-process DDP (torchrun, gloo on CPU) matches single-process training on the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from numeric_helpers import assert_within  # noqa: E402
from test_train import TINY, losses, make_store  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def train_args(tmp: Path, run: str) -> list[str]:
    return ["-m", "infbrush", "train", "--store", str(tmp / "images.h5"), "--cond-labels", "2",
            "--out", str(tmp / run), "--export", str(tmp / f"{run}.pt"), "--model-args", json.dumps(TINY),
            "--steps", "4", "--batch-size", "4", "--lr", "2e-3", "--n-points", "64", "--mollify-sigma", "0.0625",
            "--cond-drop-prob", "0.5", "--log-every", "1", "--ckpt-every", "2", "--device", "cpu", "--no-progress"]


@pytest.mark.numeric
@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    make_store(tmp_path / "images.h5", n=7, held_out=(3,), labels=[0, 1, 0, 1, 1, 0, 1])
    single = subprocess.run([sys.executable, *train_args(tmp_path, "single")], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *train_args(tmp_path, "ddp")], env=ENV, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    # rank 0 alone writes: one metrics line per step, one set of checkpoints
    assert [json.loads(x)["step"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    # the gradient is summed over 2 ranks instead of one batch: rounding, never bitwise. Measured relative 1.2e-7
    # (avx2, default, native AVX2; 1 thread per process)
    assert_within(losses(tmp_path / "ddp"), losses(tmp_path / "single"), atol=0, rtol=2e-6, what="DDP vs one: losses")
    single_ckpt = torch.load(tmp_path / "single" / "ckpt_00000004.pt", weights_only=True)
    ddp_ckpt = torch.load(tmp_path / "ddp" / "ckpt_00000004.pt", weights_only=True)
    assert len(ddp_ckpt["rng"]) == 2 and len(single_ckpt["rng"]) == 1
    # Adam turns float rounding in near-zero gradients (sum over 2 ranks vs one batch) into differences of a
    # fraction of one step (lr = 2e-3): weights must agree to 0.1·lr after 4 steps. Measured ≤ 2.5e-5 absolute
    # (avx2 2.5e-5, default 1.7e-5; relative up to 8.7e-3 on near-zero weights, which atol covers)
    for key in ("model", "ema"):
        for name, value in single_ckpt[key].items():
            assert_within(ddp_ckpt[key][name], value, atol=2e-4, rtol=1e-3, what=f"DDP vs one: {key} weights")
    # training actually moved the weights (so the comparison is not of two untouched initialisations)
    init = torch.load(tmp_path / "single" / "ckpt_00000002.pt", weights_only=True)["model"]
    assert any(not torch.allclose(init[k], v) for k, v in single_ckpt["model"].items() if v.is_floating_point())
