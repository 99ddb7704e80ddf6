"""Tests for the CUB-200-2011 layout reader on tiny folders built here with Pillow."""
import re
import shutil
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tinyinterp.data import PART_NAMES, CubFormatError, load_cub
from tinyinterp.data.root import find_data, missing

W, H = 100, 80
SPLIT_X, SPLIT_Y = 40, 35  # quadrant corner of every test image
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)
BOX = (20.0, 10.0, 40.0, 50.0)  # x, y, w, h
# (image id, class id, is_train, box). Ids and class ids are deliberately not contiguous;
# image 30's box runs 1 px past the right edge (as some real CUB boxes do).
IMAGES = [(10, 1, 1, BOX), (11, 1, 0, BOX), (12, 1, 1, BOX), (20, 5, 0, BOX),
          (21, 5, 1, BOX), (30, 9, 1, (0.0, 0.0, 101.0, 80.0)), (31, 9, 0, BOX)]
CLASSES = {1: "001.Alpha", 5: "005.Beta", 9: "009.Gamma"}
# part id -> (x, y) of the visible parts; the others are written as "0.0 0.0 0".
# Part 1 (back) at (2, 2) lies outside BOX's crop: it must become invisible there.
PARTS = {2: (40.0, 35.0), 7: (30.0, 20.0), 9: (50.0, 50.0), 13: (25.0, 45.0), 1: (2.0, 2.0)}
LEFT_EYE, RIGHT_EYE = PART_NAMES.index("left eye"), PART_NAMES.index("right eye")
LEFT_WING, RIGHT_WING = PART_NAMES.index("left wing"), PART_NAMES.index("right wing")


def quadrant_image(path):
    a = np.zeros((H, W, 3), np.uint8)
    a[:SPLIT_Y, :SPLIT_X], a[:SPLIT_Y, SPLIT_X:] = RED, BLUE
    a[SPLIT_Y:, :SPLIT_X], a[SPLIT_Y:, SPLIT_X:] = GREEN, WHITE
    Image.fromarray(a).save(path)


def write_cub(root, images=IMAGES):
    """A complete, valid CUB-layout folder under ``root``; returns root."""
    root = Path(root)
    (root / "parts").mkdir(parents=True)
    rel = {i: f"{CLASSES[c]}/img_{i}.png" for i, c, _, _ in images}
    for i, path in rel.items():
        (root / "images" / path).parent.mkdir(parents=True, exist_ok=True)
        quadrant_image(root / "images" / path)

    def write(name, lines):
        (root / name).write_text("".join(line + "\n" for line in lines))

    write("images.txt", [f"{i} {rel[i]}" for i, *_ in images])
    write("classes.txt", [f"{c} {n}" for c, n in CLASSES.items()])
    write("image_class_labels.txt", [f"{i} {c}" for i, c, _, _ in images])
    write("train_test_split.txt", [f"{i} {t}" for i, _, t, _ in images])
    write("bounding_boxes.txt", [f"{i} " + " ".join(f"{v:.1f}" for v in b)
                                 for i, _, _, b in images])
    write("parts/parts.txt", [f"{j + 1} {n}" for j, n in enumerate(PART_NAMES)])
    write("parts/part_locs.txt", [
        f"{i} {p} {PARTS[p][0]:.1f} {PARTS[p][1]:.1f} 1" if p in PARTS else f"{i} {p} 0.0 0.0 0"
        for i, *_ in images for p in range(1, 16)])
    return root


@pytest.fixture
def cub_root(tmp_path):
    return write_cub(tmp_path / "cub")


@pytest.fixture(scope="module")
def base_root(tmp_path_factory):
    return write_cub(tmp_path_factory.mktemp("base") / "cub")


def replace_line(path, lineno, new):
    lines = path.read_text().split("\n")
    lines[lineno - 1] = new
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------------ reading

def test_counts_labels_and_split(cub_root):
    ds = load_cub(cub_root, size=24)
    assert len(ds) == 7 and ds.images.shape == (7, 24, 24, 3) and ds.images.dtype == np.uint8
    assert list(ds.class_ids) == [1, 5, 9]
    assert ds.class_names == ["001.Alpha", "005.Beta", "009.Gamma"]
    assert list(ds.image_ids) == [10, 11, 12, 20, 21, 30, 31]
    assert ds.labels.dtype == np.int64 and list(ds.labels) == [0, 0, 0, 1, 1, 2, 2]
    assert list(ds.is_train) == [bool(t) for _, _, t, _ in IMAGES]
    assert ds.part_names == list(PART_NAMES)
    assert ds.landmarks.shape == (7, 15, 2) and ds.landmarks.dtype == np.float32
    assert ds.visible.shape == (7, 15) and ds.visible.dtype == bool
    assert ds.report["images_read"] == 7 and ds.report["skipped"] == {}
    train, test = ds.split("train"), ds.split("test")
    assert len(train) == 4 and len(test) == 3 and train.is_train.all() and not test.is_train.any()
    assert list(test.labels) == [0, 1, 2]


