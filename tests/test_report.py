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


def _section(text, start):
    """The report's HTML from the heading starting with ``start`` up to the next heading of its level."""
    begin = text.index(start)
    return text[begin:text.index("<h2>", begin + 4)]


def _srcs(text):
    return re.findall(r'src="([^"]*)"', text)


def test_report_with_nothing_says_not_run(tmp_path):
    text = build_report("demo_brca", tmp_path, paper_row="TCGA-BRCA 4096²", miniature=True)
    assert text.count("not run") >= 6
    assert "TCGA-BRCA 4096²" in text and "reference only" in text  # demo: paper rows labelled as a reference
    assert "2.63" in text and "14.76" in text
    text = build_report("demo_brca", tmp_path)  # the library reads no dataset name: no paper row, none shown
    assert "no paper experiment corresponds" in text and "2.63" not in text


def _run_cli(results, *argv):
    """``infbrush report`` on ``results`` with extra options ``argv``: the report's HTML text."""
    from infbrush.cli import report as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = results / "report.html"
    assert cli.main(parser.parse_args(["--results", str(results), "--out", str(out), *argv])) == 0
    return out.read_text()


def test_paper_row_and_miniature_options_choose_the_paper_rows(tmp_path):
    from infbrush.cli import report as cli
    from infbrush.cli.options import signature_defaults
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.report import write_report

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    defaults = parser.parse_args(["--dataset", "x", "--results", "r", "--out", "o"])
    library = signature_defaults(write_report)
    assert (defaults.paper_row, defaults.miniature) == (library["paper_row"], library["miniature"])
    fid = _section(_run_cli(tmp_path, "--dataset", "my_run", "--paper-row", "NAIP 1024²", "--miniature"),
                   "<h2>CLIP FID")
    assert "paper rows (NAIP 1024²) are shown for reference only" in fid and "6.32" in fid and "48.65" in fid
    # the rows follow the options, never the dataset's name: demo_brca beside the CelebA-HQ rows, as the paper's
    fid = _section(_run_cli(tmp_path, "--dataset", "demo_brca", "--paper-row", "CelebA-HQ 256²"), "<h2>CLIP FID")
    assert "paper rows: CelebA-HQ 256²" in fid and "9.44" in fid and "TCGA-BRCA" not in fid
    assert "reference only" not in fid
    fid = _section(_run_cli(tmp_path, "--dataset", "brca_4096"), "<h2>CLIP FID")  # no --paper-row: no paper rows
    assert "TCGA-BRCA" not in fid and "paper rows" not in fid
    with pytest.raises(InfbrushError, match="'NAIP 2048²': not an experiment of the paper's tables; valid: .*NAIP"):
        _run_cli(tmp_path, "--dataset", "x", "--paper-row", "NAIP 2048²")


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
                              "--params", json.dumps({"train": {"lr": 5e-5}}), "--paper-row", "TCGA-BRCA 4096²"])
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
    from infbrush.sample.tiff import PyramidOptions, write_pyramid_tiff

    folder = tmp_path / "samples" / "1024"
    folder.mkdir(parents=True)
    image = np.zeros((1024, 1024, 3), np.uint8)
    image[:, :512] = (200, 30, 30)
    image[:, 512:] = (30, 30, 200)
    write_pyramid_tiff(folder / "img_00000.tiff", iter([image]), 1024, 1024, 3,
                       options=PyramidOptions(tile=256, compression="deflate"), mpp=0.5, description="test")
    (folder / "index.json").write_text(json.dumps({"images": [
        {"file": "img_00000.tiff", "seed": 0, "source_id": "x", "label": -1, "resolution": [1024, 1024]}]}))
    text = build_report("demo_brca", tmp_path)
    assert "samples/1024" in text and "128x128 native pixels" in text
    assert len(_srcs(text)) == 2


