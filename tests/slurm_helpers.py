"""Helpers for tests that run against the local SLURM cluster of `.ci/slurm/start.sh`.

Usage in a test module::

    from slurm_helpers import SLURM_PROFILE, require_slurm, run_snakemake_slurm

    pytestmark = [pytest.mark.slurm, pytest.mark.slow]

    def test_demo_under_slurm(tmp_path):
        require_slurm()
        proc = run_snakemake_slurm(REPO, ["results/demo/tiles.h5"], timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:]

Every subprocess is bounded: on timeout Snakemake gets SIGINT (the SLURM plugin then
cancels its jobs), then SIGKILL, and the test fails with the log tail.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "slurm"  # the repository-root symlink users type as `--profile slurm`
LOCAL_PROFILE = REPO / "local"
START_HINT = "start it with `bash .ci/slurm/start.sh` (root; installs Debian's slurm + munge)"


@functools.lru_cache(maxsize=None)
def slurm_skip_reason(wait_s: float = 10.0) -> str | None:
    """Why SLURM tests cannot run here, or None when a node is up (checked once per session)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"SLURM client tools (sinfo, sbatch) not on PATH; {START_HINT}"
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
            )
            last = (proc.stdout + proc.stderr).strip()
            states = proc.stdout.split() if proc.returncode == 0 else []
        except subprocess.TimeoutExpired:
            states, last = [], "sinfo timed out"
        if any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
            return None
        if time.monotonic() > deadline:
            return f"no SLURM node up (sinfo: {last[:200]!r}); {START_HINT}"
        time.sleep(1.0)


def require_slurm() -> None:
    """Skip the calling test with a clear reason unless the local cluster is up."""
    reason = slurm_skip_reason()
    if reason:
        pytest.skip(reason)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for SLURM client calls: no inherited job context, no user site file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "INFBRUSH_SLURM_"))
    }
    env["INFBRUSH_SLURM_CONFIG"] = os.devnull  # ignore ~/.config/infbrush/slurm.yaml
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.update(extra or {})
    return env


def run_bounded(
    cmd: Sequence[str], *, cwd: Path | str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run cmd (stdout+stderr merged into .stdout) and fail the test if it passes `timeout` s.

    The child runs in its own process group; on timeout it gets SIGINT (Snakemake's SLURM
    executor cancels its jobs on SIGINT), 30 s grace, then SIGKILL of the group.
    """
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout:.0f} s; last output:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def run_snakemake_slurm(
    workdir: Path | str,
    targets: Iterable[str],
    timeout: float = 300,
    *,
    snakefile: Path | str | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    profile: Path | str = SLURM_PROFILE,
) -> subprocess.CompletedProcess:
    """Run `snakemake --profile slurm TARGETS` in workdir through real sbatch jobs.

    Uses the repository's SLURM profile unchanged except for test-speed knobs: the first
    status check after 2 s instead of 40 s, no retries, at most 4 jobs. Returns the
    CompletedProcess (merged log in .stdout); the caller asserts on returncode and files.
    """
    cmd = [
        "snakemake",
        "--profile", str(profile),
        "--slurm-init-seconds-before-status-checks", "2",
        "--retries", "0",
        "--jobs", "4",
    ]
    if snakefile is not None:
        cmd += ["--snakefile", str(snakefile)]
    cmd += [*extra_args, *targets]
    return run_bounded(cmd, cwd=workdir, timeout=timeout, env=clean_env(env))