def test_class_selection_remaps_labels_and_caps(cub_root):
    ds = load_cub(cub_root, classes=[9, 1], size=16)
    assert list(ds.class_ids) == [9, 1]  # labels follow the order asked for
    assert {int(i): int(l) for i, l in zip(ds.image_ids, ds.labels)} == {
        10: 1, 11: 1, 12: 1, 30: 0, 31: 0}
    assert ds.report["skipped"] == {"not in the selected classes": 2}
    capped = load_cub(cub_root, classes=2, images_per_class=1, size=16)
    assert list(capped.class_ids) == [1, 5] and list(capped.image_ids) == [10, 20]
    assert list(capped.is_train) == [True, False]  # official flags kept
    assert capped.report["skipped"] == {"not in the selected classes": 2,
                                        "over the images_per_class cap": 3}


def test_box_crop_and_landmarks_by_hand(cub_root):
    ds = load_cub(cub_root, size=24, margin=0.1)
    # Image 10: box [20, 60] x [10, 60] + 10 % margin -> crop [16, 64] x [5, 65],
    # so x' = (x - 16) * 24 / 48 and y' = (y - 5) * 24 / 60.
    i = 0
    assert ds.visible[i, 1] and np.allclose(ds.landmarks[i, 1], [12.0, 12.0])  # beak
    assert np.allclose(ds.landmarks[i, LEFT_EYE], [7.0, 6.0])
    assert np.allclose(ds.landmarks[i, LEFT_WING], [17.0, 18.0])
    assert np.allclose(ds.landmarks[i, RIGHT_WING], [4.5, 16.0])
    assert not ds.visible[i, 0]  # the back at (2, 2) lies outside the crop
    assert not ds.visible[i, RIGHT_EYE] and np.all(ds.landmarks[i, RIGHT_EYE] == 0)
    # The quadrant corner (40, 35) is the beak landmark: colours meet at (12, 12).
    img = ds.images[i].astype(int)
    for (r, c), colour in {(5, 5): RED, (5, 18): BLUE, (18, 5): GREEN, (18, 18): WHITE}.items():
        assert np.abs(img[r, c] - colour).max() <= 1, (r, c)
    # Sub-pixel check of the convention: the colour edge sits exactly between columns
    # (rows) 11 and 12, so the two neighbours mix red/blue (red/green) symmetrically.
    assert img[5, 11, 0] > img[5, 11, 2] and abs(img[5, 11, 0] - img[5, 12, 2]) <= 1
    assert img[11, 5, 0] > img[11, 5, 1] and abs(img[11, 5, 0] - img[12, 5, 1]) <= 1
    assert ds.report["landmarks_invisible_by_crop"] == 6  # every image but 30


def test_box_overshoot_is_clipped_and_counted(cub_root):
    ds = load_cub(cub_root, size=20, margin=0.1)
    assert ds.report["boxes_clipped"] == 1
    i = list(ds.image_ids).index(30)  # its crop is the whole image after clipping
    assert ds.visible[i, 0] and np.allclose(ds.landmarks[i, 0], [2 * 20 / W, 2 * 20 / H])
    assert np.allclose(ds.landmarks[i, 1], [40 * 20 / W, 35 * 20 / H])


def test_whole_image_crop(cub_root):
    ds = load_cub(cub_root, size=20, crop="whole")
    assert np.allclose(ds.landmarks[:, 1], [40 * 20 / W, 35 * 20 / H])
    assert ds.visible[:, 0].all() and ds.report["landmarks_invisible_by_crop"] == 0


def test_mean_std(cub_root):
    ds = load_cub(cub_root, size=12)
    mean, std = ds.mean_std()
    pixels = ds.images.reshape(-1, 3) / 255.0
    assert mean.dtype == np.float32 and mean.shape == (3,) and std.shape == (3,)
    assert np.allclose(mean, pixels.mean(0), atol=1e-6)
    assert np.allclose(std, pixels.std(0), atol=1e-5)


