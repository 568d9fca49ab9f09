"""The viewer page: static HTML + JavaScript around OpenSeadragon, with the pairs embedded as JSON.

Opened from disk (``file://``): tile sources are inline Deep Zoom descriptors (no XHR), tiles load as plain
images, and the canvas drawer is used (WebGL refuses images from ``file://`` URLs, which count as cross-origin).
``window.infbrushViewer`` exposes ``ready()`` and ``state()`` for the headless-browser preview and tests.
"""
from __future__ import annotations

import html
import json
from typing import Any

CSS = """body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1180px;color:#222}
h1{font-size:1.4em;border-bottom:2px solid #444;margin-bottom:.3em}.note{color:#555;font-size:.9em}
.pair{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.6em}
.pair h2{font-size:1em;margin:.1em 0 .5em}.cond{background:#eef6ff;padding:2px 6px;border-radius:4px}
.panes{display:flex;gap:12px}.pane{flex:1;min-width:0}.pane h3{font-size:.9em;margin:.2em 0}
.pane p{font-size:.8em;color:#555;margin:.2em 0;overflow-wrap:anywhere}.info{min-height:4.2em}
.osd{width:100%;height:420px;background:#111;border-radius:4px}
label{font-size:.85em}"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const viewers = [];
  const links = [];

  function tileSource(dzi) {
    // an inline Deep Zoom descriptor: nothing fetched with XHR, so the page works from file://
    return {Image: {xmlns: "http://schemas.microsoft.com/deepzoom/2008", Url: dzi.url, Format: dzi.format,
                    Overlap: String(dzi.overlap), TileSize: String(dzi.tile_size),
                    Size: {Width: String(dzi.width), Height: String(dzi.height)}}};
  }

  function makeViewer(element, dzi, maxZoomPixelRatio) {
    const viewer = OpenSeadragon({
      element: element, prefixUrl: "openseadragon/images/", tileSources: tileSource(dzi),
      drawer: "canvas", crossOriginPolicy: false, showNavigator: true, navigatorPosition: "BOTTOM_RIGHT",
      showRotationControl: false, visibilityRatio: 0.5, minZoomImageRatio: 0.2,
      maxZoomPixelRatio: maxZoomPixelRatio, animationTime: 0.3, gestureSettingsMouse: {clickToZoom: false}
    });
    viewers.push(viewer);
    return viewer;
  }

  // generated viewport point p (image width = 1) <-> real viewport point box.xy + p * box.w: the generated
  // image covers the field of view of the box (the real patch), so both show the same physical scale
  function link(gen, real, box, checkbox) {
    let busy = false;
    const P = OpenSeadragon.Point;
    const toReal = (c, z) => ({center: new P(box.x + c.x * box.w, box.y + c.y * box.w), zoom: z / box.w});
    const toGen = (c, z) => ({center: new P((c.x - box.x) / box.w, (c.y - box.y) / box.w), zoom: z * box.w});
    // the follower animates to the leader's target (not its current, animating state): both springs run
    // together, and the follower's own viewport-change maps back onto the leader's target, a no-op
    function follow(src, dst, map) {
      if (busy || !checkbox.checked || src.world.getItemCount() === 0 || dst.world.getItemCount() === 0) return;
      const target = map(src.viewport.getCenter(false), src.viewport.getZoom(false));
      const zoom = dst.viewport.getZoom(false), centre = dst.viewport.getCenter(false);
      const tol = 1e-9 * Math.max(1, target.zoom);
      if (Math.abs(target.zoom / zoom - 1) < 1e-9 && Math.abs(target.center.x - centre.x) < tol &&
          Math.abs(target.center.y - centre.y) < tol) return;
      busy = true;
      try {
        dst.viewport.zoomTo(target.zoom, null, false);
        dst.viewport.panTo(target.center, false);
      } finally {
        busy = false;
      }
    }
    gen.addHandler("viewport-change", () => follow(gen, real, toReal));
    real.addHandler("viewport-change", () => follow(real, gen, toGen));
    let opened = 0;
    const onOpen = () => { if (++opened === 2) follow(gen, real, toReal); };
    gen.addOnceHandler("open", onOpen);
    real.addOnceHandler("open", onOpen);
    checkbox.addEventListener("change", () => follow(gen, real, toReal));
    links.push({gen: viewers.indexOf(gen), real: viewers.indexOf(real), box: box});
  }

  function pane(parent, info, kind, maxZoomPixelRatio) {
    const div = document.createElement("div");
    div.className = "pane " + kind;
    const h3 = document.createElement("h3");
    h3.textContent = info.title;
    div.appendChild(h3);
    const lines = document.createElement("div");
    lines.className = "info";  // same height on both sides: the two viewers line up
    for (const line of info.lines) {
      const p = document.createElement("p");
      p.textContent = line;
      lines.appendChild(p);
    }
    div.appendChild(lines);
    const osd = document.createElement("div");
    osd.className = "osd";
    osd.setAttribute("data-kind", kind);
    div.appendChild(osd);
    parent.appendChild(div);
    return makeViewer(osd, info.dzi, maxZoomPixelRatio);
  }

  const root = document.getElementById("pairs");
  data.pairs.forEach((pair, i) => {
    const card = document.createElement("section");
    card.className = "pair";
    const h2 = document.createElement("h2");
    h2.textContent = (i + 1) + ". " + pair.name + " ";
    const cond = document.createElement("span");
    cond.className = "cond";
    cond.textContent = "condition: " + pair.condition;
    h2.appendChild(cond);
    card.appendChild(h2);
    const panes = document.createElement("div");
    panes.className = "panes";
    card.appendChild(panes);
    // generated pixels per real pixel: the finer image may be magnified 2x, the other as far as sync needs
    const ratio = pair.real ? pair.generated.dzi.width / (pair.box.w * pair.real.dzi.width) : 1;
    const gen = pane(panes, pair.generated, "generated", 2 * Math.max(1, 1 / ratio));
    if (pair.real) {
      const real = pane(panes, pair.real, "real", 2 * Math.max(1, ratio));
      const label = document.createElement("label");
      const checkbox = document.createElement("input");
      checkbox.type = "checkbox";
      checkbox.checked = true;
      label.appendChild(checkbox);
      label.appendChild(document.createTextNode(" synchronised zoom and pan (same physical scale)"));
      card.appendChild(label);
      link(gen, real, pair.box, checkbox);
    }
    root.appendChild(card);
  });

  window.infbrushViewer = {
    viewers: viewers,
    links: links,
    ready: function () {
      return viewers.length > 0 && viewers.every(v => v.world.getItemCount() > 0 &&
        v.world.getItemAt(0).getFullyLoaded() && !v.isAnimating());
    },
    state: function () {
      return viewers.map(v => {
        const item = v.world.getItemAt(0);
        const zoom = v.viewport.getZoom(true);
        const drawn = item ? item.getTilesToDraw().map(t => t.tile.level) : [];
        return {zoom: zoom, imageZoom: item ? item.viewportToImageZoom(zoom) : null,
                maxLevel: item ? item.source.maxLevel : null,
                drawnLevels: Array.from(new Set(drawn)).sort((a, b) => a - b),
                center: (c => [c.x, c.y])(v.viewport.getCenter(true))};
      });
    }
  };
})();
"""


def render(data: dict[str, Any]) -> str:
    """The whole index.html for ``data`` ({dataset, osd_version, note, pairs: [...]})."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")  # safe inside <script>
    title = f"infbrush viewer: {data.get('dataset', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style>
<script src="openseadragon/openseadragon.min.js"></script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(data.get('note', ''))}</p>
<div id="pairs"></div>
<script id="viewer-data" type="application/json">{payload}</script>
<script>{SCRIPT}</script>
</body></html>
"""
