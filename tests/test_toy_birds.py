"""Tests for the toy-bird generator and the committed sample in data_samples/toy_birds."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tinyinterp.data import PART_NAMES, generate_toy_birds, load_cub

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "toy_birds"
TINY = dict(n_species=2, train_per_species=2, test_per_species=1, image_size=64)


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy")
    return (generate_toy_birds(base / "a", seed=7, **TINY),
            generate_toy_birds(base / "b", seed=7, **TINY),
            generate_toy_birds(base / "c", seed=8, **TINY))


def test_same_seed_is_byte_identical(tiny_pair):
    a, b, _ = tiny_pair
    files_a, files_b = tree_bytes(a), tree_bytes(b)
    assert files_a == files_b
    assert len([f for f in files_a if f.startswith("images/")]) == 6


def test_other_seed_differs(tiny_pair):
    a, _, c = tiny_pair
    files_a, files_c = tree_bytes(a), tree_bytes(c)
    assert files_a.keys() == files_c.keys()  # same layout and names ...
    images = [f for f in files_a if f.startswith("images/")]
    assert all(files_a[f] != files_c[f] for f in images)  # ... different pictures
    assert files_a["parts/part_locs.txt"] != files_c["parts/part_locs.txt"]


def test_reader_loads_generated_set(tiny_pair):
    a, _, _ = tiny_pair
    ds = load_cub(a, size=64, crop="whole")  # same size: landmarks stay in image pixels
    assert len(ds) == 6 and list(ds.class_ids) == [1, 2]
    assert ds.class_names == ["001.Red_Capped_Finch", "002.Bar_Winged_Warbler"]
    assert list(np.bincount(ds.labels)) == [3, 3]
    assert list(np.bincount(ds.labels[ds.is_train])) == [2, 2]
    assert ds.part_names == list(PART_NAMES)
    assert ds.report["boxes_clipped"] == 0 and ds.report["landmarks_invisible_by_crop"] == 0
    boxed = load_cub(a, size=32)
    assert boxed.report["landmarks_invisible_by_crop"] == 0  # landmarks lie inside the box


def test_visibility_follows_facing(tiny_pair):
    ds = load_cub(tiny_pair[0], size=32)
    eyes = ds.visible[:, [PART_NAMES.index("left eye"), PART_NAMES.index("right eye")]]
    wings = ds.visible[:, [PART_NAMES.index("left wing"), PART_NAMES.index("right wing")]]
    assert np.all(eyes.sum(1) == 1) and np.array_equal(eyes, wings)  # one side shows
    assert ds.visible.sum(1).tolist() == [13] * len(ds)


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        generate_toy_birds(tmp_path, **TINY)
    out = generate_toy_birds(tmp_path / "toy", **TINY)
    with pytest.raises(FileExistsError):
        generate_toy_birds(out, **TINY)
    assert tree_bytes(generate_toy_birds(out, overwrite=True, **TINY)) == tree_bytes(out)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="data_samples/toy_birds not generated")
def test_committed_sample():
    manifest = (SAMPLE / "MANIFEST.sha256").read_text().split("\n")[:-1]
    listed = dict(reversed(line.split("  ", 1)) for line in manifest)
    files = tree_bytes(SAMPLE)
    assert set(listed) == set(files) - {"MANIFEST.sha256"}
    assert all(hashlib.sha256(files[f]).hexdigest() == h for f, h in listed.items())
    assert sum(len(b) for b in files.values()) < 4_000_000
    ds = load_cub(SAMPLE, size=128, crop="whole")  # native size: image pixels unchanged
    assert len(ds) == 500 and len(ds.class_ids) == 5
    assert ds.is_train.sum() == 200 and list(np.bincount(ds.labels[ds.is_train])) == [40] * 5
    pts = ds.landmarks[ds.visible]
    assert pts.min() >= 0 and pts.max() <= 128
    assert ds.report["landmarks_invisible_by_crop"] == 0 and ds.report["boxes_clipped"] == 0
    assert ds.visible.sum() == 13 * 500
