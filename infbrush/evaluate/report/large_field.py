"""The report's section on large fields (``large_field.json`` + ``large_field.png``): the whole-image model
against patch-based assembly on the same held-out reference fields, as the paper's Table 1 compares ∞-Brush with
Graikos et al. (CLIP FID on whole images for global structure, Crop FID on native-resolution crops for detail),
with the seams on the tile grid, the embedding similarity to each reference and the time per field."""
from __future__ import annotations

from pathlib import Path

from infbrush.evaluate.report.kit import esc, fmt, interval, not_run, read_json, scaled_png

# Table 1 of the paper (TCGA-BRCA 4096²): whole-image CLIP FID and Crop FID of the two ways to make a large image.
PAPER_TABLE1 = {"∞-Brush (whole image)": {"clip_fid": 2.63, "crop_fid": 14.76},
                "Graikos et al. (patch-based)": {"clip_fid": 2.75, "crop_fid": 11.30}}


def _difference(method: dict, key: str, base: dict, reference: str = "whole_image") -> str:
    """The paired difference method − reference: its point value (from the two methods' figures) and interval."""
    diff = (method.get("minus_" + reference) or {}).get(key)
    if isinstance(diff, dict):
        return interval(diff.get("mean"), diff.get("ci95"), signed=True)
    if not diff:
        return "–"
    metric = key.removesuffix("_ci95")
    point = method[metric] - base[metric] if metric in method and metric in base else None
    return interval(point, diff, 4, signed=True)


def section_large_field(results: Path) -> str:
    """Whole-image model vs patch-based fields: the metrics per method, paired differences, a gallery."""
    result = read_json(results / "large_field.json")
    if result is None:
        return not_run("large_field.json (target results/<ds>/large_field.json of a dataset with a large_field block)")
    methods = result.get("methods") or {}
    base = methods.get("whole_image") or {}
    rows = []
    for name, m in methods.items():
        seam, emb = m.get("seam_ratio") or {}, m.get("embedding_similarity") or {}
        rows.append(f"<tr><td>{esc(name)}</td><td>{fmt(m.get('whole_image_kid'), 4)}</td>"
                    f"<td>{fmt(m.get('crop_kid'), 4)}</td><td>{interval(seam.get('mean'), seam.get('ci95'), 2)}</td>"
                    f"<td>{interval(emb.get('mean'), emb.get('ci95'))}</td><td>{fmt(m.get('seconds_per_image'), 2)}</td>"
                    f"<td>{_difference(m, 'whole_image_kid_ci95', base)}</td>"
                    f"<td>{_difference(m, 'crop_kid_ci95', base)}</td></tr>")
    for name, m in (result.get("baselines") or {}).items():  # real fields not made for the references
        seam, emb = m.get("seam_ratio") or {}, m.get("embedding_similarity") or {}
        rows.append(f"<tr><td>{esc(name)} (baseline)</td><td>{fmt(m.get('whole_image_kid'), 4)}</td>"
                    f"<td>{fmt(m.get('crop_kid'), 4)}</td><td>{interval(seam.get('mean'), seam.get('ci95'), 2)}</td>"
                    f"<td>{interval(emb.get('mean'), emb.get('ci95'))}</td><td>–</td><td>–</td><td>–</td></tr>")
    real = ((result.get("real") or {}).get("seam_ratio") or {})
    rows.append(f"<tr><td>real fields</td><td>–</td><td>–</td><td>{interval(real.get('mean'), real.get('ci95'), 2)}"
                f"</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>")
    paper = "".join(f"<tr><td>{esc(name)}</td><td>{fmt(v['clip_fid'], 2)}</td><td>{fmt(v['crop_fid'], 2)}</td></tr>"
                    for name, v in PAPER_TABLE1.items())
    return (f"<p>{result.get('n_fields')} held-out reference fields of {result.get('field_size')}² px; the patch-based "
            f"methods assemble {result.get('tile_size')}² tiles of the small model, each conditioned on its tile of "
            "the reference (patch_based_field_condition: every tile on the whole reference field's embedding, the one"
            " vector the whole-image model is told); the same references and seeds for every method. KID: lower is "
            "better; seam ratio: gradient energy on the tile grid over the interiors (real fields give the level of "
            "no seam); embedding similarity: cosine of the encoder's embeddings of generated and reference field. "
            "Differences are against the whole-image model, paired over the references (95 % bootstrap). The "
            "baseline row is as "
            "many real training fields, not made for the references: the KID of a perfect generator with this many "
            "images, and the similarity of a field that ignores its condition.</p>"
            "<table><tr><th>method</th><th>whole-image KID</th><th>Crop KID</th><th>seam ratio</th>"
            "<th>embedding similarity</th><th>s / field</th><th>Δ whole-image KID</th><th>Δ Crop KID</th></tr>"
            + "".join(rows) + "</table>"
            "<p class='note'>The paper's Table 1 (TCGA-BRCA 4096², FID ×1 on CLIP and Inception features; not comparable "
            "with this miniature's KID):</p><table><tr><th>method</th><th>CLIP FID</th><th>Crop FID</th></tr>"
            + paper + "</table>"
            + "<p>reference | whole image | patch-based (| overlapped), first references:</p>"
            + scaled_png(results / "large_field.png", 512))
