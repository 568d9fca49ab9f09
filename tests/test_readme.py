"""The README's stage table is the workflow's: every Snakemake rule and every command appears, nothing else."""
from __future__ import annotations

import re
import subprocess
import sys

from infbrush.cli import COMMANDS


def stage_table(text: str) -> list[list[str]]:
    """Cells of the rows of the table whose header starts with `| stage | rules |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| stage | rules |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_stage_table_lists_every_rule_and_command(repo_root):
    rows = stage_table((repo_root / "README.md").read_text())
    rules = {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row[1])}
    commands = {m.removeprefix("infbrush ") for row in rows for m in re.findall(r"`((?:infbrush )?[a-z-]+)`", row[2])}
    listed = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=repo_root, capture_output=True,
                            text=True, timeout=300, check=True).stdout.split()
    assert rules | {"all"} == set(listed), (sorted(set(listed) - rules), sorted(rules - set(listed)))
    assert commands <= set(COMMANDS), sorted(commands - set(COMMANDS))
    assert set(COMMANDS) - commands <= {"check-params"}  # run by the Snakefile before any job, not a stage
