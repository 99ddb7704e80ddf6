"""Tests for the toy-bird generator and the committed sample in data_samples/toy_birds."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tinyinterp.data import PART_NAMES, background_square, generate_toy_birds, load_bird_task, load_cub
from tinyinterp.data import posed_birds
from tinyinterp.data.posed_birds import render_bird
from tinyinterp.data import toy_birds
from tinyinterp.data.toy_birds import SPECIES

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


def _inside(point, polygon):
    """Even-odd ray casting: is ``point`` inside the closed ``polygon`` (k, 2)?"""
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _around(point, r=0.75):
    return [point + d for d in ((0, 0), (r, 0), (-r, 0), (0, r), (0, -r))]


@pytest.fixture(scope="module")
def drawn_birds():
    return [render_bird(SPECIES[k % 5], np.random.default_rng([3, k % 5, k]), 96)
            for k in range(150)]


def test_landmarks_lie_on_their_drawn_part_inside_the_photo(drawn_birds):
    checked = 0
    for bird in drawn_birds:
        pts = bird.landmarks[bird.visible]
        assert np.all(pts >= 0) and np.all(pts < 96)
        assert set(bird.landmark_parts) == set(np.flatnonzero(bird.visible))
        for j, part in bird.landmark_parts.items():
            assert any(_inside(bird.landmarks[j], poly) for poly in bird.polygons[part]), (
                PART_NAMES[j], part)
            checked += 1
        assert np.all(bird.landmarks[~bird.visible] == 0)  # CUB writes hidden parts as 0 0
    assert checked > 150 * 10


def test_hidden_parts_are_flagged(drawn_birds, monkeypatch):
    """A landmark under a leaf or twig drawn in front is invisible, and one clear of them
    stays visible: each bird is drawn again without occluders (the same random stream up
    to them, so the same bird and landmarks) and the two visibilities compared. Landmarks
    outside the photo are invisible (visible ones lie inside: the test above); both kinds
    of hiding occur."""
    monkeypatch.setattr(posed_birds, "P_OCCLUDED", 0.0)
    hidden_by_leaf = cut = 0
    for k, bird in enumerate(drawn_birds):
        clear = render_bird(SPECIES[k % 5], np.random.default_rng([3, k % 5, k]), 96)
        assert clear.occluders == [] and clear.box == bird.box
        assert np.all(bird.landmarks[bird.visible] == clear.landmarks[bird.visible])
        assert not np.any(bird.visible & ~clear.visible)  # occluders only hide
        for j in np.flatnonzero(clear.visible):
            under = [any(_inside(q, poly) for q in _around(clear.landmarks[j]))
                     for poly, _ in bird.occluders]
            deep = [all(_inside(q, poly) for q in _around(clear.landmarks[j]))
                    for poly, _ in bird.occluders]
            if bird.visible[j]:
                assert not any(deep), PART_NAMES[j]
            else:
                assert any(under), PART_NAMES[j]
                hidden_by_leaf += 1
        x, y, w, h = bird.box
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
        cut += x == 0 or y == 0 or x + w == 96 or y + h == 96
    assert hidden_by_leaf >= 10 and cut >= 5


def test_negatives_never_touch_a_bird(drawn_birds):
    """The bird-vs-not task's background square (``background_square``: beside the box and
    its 5% margin, capped near the bird's crop side) holds no point of the drawn bird:
    the box really encloses every drawn polygon, clipped to the photo."""
    made = 0
    for bird in drawn_birds:
        x, y, w, h = bird.box
        crop_side = np.sqrt(min(1.2 * w, 96) * min(1.2 * h, 96))
        square = background_square(bird.box, 96, 96, 0.05, max_side=crop_side)
        if square is None or square[2] - square[0] < 0.25 * 96:
            continue
        made += 1
        x0, y0, x1, y1 = square
        for polygons in bird.polygons.values():
            for poly in polygons:
                assert not np.any((poly[:, 0] > x0) & (poly[:, 0] < x1) &
                                  (poly[:, 1] > y0) & (poly[:, 1] < y1))
    assert made >= 0.9 * len(drawn_birds)


def test_posed_set_and_its_bird_task(tmp_path):
    """generate_toy_birds(poses=True) writes the posed birds (the same bytes twice; never
    both eyes) and load_bird_task cuts a negative from nearly every photo."""
    tiny = dict(TINY, image_size=96, train_per_species=3, test_per_species=3)
    a = generate_toy_birds(tmp_path / "a", poses=True, **tiny)
    assert tree_bytes(a) == tree_bytes(generate_toy_birds(tmp_path / "b", poses=True, **tiny))
    assert tree_bytes(a)["parts/part_locs.txt"] != tree_bytes(generate_toy_birds(tmp_path / "c", **tiny))["parts/part_locs.txt"]
    ds = load_bird_task(a, size=32)
    pos, neg = ds.labels == 1, ds.labels == 0
    eyes = ds.visible[:, [PART_NAMES.index("left eye"), PART_NAMES.index("right eye")]]
    assert np.all(eyes[pos].sum(1) <= 1)
    assert ds.report["negatives"]["made"] == neg.sum() >= 10 and not ds.visible[neg].any()


def test_head_marks_design():
    """head_marks: the body plumage no longer follows the species (each of the first two
    species shows several of the shared plumages), the head is larger, the marks are the
    head's; without poses it is refused."""
    from tinyinterp.data.posed_birds import BODY_PLUMAGES, HEAD_MARKS, _head_marks_jitter
    for spec in SPECIES[:2]:
        birds = [_head_marks_jitter(spec, np.random.default_rng([5, k])) for k in range(20)]
        assert len({b["back"] for b in birds}) >= 3 and all(b["back"] in [q[0] for q in BODY_PLUMAGES] for b in birds)
        assert all(b["head"] > 1.2 * spec["head"] for b in birds)
        marks = HEAD_MARKS[spec["name"]]
        assert all((b[key] is not None) == (key in marks) for b in birds for key in ("cap", "throat", "stripe"))
    with pytest.raises(ValueError, match="poses"):
        generate_toy_birds(Path("unused"), head_marks=True)
    with pytest.raises(ValueError, match="head_marks"):
        generate_toy_birds(Path("unused"), poses=True, repeat_mark=True)


