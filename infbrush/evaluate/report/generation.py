"""The report's sections on the generated images themselves: sample grids per resolution with zoomed
native-resolution crops (``samples/<R>/index.json``), the zoomable viewer (``viewer/``) and the spectral check
for lattice artefacts (``spectrum.json`` + PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from infbrush.evaluate.report.kit import esc, file_data_uri, fmt, json_and_plot, not_run, png_data_uri, read_json

GRID_IMAGES = 8
THUMB = 192
ZOOM = 256


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
    """Per sample folder: a grid of the first GRID_IMAGES thumbnails and native-resolution crops of two."""
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


def section_spectrum(results: Path) -> str:
    """Power at the lattice frequencies (where a grid artefact would peak) of samples against real images."""
    result, image = json_and_plot(results, "spectrum.json", "plot", "spectrum.png", "spectrum PNG")
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
