"""Real SLURM: sbatch, GPU GRES, a 2-task srun gloo all-reduce, and Snakemake's SLURM executor.

Needs the single-node cluster of `.ci/slurm/start.sh` (CI starts it before pytest); every
test that submits jobs skips with the reason when no node is up. The profile-resolution
test needs no cluster.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from slurm_helpers import (
    REPO,
    SLURM_PROFILE,
    clean_env,
    require_slurm,
    run_bounded,
    run_snakemake_slurm,
)

# One process per SLURM task; rank, world size and the rendezvous address come from SLURM.
ALLREDUCE = textwrap.dedent(
    """
    import datetime, os, subprocess, sys
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["SLURM_PROCID"])
    world = int(os.environ["SLURM_NTASKS"])
    nodes = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    port = 20000 + int(os.environ["SLURM_JOB_ID"]) % 20000
    dist.init_process_group(
        "gloo", init_method=f"tcp://{nodes[0]}:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=90),
    )
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    print(f"rank={rank} world={world} sum={value.item():g} "
          f"gpu={os.environ.get('CUDA_VISIBLE_DEVICES', 'none')}", flush=True)
    dist.destroy_process_group()
    """
)
# The torchrun flavour: rank and world size from torchrun's environment.
ALLREDUCE_TORCHRUN = textwrap.dedent(
    """
    import datetime, os
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=90))
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    gpus = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
    print(f"rank={dist.get_rank()} world={dist.get_world_size()} sum={value.item():g} "
          f"gpu={gpus[int(os.environ['LOCAL_RANK'])]}", flush=True)
    dist.destroy_process_group()
    """
)
# Not anchored to lines: srun merges the tasks' stdout, and print() may write text and newline separately.
ALLREDUCE_LINE = re.compile(r"rank=(\d+) world=(\d+) sum=([0-9.e+-]+) gpu=([0-9,]+|none)")


def _check_allreduce(text: str, world: int) -> list[str]:
    """Assert every rank reported the all-reduced sum 1+2+..+world; return their GPU ids."""
    rows = ALLREDUCE_LINE.findall(text)
    assert sorted(int(r[0]) for r in rows) == list(range(world)), text[-3000:]
    expected = world * (world + 1) / 2
    for _, w, total, _ in rows:
        assert int(w) == world and float(total) == expected, text[-3000:]
    return [r[3] for r in rows]


# --------------------------------------------------------------------- no cluster needed


def test_profile_resolves_from_repo_root_and_reads_partition_from_env(tmp_path: Path) -> None:
    """`--profile slurm` typed in the repo root finds workflow/profiles/slurm via the symlink."""
    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'a.txt'\n    shell: 'touch {output}'\n")
    proc = run_bounded(
        ["snakemake", "--profile", "slurm", "--snakefile", str(tmp_path / "Snakefile"),
         "--directory", str(tmp_path), "-n", "a.txt"],
        cwd=REPO, timeout=120, env=clean_env({"INFBRUSH_SLURM_PARTITION": "all"}),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "workflow/profiles/slurm" in proc.stdout or "profile slurm" in proc.stdout
    resources = re.search(r"resources: (.*)", proc.stdout).group(1)
    # the partition is a string even when it spells a Python builtin (`all`)
    assert "slurm_partition=all" in resources and "runtime=60" in resources, resources


def test_profile_rejects_unknown_key_in_user_file(tmp_path: Path) -> None:
    site = tmp_path / "slurm.yaml"
    site.write_text("partitoin: gpu\n")
    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'a.txt'\n    shell: 'touch {output}'\n")
    proc = run_bounded(
        ["snakemake", "--profile", str(SLURM_PROFILE), "-n", "a.txt"],
        cwd=tmp_path, timeout=120, env={**clean_env(), "INFBRUSH_SLURM_CONFIG": str(site)},
    )
    assert proc.returncode != 0
    assert f"{site}: unknown keys ['partitoin']" in proc.stdout, proc.stdout[-2000:]


# --------------------------------------------------------------------- real cluster


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_wait_runs_cpu_and_gpu_jobs(tmp_path: Path) -> None:
    require_slurm()
    out_cpu, out_gpu = tmp_path / "cpu.out", tmp_path / "gpu.out"
    proc = run_bounded(
        ["sbatch", "--wait", "-o", str(out_cpu), "--wrap", "echo job=$SLURM_JOB_ID; exit 0"],
        cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    assert re.fullmatch(r"job=\d+\n", out_cpu.read_text())

    proc = run_bounded(
        ["sbatch", "--wait", "--gres=gpu:1", "-o", str(out_gpu), "--wrap",
         "echo gpus=$CUDA_VISIBLE_DEVICES on=$SLURM_GPUS_ON_NODE"],
        cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    assert re.fullmatch(r"gpus=\d on=1\n", out_gpu.read_text()), out_gpu.read_text()

    # a failing job is reported as failed by sbatch --wait
    proc = run_bounded(["sbatch", "--wait", "-o", "/dev/null", "--wrap", "exit 3"],
                       cwd=tmp_path, timeout=120)
    assert proc.returncode != 0


@pytest.mark.slurm
@pytest.mark.slow
def test_two_task_srun_gloo_allreduce(tmp_path: Path) -> None:
    require_slurm()
    script = tmp_path / "allreduce.py"
    script.write_text(ALLREDUCE)
    proc = run_bounded(
        ["srun", "-n", "2", "--gpus-per-task=1", "--mem-per-cpu=2000", "python", str(script)],
        cwd=tmp_path, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    gpus = _check_allreduce(proc.stdout, world=2)
    assert sorted(gpus) == ["0", "1"], gpus  # one (fake) GPU per task


SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "cpu.txt", "gpu.txt", "ddp.txt", "torchrun.txt"

    rule cpu:
        output: "cpu.txt"
        threads: 1
        resources: mem_mb=500, runtime=5
        shell: "echo job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK > {output}"

    rule gpu:
        output: "gpu.txt"
        resources: mem_mb=500, runtime=5, gpu=1, cpus_per_gpu=1
        shell: "echo job=$SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES > {output}"

    # Multi-GPU training pattern: one SLURM job with N GPUs and one task per GPU; the rule's
    # command is the srun launch (the `mpi` resource tells the plugin not to wrap it in srun).
    rule ddp:
        input: script="allreduce.py"
        output: "ddp.txt"
        resources: mem_mb=4000, runtime=5, gpu=2, tasks=2, tasks_per_gpu=1, mpi="srun"
        shell: "srun -n {resources.tasks} --gpus-per-task=1 python {input.script} > {output}"

    # Same on one node with torchrun: one SLURM task, torchrun starts one worker per GPU.
    rule torchrun:
        input: script="allreduce_torchrun.py"
        output: "torchrun.txt"
        resources: mem_mb=4000, runtime=5, gpu=2, cpus_per_gpu=1
        shell: "torchrun --standalone --nproc_per_node={resources.gpu} {input.script} > {output}"

    # A failing job must end the run, not leave Snakemake polling forever (the sacct pitfall).
    rule bad:
        output: "bad.txt"
        resources: mem_mb=200, runtime=2
        shell: "echo about to fail; exit 3"
    """
)


