"""Checkpoint files, RNG state capture, preemption flag and rank layout (infbrush.train utilities)."""
from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from infbrush.runtime.checkpoint import (capture_rng_state, list_checkpoints, load_latest_checkpoint,
                                       restore_rng_state, save_checkpoint)
from infbrush.runtime.distributed import DistInfo, init_distributed, rank_layout
from infbrush.runtime.preemption import REQUEUE_EXIT_CODE, PreemptionFlag, request_requeue


def _state(step: int) -> dict:
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, float(step))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": capture_rng_state(), "config": {"lr": 1e-3, "betas": [0.9, 0.99], "name": "x"}}


def test_save_keeps_last_k_and_loads_with_weights_only(tmp_path):
    for step in (10, 20, 30, 40):
        path = save_checkpoint(tmp_path, _state(step), step, keep=2)
        assert path.name == f"ckpt_{step:08d}.pt"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    raw = torch.load(tmp_path / "ckpt_00000040.pt", weights_only=True)
    assert raw["step"] == 40 and raw["config"]["betas"] == [0.9, 0.99]
    latest = load_latest_checkpoint(tmp_path)
    assert latest["step"] == 40
    # the optimizer state round-trips into a fresh optimizer
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(latest["model"])
    assert torch.all(model.weight != 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.load_state_dict(latest["optimizer"])
    assert opt.state_dict()["state"][0]["step"].item() == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_newest_checkpoint_falls_back_with_warning(tmp_path, damage):
    save_checkpoint(tmp_path, _state(1), 1, keep=3)
    newest = save_checkpoint(tmp_path, _state(2), 2, keep=3)
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        newest.write_bytes(os.urandom(len(data)))
    else:
        newest.write_bytes(b"")
    with pytest.warns(UserWarning, match="ckpt_00000002.pt"):
        state = load_latest_checkpoint(tmp_path)
    assert state["step"] == 1


def test_no_checkpoint_gives_none(tmp_path):
    assert load_latest_checkpoint(tmp_path / "absent") is None
    (tmp_path / "ckpt_00000001.pt").write_bytes(b"nope")
    with pytest.warns(UserWarning):
        assert load_latest_checkpoint(tmp_path) is None


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path, {"rng": capture_rng_state()}, 0, keep=1)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_latest_checkpoint(tmp_path)["rng"])
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, {"step": 0}, 0, keep=0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_flag_catches_signal_and_restores_handler(sig):
    before = signal.getsignal(sig)
    with PreemptionFlag() as flag:
        assert not flag.requested
        os.kill(os.getpid(), sig)
        assert flag.requested and flag.signal_name == signal.Signals(sig).name
    assert signal.getsignal(sig) == before
    assert REQUEUE_EXIT_CODE not in (0, 1, 2)


def test_request_requeue_outside_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert request_requeue() is False


def test_rank_layout_from_torchrun_and_slurm():
    assert rank_layout({}) == (0, 1, 0)
    assert rank_layout({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert rank_layout(slurm) == (5, 8, 1)
    assert rank_layout({**slurm, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) == (0, 1, 0)  # sbatch, one task
    assert rank_layout({**slurm, "RANK": "0", "WORLD_SIZE": "2"}) == (0, 2, 0)  # torchrun inside srun wins


def test_init_distributed_single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)
    assert not torch.distributed.is_initialized()
