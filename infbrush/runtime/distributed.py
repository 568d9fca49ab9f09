"""Process-group setup for DDP under ``torchrun`` or ``srun`` (SLURM), and small collective helpers.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. Under ``srun`` without
torchrun, SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID give the rank layout; MASTER_ADDR defaults to the
first host of SLURM_JOB_NODELIST and MASTER_PORT to a port derived from SLURM_JOB_ID. A world of one
process creates no process group. NCCL is used on GPUs, gloo on CPU.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _first_slurm_host(nodelist: str) -> str:
    """First hostname of a SLURM node list ("node[01-04]" → "node01"), via scontrol when available."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    head = nodelist.split(",")[0]
    if "[" in head:
        prefix, rest = head.split("[", 1)
        head = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
    return head


def rank_layout(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables, else SLURM's, else (0, 1, 0)."""
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def select_device(device: str, local_rank: int) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when a GPU is present, else ``cpu``; other strings as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the job's process group (if world_size > 1) and pick this process's device."""
    rank, world_size, local_rank = rank_layout()
    dev = select_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if "SLURM_JOB_ID" in os.environ and "MASTER_ADDR" not in os.environ:
            os.environ["MASTER_ADDR"] = _first_slurm_host(os.environ.get("SLURM_JOB_NODELIST", "localhost"))
        if "MASTER_PORT" not in os.environ:
            os.environ["MASTER_PORT"] = str(15000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


def cleanup_distributed() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for all ranks (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; unchanged in a single process)."""
    out = value.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is True on any rank (used so that all ranks stop on a signal together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
