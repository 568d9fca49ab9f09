"""The report's section on the brush (``brush.json`` + PNGs in ``brush/``): the example map beside the painted
image and the per-region baseline, per-region accuracy of the judge with its ceilings, seams along the region
boundaries and the cost against a single-condition sample, with each missed goal said in words."""
from __future__ import annotations

from pathlib import Path

from infbrush.evaluate.report.kit import esc, fmt, interval, not_run, read_json, scaled_png


def brush_shortfalls(result: dict) -> list[str]:
    """Each missed brush goal in words: by how much, and the ceiling beside it (single-condition samples on the
    same crops, the judge on real crops of that class, real boundaries for seams)."""
    goals = result.get("goals") or {}
    lines = []
    goal = goals.get("region_accuracy")
    for r in result.get("regions") or []:
        ours = (r.get("ours") or {}).get("accuracy")
        if goal is None or ours is None or ours >= goal:
            continue
        single = (r.get("single_condition") or {}).get("accuracy")
        judge = r.get("judge_real_crops_accuracy")
        lines.append(f"region {r.get('name')}: {ours:.2f}, {goal - ours:.2f} below the {goal:.2f} goal; on the same "
                     f"crops the single-condition samples of {r.get('name')} score "
                     f"{'–' if single is None else f'{single:.2f}'} and the judge scores "
                     f"{'–' if judge is None else f'{judge:.2f}'} on real crops of the class"
                     + (" (the model's own whole-image control bounds this region)"
                        if single is not None and single < goal else ""))
    seams = ((result.get("seams") or {}).get("ours") or {}).get("mean")
    real = ((result.get("seams") or {}).get("real_mosaic") or {}).get("mean")
    seam_goal = goals.get("seam_ratio")
    if seams is not None and seam_goal is not None and seams > seam_goal:
        lines.append(f"seams: ratio {seams:.2f}, {seams / seam_goal:.2f}× the {seam_goal:.2f} goal; real patches "
                     f"cut along the same map measure {'–' if real is None else f'{real:.2f}'}"
                     + (" (the goal is stricter than real boundaries)" if real is not None and real > seam_goal else ""))
    return lines


