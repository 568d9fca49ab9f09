"""End to end: the real workflow on a shrunken demo world — Snakemake, DVC push/pull in a fresh clone.

These run the actual `snakemake` and `dvc` commands users type, on a copy of the repository whose
params.yaml is params.yaml merged with tests/data/tiny_params.yaml.
"""
import json
import sys

import h5py
import numpy as np
import pytest

from e2e_helpers import copy_repo, run

pytestmark = pytest.mark.slow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DVC = [sys.executable, "-m", "dvc"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The whole demo chain, once, through `snakemake --cores 2` (the default target)."""
    repo = copy_repo(tmp_path_factory.mktemp("demo") / "repo", git=False)
    proc = run([*SNAKEMAKE, "--cores", "2"], repo, timeout=1800)
    return repo, proc


def test_demo_chain_produces_every_documented_output(demo_run):
    repo, _ = demo_run
    for ds in ("demo_brca", "demo_naip"):
        out = repo / "results" / ds
        for name in ("images.h5", "embeddings.h5", "ema.pt", "fid_ref.npz", "fid.json", "control.json",
                     "report.html", "train/metrics.jsonl", "label/ema.pt", "label/control.json", "spectrum.json"):
            assert (out / name).is_file(), f"{ds}: {name} missing"
        fid = json.loads((out / "fid.json").read_text())
        for key in ("clip_fid", "crop_fid", "clip_kid", "crop_kid"):
            assert np.isfinite(fid[key]), (ds, key, fid[key])
        label_control = json.loads((out / "label" / "control.json").read_text())
        assert label_control["generated"]["n_images"] >= 2  # one image per class at the tiny size
        report = (out / "report.html").read_text()
        assert "Controllability (label-conditioned model)" in report
        assert "<img" in report and "data:image/png;base64" in report
        assert "src=\"http" not in report  # self-contained
        losses = [json.loads(line)["loss"] for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
        assert losses and all(np.isfinite(losses))
    brca = repo / "results" / "demo_brca"
    zeroshot = json.loads((brca / "zeroshot.json").read_text())
    matrix = np.asarray(zeroshot["confusion"])
    assert matrix.shape == (4, 4) and (matrix.sum(axis=1) == 2).all()
    bach = json.loads((brca / "bach.json").read_text())
    assert {"real", "real_plus_synthetic"} <= set(bach)
    for arm in ("real", "real_plus_synthetic"):
        assert 0.0 <= bach[arm]["mean"] <= 1.0 and len(bach[arm]["per_seed"]) == 2
    # The broken and empty demo slides are reported and skipped; the good slides are tiled.
    failures = (brca / "tiles" / "failures.tsv").read_text().splitlines()
    assert failures[0].split("\t") == ["path", "reason"]
    assert {line.split("\t")[0].rsplit("/", 1)[-1] for line in failures[1:]} == {"broken_slide.svs", "empty_slide.svs"}
    with h5py.File(brca / "images.h5", "r") as h5:
        assert h5["images"].shape[1:] == (128, 128, 3)
        assert (h5["split"][:] == 1).any() and (h5["labels"][:] >= 0).all()


def test_snakemake_has_nothing_left_to_do_after_the_run(demo_run):
    repo, _ = demo_run
    proc = run([*SNAKEMAKE, "-n", "--cores", "2"], repo)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_dvc_commit_adopts_the_snakemake_run(demo_run):
    """After `snakemake`, `dvc commit -f && snakemake --touch` records what Snakemake made in dvc.lock (README,
    "One state for both engines"): `dvc status` is clean, `dvc repro` reruns no stage, and Snakemake (whose file
    times `dvc commit` disturbs) has nothing to do."""
    repo, _ = demo_run
    run(["git", "init", "-q"], repo)  # DVC needs its SCM; the copy has no .git
    run([*DVC, "commit", "-f"], repo, timeout=900)
    run([*SNAKEMAKE, "--touch", "--cores", "1"], repo, timeout=600)
    status = run([*DVC, "status"], repo)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    dry = run([*DVC, "repro", "--dry"], repo, timeout=600)
    assert "Running stage" not in dry.stdout + dry.stderr, dry.stdout
    proc = run([*SNAKEMAKE, "-n", "--cores", "2"], repo)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_dvc_repro_push_then_pull_in_a_fresh_clone(tmp_path):
    """`dvc repro` runs stages; `dvc push`; a fresh clone `dvc pull`s them and Snakemake has nothing to redo."""
    repo = copy_repo(tmp_path / "repo")
    storage = tmp_path / "storage"
    run([*DVC, "remote", "add", "-f", "-d", "local", str(storage)], repo)
    run([*DVC, "repro", "data_demo_naip"], repo, timeout=900)
    run([*DVC, "status"], repo)
    run(["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qam", "repro"], repo)
    run([*DVC, "push"], repo)
    with h5py.File(repo / "results/demo_naip/images.h5", "r") as h5:
        reference = h5["images"][:]

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "results/demo_naip/images.h5").exists()
    run([*DVC, "pull", "demo_world", "data_demo_naip"], clone)  # what was pushed
    with h5py.File(clone / "results/demo_naip/images.h5", "r") as h5:
        np.testing.assert_array_equal(h5["images"][:], reference)
    targets = ["data/demo/manifest.json", "results/demo_naip/images.h5"]
    run([*SNAKEMAKE, "--cores", "1", "--touch", *targets], clone)  # pulled files get consistent times
    dry = run([*SNAKEMAKE, "-n", "--cores", "1", *targets], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert "Job stats" not in dry.stdout + dry.stderr  # no job planned (metadata notes may name rules)


def test_real_data_target_plans_the_whole_chain_with_gpu_resources(repo_root):
    """`snakemake -n results/brca_4096/fid.json` with real-data params (no data present)."""
    proc = run([*SNAKEMAKE, "-n", "--cores", "1", "results/brca_4096/fid.json"], repo_root)
    plan = proc.stdout + proc.stderr
    for rule in ("download", "tile", "extract_patches", "embed", "train", "sample", "fid_ref", "fid"):
        assert f"rule {rule}:" in plan or f"localrule {rule}:" in plan, f"{rule} not planned"
    blocks = {block.split(":", 1)[0].split()[-1]: block for block in plan.split("\nrule ")[1:]}
    for rule in ("train", "sample", "embed"):
        assert "gpu=" in blocks[rule] and "gpu=0" not in blocks[rule], blocks[rule][:600]
    assert "torchrun --standalone --nproc_per_node 4" in plan or "--nproc_per_node=4" in plan or "gpu=4" in blocks["train"]


@pytest.mark.parametrize("ds,field,tile,methods", [
    ("demo_naip_fields", 128, 64, ("patch_based", "patch_based_overlap_32", "patch_based_field_condition")),
    ("demo_brca_fields", 256, 128, ("patch_based", "patch_based_overlap_64"))])
def test_large_field_target_compares_whole_image_and_patch_based_fields(demo_run, ds, field, tile, methods):
    """The large-field comparison (not in the default chain) builds on the demo run: fields of demo_naip's GeoTIFF
    (demo_brca's slides, tiled with overlapping fields), their embeddings by that dataset's encoder, a whole-image
    model, and the small dataset's model assembling tiles; the viewer shows every generated field beside its
    reference."""
    repo, _ = demo_run
    run([*SNAKEMAKE, "--cores", "2", f"results/{ds}/large_field.json", f"results/{ds}/viewer/index.html"], repo,
        timeout=1200)
    result = json.loads((repo / f"results/{ds}/large_field.json").read_text())
    assert result["field_size"] == field and result["tile_size"] == tile and result["n_fields"] == 2
    assert list(result["methods"]) == ["whole_image", *methods]  # params' large_field.field_condition_tiles: the last
    for method in result["methods"].values():
        for key in ("whole_image_kid", "crop_kid", "seam_ratio", "embedding_similarity", "seconds_per_image"):
            assert key in method
    assert "seam_ratio" in result["real"]
    assert (repo / f"results/{ds}/large_field.png").stat().st_size > 0
    assert len(list((repo / f"results/{ds}/large_fields").glob("*/*.png"))) == 2 * (2 + len(methods))  # + real
    # the viewer: each generated field (every method × 2 references) beside its held-out reference field, the
    # whole-image model first
    page = (repo / f"results/{ds}/viewer/index.html").read_text()
    for method in result["methods"]:
        assert f"{method}_000" in page and f"{method}_001" in page
    assert page.index("whole_image_000") < min(page.index(f"{m}_000") for m in methods)
    assert page.count("embedding of the held-out real image") >= 2 * (1 + len(methods))
    assert len(list((repo / f"results/{ds}/viewer/tiles").glob("real_*.dzi"))) == 2
