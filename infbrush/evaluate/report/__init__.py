"""One self-contained HTML report per dataset (images embedded as base64 PNG; no external files).

Sections, each reading its own optional inputs under ``results/<ds>/`` and saying "not run" when they are
absent: sample grids per resolution (``samples/<R>/index.json``) with zoomed native-resolution crops, the
FID table beside the paper's numbers (``fid.json``, ``ablation_cano.json``), the zero-shot confusion
matrix (``zeroshot.json`` + PNG), BACH accuracies (``bach.json``), controllability (``control.json``: per
class, real held-out patches beside the samples generated for it, accuracies with 95 % intervals beside the
judge's own accuracy on real images), the encoders against their untrained network / chance (``dino.json``,
``democlip.json``), the spectral check (``spectrum.json`` + PNG), loss curves (``train/metrics.jsonl``,
``dino_ckpt/metrics.jsonl``), large fields (``large_field.json`` + PNG), run settings (a params dict) and skipped inputs (``**/failures.tsv``). A metric
that ``fid.json`` marks ``"trusted": false`` (it failed its sanity pairs) is shown as flagged, not as a result.

Which of the paper's experiments the FID table sits beside (``paper_row``) and whether this run is only a
miniature of it (``miniature``: its numbers are not comparable) are parameters, not read from the dataset name.

Modules: ``kit`` (the HTML kit: escaping, cells, embedded images, page skeleton), ``paper`` (the tables beside
the paper's numbers), ``generation`` (sample grids, viewer, spectrum), ``classification`` (encoders, zero-shot,
controllability), ``brush`` (the brush), ``large_field`` (whole image vs patch-based), ``run`` (loss curves, settings, skipped inputs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from infbrush.evaluate.report.brush import brush_shortfalls, section_brush
from infbrush.evaluate.report.classification import section_control, section_encoders, section_zeroshot
from infbrush.evaluate.report.generation import section_samples, section_spectrum, section_viewer
from infbrush.evaluate.report.kit import esc, page
from infbrush.evaluate.report.large_field import section_large_field
from infbrush.evaluate.report.paper import PAPER_EXPERIMENTS, PAPER_FID, paper_rows, section_bach, section_fid
from infbrush.evaluate.report.run import section_failures, section_losses, section_settings

__all__ = ["PAPER_EXPERIMENTS", "PAPER_FID", "brush_shortfalls", "build_report", "section_bach", "section_brush",
           "section_control", "section_encoders", "section_failures", "section_fid", "section_large_field", "section_losses",
           "section_samples", "section_settings", "section_spectrum", "section_viewer", "section_zeroshot",
           "write_report"]


def build_report(dataset: str, results_dir: str | os.PathLike, params: dict | None = None, *,
                 paper_row: str | None = None, miniature: bool = False) -> str:
    """The report's HTML text for ``dataset`` (its name, shown in the title) from the outputs under ``results_dir``.

    ``paper_row``: the paper's experiment (one of PAPER_EXPERIMENTS) whose FID rows sit beside this run's; None
    shows none. ``miniature``: this run is a small stand-in for that experiment (other data, image sizes, sample
    counts), so the paper's rows are labelled a reference only. An unknown ``paper_row`` raises InfbrushError
    before any section is built."""
    paper_rows(paper_row)  # an unknown experiment fails here, not after the sample grids were drawn
    results = Path(results_dir)
    sections: list[tuple[str, Callable[[], str]]] = [
        ("Samples", lambda: section_samples(results)),
        ("Zoomable viewer", lambda: section_viewer(results)),
        ("CLIP FID and Crop FID", lambda: section_fid(results, paper_row, miniature)),
        ("Zero-shot classification of text-conditioned samples", lambda: section_zeroshot(results)),
        ("BACH downstream", lambda: section_bach(results)),
        ("Encoders the conditions come from", lambda: section_encoders(results)),
        ("Controllability (embedding-conditioned model)", lambda: section_control(results)),
        ("Controllability (label-conditioned model)", lambda: section_control(results, "label")),
        ("Spectral check", lambda: section_spectrum(results)),
        ("The brush: conditions painted into regions", lambda: section_brush(results)),
        ("Large fields: the whole image against patch-based assembly", lambda: section_large_field(results)),
        ("Loss curves", lambda: section_losses(results)),
        ("Run settings", lambda: section_settings(params)),
        ("Skipped inputs", lambda: section_failures(results)),
    ]
    return page(f"infbrush report: {dataset}", f"∞-Brush report: {dataset}",
                f"<p class='note'>results folder: {esc(results)}</p>", sections)


def write_report(out: str | os.PathLike, dataset: str, results_dir: str | os.PathLike, params: dict | None = None,
                 *, paper_row: str | None = None, miniature: bool = False) -> Path:
    """Build the report (see :func:`build_report` for ``paper_row`` and ``miniature``) and write it atomically
    to ``out``."""
    from infbrush.io import atomic_path

    text = build_report(dataset, results_dir, params, paper_row=paper_row, miniature=miniature)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)