def test_repeat_mark_paints_the_tail_in_the_heads_colour():
    """repeat_mark: the tail's polygon takes the colour of the head's first mark (the finch's
    red cap), and nothing else of the drawing or its landmarks changes."""
    finch = SPECIES[0]
    plain = render_bird(finch, np.random.default_rng([9, 0]), 96, head_marks=True)
    marked = render_bird(finch, np.random.default_rng([9, 0]), 96, head_marks=True, repeat_mark=True)
    assert np.array_equal(plain.landmarks, marked.landmarks) and plain.box == marked.box
    tail = PART_NAMES.index("tail")
    assert plain.visible[tail]  # this seed shows its tail
    x, y = np.rint(plain.landmarks[tail]).astype(int) - 1
    for bird, is_red in ((marked, True), (plain, False)):
        colour = np.asarray(bird.image, float)[y:y + 3, x:x + 3].mean((0, 1))
        assert (colour[0] > 120 and colour[0] > colour[1] + 60) == is_red  # the cap's red
    assert np.asarray(plain.image).tobytes() != np.asarray(marked.image).tobytes()


def _crown_in_box(box, landmarks, facing_left):
    """The crown's place inside the box, as fractions of its width and height, mirrored
    for birds facing left."""
    where = (landmarks[PART_NAMES.index("crown")] - box[:2]) / box[2:]
    return np.array([1 - where[0], where[1]]) if facing_left else where


def test_poses_move_the_parts_inside_the_box(drawn_birds):
    """Inside the box (the crop the networks see) the posed birds' crown spreads further
    than the still birds' (facing folded out) in x and in y, and half as far again in all."""
    crown = PART_NAMES.index("crown")
    posed = np.array([_crown_in_box(np.array(b.box), b.landmarks, b.pose["facing"] == "left")
                      for b in drawn_birds if b.visible[crown]])
    still = []
    for k in range(150):
        _, box, pts, vis = toy_birds._render(SPECIES[k % 5], np.random.default_rng([3, k % 5, k]), 96)
        still.append(_crown_in_box(np.array(box), pts, bool(vis[PART_NAMES.index("left eye")])))
    spread, still_spread = posed.std(0), np.array(still).std(0)
    assert np.all(spread > still_spread) and np.hypot(*spread) > 1.5 * np.hypot(*still_spread)
    poses = {(b.pose["head"], b.pose["body"], b.pose["wings"]) for b in drawn_birds}
    assert len(poses) >= 15


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
