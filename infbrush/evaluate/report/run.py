"""The report's sections on the run itself: loss curves of the trainers (``train/metrics.jsonl``,
``ablation_cano/train/metrics.jsonl``, ``dino_ckpt/metrics.jsonl``), the run settings (a params dict) and the
inputs a stage skipped (``**/failures.tsv``)."""
from __future__ import annotations

import io
import json
from pathlib import Path

from infbrush.evaluate.report.kit import esc, not_run, png_bytes_uri


def loss_curve_png(metrics_path: Path) -> str | None:
    """Data URI of a plot of every '*loss*' column of metrics.jsonl against step; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = []
    for line in metrics_path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a partial last line of a killed run
    keys = sorted({k for r in records for k, v in r.items() if "loss" in k and isinstance(v, (int, float))})
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in keys:
        points = [(r.get("step", i), r[key]) for i, r in enumerate(records) if isinstance(r.get(key), (int, float))]
        ax.plot(*zip(*points), label=key)
    ax.set_xlabel("step")
    ax.set_yscale("log" if all(v > 0 for r in records for k, v in r.items() if k in keys) else "linear")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return png_bytes_uri(buf.getvalue())


def section_losses(results: Path) -> str:
    """A loss curve per trainer whose metrics.jsonl is present."""
    parts = []
    for name, path in (("diffusion model", results / "train" / "metrics.jsonl"),
                       ("CANO ablation", results / "ablation_cano" / "train" / "metrics.jsonl"),
                       ("DINO", results / "dino_ckpt" / "metrics.jsonl")):
        if path.is_file():
            uri = loss_curve_png(path)
            parts.append(f"<h3>{esc(name)}</h3>" + (f'<img src="{uri}">' if uri else not_run(f"{path}: no loss")))
    return "".join(parts) or not_run("train/metrics.jsonl")


def section_failures(results: Path) -> str:
    """Every failures.tsv below the results folder as a table (its first 200 lines)."""
    files = sorted(results.glob("**/failures.tsv"))
    if not files:
        return "<p>no failures.tsv: no input was skipped</p>"
    parts = []
    for path in files:
        lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
        rows = "".join("<tr>" + "".join(f"<td class='l'>{esc(c)}</td>" for c in line) + "</tr>" for line in lines[:200])
        more = f"<p class='note'>… {len(lines) - 200} more</p>" if len(lines) > 200 else ""
        parts.append(f"<h3>{esc(path.relative_to(results))} ({max(len(lines) - 1, 0)} skipped)</h3><table>{rows}</table>{more}")
    return "".join(parts)


def section_settings(params: dict | None) -> str:
    """The run settings as indented JSON."""
    if not params:
        return not_run("no run settings given")
    return f"<pre>{esc(json.dumps(params, indent=2, default=str))}</pre>"
