"""The report's sections on how well classes come through, each judged by a classifier and read against its
baselines: the encoders the conditions come from (``dino.json``, ``democlip.json``), zero-shot classification of
text-conditioned samples (``zeroshot.json`` + PNG) and controllability (``control.json``: per class, real held-out
patches beside the samples generated for it, accuracies with 95 % intervals beside the judge's own accuracy on real
images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from infbrush.evaluate.report.generation import thumbnail_and_zoom
from infbrush.evaluate.report.kit import esc, fmt, interval, json_and_plot, not_run, png_data_uri, read_json


def section_zeroshot(results: Path) -> str:
    """Accuracy of a classifier on samples conditioned on each class's text prompt, its confusion matrix."""
    result, image = json_and_plot(results, "zeroshot.json", "png", "zeroshot.png", "confusion-matrix PNG")
    if result is None:
        return image
    per_class = "".join(f"<tr><td class='l'>{esc(k)}</td><td>{fmt(v)}</td></tr>"
                        for k, v in (result.get("per_class_accuracy") or {}).items())
    return (f"<p>accuracy {fmt(result.get('accuracy'))} over {fmt(result.get('n_images'))} images "
            f"(chance {fmt(result.get('chance'), 2)})</p>{image}"
            f"<table><tr><th class='l'>class</th><th>accuracy</th></tr>{per_class}</table>")


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
