"""The report's tables beside the paper's numbers: CLIP FID / Crop FID / KID of this run (``fid.json``,
``ablation_cano.json``) with the paper's rows of one experiment and the metrics' sanity pairs, and the BACH
downstream accuracies (``bach.json``) beside the paper's. Which experiment's rows to show, and whether they are
only a reference, are the caller's parameters."""
from __future__ import annotations

import json
from pathlib import Path

from infbrush.evaluate.report.kit import esc, fmt, not_run, read_json

# NUMBERS.md, "From the paper's tables": (experiment, method, CLIP FID, Crop FID); None = not reported.
PAPER_FID = [
    ("CelebA-HQ 256²", "∞-Diff (unconditional)", 9.44, None),
    ("CelebA-HQ 256²", "∞-Brush", 8.38, None),
    ("TCGA-BRCA 4096²", "Graikos et al. (patch-based)", 2.75, 11.30),
    ("TCGA-BRCA 4096²", "∞-Brush", 2.63, 14.76),
    ("TCGA-BRCA 4096²", "∞-Brush without CANO", 3.81, 16.28),
    ("TCGA-BRCA 1024²", "SDXL", 6.64, 6.98),
    ("TCGA-BRCA 1024²", "Graikos et al.", 7.43, 15.51),
    ("TCGA-BRCA 1024²", "∞-Brush", 3.74, 17.87),
    ("NAIP 1024²", "SDXL", 10.90, 11.50),
    ("NAIP 1024²", "Graikos et al.", 6.86, 43.76),
    ("NAIP 1024²", "∞-Brush", 6.32, 48.65),
]
PAPER_EXPERIMENTS = tuple(dict.fromkeys(row[0] for row in PAPER_FID))  # the experiments, in the tables' order


def paper_rows(paper_row: str | None) -> list[tuple]:
    """The paper's rows of experiment ``paper_row`` (one of PAPER_EXPERIMENTS); none for None.

    Raises InfbrushError for a name the paper's tables do not have, so a typo is not shown as "no rows"."""
    if paper_row is None:
        return []
    if paper_row not in PAPER_EXPERIMENTS:
        from infbrush.errors import InfbrushError

        raise InfbrushError(f"paper row {paper_row!r}: not an experiment of the paper's tables; valid: "
                            + ", ".join(PAPER_EXPERIMENTS))
    return [r for r in PAPER_FID if r[0] == paper_row]


def section_fid(results: Path, paper_row: str | None = None, miniature: bool = False) -> str:
    """This run's FID table beside the paper's rows of ``paper_row``; ``miniature`` labels them a reference only
    (the run uses other data, image sizes and sample counts than the paper's experiment)."""
    rows = paper_rows(paper_row)
    ours = [("∞-Brush (this run)", read_json(results / "fid.json")),
            ("∞-Brush without CANO (this run)", read_json(results / "ablation_cano.json"))]
    body = []
    for name, result in ours:
        if result is None:
            body.append(f'<tr class="ours"><td class="l">{esc(name)}</td><td colspan="5" class="notrun l">not run</td></tr>')
            continue
        flag = " (rank-deficient: compare KID)" if any((result.get("rank_deficient") or {}).values()) else ""
        crops = result.get("n_crops") or {}
        cells = "".join(metric_cell(result, key, digits) for key, digits in
                        (("clip_fid", 2), ("crop_fid", 2), ("clip_kid", 4), ("crop_kid", 4)))
        body.append(f'<tr class="ours"><td class="l">{esc(name)}{esc(flag)}</td>{cells}'
                    f'<td class="l">{fmt(result.get("n_generated"))} gen / '
                    f'{fmt(result.get("n_real"))} real images, {fmt(crops.get("generated"))} / '
                    f'{fmt(crops.get("real"))} crops, {fmt(result.get("resolution"))} px</td></tr>')
    for exp, method, clip_fid, crop_fid in rows:
        body.append(f'<tr><td class="l">paper: {esc(method)}</td><td>{fmt(clip_fid, 2)}</td><td>{fmt(crop_fid, 2)}</td>'
                    f'<td>–</td><td>–</td><td class="l">{esc(exp)}</td></tr>')
    if paper_row is None:
        note = "no paper experiment corresponds to this dataset"
    elif miniature:
        note = (f"paper rows ({paper_row}) are shown for reference only: this demo dataset uses other data, "
                "image sizes and sample counts, so its numbers are not comparable")
    else:
        note = f"paper rows: {paper_row} (∞-Brush, Tables 1–3; NUMBERS.md)"
    table = ("<table><tr><th class='l'>method</th><th>CLIP FID</th><th>Crop FID</th><th>CLIP KID</th>"
             f"<th>Crop KID</th><th class='l'>counts</th></tr>{''.join(body)}</table>")
    fid = read_json(results / "fid.json")
    protocol = f"<p class='note'>crop protocol: {esc(json.dumps(fid.get('crop_protocol')))}</p>" if fid else ""
    return table + f"<p class='note'>{esc(note)}</p>" + protocol + sanity_table_html(fid)


