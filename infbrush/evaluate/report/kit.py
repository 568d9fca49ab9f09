"""The HTML kit the report's sections are written with: escaped text and number cells, "not run" notes,
images embedded as base64 PNG data URIs (so the page needs no external file), the optional JSON inputs a
section reads, and the page skeleton with its style sheet."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.notrun{color:#a00;font-style:italic}.note{color:#555}
.grid img{margin:2px;image-rendering:pixelated}.ours{background:#eef6ff}pre{background:#f6f6f6;padding:.6em}
td.flagged{background:#fde8e8;color:#a00}.pair{display:flex;gap:2em;align-items:flex-start}
.pair img{margin:1px;image-rendering:pixelated}.miss{outline:3px solid #c00}"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A cell's text: '–' for None, floats to ``digits`` places (with a '+' on positives when ``signed``)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:{'+' if signed else ''}.{digits}f}"
    return esc(value)


def interval(value: Any, ci: Any, digits: int = 3, signed: bool = False) -> str:
    """'0.950 [0.870, 0.984]' from a value and a [lo, hi] pair (either may be missing); ``signed`` for a
    difference: '+0.087 [+0.040, +0.140]'."""
    if not ci or len(ci) != 2:
        return fmt(value, digits, signed)
    return f"{fmt(value, digits, signed)} [{fmt(ci[0], digits, signed)}, {fmt(ci[1], digits, signed)}]"


def not_run(what: str) -> str:
    return f'<p class="notrun">not run ({esc(what)})</p>'


# --------------------------------------------------------------------------------------------- images
def png_bytes_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG-encoded bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def png_data_uri(image: np.ndarray) -> str:
    """(H, W, 3) uint8 → ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return png_bytes_uri(buf.getvalue())


def file_data_uri(path: Path) -> str:
    return png_bytes_uri(path.read_bytes())


def scaled_png(path: Path, side: int = 256) -> str:
    """An <img> of a PNG file scaled (nearest) so its height is ``side`` px; a note when the file is missing."""
    from PIL import Image

    if not path.is_file():
        return not_run(path.name)
    with Image.open(path) as im:
        im = im.convert("RGB")
        width = max(1, round(im.width * side / im.height))
        return f'<img src="{png_data_uri(np.asarray(im.resize((width, side), Image.NEAREST)))}" height="{side}">'


# --------------------------------------------------------------------------------------------- inputs
def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when the file is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def json_and_plot(results: Path, name: str, plot_key: str, plot_name: str, what: str) -> tuple[dict | None, str]:
    """(result, <img> of its plot or a not-run note) of ``results/<name>``; (None, a not-run note) without it. The
    plot is the path the result records under ``plot_key``, else ``results/<plot_name>``."""
    result = read_json(results / name)
    if result is None:
        return None, not_run(name)
    png = Path(result.get(plot_key) or results / plot_name)
    png = png if png.is_file() else results / plot_name
    return result, (f'<img src="{file_data_uri(png)}">' if png.is_file() else not_run(what))


# --------------------------------------------------------------------------------------------- page
def page(title: str, heading: str, preamble: str, sections: Iterable[tuple[str, Callable[[], str]]]) -> str:
    """One self-contained HTML page: ``title``, an <h1> ``heading``, the ``preamble`` HTML, then per section an
    <h2> of its title and the HTML its callable makes (called in order, so a section is built only when reached)."""
    body = "".join(f"<h2>{esc(name)}</h2>{make()}" for name, make in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(heading)}</h1>{preamble}{body}</body></html>\n")