def section_brush(results: Path) -> str:
    """The brush: the example map beside the painted image, per-region accuracy, seams and cost."""
    result = read_json(results / "brush.json")
    if result is None:
        return not_run("brush.json")
    folder = results / "brush"
    goals = result.get("goals") or {}
    acc = result.get("mean_region_accuracy") or {}
    rows = []
    for r in result.get("regions") or []:
        cells = "".join(f"<td>{interval((r.get(k) or {}).get('accuracy'), (r.get(k) or {}).get('ci95'))}</td>"
                        for k in ("ours", "baseline", "single_condition"))
        n = (r.get("ours") or {}).get("n_crops")
        rows.append(f"<tr><td class='l'>{esc(r.get('key'))} {esc(r.get('name'))}</td>{cells}<td>{fmt(n)}</td>"
                    f"<td>{fmt(r.get('judge_real_crops_accuracy'))}</td></tr>")
    rows.append("<tr><th class='l'>mean of regions</th>" + "".join(
        f"<th>{fmt(acc.get(k))}</th>" for k in ("ours", "baseline", "single_condition")) + "<th></th><th></th></tr>")
    seams = result.get("seams") or {}
    seam_rows = "".join(f"<tr><td class='l'>{esc(k)}</td><td>{fmt(v.get('mean'), 2)}</td>"
                        f"<td>{fmt(v.get('min'), 2)} – {fmt(v.get('max'), 2)}</td></tr>" for k, v in seams.items())
    cost = result.get("cost") or {}
    wall = cost.get("wall_seconds") or {}
    proto = result.get("protocol") or {}
    judge = (proto.get("judge") or {}).get("real_held_out_overall") or {}
    images = "".join(f"<div><p class='note'>{esc(title)}</p>{scaled_png(folder / name)}</div>"
                     for title, name in (("map", "map.png"), ("ours (seed 0)", "brush.png"),
                                         ("per-region baseline (seed 0)", "baseline.png"),
                                         ("real mosaic (cut along the map)", "real_mosaic.png")))
    strips = "".join(f"<p class='note'>{esc(title)}</p>{scaled_png(folder / name, 160)}"
                     for title, name in (("ours, every seed", "seeds.png"), ("baseline, every seed", "baseline_seeds.png"),
                                         ("single-condition samples, one per region's condition",
                                          "single_condition.png")))
    shortfalls = brush_shortfalls(result)
    whole = read_json(Path(result.get("weights") or "").parent / "control.json") if result.get("weights") else None
    whole_gen = (whole or {}).get("generated") or {}
    per_class = ", ".join(f"{esc(k)} {fmt(v.get('accuracy'), 2)}" for k, v in (whole_gen.get("per_class") or {}).items())
    whole_line = (f" Whole-image control of the same model (its control.json): "
                  f"{interval(whole_gen.get('mean_accuracy'), whole_gen.get('mean_ci95'))} mean of classes "
                  f"({per_class}); region accuracy is bounded by it." if whole_gen else "")
    return (f"<p>Map {esc(result.get('map'))}, legend {esc(result.get('legend'))}, {fmt(result.get('size'))}² "
            f"output, blend {fmt(result.get('blend_px'), 1)} px, guidance {fmt(result.get('guidance_scale'), 1)}, "
            f"{len(result.get('seeds') or [])} seeds, {fmt(result.get('steps'))} DDIM steps.</p>"
            f"<div class='pair'>{images}</div>{strips}"
            "<h4>Per-region accuracy (judge on crops inside each region)</h4>"
            "<table><tr><th class='l'>region</th><th>ours [95 % CI]</th><th>per-region baseline</th>"
            "<th>single-condition sample, same crops</th><th>crops</th><th>judge on real crops</th></tr>"
            f"{''.join(rows)}</table>"
            f"<p class='note'>Judge fit on real training crops of {fmt(proto.get('crop_fraction'), 2)} of the side "
            f"({fmt(proto.get('crop_px'))} px crops here, ≥ {fmt(proto.get('margin_px'))} px from other regions); "
            f"on real held-out crops {interval(judge.get('accuracy'), judge.get('ci95'))}. "
            f"{esc(proto.get('intervals', ''))}. Goal ≥ {fmt(goals.get('region_accuracy'), 2)} per region: met "
            f"{esc(goals.get('region_accuracy_met'))}; ours matches or beats the baseline: "
            f"{esc(goals.get('ours_matches_or_beats_baseline'))}.{whole_line}</p>"
            + (f"<p class='note'><b>Goals missed</b>: {'; '.join(esc(line) for line in shortfalls)}.</p>"
               if shortfalls else "") +
            "<h4>Seams: gradient energy in a band along the boundaries / region interiors</h4>"
            f"<table><tr><th class='l'>images</th><th>mean ratio</th><th>range</th></tr>{seam_rows}</table>"
            f"<p class='note'>band ±{fmt(proto.get('seam_band_px'), 1)} px, interiors beyond "
            f"{fmt(proto.get('seam_interior_px'), 1)} px; goal ≤ {fmt(goals.get('seam_ratio'), 2)} (met: "
            f"{esc(goals.get('seam_met'))}).</p>"
            "<h4>Cost relative to a single-condition sample of the same size</h4>"
            "<table><tr><th class='l'></th><th>FLOPs / single</th><th>wall time / single</th></tr>"
            f"<tr><td class='l'>ours</td><td>{fmt(cost.get('flops_ratio_ours_vs_single'), 2)}</td>"
            f"<td>{fmt(cost.get('wall_ratio_ours_vs_single'), 2)}</td></tr>"
            f"<tr><td class='l'>per-region baseline</td><td>{fmt(cost.get('flops_ratio_baseline_vs_single'), 2)}</td>"
            f"<td>{fmt(cost.get('wall_ratio_baseline_vs_single'), 2)}</td></tr></table>"
            f"<p class='note'>wall seconds for {fmt(cost.get('images_per_run'))} images: ours "
            f"{fmt(wall.get('ours'), 1)}, baseline {fmt(wall.get('baseline'), 1)}, single-condition (mean over "
            f"regions) {fmt(wall.get('single_condition_mean'), 1)}; load average before/after "
            f"{esc(cost.get('load_average_before'))} / {esc(cost.get('load_average_after'))}. "
            f"{esc(cost.get('note', ''))}. Goal ≤ {fmt(goals.get('cost_ratio'), 2)}× (FLOPs met: "
            f"{esc(goals.get('cost_met_flops'))}, wall met: {esc(goals.get('cost_met_wall'))}).</p>")