def test_cache_hit_and_corrupt_rebuild(cub_root, tmp_path):
    first = load_cub(cub_root, size=16, cache_dir=tmp_path / "cache")
    again = load_cub(cub_root, size=16, cache_dir=tmp_path / "cache")
    assert (first.report["cache"], again.report["cache"]) == ("written", "hit")
    for name in ("images", "labels", "landmarks", "visible", "is_train", "image_ids"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert again.class_names == first.class_names and again.part_names == first.part_names
    [path] = list((tmp_path / "cache").glob("*.npz"))
    assert not list((tmp_path / "cache").glob("*.tmp"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = load_cub(cub_root, size=16, cache_dir=tmp_path / "cache")
    assert rebuilt.report["cache"] == "rebuilt" and np.array_equal(rebuilt.images, first.images)
    other = load_cub(cub_root, size=8, cache_dir=tmp_path / "cache")  # new key, new file
    assert other.report["cache"] == "written" and len(list(path.parent.glob("*.npz"))) == 2


def test_cache_inside_the_folder_still_hits(cub_root):
    first = load_cub(cub_root, size=8, cache_dir=cub_root / "cache")
    again = load_cub(cub_root, size=8, cache_dir=cub_root / "cache")
    assert (first.report["cache"], again.report["cache"]) == ("written", "hit")


# ------------------------------------------------------------------------ batches

def collect(ds, **kw):
    return list(ds.batches(**kw))


def test_batches_shapes_and_normalisation(cub_root):
    ds = load_cub(cub_root, size=16)
    mean, std = np.array([0.2, 0.4, 0.6]), np.array([0.5, 0.25, 2.0])
    batches = collect(ds, batch_size=3, shuffle=False, flip=False, mean=mean, std=std)
    assert [len(b["labels"]) for b in batches] == [3, 3, 1]
    b = batches[0]
    assert b["x"].shape == (3, 3, 16, 16) and b["x"].dtype == np.float32
    assert b["labels"].dtype == np.int64 and b["landmarks"].dtype == np.float32
    assert b["visible"].dtype == bool and list(b["index"]) == [0, 1, 2]
    chw = ds.images[:3].transpose(0, 3, 1, 2) / 255.0
    expect = (chw - mean[:, None, None]) / std[:, None, None]
    assert np.allclose(b["x"], expect, atol=1e-5)
    plain = collect(ds, batch_size=3, shuffle=False, flip=False)[0]["x"]
    assert np.allclose(plain, ds.images[:3].transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
    dropped = collect(ds, batch_size=3, drop_last=True)
    assert [len(b["index"]) for b in dropped] == [3, 3]


def test_batches_deterministic_per_seed(cub_root):
    ds = load_cub(cub_root, size=16)
    a, b = collect(ds, batch_size=4, seed=3), collect(ds, batch_size=4, seed=3)
    for x, y in zip(a, b):
        for key in x:
            assert np.array_equal(x[key], y[key])
    orders = {tuple(np.concatenate([b["index"] for b in collect(ds, batch_size=4, seed=s)]))
              for s in range(5)}
    assert len(orders) > 1
    assert all(sorted(o) == list(range(len(ds))) for o in orders)


def test_flip_mirrors_images_landmarks_and_swaps_sides(cub_root):
    ds = load_cub(cub_root, size=24)
    plain = collect(ds, batch_size=len(ds), shuffle=False, flip=False)[0]
    for seed in range(20):  # find a seed that flips some images and not others
        b = collect(ds, batch_size=len(ds), shuffle=False, flip=True, seed=seed)[0]
        flipped = np.array([not np.array_equal(b["x"][i], plain["x"][i]) for i in range(len(ds))])
        if 0 < flipped.sum() < len(ds):
            break
    for i in range(len(ds)):
        if not flipped[i]:
            assert np.array_equal(b["landmarks"][i], plain["landmarks"][i])
            continue
        assert np.array_equal(b["x"][i], plain["x"][i][..., ::-1])
        assert b["visible"][i, RIGHT_EYE] and not b["visible"][i, LEFT_EYE]
        assert np.allclose(b["landmarks"][i, RIGHT_EYE],
                           [24 - plain["landmarks"][i, LEFT_EYE, 0],
                            plain["landmarks"][i, LEFT_EYE, 1]])
        before, after = plain["landmarks"][i, :, 0], b["landmarks"][i, :, 0]
        assert np.isclose(after[LEFT_WING], 24 - before[RIGHT_WING])
        assert np.isclose(after[RIGHT_WING], 24 - before[LEFT_WING])
        assert np.allclose(b["landmarks"][i, 1, 0], 24 - plain["landmarks"][i, 1, 0])  # beak
        assert np.all(b["landmarks"][i][~b["visible"][i]] == 0)


def test_shift_moves_each_image_and_its_landmarks_together(cub_root):
    ds = load_cub(cub_root, size=24)
    plain = collect(ds, batch_size=len(ds), shuffle=False, flip=False)[0]
    moved = collect(ds, batch_size=len(ds), shuffle=False, flip=False, shift=5, seed=1)[0]
    again = collect(ds, batch_size=len(ds), shuffle=False, flip=False, shift=5, seed=1)[0]
    assert all(np.array_equal(moved[k], again[k]) for k in moved)  # the same seed, the same moves
    assert any(not np.array_equal(moved["x"][i], plain["x"][i]) for i in range(len(ds)))
    for i in range(len(ds)):
        delta = moved["landmarks"][i] - plain["landmarks"][i]
        both = moved["visible"][i] & plain["visible"][i]
        assert both.any()
        dx, dy = delta[both][0]
        assert np.allclose(delta[both], [dx, dy]) and abs(dx) <= 5 and abs(dy) <= 5
        assert dx == int(dx) and dy == int(dy)
        dx, dy = int(dx), int(dy)
        # the pixels moved with the landmarks: out[y, x] = in[y - dy, x - dx] where both exist
        ys, xs = slice(max(dy, 0), 24 + min(dy, 0)), slice(max(dx, 0), 24 + min(dx, 0))
        src_y, src_x = slice(max(-dy, 0), 24 + min(-dy, 0)), slice(max(-dx, 0), 24 + min(-dx, 0))
        assert np.array_equal(moved["x"][i][:, ys, xs], plain["x"][i][:, src_y, src_x])
        if dx > 0:  # the uncovered left columns repeat the image's first column
            assert np.array_equal(moved["x"][i][:, :, 0], moved["x"][i][:, :, dx])
        # a landmark moved off the image is hidden, at (0, 0)
        left = plain["visible"][i] & ~moved["visible"][i]
        for k in np.flatnonzero(left):
            x, y = plain["landmarks"][i, k] + (dx, dy)
            assert not (0 <= x < 24 and 0 <= y < 24)
            assert np.all(moved["landmarks"][i, k] == 0)
    # no shift: the batches are those of a run without the option
    base = collect(ds, batch_size=4, seed=3)
    zero = collect(ds, batch_size=4, seed=3, shift=0)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(base, zero) for k in a)
    with pytest.raises(ValueError, match="shift must be an integer"):
        collect(ds, batch_size=4, shift=24)


def test_moved_dataset_moves_each_image_with_its_landmarks_the_same_way_each_time(cub_root):
    ds = load_cub(cub_root, size=24)
    before = ds.images.copy()
    moved, again = ds.moved(5, seed=1), ds.moved(5, seed=1)
    other = ds.moved(5, seed=2)
    assert np.array_equal(moved.images, again.images) and np.array_equal(moved.landmarks, again.landmarks)
    assert not np.array_equal(moved.images, other.images)
    assert np.array_equal(ds.images, before)  # the original is left as it was
    for name in ("labels", "is_train", "image_ids", "class_ids"):
        assert np.array_equal(getattr(moved, name), getattr(ds, name))
    assert moved.report["moved"] == 5 and "moved" not in ds.report
    for i in range(len(ds)):
        both = moved.visible[i] & ds.visible[i]
        delta = moved.landmarks[i][both] - ds.landmarks[i][both]
        dx, dy = (int(v) for v in delta[0])
        assert np.array_equal(delta, np.tile([dx, dy], (len(delta), 1))) and max(abs(dx), abs(dy)) <= 5
        # the pixels moved with the landmarks: out[y, x] = in[y - dy, x - dx] where both exist
        ys, xs = slice(max(dy, 0), 24 + min(dy, 0)), slice(max(dx, 0), 24 + min(dx, 0))
        src_y, src_x = slice(max(-dy, 0), 24 + min(-dy, 0)), slice(max(-dx, 0), 24 + min(-dx, 0))
        assert np.array_equal(moved.images[i][ys, xs], ds.images[i][src_y, src_x])
    still = ds.moved(0)
    assert np.array_equal(still.images, ds.images) and np.array_equal(still.landmarks, ds.landmarks)
    with pytest.raises(ValueError, match="shift must be an integer"):
        ds.moved(24)


# ------------------------------------------------------------------------- errors

METADATA = ["images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
            "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt"]
FIELDS = {  # kinds of each file's fields ("rest" = rest of the line, spaces allowed)
    "images.txt": ["int", "str"], "classes.txt": ["int", "str"],
    "image_class_labels.txt": ["int", "int"], "train_test_split.txt": ["int", "bit"],
    "bounding_boxes.txt": ["int"] + ["float"] * 4, "parts/parts.txt": ["int", "rest"],
    "parts/part_locs.txt": ["int", "int", "float", "float", "bit"],
}
words = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)


def error_at(rel, lineno):
    return pytest.raises(CubFormatError, match=re.escape(rel) + rf".*line {lineno}\b")


@pytest.mark.parametrize("rel", METADATA)
def test_missing_metadata_file(cub_root, rel):
    (cub_root / rel).unlink()
    with pytest.raises(CubFormatError, match=re.escape(rel)):
        load_cub(cub_root)


@st.composite
def broken_line(draw, root):
    """(file, line number, replacement line) with a wrong field count or a word for a number."""
    rel = draw(st.sampled_from(METADATA))
    lines = (root / rel).read_text().split("\n")[:-1]
    lineno = draw(st.integers(1, len(lines)))
    kinds = FIELDS[rel]
    fields = lines[lineno - 1].split(None, 1) if kinds[-1] == "rest" else lines[lineno - 1].split()
    how = draw(st.sampled_from(["fewer", "word"] + ([] if kinds[-1] == "rest" else ["more"])))
    if how == "fewer":
        fields = fields[:draw(st.integers(1, len(fields) - 1))]
    elif how == "more":
        fields = fields + draw(st.lists(words | st.integers(0, 99).map(str), min_size=1,
                                        max_size=3))
    else:
        numeric = [k for k, kind in enumerate(kinds) if kind not in ("str", "rest")]
        j = draw(st.sampled_from(numeric))
        fields[j] = draw(words)
    return rel, lineno, " ".join(fields)


@given(data=st.data())
def test_malformed_line_names_file_and_line(base_root, data):
    rel, lineno, line = data.draw(broken_line(base_root))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(base_root, Path(tmp) / "cub"))
        replace_line(root / rel, lineno, line)
        with error_at(rel, lineno):
            load_cub(root, size=8)


def test_blank_lines_and_crlf_are_fine(cub_root):
    path = cub_root / "images.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\r\n")
    assert len(load_cub(cub_root, size=8)) == 7


