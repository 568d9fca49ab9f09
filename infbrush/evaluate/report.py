"""One self-contained HTML report per dataset (images embedded as base64 PNG; no external files).

Sections, each reading its own optional inputs under ``results/<ds>/`` and saying "not run" when they are
absent: sample grids per resolution (``samples/<R>/index.json``) with zoomed native-resolution crops, the
FID table beside the paper's numbers (``fid.json``, ``ablation_cano.json``), the zero-shot confusion
matrix (``zeroshot.json`` + PNG), BACH accuracies (``bach.json``), controllability (``control.json``: per
class, real held-out patches beside the samples generated for it, accuracies with 95 % intervals beside the
judge's own accuracy on real images), the encoders against their untrained network / chance (``dino.json``,
``democlip.json``), the spectral check (``spectrum.json`` + PNG), loss curves (``train/metrics.jsonl``,
``dino_ckpt/metrics.jsonl``), run settings (a params dict) and skipped inputs (``**/failures.tsv``). A metric
that ``fid.json`` marks ``"trusted": false`` (it failed its sanity pairs) is shown as flagged, not as a result.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

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
# dataset → (paper experiment, True when the paper's numbers are only a reference: a demo at another scale)
DATASET_EXPERIMENT = {
    "brca_4096": ("TCGA-BRCA 4096²", False), "brca_1024": ("TCGA-BRCA 1024²", False),
    "naip_1024": ("NAIP 1024²", False), "celebahq_256": ("CelebA-HQ 256²", False),
    "demo_brca": ("TCGA-BRCA 4096²", True), "demo_naip": ("NAIP 1024²", True),
}
GRID_IMAGES = 8
THUMB = 192
ZOOM = 256

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.notrun{color:#a00;font-style:italic}.note{color:#555}
.grid img{margin:2px;image-rendering:pixelated}.ours{background:#eef6ff}pre{background:#f6f6f6;padding:.6em}
td.flagged{background:#fde8e8;color:#a00}.pair{display:flex;gap:2em;align-items:flex-start}
.pair img{margin:1px;image-rendering:pixelated}.miss{outline:3px solid #c00}"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def png_data_uri(image: np.ndarray) -> str:
    """(H, W, 3) uint8 → ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def not_run(what: str) -> str:
    return f'<p class="notrun">not run ({esc(what)})</p>'


def fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A cell's text: '–' for None, floats to ``digits`` places (with a '+' on positives when ``signed``)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:{'+' if signed else ''}.{digits}f}"
    return esc(value)


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when the file is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------------------- images
def thumbnail_and_zoom(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(thumbnail (≤ THUMB², 3), zoomed centre crop (ZOOM², 3), crop side in native pixels) of an image.

    Pyramidal TIFFs are read with OpenSlide (a lower level for the thumbnail, a level-0 region for the
    crop), so a 16384² sample never has to be read whole.
    """
    from PIL import Image

    if path.suffix.lower() in (".tif", ".tiff"):
        import openslide

        slide = openslide.OpenSlide(str(path))
        width, height = slide.dimensions
        thumb = np.asarray(slide.get_thumbnail((THUMB, THUMB)).convert("RGB"))
        side = max(32, min(width, height) // 8)
        region = slide.read_region(((width - side) // 2, (height - side) // 2), 0, (side, side))
        crop = np.asarray(region.convert("RGB"))
        slide.close()
    else:
        from infbrush.evaluate.images import read_image

        image = read_image(path)
        height, width = image.shape[:2]
        pil = Image.fromarray(image)
        pil.thumbnail((THUMB, THUMB), Image.BICUBIC)
        thumb = np.asarray(pil)
        side = max(32, min(width, height) // 8)
        y, x = (height - side) // 2, (width - side) // 2
        crop = image[y:y + side, x:x + side]
    zoom = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((ZOOM, ZOOM), Image.NEAREST))
    return thumb, zoom, side


def sample_folders(results: Path) -> list[tuple[str, Path]]:
    """(label, index.json) of every sample folder: samples/<R>/ first (by R), then other sample sets."""
    found = []
    for index in sorted(results.glob("samples*/*/index.json")) + sorted(results.glob("ablation_cano/samples*/*/index.json")):
        rel = index.parent.relative_to(results)
        found.append((str(rel), index))

    def key(item: tuple[str, Path]):
        parts = Path(item[0]).parts
        return (parts[0] != "samples", parts[:-1], int(parts[-1]) if parts[-1].isdigit() else 0, item[0])

    return sorted(found, key=key)


def section_samples(results: Path) -> str:
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.images import read_sample_index

    folders = sample_folders(results)
    if not folders:
        return not_run("no samples/<R>/index.json")
    parts = []
    for label, index in folders:
        try:
            records = read_sample_index(index)[:GRID_IMAGES]
        except InfbrushError as err:
            parts.append(f"<h3>{esc(label)}</h3>" + not_run(str(err)))
            continue
        cells, zooms = [], []
        for i, record in enumerate(records):
            try:
                thumb, zoom, side = thumbnail_and_zoom(record.path)
            except Exception as err:  # noqa: BLE001 — a broken image must not sink the whole report
                cells.append(f'<span class="notrun">{esc(record.path.name)}: {esc(err)}</span>')
                continue
            title = f"{record.path.name} seed {record.seed} cond {record.condition_id} label {record.label_name or record.label}"
            cells.append(f'<img src="{png_data_uri(thumb)}" title="{esc(title)}" width="{THUMB}">')
            if i < 2:
                zooms.append(f'<img src="{png_data_uri(zoom)}" width="{ZOOM}" '
                             f'title="{side}x{side} native pixels at the centre of {esc(record.path.name)}">')
        res = records[0].resolution if records else "?"
        parts.append(f"<h3>{esc(label)} ({esc(res)} px)</h3><div class='grid'>{''.join(cells)}</div>"
                     f"<p class='note'>zoom: centre crops of 1/8 of the side at native resolution, "
                     f"nearest-neighbour enlarged</p><div class='grid'>{''.join(zooms)}</div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------- tables
def paper_rows(dataset: str) -> tuple[list[tuple], str | None, bool]:
    """(paper rows of the dataset's experiment, experiment name, reference_only)."""
    experiment, reference_only = DATASET_EXPERIMENT.get(dataset, (None, False))
    return [r for r in PAPER_FID if r[0] == experiment], experiment, reference_only


def section_fid(dataset: str, results: Path) -> str:
    rows, experiment, reference_only = paper_rows(dataset)
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
    if experiment is None:
        note = "no paper experiment corresponds to this dataset"
    elif reference_only:
        note = (f"paper rows ({experiment}) are shown for reference only: this demo dataset uses other data, "
                "image sizes and sample counts, so its numbers are not comparable")
    else:
        note = f"paper rows: {experiment} (∞-Brush, Tables 1–3; NUMBERS.md)"
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


def _json_and_plot(results: Path, name: str, plot_key: str, plot_name: str, what: str) -> tuple[dict | None, str]:
    """(result, <img> of its plot or a not-run note) of ``results/<name>``; (None, a not-run note) without it. The
    plot is the path the result records under ``plot_key``, else ``results/<plot_name>``."""
    result = read_json(results / name)
    if result is None:
        return None, not_run(name)
    png = Path(result.get(plot_key) or results / plot_name)
    png = png if png.is_file() else results / plot_name
    return result, (f'<img src="{file_data_uri(png)}">' if png.is_file() else not_run(what))


def section_zeroshot(results: Path) -> str:
    result, image = _json_and_plot(results, "zeroshot.json", "png", "zeroshot.png", "confusion-matrix PNG")
    if result is None:
        return image
    per_class = "".join(f"<tr><td class='l'>{esc(k)}</td><td>{fmt(v)}</td></tr>"
                        for k, v in (result.get("per_class_accuracy") or {}).items())
    return (f"<p>accuracy {fmt(result.get('accuracy'))} over {fmt(result.get('n_images'))} images "
            f"(chance {fmt(result.get('chance'), 2)})</p>{image}"
            f"<table><tr><th class='l'>class</th><th>accuracy</th></tr>{per_class}</table>")


def section_bach(results: Path) -> str:
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


def _per_class_rows(classes: list, columns: list[list | None]) -> str:
    """Table rows: one per class, one cell per column (a list in ``classes`` order, or None for a blank column)."""
    return "".join(f"<tr><td class='l'>{esc(name)}</td>"
                   + "".join(f"<td>{fmt(col[i]) if col and i < len(col) else ''}</td>" for col in columns) + "</tr>"
                   for i, name in enumerate(classes))


def section_encoders(results: Path) -> str:
    """The encoders the conditions come from, each against its trivial baselines: the trained DINO's k-NN beside
    the same network untrained (``dino.json``), the demo CLIP's zero-shot beside chance (``democlip.json``)."""
    parts = []
    dino = read_json(results / "dino.json")
    if dino and dino.get("knn_accuracy") is not None:
        classes = dino.get("classes") or []
        rows = _per_class_rows(classes, [dino.get("knn_accuracy_per_class"),
                                         dino.get("knn_accuracy_random_init_per_class"),
                                         dino.get("n_test_per_class")])
        table = "".join(f"<tr><td class='l'>{esc(name)}</td>"
                        f"<td>{interval(dino.get(key), dino.get(key + '_ci95'), signed=key == 'knn_gain')}</td></tr>"
                        for name, key in ((f"trained ({fmt(dino.get('steps'))} steps)", "knn_accuracy"),
                                          ("same network untrained", "knn_accuracy_random_init"),
                                          ("gain (paired)", "knn_gain")))
        table += (f"<tr><td class='l'>chance / majority</td>"
                  f"<td>{fmt(dino.get('chance'))} / {fmt(dino.get('majority_baseline'))}</td></tr>")
        parts.append(
            f"<h3>DINO (k-NN, k = {fmt(dino.get('k'))})</h3><table><tr><th class='l'>network</th>"
            f"<th>held-out accuracy [95 %]</th></tr>{table}</table>"
            + (f"<table><tr><th class='l'>class</th><th>trained</th><th>untrained</th><th>held-out images</th></tr>"
               f"{rows}</table>" if classes else "")
            + f"<p class='note'>{esc(dino.get('protocol', ''))}; {fmt(dino.get('n_train'))} train / "
              f"{fmt(dino.get('n_test'))} held-out images; last loss {fmt(dino.get('last_loss'))}</p>")
    clip = read_json(results / "democlip.json")
    if clip and clip.get("zero_shot_accuracy") is not None:
        classes = clip.get("classes") or list(clip.get("per_class_accuracy") or {})
        per_class = [(clip.get("per_class_accuracy") or {}).get(c) for c in classes]
        rows = _per_class_rows(classes, [per_class, clip.get("n_test_per_class")])
        parts.append(
            f"<h3>Demo CLIP (zero-shot on held-out images)</h3><p>accuracy "
            f"{interval(clip['zero_shot_accuracy'], clip.get('zero_shot_accuracy_ci95'))} "
            f"(chance {fmt(clip.get('chance'))}, majority {fmt(clip.get('majority_baseline'))}); "
            f"{fmt(clip.get('n_train'))} train / {fmt(clip.get('n_test'))} held-out images; loss "
            f"{fmt(clip.get('first_epoch_loss'))} → {fmt(clip.get('last_epoch_loss'))} "
            f"over {fmt(clip.get('epochs'))} epochs</p>"
            f"<table><tr><th class='l'>class</th><th>accuracy</th><th>held-out images</th></tr>{rows}</table>")
    return "".join(parts) or not_run("dino.json / democlip.json (only the encoders the pipeline trains)")


CONTROL_IMAGES = 8   # images per class and side (real held-out | generated) in the control gallery
CONTROL_THUMB = 96


def interval(value: Any, ci: Any, digits: int = 3, signed: bool = False) -> str:
    """'0.950 [0.870, 0.984]' from a value and a [lo, hi] pair (either may be missing); ``signed`` for a
    difference: '+0.087 [+0.040, +0.140]'."""
    if not ci or len(ci) != 2:
        return fmt(value, digits, signed)
    return f"{fmt(value, digits, signed)} [{fmt(ci[0], digits, signed)}, {fmt(ci[1], digits, signed)}]"


def small_thumb(image: np.ndarray, side: int = CONTROL_THUMB) -> str:
    """A data URI of an (H, W, 3) uint8 image scaled to ``side`` px (nearest-neighbour up, bicubic down)."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    filt = Image.NEAREST if pil.width < side else Image.BICUBIC
    return png_data_uri(np.asarray(pil.resize((side, side), filt)))


def real_examples(store_path: Path, names: list[str], n: int) -> dict[str, list[np.ndarray]]:
    """Up to ``n`` real held-out (split == 1) images per class name of an image store."""
    from infbrush.data.store import ImageStore

    store = ImageStore(store_path)
    try:
        return {name: [store.image(int(r)) for r in np.flatnonzero((store.split == 1) & (store.labels == k))[:n]]
                for k, name in enumerate(store.label_names) if name in names}
    finally:
        store.close()


def generated_examples(index_path: Path, gen: dict, n: int) -> dict[str, list[tuple[str, bool, str]]]:
    """Up to ``n`` (data URI, judged right, title) of the generated images per intended class."""
    from infbrush.evaluate.images import read_image

    out: dict[str, list[tuple[str, bool, str]]] = {}
    for item in gen.get("images") or []:
        cls = out.setdefault(item["intended"], [])
        if len(cls) >= n:
            continue
        path = index_path.parent / item["file"]
        image = thumbnail_and_zoom(path)[0] if path.suffix.lower() in (".tif", ".tiff") else read_image(path)
        right = item["judged"] == item["intended"]
        cls.append((small_thumb(image), right, f"{item['file']}: judged {item['judged']}"))
    return out


def control_gallery(results: Path, result: dict) -> str:
    """Per class: real held-out patches beside the samples generated for that class (misjudged ones outlined)."""
    gen = result.get("generated") or {}
    names = list((gen.get("per_class") or {}).keys())
    store = Path(result.get("store") or "")
    store = store if store.is_file() else results / "images.h5"
    index = Path(result.get("samples") or "")
    if not index.is_file() and result.get("resolution"):
        res = result["resolution"]
        index = results / "samples" / str(max(res) if isinstance(res, list) else res) / "index.json"
    try:
        real = real_examples(store, names, CONTROL_IMAGES) if store.is_file() else {}
        made = generated_examples(index, gen, CONTROL_IMAGES) if index.is_file() else {}
    except Exception as err:  # noqa: BLE001 — a missing or broken image must not sink the whole report
        return not_run(f"control gallery: {err}")
    if not real and not made:
        return not_run(f"control gallery: neither {store} nor {index} readable")
    rows = []
    for name in names:
        left = "".join(f'<img src="{small_thumb(im)}" width="{CONTROL_THUMB}" title="real held-out {esc(name)}">'
                       for im in real.get(name, []))
        right = "".join(f'<img src="{uri}" width="{CONTROL_THUMB}" title="{esc(title)}"'
                        f'{"" if ok else " class=miss"}>' for uri, ok, title in made.get(name, []))
        rows.append(f"<h4>{esc(name)}</h4><div class='pair'><div><p class='note'>real held-out</p>"
                    f"{left or not_run('no real held-out image')}</div><div><p class='note'>generated for "
                    f"{esc(name)} (outlined: judged another class)</p>{right or not_run('no generated image')}</div>"
                    f"</div>")
    return "".join(rows)


def section_control(results: Path, variant: str = "") -> str:
    """Control figures of the main model (control.json) or of a variant model (<variant>/control.json)."""
    path = results / variant / "control.json" if variant else results / "control.json"
    result = read_json(path)
    if result is None:
        return not_run(str(path.relative_to(results)))
    gen, judge = result.get("generated") or {}, result.get("judge") or {}
    real = judge.get("real_held_out") or {}
    if not real:  # an older control.json: no judge figures to read the control numbers against
        return not_run("control.json predates the real-data judge (rerun `infbrush control`)")
    probe = result.get("condition_probe")  # embedding models: what the conditions themselves tell of the class
    per_probe = (probe or {}).get("per_class") or {}
    probe_cell = (lambda k: f"<td>{interval(per_probe.get(k, {}).get('accuracy'), per_probe.get(k, {}).get('ci95'))}"
                            "</td>") if probe else (lambda k: "")
    rows = "".join(
        f"<tr><td class='l'>{esc(k)}</td><td>{interval(v.get('accuracy'), v.get('ci95'))}</td>"
        f"<td>{fmt(v.get('n_images'))}</td><td>{interval(v.get('judge_real_accuracy'), v.get('judge_real_ci95'))}</td>"
        f"<td>{fmt(v.get('judge_real_n_images'))}</td>{probe_cell(k)}</tr>"
        for k, v in (gen.get("per_class") or {}).items())
    rows += (f"<tr><th class='l'>mean of classes</th><th>{interval(gen.get('mean_accuracy'), gen.get('mean_ci95'))}</th>"
             f"<th>{fmt(gen.get('n_images'))}</th><th>{interval(real.get('mean_accuracy'), real.get('mean_ci95'))}</th>"
             f"<th>{fmt(real.get('n_images'))}</th>"
             + (f"<th>{interval(probe.get('mean_accuracy'), probe.get('mean_ci95'))}</th>" if probe else "")
             + "</tr>")
    probe_head = "<th>the conditions themselves: k-NN [95 % CI]</th>" if probe else ""
    probe_note = (f" The last column is the condition's own ceiling: {esc(probe.get('probe', ''))}; a generator "
                  "steered by an embedding can at best draw the class its embedding stands for." if probe else "")
    trained = judge.get("trained_on") or {}
    intervals = result.get("intervals") or {}
    how = result.get("sampled_with") or {}
    sampled = (f" Samples of the model at step {fmt(how.get('step'))}: guidance scale "
               f"{fmt(how.get('guidance_scale'), 1)}, DDIM {fmt(how.get('steps'))} steps, seeds from "
               f"{fmt(how.get('seed'))}." if how else "")
    return (f"<p>mean accuracy on generated images {interval(gen.get('mean_accuracy'), gen.get('mean_ci95'))} "
            f"(goal {fmt(result.get('goal'), 2)}, met: {esc(result.get('goal_met'))}; "
            f"{fmt(gen.get('relative_to_real'), 2)} of the judge's accuracy on real images). "
            f"The judge on {fmt(real.get('n_images'))} real held-out images: "
            f"{interval(real.get('overall_accuracy'), real.get('overall_ci95'))} overall, "
            f"{interval(real.get('mean_accuracy'), real.get('mean_ci95'))} mean of classes "
            f"(goal {fmt(judge.get('goal'), 2)}, met: {esc(judge.get('goal_met'))}); "
            f"fit on {fmt(trained.get('n_images'))} real training images.{sampled}</p>"
            "<table><tr><th class='l'>class</th><th>generated: accuracy [95 % CI]</th><th>images</th>"
            f"<th>judge on real held-out [95 % CI]</th><th>images</th>{probe_head}</tr>"
            f"{rows}</table><p class='note'>{esc(judge.get('classifier', ''))}. Intervals: per class "
            f"{esc(intervals.get('per_class', ''))}; mean {esc(intervals.get('mean', ''))}.{probe_note}</p>"
            + control_gallery(results, result))


def _scaled_png(path: Path, side: int = 256) -> str:
    """An <img> of a PNG file scaled (nearest) so its height is ``side`` px; a note when the file is missing."""
    from PIL import Image

    if not path.is_file():
        return not_run(path.name)
    with Image.open(path) as im:
        im = im.convert("RGB")
        width = max(1, round(im.width * side / im.height))
        return f'<img src="{png_data_uri(np.asarray(im.resize((width, side), Image.NEAREST)))}" height="{side}">'


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
    images = "".join(f"<div><p class='note'>{esc(title)}</p>{_scaled_png(folder / name)}</div>"
                     for title, name in (("map", "map.png"), ("ours (seed 0)", "brush.png"),
                                         ("per-region baseline (seed 0)", "baseline.png"),
                                         ("real mosaic (cut along the map)", "real_mosaic.png")))
    strips = "".join(f"<p class='note'>{esc(title)}</p>{_scaled_png(folder / name, 160)}"
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


def section_spectrum(results: Path) -> str:
    result, image = _json_and_plot(results, "spectrum.json", "plot", "spectrum.png", "spectrum PNG")
    if result is None:
        return image
    rows = []
    for res, r in sorted((result.get("resolutions") or {}).items(), key=lambda kv: int(kv[0])):
        for item in r.get("lattice") or []:
            if "skipped" in item:
                rows.append(f"<tr><td>{esc(res)}</td><td>{fmt(item['freq'], 0)}</td>"
                            f"<td colspan='4' class='l note'>{esc(item['skipped'])}</td></tr>")
                continue
            peak = "<b>peak above real</b>" if item.get("peak_above_real") else "no"
            rows.append(f"<tr><td>{esc(res)}</td><td>{fmt(item['freq'], 0)}</td>"
                        f"<td>{fmt(item.get('relative_to_real'), 2)}</td><td>{fmt(item.get('samples_prominence'), 2)}</td>"
                        f"<td>{fmt(item.get('real_prominence'), 2)}</td><td class='l'>{peak}</td></tr>")
        bands = ", ".join(f"[{b['lo']:g}, {b['hi']:g}): {b['ratio']:.2f}" for b in r.get("bands") or [])
        rows.append(f"<tr><td>{esc(res)}</td><td colspan='5' class='l note'>energy samples / real per band "
                    f"(cycles per side): {esc(bands)}</td></tr>")
    peaks = result.get("peaks_above_real") or []
    summary = ("no lattice peak above the real images' level" if not peaks else
               "lattice peaks above the real images' level: "
               + ", ".join(f"{p['freq']:g} cycles per side at {p['resolution']}²" for p in peaks))
    return (f"<p>{esc(summary)} (lattice frequencies {esc(result.get('lattice_freqs'))}, real images: "
            f"{fmt((result.get('real') or {}).get('n_images'))}, resized to each resolution)</p>{image}"
            "<table><tr><th>resolution</th><th>frequency</th><th>power / real</th><th>prominence (samples)</th>"
            f"<th>prominence (real)</th><th class='l'>peak</th></tr>{''.join(rows)}</table>"
            "<p class='note'>prominence: power in the 3×3 FFT bins at the lattice points over 9 × the median power "
            f"of its ring; a peak counts above {fmt(result.get('peak_factor'), 1)}× the real images' "
            "prominence.</p>")


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
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def section_losses(results: Path) -> str:
    parts = []
    for name, path in (("diffusion model", results / "train" / "metrics.jsonl"),
                       ("CANO ablation", results / "ablation_cano" / "train" / "metrics.jsonl"),
                       ("DINO", results / "dino_ckpt" / "metrics.jsonl")):
        if path.is_file():
            uri = loss_curve_png(path)
            parts.append(f"<h3>{esc(name)}</h3>" + (f'<img src="{uri}">' if uri else not_run(f"{path}: no loss")))
    return "".join(parts) or not_run("train/metrics.jsonl")


def section_viewer(results: Path) -> str:
    """Link to the zoomable viewer (``viewer/index.html``, `infbrush viewer`) and its headless-Chromium preview."""
    viewer = results / "viewer"
    if not (viewer / "index.html").is_file():
        return not_run(f"viewer/index.html: snakemake {results}/viewer/index.html")
    parts = ["<p><a href='viewer/index.html'>Open the zoomable viewer</a> (OpenSeadragon, opens from disk): deep-zoom "
             "tiles of generated images beside the real slides / patches of their conditions, synchronised zoom.</p>"]
    preview = read_json(viewer / "preview.json") or {}
    if (viewer / "preview.png").is_file():
        after = (preview.get("after") or [{}])[0]
        parts.append(f"<p class='note'>Preview: headless Chromium after zooming in (Deep Zoom levels drawn: "
                     f"{esc(after.get('drawnLevels', '?'))}, deepest {esc(after.get('maxLevel', '?'))}; page errors: "
                     f"{len(preview.get('problems', []))}).</p><a href='viewer/index.html'>"
                     f"<img src='{file_data_uri(viewer / 'preview.png')}' style='max-width:100%' alt='viewer preview'></a>")
    return "".join(parts)


def section_failures(results: Path) -> str:
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
    if not params:
        return not_run("no run settings given")
    return f"<pre>{esc(json.dumps(params, indent=2, default=str))}</pre>"


def build_report(dataset: str, results_dir: str | os.PathLike, params: dict | None = None) -> str:
    """The report's HTML text for ``dataset`` from the outputs under ``results_dir``."""
    results = Path(results_dir)
    sections: list[tuple[str, Callable[[], str]]] = [
        ("Samples", lambda: section_samples(results)),
        ("Zoomable viewer", lambda: section_viewer(results)),
        ("CLIP FID and Crop FID", lambda: section_fid(dataset, results)),
        ("Zero-shot classification of text-conditioned samples", lambda: section_zeroshot(results)),
        ("BACH downstream", lambda: section_bach(results)),
        ("Encoders the conditions come from", lambda: section_encoders(results)),
        ("Controllability (embedding-conditioned model)", lambda: section_control(results)),
        ("Controllability (label-conditioned model)", lambda: section_control(results, "label")),
        ("Spectral check", lambda: section_spectrum(results)),
        ("The brush: conditions painted into regions", lambda: section_brush(results)),
        ("Loss curves", lambda: section_losses(results)),
        ("Run settings", lambda: section_settings(params)),
        ("Skipped inputs", lambda: section_failures(results)),
    ]
    body = "".join(f"<h2>{esc(title)}</h2>{make()}" for title, make in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>infbrush report: {esc(dataset)}</title>"
            f"<style>{CSS}</style></head><body><h1>∞-Brush report: {esc(dataset)}</h1>"
            f"<p class='note'>results folder: {esc(results)}</p>{body}</body></html>\n")


def write_report(out: str | os.PathLike, dataset: str, results_dir: str | os.PathLike,
                 params: dict | None = None) -> Path:
    """Build the report and write it atomically to ``out``."""
    from infbrush.io import atomic_path

    text = build_report(dataset, results_dir, params)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)
