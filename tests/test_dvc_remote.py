"""DVC push / pull through real remotes, restored in a fresh git clone.

Remotes: a directory remote, and an SSH remote served by the OpenSSH server of
`.ci/sshd/start.sh` on 127.0.0.1 (skipped with the reason when that server is not up).
The directory case also checks the recipe for Snakemake after a pull: pulled files get
arbitrary modification times, and `snakemake --touch` makes them consistent so that
`snakemake -n` has nothing to do, without changing any bytes.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest

from slurm_helpers import LOCAL_PROFILE, clean_env, run_bounded

SSHD_ENV = Path(os.environ.get("INFBRUSH_SSHD_STATE", "/tmp/infbrush-sshd")) / "env"

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "data/summary.txt"

    rule make_raw:
        output: "data/raw.bin"
        run:
            import random
            rng = random.Random(7)
            with open(output[0], "wb") as f:
                f.write(bytes(rng.getrandbits(8) for _ in range(200_000)))

    rule summarize:
        input: "data/raw.bin"
        output: "data/summary.txt"
        shell: "sha256sum {input} > {output}"
    """
)


def _env() -> dict[str, str]:
    return clean_env({
        "GIT_AUTHOR_NAME": "infbrush-test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "infbrush-test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0",
    })


def sh(*cmd: str, cwd: Path, timeout: float = 120) -> str:
    """Run one command, bounded; fail the test with its output when it fails."""
    proc = run_bounded(list(cmd), cwd=cwd, timeout=timeout, env=_env())
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
    return proc.stdout


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sshd_settings() -> dict[str, str] | None:
    """Settings written by .ci/sshd/start.sh, or None when that server is not running."""
    if not SSHD_ENV.is_file():
        return None
    settings = dict(line.split("=", 1) for line in SSHD_ENV.read_text().split() if "=" in line)
    pid_file = SSHD_ENV.parent / "sshd.pid"
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return None
    return settings


def make_repo(root: Path) -> Path:
    """A git + DVC repo whose Snakemake outputs are DVC-tracked and committed."""
    repo = root / "origin"
    repo.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    (repo / "Snakefile").write_text(SNAKEFILE)
    sh("snakemake", "--profile", str(LOCAL_PROFILE), "--cores", "1", "all", cwd=repo, timeout=180)
    sh("dvc", "add", "-q", "data/raw.bin", "data/summary.txt", cwd=repo)
    sh("git", "add", "Snakefile", "data/.gitignore", "data/raw.bin.dvc", "data/summary.txt.dvc",
       ".dvc/config", ".dvcignore", cwd=repo)
    sh("git", "commit", "-q", "-m", "data", cwd=repo)
    return repo


def add_remote(repo: Path, kind: str, root: Path) -> str:
    """Configure and commit a default remote of `kind` ('dir' or 'ssh'); return its name."""
    if kind == "dir":
        sh("dvc", "remote", "add", "-d", "store", str(root / "dvc-store"), cwd=repo)
    else:
        ssh = sshd_settings()
        url = f"ssh://{ssh['INFBRUSH_SSHD_USER']}@{ssh['INFBRUSH_SSHD_HOST']}:{ssh['INFBRUSH_SSHD_PORT']}"
        sh("dvc", "remote", "add", "-d", "store", f"{url}{root / 'ssh-store'}", cwd=repo)
        # credentials stay out of git: .dvc/config.local
        sh("dvc", "remote", "modify", "--local", "store", "keyfile", ssh["INFBRUSH_SSHD_KEY"], cwd=repo)
    sh("git", "commit", "-q", "-am", f"remote {kind}", cwd=repo)
    return "store"


def check_snakemake_up_to_date_after_touch(clone: Path) -> None:
    """Pulled outputs with adversarial mtimes: `--touch` fixes the times, `-n` has nothing to do."""
    raw, summary = clone / "data" / "raw.bin", clone / "data" / "summary.txt"
    before = {p: _digest(p) for p in (raw, summary)}
    # Worst case of a checkout: the input is written after its output.
    os.utime(summary, (1_000_000_000, 1_000_000_000))
    os.utime(raw, (1_500_000_000, 1_500_000_000))
    profile = ["snakemake", "--profile", str(LOCAL_PROFILE), "--cores", "1"]
    sh(*profile, "--touch", "all", cwd=clone, timeout=180)
    plan = sh(*profile, "-n", "all", cwd=clone, timeout=180)
    assert "Nothing to be done" in plan, plan[-3000:]
    assert {p: _digest(p) for p in (raw, summary)} == before  # touch changed no bytes
    assert "up to date" in sh("dvc", "status", cwd=clone)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_push_then_pull_in_fresh_clone_restores_bytes(tmp_path: Path, kind: str) -> None:
    if kind == "ssh" and sshd_settings() is None:
        pytest.skip(f"no sshd from .ci/sshd/start.sh ({SSHD_ENV} missing or its PID is gone)")
    repo = make_repo(tmp_path)
    add_remote(repo, kind, tmp_path)
    sh("dvc", "push", "-q", cwd=repo, timeout=180)
    if kind == "dir":
        assert any((tmp_path / "dvc-store").rglob("*")), "directory remote is empty after push"

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "data" / "raw.bin").exists()
    if kind == "ssh":
        sh("dvc", "remote", "modify", "--local", "store", "keyfile",
           sshd_settings()["INFBRUSH_SSHD_KEY"], cwd=clone)
    sh("dvc", "pull", "-q", cwd=clone, timeout=180)
    for name in ("raw.bin", "summary.txt"):
        assert _digest(clone / "data" / name) == _digest(repo / "data" / name), name
    assert "up to date" in sh("dvc", "status", cwd=clone)
    if kind == "dir":  # the Snakemake part does not depend on the remote's protocol
        check_snakemake_up_to_date_after_touch(clone)
