"""The HTML report: self-contained, renders with partial inputs, shows the paper's numbers beside ours."""
from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest

from infbrush.evaluate.report import build_report


def _png_samples(folder, n, size):
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img_{i:05d}.png")
        entries.append({"file": f"img_{i:05d}.png", "name": f"img_{i:05d}", "seed": i, "source_id": f"s/{i}",
                        "label": -1, "resolution": [size, size]})
    (folder / "index.json").write_text(json.dumps({"images": entries}))


def _srcs(text):
    return re.findall(r'src="([^"]*)"', text)


def test_report_with_nothing_says_not_run(tmp_path):
    text = build_report("demo_brca", tmp_path)
    assert text.count("not run") >= 6
    assert "TCGA-BRCA 4096²" in text and "reference only" in text  # demo: paper rows labelled as a reference
    assert "2.63" in text and "14.76" in text


def test_report_with_partial_inputs(tmp_path):
    from infbrush.cli import report as cli

    results = tmp_path / "results" / "brca_4096"
    _png_samples(results / "samples" / "64", 3, 64)
    _png_samples(results / "samples" / "128", 2, 128)
    (results / "fid.json").write_text(json.dumps({
        "clip_fid": 12.345, "crop_fid": 45.678, "clip_kid": 0.01, "crop_kid": 0.02, "n_real": 30,
        "n_generated": 3, "n_crops": {"real": 60, "generated": 6}, "resolution": 64,
        "rank_deficient": {"clip": False, "crop": True}, "crop_protocol": {"crop_size": 32}}))
    (results / "train").mkdir()
    (results / "train" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 1e-4}) + "\n" for s in range(1, 30)) + '{"step": 3')
    (results / "tiles").mkdir()
    (results / "tiles" / "failures.tsv").write_text("path\treason\nbad.svs\tcannot open\n")
    out = results / "report.html"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--dataset", "brca_4096", "--results", str(results), "--out", str(out),
                              "--params", json.dumps({"train": {"lr": 5e-5}})])
    assert cli.main(args) == 0
    text = out.read_text()
    srcs = _srcs(text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # self-contained
    # 3 + 2 grid images, 2 + 2 zoomed crops, 1 loss curve
    assert len(srcs) == 3 + 2 + 2 + 2 + 1
    assert text.index("samples/64") < text.index("samples/128")
    assert "12.35" in text and "45.68" in text and "rank-deficient" in text
    assert "2.63" in text and "reference only" not in text  # real dataset: the paper's own experiment
    assert "bad.svs" in text and "cannot open" in text
    assert "5e-05" in text
    for section in ("bach.json", "zeroshot.json", "control.json"):
        assert f"not run ({section})" in text


def test_report_reads_pyramidal_tiff_samples(tmp_path):
    pytest.importorskip("openslide")
    from infbrush.sample.tiff import write_pyramid_tiff

    folder = tmp_path / "samples" / "1024"
    folder.mkdir(parents=True)
    image = np.zeros((1024, 1024, 3), np.uint8)
    image[:, :512] = (200, 30, 30)
    image[:, 512:] = (30, 30, 200)
    write_pyramid_tiff(folder / "img_00000.tiff", iter([image]), 1024, 1024, 3, tile=256,
                       compression="deflate", mpp=0.5, description="test")
    (folder / "index.json").write_text(json.dumps({"images": [
        {"file": "img_00000.tiff", "seed": 0, "source_id": "x", "label": -1, "resolution": [1024, 1024]}]}))
    text = build_report("demo_brca", tmp_path)
    assert "samples/1024" in text and "128x128 native pixels" in text
    assert len(_srcs(text)) == 2
