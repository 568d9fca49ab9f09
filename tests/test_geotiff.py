"""GeoTIFF patching with Rasterio: georeferencing kept per patch, nodata dropped, bad files recorded."""
import argparse

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from infbrush.data.geotiff import PatchParams, patch_geotiffs
from infbrush.data.store import ImageStore
from infbrush.errors import InfbrushError


def write_tif(path, data, crs="EPSG:26918", nodata=0, transform=from_origin(400000.0, 4300000.0, 1.0, 1.0),
              tiled=True):
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, transform=transform, nodata=nodata)
    if crs:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=32, blockysize=32)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def naip(height=192, width=256, seed=0):
    """4-band uint8 raster whose pixel value encodes its position (band 1 = row % 251 + 1, band 2 = col % 251 + 1)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    data = np.stack([rows % 251 + 1, cols % 251 + 1, rng.integers(1, 255, (height, width)),
                     np.full((height, width), 200)]).astype(np.uint8)
    data[:, 128:, 192:] = 0  # bottom-right patch (row 2, col 3) is nodata
    return data


def test_patches_keep_georeferencing_and_drop_nodata(tmp_path):
    a = write_tif(tmp_path / "a.tif", naip())
    b = write_tif(tmp_path / "b.tif", (naip()[:, :128, :128].astype(np.uint16) * 16), crs="EPSG:4326",
                  transform=from_origin(-77.0, 39.0, 1e-5, 1e-5), tiled=False)  # striped, uint16, other CRS
    out = tmp_path / "images.h5"
    summary = patch_geotiffs([a, b], out, PatchParams(patch_size=64, bands=(1, 2, 4), max_nodata_fraction=0.25),
                             thumb_size=16, progress=False)
    assert summary["n_images"] == 3 * 4 - 1 + 4 and not summary["failures"]
    store = ImageStore(out)
    assert store.channels == 3 and store.image_size == (64, 64)
    assert "a/2_3" not in store.ids and "a/1_2" in store.ids and "b/1_1" in store.ids
    with h5py.File(out) as h5, rasterio.open(a) as src:
        i = store.ids.index("a/1_2")
        col_off, row_off, width, height = h5["window"][i]
        assert (col_off, row_off, width, height) == (128, 64, 64, 64)
        c, a_, b_, f, d, e = h5["transform"][i]
        # the patch's pixel (0, 0) corner is the source pixel (row 64, col 128) corner in world coordinates
        assert (c, f) == pytest.approx(src.transform * (128, 64))
        assert (a_, e) == (1.0, -1.0) and b_ == d == 0
        assert h5["source"][i].decode() == str(a)
        crs_list = __import__("json").loads(h5.attrs["crs_list"])
        assert rasterio.crs.CRS.from_wkt(crs_list[h5["crs_index"][i]]) == src.crs
        image = store.image(i)
        assert image[0, 0, 0] == 64 % 251 + 1 and image[0, 0, 1] == 128 % 251 + 1 and image[0, 0, 2] == 200
        j = store.ids.index("b/0_0")
        assert rasterio.crs.CRS.from_wkt(crs_list[h5["crs_index"][j]]).to_epsg() == 4326
    # uint16 scaled into uint8 range and not all saturated
    assert 0 < store.image(j).max() <= 255 and store.image(j).mean() < 250


def test_landcover_labels_and_positional_split(tmp_path):
    a = write_tif(tmp_path / "a.tif", naip())
    lc = np.full((1, 192, 256), 2, np.uint8)
    lc[0, :, :96] = 1  # left part class 1; a 64-px patch at col 1 (64..128) is mostly class 1
    lc_path = write_tif(tmp_path / "lc.tif", lc, nodata=None)
    out = tmp_path / "images.h5"
    patch_geotiffs([a], out, PatchParams(patch_size=64, bands=(1, 2, 3), max_nodata_fraction=0.25),
                   thumb_size=16, landcover=[lc_path], landcover_names=["none", "water"], held_out_fraction=0.3,
                   progress=False)
    store = ImageStore(out)
    labels = dict(zip(store.ids, store.labels))
    assert labels["a/0_0"] == 1 and labels["a/0_1"] == 1 and labels["a/0_2"] == 2 and labels["a/1_3"] == 2
    assert store.label_names == ["none", "water", "class_2"]  # names given for 0..1, the rest generated
    held = {i for i, s in zip(store.ids, store.split) if s}
    assert held == {i for i in store.ids if i.split("/")[1].startswith("2_")}  # the last row of patches


def test_bad_geotiffs_go_to_failures(tmp_path):
    from infbrush.cli import patch_geotiff as cli

    good = write_tif(tmp_path / "good.tif", naip())
    write_tif(tmp_path / "nocrs.tif", naip(), crs=None)
    write_tif(tmp_path / "allnodata.tif", np.zeros((4, 128, 128), np.uint8))
    write_tif(tmp_path / "gray.tif", naip()[:1])
    (tmp_path / "empty.tif").write_bytes(b"")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "out" / "images.h5"
    args = parser.parse_args([str(tmp_path), "--out", str(out), "--patch-size", "64", "--bands", "1,2,3",
                              "--max-nodata-fraction", "0.25", "--thumb-size", "16", "--no-progress"])
    assert cli.main(args) == 0
    rows = [line.split("\t") for line in (out.parent / "failures.tsv").read_text().splitlines()]
    reasons = {r[0].rsplit("/", 1)[-1]: r[1] for r in rows[1:]}
    assert set(reasons) == {"nocrs.tif", "allnodata.tif", "gray.tif", "empty.tif"}
    assert "CRS" in reasons["nocrs.tif"] and "1 bands" in reasons["gray.tif"]
    assert "nodata" in reasons["allnodata.tif"]
    assert {i.split("/")[0] for i in ImageStore(out).ids} == {good.stem}
    with pytest.raises(InfbrushError, match="no usable patch"):
        patch_geotiffs([tmp_path / "nocrs.tif"], tmp_path / "none.h5", PatchParams(patch_size=64), progress=False,
                       log=lambda line: None)
    assert not (tmp_path / "none.h5").exists()