def _labelled_store(path, per_class, rng):
    """A 4-class store of flat-colour 32² images (train and held-out rows), class names a-d."""
    from infbrush.data.store import ImageStoreWriter

    colours = [(30, 60, 90), (40, 110, 40), (200, 190, 120), (150, 150, 150)]
    with ImageStoreWriter(path, image_size=32, thumb_size=16, label_names=["a", "b", "c", "d"]) as w:
        for i in range(per_class):
            for k, colour in enumerate(colours):
                image = np.clip(np.array(colour) + rng.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
                w.append(image, f"{k}/{i}", label=k, held_out=i % 2 == 0)
    return colours


def test_report_shows_control_gallery_flagged_metrics_and_spectrum(tmp_path):
    from PIL import Image

    from infbrush.evaluate.control import controllability
    from infbrush.evaluate.spectrum import plot_spectrum, spectrum_check

    rng = np.random.default_rng(0)
    results = tmp_path / "demo_naip"
    results.mkdir()
    colours = _labelled_store(results / "images.h5", 6, rng)
    folder = results / "samples" / "64"
    folder.mkdir(parents=True)
    entries = []
    for k, colour in enumerate(colours):
        for j in range(2):
            image = np.clip(np.array(colour) + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
            if j == 1 and k == 0:
                image[:] = colours[2]  # one image generated for 'a' looks like 'c': outlined as misjudged
            Image.fromarray(image).save(folder / f"{k}_{j}.png")
            entries.append({"file": f"{k}_{j}.png", "name": f"{k}_{j}", "seed": j, "label": k,
                            "label_name": "abcd"[k], "resolution": [64, 64]})
    settings = {"guidance_scale": 2.0, "steps": 50, "step": 2000, "seed": 0}
    (folder / "index.json").write_text(json.dumps({"resolution": [64, 64], "settings": settings, "images": entries}))
    control = controllability(results / "images.h5", folder / "index.json", feature_size=32)
    (results / "control.json").write_text(json.dumps(control))
    spectrum = spectrum_check(results / "images.h5", [folder / "index.json"], lattice_freqs=[16, 32, 64])
    plot_spectrum(spectrum, results / "spectrum.png")
    (results / "spectrum.json").write_text(json.dumps(spectrum))
    (results / "fid.json").write_text(json.dumps({
        "clip_fid": 0.14, "clip_kid": 0.0002, "crop_fid": None, "crop_kid": None, "n_real": 64, "n_generated": 8,
        "trust": {"clip_fid": {"trusted": False, "reason": "noise images score 0.12, not above real images' 0.3"},
                  "clip_kid": {"trusted": True, "reason": "passes"}},
        "sanity": {"n_images": 8, "rows_held_out": 8, "rows_train": 0, "blur_sigma_px": 2.0, "noise": "uniform",
                   "min_ratio": 2.0, "values": {"real": {"clip_fid": 0.3, "clip_kid": 0.0},
                                                "blurred": {"clip_fid": 1.0, "clip_kid": 0.1},
                                                "noise": {"clip_fid": 0.12, "clip_kid": 0.2}},
                   "verdicts": {"clip_fid": {"trusted": False, "reason": "noise images score 0.12"},
                                "clip_kid": {"trusted": True, "reason": "passes"}}}}))
    text = build_report("demo_naip", results)
    fid_part = _section(text, "<h2>CLIP FID and Crop FID")
    assert "flagged: failed its sanity pairs" in fid_part and "not above real" in fid_part
    assert fid_part.count("flagged") >= 2 and "Sanity pairs" in fid_part and "0.0002" in fid_part
    part = _section(text, "<h2>Controllability")  # the main model's control.json
    assert "judge on real held-out" in part and "[" in part  # intervals shown beside the figures
    assert "step 2000: guidance scale 2.0, DDIM 50 steps" in part  # how the judged samples were made
    for name in "abcd":
        assert f"<h4>{name}</h4>" in part
    # per class: 3 real held-out patches and 2 generated images; one generated image judged another class
    assert len(_srcs(part)) == 4 * 3 + 4 * 2
    misjudged = [i for i in control["generated"]["images"] if i["judged"] != i["intended"]]
    assert {"file": "0_1.png", "intended": "a", "judged": "c"} in misjudged
    assert part.count("class=miss") == len(misjudged)
    assert "the conditions themselves" not in part  # no condition probe in this control.json
    probe = {"probe": "cosine k-NN (k=20)", "per_class": {n: {"accuracy": 0.5, "ci95": [0.1, 0.9]} for n in "abcd"},
             "mean_accuracy": 0.625, "mean_ci95": [0.41, 0.83]}
    (results / "control.json").write_text(json.dumps(control | {"condition_probe": probe}))
    part = _section(build_report("demo_naip", results), "<h2>Controllability")
    assert "the conditions themselves: k-NN" in part and "the condition's own ceiling" in part
    assert part.count("0.500 [0.100, 0.900]") == 4 and "0.625 [0.410, 0.830]" in part  # per class, and their mean
    part = _section(text, "<h2>Spectral check")
    assert len(_srcs(part)) == 1 and "prominence" in part
    assert "above Nyquist" in part  # 64 cycles per side cannot exist in a 64² image


def test_brush_shortfalls_say_by_how_much_and_against_what():
    from infbrush.evaluate.report import brush_shortfalls

    result = {"goals": {"region_accuracy": 0.8, "seam_ratio": 1.5},
              "regions": [{"name": "in_situ", "ours": {"accuracy": 0.25}, "single_condition": {"accuracy": 0.5},
                           "judge_real_crops_accuracy": 0.7},
                          {"name": "benign", "ours": {"accuracy": 1.0}, "single_condition": {"accuracy": 1.0}}],
              "seams": {"ours": {"mean": 1.2}, "real_mosaic": {"mean": 2.2}}}
    (line,) = brush_shortfalls(result)  # benign and the seams meet their goals
    assert line.startswith("region in_situ: 0.25, 0.55 below the 0.80 goal") and "score 0.50" in line
    assert "whole-image control bounds" in line
    result["seams"]["ours"]["mean"] = 3.0
    assert brush_shortfalls(result)[1] == ("seams: ratio 3.00, 2.00× the 1.50 goal; real patches cut along the same "
                                           "map measure 2.20 (the goal is stricter than real boundaries)")


def test_report_shows_each_encoder_beside_its_baselines_and_the_dino_loss(tmp_path):
    """dino.json: trained k-NN beside the untrained network, gain interval, per class; democlip.json: zero-shot
    beside chance; the DINO loss curve comes from the trainer's run folder (dino_ckpt/metrics.jsonl)."""
    results = tmp_path / "demo_naip"
    results.mkdir()
    assert "not run (dino.json / democlip.json" in _section(build_report("demo_naip", results), "<h2>Encoders")
    classes = ["water", "forest", "field", "developed"]
    (results / "dino.json").write_text(json.dumps({
        "knn_accuracy": 0.8613, "knn_accuracy_ci95": [0.79, 0.91], "knn_accuracy_random_init": 0.7801,
        "knn_accuracy_random_init_ci95": [0.71, 0.84], "knn_gain": 0.0812, "knn_gain_ci95": [0.027, 0.133],
        "knn_accuracy_per_class": [0.6061, 0.9778, 0.871, 0.9024],
        "knn_accuracy_random_init_per_class": [0.4242, 0.9556, 0.8065, 0.878],
        "n_test_per_class": [33, 45, 31, 41], "classes": classes, "k": 20, "steps": 630, "chance": 0.25,
        "majority_baseline": 0.2067, "n_train": 701, "n_test": 150, "last_loss": 5.84, "protocol": "cosine k-NN"}))
    (results / "dino_ckpt").mkdir()
    (results / "dino_ckpt" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 8.0 - s / 100}) + "\n" for s in range(10, 200, 10)))
    (results / "democlip.json").write_text(json.dumps({
        "zero_shot_accuracy": 0.9524, "zero_shot_accuracy_ci95": [0.869, 0.984], "chance": 0.25,
        "majority_baseline": 0.2063, "per_class_accuracy": dict(zip(classes, [1.0, 0.8846, 1.0, 0.5])),
        "n_test_per_class": [10, 26, 14, 13], "classes": classes, "n_train": 368, "n_test": 63,
        "epochs": 30, "first_epoch_loss": 3.32, "last_epoch_loss": 2.21}))
    text = build_report("demo_naip", results)
    encoders = _section(text, "<h2>Encoders")
    assert "0.861 [0.790, 0.910]" in encoders and "0.780 [0.710, 0.840]" in encoders
    assert "+0.081 [+0.027, +0.133]" in encoders  # the paired gain, signed, with its interval
    water = re.search(r"<td class='l'>water</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", encoders)
    assert water.groups() == ("0.606", "0.424", "33")  # trained, untrained, held-out images of that class
    assert "0.952 [0.869, 0.984]" in encoders and "chance 0.250" in encoders and "0.500" in encoders
    assert "<h3>DINO</h3><img" in _section(text, "<h2>Loss curves")


