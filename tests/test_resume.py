"""Resume after kill -9, SIGTERM → checkpoint + requeue exit code, corrupt newest checkpoint → previous one.

The command runs in a subprocess (`python -m infbrush train`) exactly as a cluster job would."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from infbrush.runtime.checkpoint import list_checkpoints
from infbrush.train.loop import TrainConfig, train
from infbrush.runtime.preemption import REQUEUE_EXIT_CODE

sys.path.insert(0, str(Path(__file__).parent))
from numeric_helpers import assert_within  # noqa: E402
from test_train import TINY, losses, make_embeddings, make_store, tiny_config  # noqa: E402

STEPS = 12
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def command(data: Path, run: str) -> list[str]:
    return [sys.executable, "-m", "infbrush", "train", "--store", str(data / "images.h5"),
            "--cond-embeddings", str(data / "emb.h5"), "--out", str(data / run), "--export", str(data / f"{run}.pt"),
            "--model-args", json.dumps(TINY), "--steps", str(STEPS), "--batch-size", "4", "--lr", "2e-3",
            "--n-points", "64", "--mollify-sigma", "0.0625", "--log-every", "1", "--ckpt-every", "3", "--keep", "3",
            "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = tmp_path_factory.mktemp("resume")
    make_store(data / "images.h5")
    make_embeddings(data / "emb.h5", [f"img{i}" for i in range(6)])
    done = subprocess.run(command(data, "reference"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return data


def start_and_wait_for(data: Path, run: str, checkpoint_step: int) -> subprocess.Popen:
    proc = subprocess.Popen(command(data, run), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = data / run / f"ckpt_{checkpoint_step:08d}.pt"
    deadline = time.time() + 240
    while not target.exists():
        assert proc.poll() is None, f"run ended before its checkpoint at step {checkpoint_step}: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.02)
    return proc


def final_ema(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.numeric
@pytest.mark.slow
def test_kill9_then_rerun_gives_identical_losses(data):
    proc = start_and_wait_for(data, "killed", 6)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (data / "killed.pt").exists()
    steps_at_kill = max(s for s, _ in list_checkpoints(data / "killed"))
    assert 6 <= steps_at_kill < STEPS
    done = subprocess.run(command(data, "killed"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr and f"step {steps_at_kill}" in done.stderr
    reference = losses(data / "reference")
    assert len(reference) == STEPS
    # resuming is bitwise: measured 0 under ATEN_CPU_CAPABILITY avx2, default and native (AVX2), 1 thread
    assert_within(losses(data / "killed"), reference, atol=0, what="kill -9 resume: losses")
    ref_ema, got_ema = final_ema(data / "reference.pt"), final_ema(data / "killed.pt")
    for key in ref_ema:
        assert_within(got_ema[key], ref_ema[key], atol=0, what="kill -9 resume: EMA weights")  # measured 0


@pytest.mark.numeric
@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_for_requeue(data):
    proc = start_and_wait_for(data, "preempted", 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == REQUEUE_EXIT_CODE, stderr
    assert "SIGTERM received" in stderr
    logged = len(losses(data / "preempted"))
    newest = max(s for s, _ in list_checkpoints(data / "preempted"))
    assert newest == logged >= 3  # the checkpoint is of the step it stopped at, not just the periodic one
    if newest < STEPS:  # rerunning resumes from it and finishes the same run
        done = subprocess.run(command(data, "preempted"), env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert_within(losses(data / "preempted"), losses(data / "reference"), atol=0,
                  what="SIGTERM resume: losses")  # bitwise: measured 0 (avx2, default, native; 1 thread)


@pytest.mark.numeric
def test_truncated_newest_checkpoint_resumes_from_the_previous_one(tmp_path):
    torch.set_num_threads(1)
    store = make_store(tmp_path / "images.h5")
    reference = tiny_config(tmp_path, store, steps=7, out=str(tmp_path / "ref"), export=None)
    assert train(reference) == 0
    cfg = tiny_config(tmp_path, store, steps=6, out=str(tmp_path / "run"), export=None)
    assert train(cfg) == 0
    newest = tmp_path / "run" / "ckpt_00000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"ckpt_00000006\.pt: skipped, truncated or corrupt torch file") as seen:
        assert train(TrainConfig(**{**cfg.__dict__, "steps": 7})) == 0
    assert all("\n" not in str(w.message) for w in seen)  # one line, naming the file
    # the command line prints it as one line too (infbrush: warning: …), not torch's advice on weights_only
    from infbrush.cli import _one_line_warning
    line = _one_line_warning(seen[0].message, UserWarning, seen[0].filename, seen[0].lineno)
    assert line.startswith("infbrush: warning: ") and line.count("\n") == 1 and "weights_only" not in line
    assert_within(losses(tmp_path / "run"), losses(tmp_path / "ref"), atol=0,
                  what="resume past a truncated checkpoint: losses")  # bitwise: measured 0 (avx2, default, native)
