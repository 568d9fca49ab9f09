"""Spectral check: radially averaged spectra of samples vs real images and peaks at lattice frequencies."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from infbrush.errors import InfbrushError
from infbrush.evaluate.spectrum import (lattice_points, octave_bands, power_spectrum, radial_profile,
                                        spectrum_check)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour texture (size², 3) uint8 whose structure scales with the image (same field of view)."""
    x = gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(size / 32, size / 32, 0))
    x = (x - x.mean()) / (x.std() + 1e-9)
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def lattice(image: np.ndarray, cycles: int, amplitude: float) -> np.ndarray:
    """``image`` plus a 2-D cosine lattice of ``cycles`` periods per image side."""
    n = image.shape[0]
    t = np.arange(n) / n
    pattern = amplitude * (np.cos(2 * np.pi * cycles * t)[:, None] + np.cos(2 * np.pi * cycles * t)[None, :])
    return np.clip(np.rint(image + pattern[..., None]), 0, 255).astype(np.uint8)


def _store(path, images):
    from infbrush.data.store import ImageStoreWriter

    with ImageStoreWriter(path, image_size=images[0].shape[0], thumb_size=16) as writer:
        for i, image in enumerate(images):
            writer.append(image, f"s/{i}", held_out=i % 3 == 0)
    return path


def _samples(folder, images):
    folder.mkdir(parents=True)
    entries = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img_{i:05d}.png")
        entries.append({"file": f"img_{i:05d}.png", "name": f"img_{i:05d}", "seed": i, "label": -1,
                        "resolution": list(image.shape[:2])})
    (folder / "index.json").write_text(json.dumps({"resolution": list(images[0].shape[:2]), "images": entries}))
    return str(folder / "index.json")


def test_power_spectrum_puts_a_cosine_at_its_frequency():
    n = 64
    image = lattice(np.full((n, n, 3), 128, np.uint8), 10, 50.0)
    power = power_spectrum(image)
    profile = radial_profile(power)
    assert profile.shape == (32,) and int(np.argmax(profile)) + 1 == 10
    assert (0, 10) in lattice_points(10, n) and (10, 0) in lattice_points(10, n) and (54, 54) in lattice_points(10, n)
    assert lattice_points(33, n) == [] and octave_bands(64) == [(1, 2), (2, 4), (4, 8), (8, 16), (16, 32)]
    with pytest.raises(InfbrushError, match="square"):
        power_spectrum(np.zeros((8, 9, 3), np.uint8))


def test_spectrum_detects_an_injected_lattice_at_the_right_frequency(tmp_path):
    from infbrush.cli import spectrum as cli

    rng = np.random.default_rng(0)
    store = _store(tmp_path / "images.h5", [texture(rng, 64) for _ in range(24)])
    clean = _samples(tmp_path / "samples" / "128", [texture(rng, 128) for _ in range(8)])
    gridded = _samples(tmp_path / "samples" / "256", [lattice(texture(rng, 256), 64, 6.0) for _ in range(8)])
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out, plot = tmp_path / "spectrum.json", tmp_path / "spectrum.png"
    args = parser.parse_args(["--store", str(store), "--samples", clean, "--samples", gridded, "--out", str(out),
                              "--plot", str(plot), "--lattice-freqs", "32", "64"])
    assert cli.main(args) == 0
    result = json.loads(out.read_text())
    assert plot.stat().st_size > 1000 and result["real"]["n_images"] == 24
    assert set(result["resolutions"]) == {"128", "256"}
    assert [(p["resolution"], p["freq"]) for p in result["peaks_above_real"]] == [(256, 64.0)]
    assert result["no_lattice_peaks"] is False
    at = {(res, item["freq"]): item for res, r in result["resolutions"].items() for item in r["lattice"]}
    assert at[("256", 64.0)]["samples_prominence"] > 10 and at[("256", 64.0)]["relative_to_real"] > 10
    assert not at[("256", 32.0)]["peak_above_real"] and not at[("128", 64.0)]["peak_above_real"]
    # same-distribution images: the octave-band energy ratio samples / real stays near 1 below the real Nyquist
    bands = result["resolutions"]["128"]["bands"]
    assert [b["lo"] for b in bands] == [1, 2, 4, 8, 16, 32]
    assert all(0.5 < b["ratio"] < 2 for b in bands if b["hi"] <= 16)
    radial = result["resolutions"]["256"]["radial"]
    assert len(radial["freq"]) == 128 and radial["freq"][63] == 64


def test_large_samples_are_analysed_on_a_central_window(tmp_path):
    rng = np.random.default_rng(1)
    store = _store(tmp_path / "images.h5", [texture(rng, 64) for _ in range(6)])
    gridded = _samples(tmp_path / "s" / "256", [lattice(texture(rng, 256), 64, 6.0) for _ in range(3)])
    result = spectrum_check(store, [gridded], lattice_freqs=[64, 100], max_side=128)
    r = result["resolutions"]["256"]
    assert r["cropped"] is True and r["analysed_side"] == 128
    item = {i["freq"]: i for i in r["lattice"]}
    assert item[64]["analysed_freq"] == 32 and item[64]["peak_above_real"]  # 64 per image = 32 per half window
    assert not item[100]["peak_above_real"]  # 100 cycles per image = 50 per window: no lattice there
    with pytest.raises(InfbrushError, match="given twice"):
        spectrum_check(store, [gridded, gridded], lattice_freqs=[64])
