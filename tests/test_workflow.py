"""The Snakemake workflow and the DVC project resolve; every rule is thin and logged."""
import re
import subprocess
import sys

import pytest
import yaml

from infbrush.cli import COMMANDS, build_parser


def run(cmd, cwd, timeout=300):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_snakemake_dry_run_resolves_default_target(repo_root):
    res = run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "2", "--quiet", "rules"], repo_root)
    assert res.returncode == 0, res.stdout + res.stderr
    plan = res.stdout + res.stderr
    for rule in ("demo_world", "tile", "extract_patches", "patch_geotiff", "train_clip", "train_dino", "embed",
                 "train", "sample", "fid", "report_html"):
        assert rule in plan, f"{rule} missing from the default plan"


def test_snakemake_rejects_invalid_params(repo_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo_root / "params.yaml").read_text().replace("n_slides: 5", "n_slides: -5", 1))
    res = run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)], repo_root)
    assert res.returncode != 0
    assert "demo_world.n_slides = -5" in res.stdout + res.stderr


def test_every_rule_has_log_benchmark_and_one_infbrush_call(repo_root):
    rule_files = sorted((repo_root / "workflow" / "rules").glob("*.smk"))
    blocks = []
    for path in rule_files:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", text, flags=re.M):
            blocks.append((path.name, match.group(1), match.group(2)))
    assert blocks, "no rules found"
    for name, rule, body in blocks:
        if "shell:" not in body:
            continue  # e.g. aggregation rules without a command
        assert "log:" in body, f"{name}: rule {rule} has no log:"
        assert "benchmark:" in body, f"{name}: rule {rule} has no benchmark:"
        # `infbrush <command>`, or `{params.launcher} <command>` where the launcher is infbrush or torchrun -m infbrush
        commands = re.findall(r"(?:\binfbrush|\{params\.launcher\}) ([a-z][a-z-]+)", body)
        assert commands, f"{name}: rule {rule} does not call infbrush"
        for command in commands:
            assert command in COMMANDS, f"{name}: rule {rule} calls unknown command {command!r}"


def test_cli_lists_commands_and_each_has_help(repo_root):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "check-params" in sub.choices and "demo-world" in sub.choices
    for name, subparser in sub.choices.items():
        assert subparser.description, f"{name} has no help text"
    res = run([sys.executable, "-m", "infbrush", "--help"], repo_root)
    assert res.returncode == 0 and "check-params" in res.stdout


def test_dvc_status_runs(repo_root):
    res = run([sys.executable, "-m", "dvc", "status"], repo_root)
    assert res.returncode == 0, res.stdout + res.stderr


def test_each_model_samples_at_its_own_guidance_scale(repo_root):
    """sample.variant_guidance_scale sets the label model's scale; the embedding model keeps sample.guidance_scale."""
    res = run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "2",
               "results/demo_naip/samples/64/index.json", "results/demo_naip/label/samples/64/index.json"], repo_root)
    assert res.returncode == 0, res.stdout + res.stderr
    commands = [line for line in res.stdout.splitlines() if " sample --weights " in line]
    scales = {("label" if "/label/ema.pt" in c else "main"): re.search(r"--guidance-scale (\S+)", c).group(1)
              for c in commands}
    sample = yaml.safe_load((repo_root / "params.yaml").read_text())["datasets"]["demo_naip"]["sample"]
    assert scales == {"main": str(sample["guidance_scale"]), "label": str(sample["variant_guidance_scale"]["label"])}
    assert scales["main"] != scales["label"]
    assert all(c.count("--guidance-scale") == 1 for c in commands)


def _job_threads(stdout: str) -> dict:
    """rule name -> threads of each job in a dry run's plan (Snakemake prints threads only where they exceed 1)."""
    jobs, current = {}, None
    for line in stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
            jobs.setdefault(current, []).append(1)
        elif current and line.strip().startswith("threads:"):
            jobs[current][-1] = int(line.split(":")[1])
    return jobs


def test_sampling_jobs_take_sample_threads(repo_root, tmp_path):
    """sample.threads is the sample and brush rules' threads (the demo: 1, so that `--cores 2` runs two at once), and
    a sample job gets at least sample.processes threads."""
    targets = ["results/demo_naip/samples/64/index.json", "results/demo_naip/brush.json"]
    res = run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "8", *targets], repo_root)
    assert res.returncode == 0, res.stdout + res.stderr
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    demo = params["datasets"]["demo_naip"]
    jobs = _job_threads(res.stdout)
    assert jobs["sample"] == [demo["sample"]["threads"]] and jobs["brush"] == [demo["sample"]["threads"]]
    assert jobs["train"] == [demo["train"]["threads"]]

    demo["sample"].update(threads=2, processes=3)
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(params))
    res = run([sys.executable, "-m", "snakemake", *targets, "-n", "--forceall", "--cores", "8",
               "--configfile", str(changed)], repo_root)  # targets first: --configfile takes every word after it
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = _job_threads(res.stdout)
    assert jobs["sample"] == [3] and jobs["brush"] == [2]
