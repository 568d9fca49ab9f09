"""Copies of the repository with shrunken params, for end-to-end runs of the real workflow."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from infbrush.config import deep_merge

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_params.yaml"


def tiny_params() -> dict:
    return deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load(TINY.read_text()))


def copy_repo(dest: Path, *, git: bool = True) -> Path:
    """Copy the tracked and untracked-but-not-ignored files of the repository, with tiny params."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    if git:
        run(["git", "init", "-q"], dest)
        run(["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "add", "-A"], dest)
        run(["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "copy"], dest)
    return dest


def run(cmd: list[str], cwd: Path, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc
