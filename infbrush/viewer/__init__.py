"""Zoomable viewer: deep-zoom tiles of generated images beside real slides / patches, in OpenSeadragon.

``results/<ds>/viewer/`` opens from disk without a server::

    index.html                   the page (pairs of viewers, synchronised zoom, each sample's condition)
    tiles/<name>_files/<z>/<c>_<r>.jpeg, tiles/<name>.dzi   Deep Zoom tiles (OpenSlide's DeepZoomGenerator)
    openseadragon/               OpenSeadragon, copied from the npm package the project installs (package.json)
    failures.tsv                 images that could not be shown (path, reason)
    preview.png, preview.json    a headless-Chromium screenshot after zooming in, and what the page logged

Modules: ``deepzoom`` (tiles), ``build`` (pairs, page), ``page`` (HTML/JS), ``browser`` (headless Chromium over
the DevTools protocol, for the preview and the tests).
"""