@pytest.mark.parametrize("rel", ["image_class_labels.txt", "train_test_split.txt",
                                 "bounding_boxes.txt"])
def test_image_without_metadata_row(cub_root, rel):
    replace_line(cub_root / rel, 3, "")  # image 12 (images.txt line 3) loses its row
    with pytest.raises(CubFormatError, match=r"images\.txt, line 3.*" + re.escape(rel)):
        load_cub(cub_root)


def test_unknown_class_id_and_duplicates(cub_root):
    replace_line(cub_root / "image_class_labels.txt", 2, "11 77")
    with error_at("image_class_labels.txt", 2):
        load_cub(cub_root)
    replace_line(cub_root / "image_class_labels.txt", 2, "10 1")  # id 10 twice
    with pytest.raises(CubFormatError, match=r"image_class_labels\.txt, line 2: duplicate"):
        load_cub(cub_root)


def test_bad_selection(cub_root):
    with pytest.raises(CubFormatError, match=r"classes\.txt.*\[4\]"):
        load_cub(cub_root, classes=[1, 4])
    with pytest.raises(CubFormatError, match="empty selection"):
        load_cub(cub_root, classes=[])
    with pytest.raises(CubFormatError, match="empty selection"):
        load_cub(cub_root, images_per_class=0)
    with pytest.raises(CubFormatError, match="classes.txt"):
        load_cub(cub_root, classes=4)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_bad_image_file_is_named(cub_root, damage):
    rel = "images/005.Beta/img_21.png"
    path = cub_root / rel
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    else:
        path.write_bytes(b"not an image at all")
    with pytest.raises(CubFormatError, match=re.escape(rel)):
        load_cub(cub_root)


# ------------------------------------------------------------------ real CUB subset

REAL = find_data("cub_real_subset")  # $TINYINTERP_DATA, else shared/ beside the checkout


@pytest.mark.skipif(REAL is None, reason=missing("cub_real_subset"))
def test_real_cub_subset():
    ds = load_cub(REAL, size=64)
    assert len(ds) == 587 and len(ds.class_ids) == 10
    assert ds.is_train.sum() == 299 and (~ds.is_train).sum() == 288
    assert sorted(set(ds.labels.tolist())) == list(range(10))
    pts = ds.landmarks[ds.visible]
    assert pts.min() >= 0 and pts.max() <= 64
    assert ds.report["images_read"] == 587 and ds.report["boxes_clipped"] == 3

