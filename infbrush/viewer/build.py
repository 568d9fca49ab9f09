"""Build ``results/<ds>/viewer/``: pair each generated image with a real one, tile both, write the page.

Pairing: a sample conditioned on a real image's embedding (``source`` "held-out" or "train") is shown beside
that image; other samples (text prompt, class label) beside a held-out real image of the same class (else any real
image). A painted image of the brush (``brush.json`` of ``infbrush brush-eval``) is shown beside its
condition map. For WSI datasets the real side is the slide itself (through ``tiles/<slide>.h5``), cropped to the
condition patch's field of view times ``context``: zoom and pan are synchronised so that the generated image
and the real patch box show the same physical scale. Otherwise the real side is the stored patch.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from infbrush.errors import InfbrushError
from infbrush.viewer.deepzoom import (DeepZoomOptions, ViewerInputError, array_slide, image_mpp, open_image,
                                      write_dzi)
from infbrush.viewer.openseadragon import find_openseadragon, openseadragon_version

WSI_ID = re.compile(r"^(?P<slide>.+)/(?P<x>\d+)_(?P<y>\d+)$")


@dataclass
class ViewerSummary:
    """What a build did: pairs shown, tiles written, failures (path, reason), seconds."""

    out: Path
    pairs: int = 0
    tiles: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class GeneratedSources:
    """The generated side of the page: sample indexes of ``infbrush sample`` (index.json files or folders holding
    them; the first ``max_images`` of each), loose ``images`` without an index, ``brush`` results (brush.json)."""

    samples: Sequence[str | os.PathLike] = ()
    images: Sequence[str | os.PathLike] = ()
    brush: Sequence[str | os.PathLike] = ()
    max_images: int = 4


@dataclass(frozen=True)
class RealSources:
    """Where the real counterparts are: the image ``store``; for WSI datasets the ``tiles`` folder and the
    ``slides`` (when not at the path recorded in the tiles), shown as a region ``context`` patch sides wide."""

    store: str | os.PathLike | None = None
    tiles: str | os.PathLike | None = None
    slides: Sequence[str | os.PathLike] = ()
    context: float = 2.0


@dataclass
class Generated:
    path: Path
    name: str
    entry: dict[str, Any]
    beside: Path | None = None  # shown on the right instead of a real image (a painted image's condition map)
    beside_lines: list[str] = field(default_factory=list)
    condition: str | None = None  # the condition in words, where the entry does not say it


def _brush_file(brush_json: Path, name: str) -> Path:
    """A file named in brush.json: as written (relative to the working directory), else beside brush.json."""
    path = Path(name)
    if path.is_absolute() or path.is_file():
        return path
    return brush_json.parent / path.parent.name / path.name


def collect_paintings(brush_results: Sequence[str | os.PathLike]) -> tuple[list[Generated], list[tuple[str, str]]]:
    """The painted image of each ``brush.json`` (``infbrush brush-eval``), with its condition map beside it."""
    import json

    found: list[Generated] = []
    failures: list[tuple[str, str]] = []
    for path in map(Path, brush_results):
        try:
            data = json.loads(path.read_text())
            image, cmap = _brush_file(path, data["files"]["brush"]), _brush_file(path, data["files"]["map"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            failures.append((str(path), f"not a brush.json with its images ({type(err).__name__}: {err})"))
            continue
        regions = ", ".join(f"{r['name']} ({r['area_fraction']:.0%})" for r in data.get("regions", []))
        accuracy = (data.get("mean_region_accuracy") or {}).get("ours")
        lines = _pane_lines(f"condition map {data.get('map')}, legend {data.get('legend')}",
                            f"mean region accuracy {accuracy:.2f} (judge on crops inside each region, {path.name})"
                            if accuracy is not None else None)
        found.append(Generated(image, f"brush/{image.stem}", {}, beside=cmap, beside_lines=lines,
                               condition=f"painted regions: {regions}" if regions else "painted regions"))
    return found, failures


def collect_generated(samples: Sequence[str | os.PathLike], images: Sequence[str | os.PathLike],
                      max_images: int) -> tuple[list[Generated], list[tuple[str, str]]]:
    """Generated images: the first ``max_images`` of each sample index (index.json files, or folders holding
    ``index.json`` or ``*/index.json``), largest resolution first (then by ``settings.viewer_position``), then
    ``images`` given one by one (no condition known)."""
    from infbrush.sample.outputs import read_index

    found: list[Generated] = []
    failures: list[tuple[str, str]] = []
    indexes: list[Path] = []
    for item in map(Path, samples):
        if item.is_dir():
            indexes += [item / "index.json"] if (item / "index.json").is_file() else sorted(item.glob("*/index.json"))
        else:
            indexes.append(item)
    loaded = []
    for index_path in indexes:
        try:
            loaded.append((index_path, read_index(index_path)))
        except InfbrushError as err:
            failures.append((str(index_path), str(err).removeprefix(f"{index_path}: ")))
    # largest resolution first, then the position a writer gave its folder among siblings (settings.
    # viewer_position: `infbrush large-field` puts the whole-image model first); stable: ties keep the given order
    loaded.sort(key=lambda item: (-max(item[1].get("resolution") or [0]),
                                  (item[1].get("settings") or {}).get("viewer_position", 0)))
    for index_path, index in loaded:
        for entry in index["images"][:max_images]:
            found.append(Generated(Path(entry["path"]), f"{index_path.parent.name}/{entry.get('name', '?')}", entry))
    for image in map(Path, images):
        found.append(Generated(image, image.stem, {}))
    return found, failures


def condition_text(entry: dict[str, Any], label_names: Sequence[str]) -> str:
    """The condition of a sample in words, from its index entry."""
    source, source_id = entry.get("source"), entry.get("source_id")
    label = entry.get("label", -1)
    name = entry.get("label_name") or (label_names[label] if isinstance(label, int) and
                                       0 <= label < len(label_names) else None)
    if not entry:
        return "unknown (image given without a sample index)"
    text = {"held-out": f"embedding of the held-out real image {source_id}",
            "train": f"embedding of the training image {source_id}", "text": f"text prompt {source_id!r}",
            "label": f"class label {source_id}"}.get(source, "none (unconditional)" if source in (None, "unconditional")
                                                      else f"{source} {source_id}")
    return f"{text} · class {name}" if name else text


class RealImages:
    """Real counterparts of samples: store rows, shown as slide regions where the slide can be found."""

    def __init__(self, sources: RealSources) -> None:
        from infbrush.data.store import ImageStore
        from infbrush.data.tiling import find_slides, slide_id_of

        self.store = ImageStore(sources.store) if sources.store else None
        self.tiles = Path(sources.tiles) if sources.tiles else None
        self.context = sources.context
        self.slides = {slide_id_of(p): p for p in find_slides(sources.slides)} if sources.slides else {}
        if self.store is not None:
            rows = range(len(self.store))
            self.held_out = [i for i in rows if self.store.split[i] == 1] or list(rows)
        self.label_names = list(self.store.label_names) if self.store is not None else []

    def pick(self, entry: dict[str, Any], k: int) -> int | None:
        """The store row shown beside sample number ``k`` with index ``entry``."""
        if self.store is None or len(self.store) == 0:
            return None
        if entry.get("source") in ("held-out", "train") and entry.get("source_id") in self.store.row_of:
            return self.store.row_of[entry["source_id"]]
        label = entry.get("label", -1)
        if isinstance(label, int) and label >= 0:
            rows = [i for i in self.held_out if self.store.labels[i] == label] or \
                   [i for i in range(len(self.store)) if self.store.labels[i] == label]
            if rows:
                return rows[k % len(rows)]
        return self.held_out[k % len(self.held_out)]

    def slide_region(self, image_id: str):
        """(open slide, level-0 region box, patch box, tiles attrs) of a WSI store id, or None (not a WSI id, no
        tiles file). Raises ViewerInputError when the slide exists in the tiles but cannot be opened."""
        import openslide

        from infbrush.data.tiling import read_coords

        match = WSI_ID.match(image_id)
        if self.tiles is None or match is None or not (self.tiles / f"{match['slide']}.h5").is_file():
            return None
        _, attrs = read_coords(self.tiles / f"{match['slide']}.h5")
        path = Path(str(attrs.get("slide_path", "")))
        if not path.is_file():
            path = self.slides.get(match["slide"], path)
        try:
            slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as err:
            raise ViewerInputError(f"{path}: cannot open the real slide ({str(err)[:200]})") from None
        width, height = slide.dimensions
        size0 = int(attrs["patch_size_level0"])
        px, py = int(match["x"]), int(match["y"])
        side = int(round(size0 * self.context))
        rw, rh = min(side, width), min(side, height)
        rx = min(max(0, px + size0 // 2 - rw // 2), width - rw)
        ry = min(max(0, py + size0 // 2 - rh // 2), height - rh)
        return slide, (rx, ry, rw, rh), (px, py, size0), attrs


def _pane_lines(*parts: str | None) -> list[str]:
    return [p for p in parts if p]


def build_viewer(out: str | os.PathLike, generated: GeneratedSources, real: RealSources = RealSources(),
                 tiling: DeepZoomOptions = DeepZoomOptions(), *, dataset: str | None = None,
                 openseadragon: str | os.PathLike | None = None, install: bool = False, log=None) -> ViewerSummary:
    """Write the viewer folder ``out`` (replaced as a whole when complete; see the module docstring) showing
    ``dataset`` (default: the parent folder of ``out``); ``openseadragon``, ``install``: :func:`find_openseadragon`."""
    from infbrush.runtime.jobs import write_failures
    from infbrush.viewer.page import render

    log = log or (lambda line: print(line, file=sys.stderr))
    start = time.perf_counter()
    out = Path(out)
    osd = find_openseadragon(openseadragon, install=install, log=log)
    found, failures = collect_generated(generated.samples, generated.images, generated.max_images)
    painted, brush_failures = collect_paintings(generated.brush)
    found, failures = found + painted, failures + brush_failures
    if not found and not failures:
        raise InfbrushError("no generated images to show (give --samples, --images or --brush)")
    real_images = RealImages(real)
    summary = ViewerSummary(out=out, failures=failures)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "tiles").mkdir(parents=True)
    real_panes: dict[int, tuple[dict, dict]] = {}
    pairs = []
    try:
        for k, gen in enumerate(found):
            try:
                slide = open_image(gen.path)
            except ViewerInputError as err:
                summary.failures.append((str(gen.path), str(err)))
                log(f"{gen.path}: skipped: {err}")
                continue
            try:
                dzi = write_dzi(slide, work / "tiles", f"gen_{k:03d}", options=tiling)
                mpp = image_mpp(slide) or _png_mpp(gen.path)
            finally:
                slide.close()
            summary.tiles += dzi["tiles"]
            entry = gen.entry
            generated_pane = {"title": "generated", "dzi": dzi, "lines": _pane_lines(
                f"{dzi['width']}×{dzi['height']} px {gen.path.suffix.lstrip('.').upper()}"
                + (f", {mpp:g} µm/px" if mpp else ""),
                f"seed {entry['seed']}" if "seed" in entry else None, f"file {gen.path}")}
            pair: dict[str, Any] = {"name": gen.name, "generated": generated_pane, "real": None,
                                    "box": {"x": 0, "y": 0, "w": 1},
                                    "condition": gen.condition or condition_text(entry, real_images.label_names)}
            row = None if gen.beside is not None else real_images.pick(entry, k)
            if gen.beside is not None:
                pair["real"] = _beside_pane(gen, work / "tiles", f"map_{k:03d}", tiling, summary, log)
            elif row is not None:
                if row not in real_panes:
                    real_panes[row] = _real_pane(real_images, row, work / "tiles", f"real_{len(real_panes):03d}",
                                                 tiling, summary, log)
                pair["real"], pair["box"] = real_panes[row]
            pairs.append(pair)
        shutil.copytree(osd, work / "openseadragon", ignore=shutil.ignore_patterns("*.map", "openseadragon.js"))
        license_file = osd.parents[1] / "LICENSE.txt"
        if license_file.is_file():
            shutil.copy2(license_file, work / "openseadragon" / "LICENSE.txt")
        note = ("Left: a generated image; right: the real image its condition came from (a held-out slide region or "
                "patch), or a real image of the same class. Zoom (wheel, double-click) and pan either side: with "
                "synchronised zoom on, the other follows at the same physical scale. Deep Zoom tiles from "
                f"OpenSlide's DeepZoomGenerator; viewer: OpenSeadragon {openseadragon_version(osd)}.")
        data = {"dataset": dataset or out.parent.name, "osd_version": openseadragon_version(osd), "note": note,
                "pairs": pairs}
        (work / "index.html").write_text(render(data))
        write_failures(work / "failures.tsv", summary.failures)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    summary.pairs = len(pairs)
    summary.seconds = time.perf_counter() - start
    return summary


def _beside_pane(gen: Generated, folder: Path, name: str, tiling: DeepZoomOptions, summary: ViewerSummary,
                 log) -> dict | None:
    """The pane of what a painted image is shown beside (its condition map), or None when it cannot be read."""
    try:
        slide = open_image(gen.beside)
    except ViewerInputError as err:
        summary.failures.append((str(gen.beside), str(err)))
        log(f"{gen.beside}: condition map not shown: {err}")
        return None
    try:
        dzi = write_dzi(slide, folder, name, options=tiling)
    finally:
        slide.close()
    summary.tiles += dzi["tiles"]
    return {"title": "condition map", "dzi": dzi, "lines": [f"{dzi['width']}×{dzi['height']} px, {gen.beside}",
                                                           *gen.beside_lines]}


def _real_pane(real: RealImages, row: int, folder: Path, name: str, tiling: DeepZoomOptions, summary: ViewerSummary,
               log) -> tuple[dict, dict]:
    """(pane, sync box) of store row ``row``: its slide region when the slide is found, else the stored patch."""
    image_id = real.store.ids[row]
    label = int(real.store.labels[row])
    label_text = f"class {real.label_names[label]}" if 0 <= label < len(real.label_names) else None
    split = "held out" if real.store.split[row] == 1 else "training set"
    try:
        region = real.slide_region(image_id)
    except ViewerInputError as err:
        summary.failures.append((image_id, str(err)))
        log(f"{image_id}: real slide not shown: {err}")
        region = None
    if region is not None:
        slide, (rx, ry, rw, rh), (px, py, size0), attrs = region
        try:
            dzi = write_dzi(slide, folder, name, options=tiling, box=(rx, ry, rw, rh))
        finally:
            slide.close()
        summary.tiles += dzi["tiles"]
        mpp = float(attrs.get("level0_mpp", float("nan")))
        pane = {"title": f"real slide {WSI_ID.match(image_id)['slide']} ({split})", "dzi": dzi,
                "lines": _pane_lines(f"region {rw}×{rh} px at level 0 around patch {image_id} "
                                     f"({size0}×{size0} px" + (f", {size0 * mpp:g} µm)" if mpp == mpp else ")"),
                                     label_text)}
        width = float(dzi["width"])
        return pane, {"x": (px - rx) / width, "y": (py - ry) / width, "w": size0 / width}
    slide = array_slide(real.store.image(row))
    try:
        dzi = write_dzi(slide, folder, name, options=tiling)
    finally:
        slide.close()
    summary.tiles += dzi["tiles"]
    pane = {"title": f"real patch {image_id} ({split})", "dzi": dzi,
            "lines": _pane_lines(f"{dzi['width']}×{dzi['height']} px from {real.store.path}", label_text)}
    return pane, {"x": 0, "y": 0, "w": 1}


def _png_mpp(path: Path) -> float | None:
    """µm/px of a PNG/JPEG from its dpi (``infbrush sample`` writes it), or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            dpi = image.info.get("dpi")
    except OSError:
        return None
    return 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 1 else None