def test_large_field_section_shows_both_methods_beside_real_seams(tmp_path):
    """large_field.json in the results folder: a Table-1-style section (each method's KIDs, seams beside the real
    fields' level, embedding similarity, paired differences, the paper's rows); without it, "not run"."""
    from PIL import Image

    from infbrush.evaluate.report import build_report

    results = tmp_path / "results" / "fields"
    results.mkdir(parents=True)
    assert "large_field.json" in _section(build_report("fields", results), "<h2>Large fields")
    ci = lambda m, lo, hi: {"mean": m, "ci95": [lo, hi]}
    (results / "large_field.json").write_text(json.dumps({
        "n_fields": 33, "field_size": 128, "tile_size": 64,
        "methods": {"whole_image": {"whole_image_kid": 0.0412, "crop_kid": 0.0875, "seam_ratio": ci(1.03, 0.98, 1.08),
                                    "embedding_similarity": ci(0.81, 0.78, 0.84), "seconds_per_image": 3.5},
                    "patch_based": {"whole_image_kid": 0.0733, "crop_kid": 0.0611, "seam_ratio": ci(1.87, 1.7, 2.0),
                                    "embedding_similarity": ci(0.86, 0.83, 0.88), "seconds_per_image": 2.25,
                                    "minus_whole_image": {"whole_image_kid_ci95": [0.011, 0.052],
                                                          "crop_kid_ci95": [-0.04, -0.01]}}},
        "real": {"seam_ratio": ci(1.01, 0.97, 1.05)},
        "baselines": {"real_train_fields": {"whole_image_kid": 0.0057, "crop_kid": 0.0049,
                                            "seam_ratio": ci(0.99, 0.95, 1.04),
                                            "embedding_similarity": ci(0.42, 0.38, 0.46)}}}))
    Image.new("RGB", (388, 128), (10, 200, 30)).save(results / "large_field.png")
    text = _section(build_report("fields", results), "<h2>Large fields")
    assert "33 held-out reference fields of 128² px" in text and "64² tiles" in text
    assert "0.0412" in text and "0.0733" in text and "1.87 [1.70, 2.00]" in text and "1.01 [0.97, 1.05]" in text
    assert "+0.0321 [+0.0110, +0.0520]" in text and "-0.0264 [-0.0400, -0.0100]" in text  # point: the KIDs' difference
    assert "2.63" in text and "11.30" in text and "data:image/png;base64," in text
    assert "real_train_fields (baseline)" in text and "0.0057" in text and "0.420 [0.380, 0.460]" in text
