"""BACH (both layouts) and CelebA-HQ adapters → image stores with labels and splits."""
import argparse

import numpy as np
import pytest
from PIL import Image

from infbrush.data.adapters import adapt_bach, adapt_celebahq, find_bach, read_attributes
from infbrush.data.store import ImageStore
from infbrush.errors import InfbrushError

CLASS_DIRS = ["Normal", "Benign", "InSitu", "Invasive"]


def write_image(path, value, size=(48, 36)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[...] = value
    image[:, : (size[0] - size[1]) // 2] = 0  # left margin cropped away by the centre square crop
    Image.fromarray(image).save(path)


def test_bach_train_test_layout(tmp_path):
    for split in ("train", "test"):
        for label, name in enumerate(CLASS_DIRS):
            for k in range(2 if split == "test" else 3):
                write_image(tmp_path / split / name / f"{name.lower()}{k}.tif", 40 * label + 10)
    (tmp_path / "train" / "Normal" / "broken.tif").write_bytes(b"not an image")
    from infbrush.cli import adapt

    parser = argparse.ArgumentParser()
    adapt.add_arguments(parser)
    out = tmp_path / "bach.h5"
    assert adapt.main(parser.parse_args(["--kind", "bach", "--root", str(tmp_path), "--out", str(out),
                                         "--image-size", "32", "--thumb-size", "8", "--no-progress"])) == 0
    store = ImageStore(out)
    assert len(store) == 4 * 5 and store.label_names == ["normal", "benign", "in_situ", "invasive"]
    assert np.bincount(store.labels).tolist() == [5, 5, 5, 5]
    assert int(store.split.sum()) == 8
    for i in range(len(store)):
        assert (store.image(i) == 40 * store.labels[i] + 10).all()  # right class, margin cropped away
    rows = (tmp_path / "bach_failures.tsv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(tmp_path / "train" / "Normal" / "broken.tif"))


def test_bach_official_layout_stratified_deterministic_split(tmp_path):
    photos = tmp_path / "ICIAR2018_BACH_Challenge" / "Photos"
    for label, name in enumerate(CLASS_DIRS):
        for k in range(8):
            write_image(photos / name / f"{name[0].lower()}{k:03d}.tif", 30 * label, size=(16, 12))
    items = find_bach(tmp_path / "ICIAR2018_BACH_Challenge", test_fraction=0.25, seed=1)
    assert len(items) == 32
    for label in range(4):
        assert sum(1 for _, lab, split in items if lab == label and split) == 2  # 25% per class
    assert items == find_bach(photos, test_fraction=0.25, seed=1)  # deterministic; Photos/ found either way
    assert items != find_bach(photos, test_fraction=0.25, seed=2)
    summary = adapt_bach(photos, tmp_path / "bach.h5", image_size=8, thumb_size=4, progress=False)
    assert summary["n_images"] == 32
    with pytest.raises(InfbrushError, match="no BACH images"):
        find_bach(tmp_path / "ICIAR2018_BACH_Challenge" / "Photos" / "Normal")


def test_celebahq_attribute_labels_and_hq_mapping(tmp_path):
    images = tmp_path / "images"
    blond = {0: True, 1: False, 2: True, 3: False}
    for i in blond:
        write_image(images / f"{i}.jpg", 200 if blond[i] else 50, size=(20, 20))
    write_image(images / "99.jpg", 10, size=(20, 20))  # no attribute row
    attrs = tmp_path / "list_attr_celeba.txt"
    rows = [f"{i + 1:06d}.jpg  {'1' if blond[i] else '-1'} -1" for i in blond]
    attrs.write_text(f"{len(rows)}\nBlond_Hair Smiling\n" + "\n".join(rows) + "\n")
    mapping = tmp_path / "CelebA-HQ-to-CelebA-mapping.txt"
    mapping.write_text("idx orig_idx orig_file\n" + "\n".join(f"{i} {i} {i + 1:06d}.jpg" for i in blond) + "\n")
    out = tmp_path / "images.h5"
    summary = adapt_celebahq(images, attrs, "Blond_Hair", out, image_size=16, thumb_size=8, mapping=str(mapping),
                             progress=False, log=lambda line: None)
    store = ImageStore(out)
    assert store.label_names == ["not_Blond_Hair", "Blond_Hair"]
    assert dict(zip(store.ids, store.labels.tolist())) == {"0.jpg": 1, "1.jpg": 0, "2.jpg": 1, "3.jpg": 0}
    assert [f.rsplit("/", 1)[-1] for f, _ in summary["failures"]] == ["99.jpg"]
    with pytest.raises(InfbrushError, match="no attribute 'Blonde'.*Blond_Hair"):
        adapt_celebahq(images, attrs, "Blonde", tmp_path / "x.h5", image_size=16, progress=False)
    names, table = read_attributes(attrs)
    assert names == ["Blond_Hair", "Smiling"] and table["000001.jpg"].tolist() == [1, -1]
