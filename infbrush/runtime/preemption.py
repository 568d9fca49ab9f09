"""Preemption: turn SIGTERM / SIGUSR1 into a flag the training loop checks between steps.

SLURM sends SIGUSR1 (``#SBATCH --signal=USR1@120``) or SIGTERM shortly before a time limit or
preemption kills a job. The loop then writes a checkpoint and exits with :data:`REQUEUE_EXIT_CODE`
(75, ``EX_TEMPFAIL`` from sysexits.h: "temporary failure, retry"). Under SLURM it also calls
``scontrol requeue $SLURM_JOB_ID`` (see :func:`request_requeue`), so a job submitted with ``--requeue``
is put back in the queue and, rerunning the same command, resumes from that checkpoint. Outside SLURM,
a wrapper script can treat exit code 75 as "run me again".
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from types import FrameType

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: checkpoint written, rerun the same command to resume
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionFlag:
    """Installs handlers for SIGTERM and SIGUSR1 that only set ``.requested`` (and ``.signal_name``).

    Use as a context manager (or call :meth:`restore`) to put the previous handlers back. Must be
    created in the main thread (a Python rule for signal handlers).
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def restore(self) -> None:
        """Reinstate the handlers that were active before this flag was created."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> "PreemptionFlag":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def request_requeue() -> bool:
    """Under SLURM, run ``scontrol requeue $SLURM_JOB_ID``; True if the requeue was accepted."""
    job_id = os.environ.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol")
    if not job_id or scontrol is None:
        return False
    result = subprocess.run([scontrol, "requeue", job_id], capture_output=True, text=True, timeout=60)
    return result.returncode == 0