def metric_cell(result: dict, key: str, digits: int) -> str:
    """A table cell with the metric's value, or 'flagged' (with the reason) when its sanity check failed."""
    verdict = (result.get("trust") or {}).get(key) or {}
    if result.get(key) is not None and verdict.get("trusted") is False:
        return (f'<td class="flagged" title="{esc(verdict.get("reason", ""))}">flagged: failed its sanity pairs'
                f'<br><span class="note">({fmt(result.get(key), digits)}, not a result)</span></td>')
    return f"<td>{fmt(result.get(key), digits)}</td>"


def sanity_table_html(fid: dict | None) -> str:
    """The sanity pairs of fid.json: each metric on real / blurred / noise images, and its verdict."""
    if fid is None:
        return ""
    sanity = fid.get("sanity")
    if not sanity:
        return not_run("no sanity pairs in fid.json: metrics unchecked (fid without --store)")
    values, verdicts = sanity.get("values") or {}, sanity.get("verdicts") or {}
    sets = [s for s in ("real", "blurred", "noise") if s in values]
    rows = []
    for metric, verdict in verdicts.items():
        digits = 2 if metric.endswith("fid") else 4
        cells = "".join(f"<td>{fmt(values[s].get(metric), digits)}</td>" for s in sets)
        state = "trusted" if verdict.get("trusted") else "<b>flagged</b>"
        rows.append(f"<tr><td class='l'>{esc(metric)}</td>{cells}<td class='l'>{state}</td>"
                    f"<td class='l'>{esc(verdict.get('reason', ''))}</td></tr>")
    head = "".join(f"<th>{esc(s)}</th>" for s in sets)
    return (f"<h3>Sanity pairs</h3><p class='note'>each set: {fmt(sanity.get('n_images'))} images "
            f"({fmt(sanity.get('rows_held_out'))} held-out, {fmt(sanity.get('rows_train'))} train rows outside the "
            f"reference; blurred: Gaussian σ {fmt(sanity.get('blur_sigma_px'), 1)} px; noise: "
            f"{esc(sanity.get('noise', ''))}) scored against the same reference as the samples. A metric is trusted "
            f"when blurred and noise both score ≥ {fmt(sanity.get('min_ratio'), 1)}× the real set.</p>"
            f"<table><tr><th class='l'>metric</th>{head}<th class='l'>verdict</th><th class='l'>reason</th></tr>"
            f"{''.join(rows)}</table>")


def section_bach(results: Path) -> str:
    """BACH test accuracy of a classifier trained on real images with and without synthetic ones, beside the
    paper's (``bach.json`` carries the paper's numbers)."""
    result = read_json(results / "bach.json")
    if result is None:
        return not_run("bach.json")
    paper = result.get("paper", {})
    rows = "".join(
        f"<tr><td class='l'>{esc(label)}</td><td>{fmt(result[arm]['mean'])} ± {fmt(result[arm]['sd'])}</td>"
        f"<td>{fmt(paper.get(arm), 2)}</td><td class='l'>{esc(result[arm].get('per_seed'))}</td></tr>"
        for arm, label in (("real", "real"), ("real_plus_synthetic", "real + synthetic")) if arm in result)
    return (f"<table><tr><th class='l'>training data</th><th>test accuracy (mean ± sd)</th><th>paper</th>"
            f"<th class='l'>per seed</th></tr>{rows}</table><p class='note'>{esc(result.get('classifier', ''))}; "
            f"{fmt(result.get('n_train'))} train / {fmt(result.get('n_test'))} test images, "
            f"{fmt(result.get('n_synthetic'))} synthetic, seeds {esc(result.get('seeds'))}</p>")