@pytest.mark.slurm
@pytest.mark.slow
def test_snakemake_slurm_executor_runs_cpu_gpu_ddp_rules_and_reports_failure(tmp_path: Path) -> None:
    require_slurm()
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "allreduce.py").write_text(ALLREDUCE)
    (tmp_path / "allreduce_torchrun.py").write_text(ALLREDUCE_TORCHRUN)
    proc = run_snakemake_slurm(tmp_path, ["all", "bad.txt"], timeout=400, extra_args=["--keep-going"])
    assert proc.returncode != 0, proc.stdout[-5000:]  # `bad` failed ...
    assert "Error in rule bad" in proc.stdout and "SLURM status is: 'FAILED'" in proc.stdout
    assert not (tmp_path / "bad.txt").exists()
    assert "5 of 6 steps (83%) done" in proc.stdout, proc.stdout[-5000:]  # ... the others ran

    cpu = (tmp_path / "cpu.txt").read_text()
    gpu = (tmp_path / "gpu.txt").read_text()
    assert re.fullmatch(r"job=\d+ cpus=1\n", cpu), cpu
    assert re.fullmatch(r"job=\d+ gpus=\d\n", gpu), gpu
    assert cpu.split()[0] != gpu.split()[0]  # two separate SLURM jobs
    gpus = _check_allreduce((tmp_path / "ddp.txt").read_text(), world=2)
    assert sorted(gpus) == ["0", "1"], gpus
    gpus = _check_allreduce((tmp_path / "torchrun.txt").read_text(), world=2)
    assert sorted(gpus) == ["0", "1"], gpus  # worker i uses the i-th GPU of the job

    # Second invocation: everything is up to date, nothing is submitted.
    proc = run_snakemake_slurm(tmp_path, ["all"], timeout=120)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout[-3000:]
