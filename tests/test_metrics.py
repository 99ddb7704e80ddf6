"""Tests for tinyinterp.metrics and tinyinterp.evaluate: constructed cases with answers known by hand, a
brute-force receptive-field check, and small end-to-end runs (no real training)."""
import json
import math

import numpy as np
import pytest

from tinyinterp.data.cub import PART_NAMES
from tinyinterp.data.dataset import CubDataset
from tinyinterp.evaluate import evaluate_model, evaluate_runs, format_table
from tinyinterp.layers import Conv2d, ReLU
from tinyinterp.metrics import (
    LANDMARK_GROUPS, border_share, centre_share, collect_maps, cub_landmark_groups,
    location_instability, part_offsets, reference_values, shuffled_control, top_k_border_share,
    tracking_counts, uniform_border_share, uniform_centre_share, unit_centres)
from tinyinterp.model import Sequential
from tinyinterp.pooling import MaxPool2d
from tinyinterp.vgg import receptive_field, small_vgg


def one_filter(positions):
    """(N, 2) positions of one filter -> (N, 1, 2)."""
    return np.asarray(positions, np.float64)[:, None, :]


# ------------------------------------------------------------------ instability by hand

def test_perfect_tracker_scores_zero():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 64, (30, 3, 2))
    vis = np.ones((30, 3), bool)
    # filter 0 sits exactly on landmark 0, filter 1 exactly on landmark 2
    pos = np.stack([lm[:, 0], lm[:, 2]], axis=1)
    res = location_instability(pos, rng.random((30, 2)) + 0.1, lm, vis, None, 64 * math.sqrt(2))
    assert res["per_filter_landmark"][0, 0] == 0.0
    assert res["per_filter_landmark"][1, 2] == 0.0
    assert res["per_filter_landmark"][0, 1] > 0
    # with that landmark alone, the layer value is exactly 0
    only = location_instability(pos[:, :1], rng.random((30, 1)) + 0.1, lm, vis, [0], 90.0)
    assert only["value"] == 0.0


def test_fixed_position_is_std_of_distances_by_hand():
    # landmarks at (0, 0), (0, 3), (3, 4): distances 0, 3, 5 from the fixed point (0, 0)
    lm = np.array([[[0.0, 0.0]], [[0.0, 3.0]], [[3.0, 4.0]]])
    vis = np.ones((3, 1), bool)
    pos = one_filter(np.zeros((3, 2)))
    res = location_instability(pos, np.ones((3, 1)), lm, vis, None, diagonal=10.0)
    d = np.array([0.0, 3.0, 5.0])
    by_hand = math.sqrt(((d - d.mean()) ** 2).sum() / 2) / 10.0  # N - 1 = 2
    assert res["value"] == pytest.approx(by_hand, rel=1e-12)
    assert res["value"] == pytest.approx(math.sqrt(19 / 3) / 10, rel=1e-12)


def test_sample_std_uses_n_minus_1():
    lm = np.array([[[0.0, 0.0]], [[2.0, 0.0]]])  # distances 0 and 2 from the origin
    res = location_instability(one_filter(np.zeros((2, 2))), np.ones((2, 1)), lm,
                               np.ones((2, 1), bool), None, diagonal=1.0)
    assert res["value"] == pytest.approx(math.sqrt(2))  # population std would be 1


def test_top_k_by_score_among_visible_images_only():
    # distances from the origin: 0, 10, 20, 30, 40, 50 (landmark along x)
    lm = np.array([[[10.0 * i, 0.0]] for i in range(6)])
    vis = np.array([[False], [True], [True], [False], [True], [True]])
    # invisible images 0 and 3 have the highest scores: they must not be chosen
    scores = np.array([[9.0], [1.0], [5.0], [8.0], [4.0], [2.0]])
    res = location_instability(one_filter(np.zeros((6, 2))), scores, lm, vis, None, 1.0, top_k=2)
    # the two best visible images are 2 (d=20) and 4 (d=40): sample std = sqrt(200)
    assert res["value"] == pytest.approx(math.sqrt(200))
    all_vis = location_instability(one_filter(np.zeros((6, 2))), scores, lm, vis, None, 1.0,
                                   top_k=100)
    assert all_vis["value"] == pytest.approx(np.std([10, 20, 40, 50], ddof=1))


def test_too_few_images_gives_nan_and_is_left_out():
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 32, (8, 3, 2))
    vis = np.ones((8, 3), bool)
    vis[1:, 1] = False                  # landmark 1 visible on one image only
    pos = rng.uniform(0, 32, (8, 3, 2))
    scores = rng.random((8, 3)) + 0.1
    scores[:, 2] = 0.0                  # filter 2 is dead
    res = location_instability(pos, scores, lm, vis, None, 1.0)
    dev = res["per_filter_landmark"]
    assert np.isnan(dev[:, 1]).all()
    assert np.isnan(res["per_landmark"][1])
    assert res["per_filter"][0] == pytest.approx((dev[0, 0] + dev[0, 2]) / 2)  # nan-aware
    assert np.isnan(res["per_filter"][2]) and res["dead_filters"] == 1
    assert res["dropped_filters"] == 1 and res["valid"].tolist() == [True, True, False]
    assert res["value"] == pytest.approx(np.mean(res["per_filter"][:2]))
    # a filter whose landmarks all have < 2 images is NaN and dropped, not an error
    vis_one = np.zeros((8, 3), bool)
    vis_one[0] = True
    none = location_instability(pos, scores, lm, vis_one, None, 1.0)
    assert np.isnan(none["value"]) and none["dropped_filters"] == 3 and none["nan_filters"] == 2


def test_part_ids_select_landmark_columns():
    rng = np.random.default_rng(2)
    lm = rng.uniform(0, 32, (10, 5, 2))
    vis = rng.random((10, 5)) < 0.8
    pos, scores = rng.uniform(0, 32, (10, 4, 2)), rng.random((10, 4)) + 0.1
    a = location_instability(pos, scores, lm, vis, [4, 1], 7.0)
    b = location_instability(pos, scores, lm[:, [4, 1]], vis[:, [4, 1]], None, 7.0)
    np.testing.assert_array_equal(a["per_filter"], b["per_filter"])


# ------------------------------------------------------------------------------ controls

def test_shuffled_control_separates_tracking_from_fixed_position():
    rng = np.random.default_rng(3)
    lm = rng.uniform(0, 64, (60, 1, 2))
    vis = np.ones((60, 1), bool)
    pos = np.concatenate([lm, np.full((60, 1, 2), 20.0)], axis=1)  # tracker, fixed filter
    scores = rng.random((60, 2)) + 0.1
    diag = 64 * math.sqrt(2)
    inst = location_instability(pos, scores, lm, vis, None, diag)
    ctrl = shuffled_control(pos, scores, lm, vis, None, diag, repeats=5, seed=0)
    assert inst["per_filter"][0] == 0.0
    assert ctrl["per_filter"][0] > 0.1  # positions unrelated to the landmark after shuffling
    assert ctrl["per_filter"][1] == pytest.approx(inst["per_filter"][1], rel=1e-12)
    # seeded: the same seed gives the same control
    again = shuffled_control(pos, scores, lm, vis, None, diag, repeats=5, seed=0)
    np.testing.assert_array_equal(again["per_filter"], ctrl["per_filter"])
    counts = tracking_counts(inst["per_filter"], ctrl["per_filter"])
    assert counts["below_0.8"] == 1 and counts["below_0.9"] == 1 and counts["compared"] == 2


def test_tracking_counts():
    inst = np.array([0.07, 0.085, 0.1, np.nan, 0.05])
    ctrl = np.array([0.1, 0.1, 0.1, 0.1, np.nan])
    c = tracking_counts(inst, ctrl)
    assert c == {"below_0.8": 1, "below_0.9": 2, "compared": 3, "min_ratio": pytest.approx(0.7)}


def test_centre_share():
    n = 8
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 1, 2)
    assert centre_share(grid, n, np.ones((n * n, 1), bool)) == 0.25
    assert uniform_centre_share(8) == 0.25
    centre = np.full((10, 3, 2), 4)
    assert centre_share(centre, n, np.ones((10, 3), bool)) == 1.0
    # inactive (image, filter) pairs are not counted
    units = np.concatenate([centre, np.zeros((10, 3, 2), int)], axis=0)
    active = np.concatenate([np.ones((10, 3), bool), np.zeros((10, 3), bool)])
    assert centre_share(units, n, active) == 1.0
    rng = np.random.default_rng(4)
    uniform = rng.integers(0, n, (4000, 4, 2))
    assert centre_share(uniform, n, np.ones((4000, 4), bool)) == pytest.approx(0.25, abs=0.02)


def test_border_share():
    n = 8
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 1, 2)
    every_cell = np.ones((n * n, 1), bool)
    assert border_share(grid, n, every_cell) == 28 / 64 == uniform_border_share(n)
    assert uniform_border_share(14) == pytest.approx(1 - 144 / 196)
    # the top edge above the head: row 0, any column
    top_row = np.stack([np.zeros(10, int), np.arange(10) % n], -1).reshape(10, 1, 2)
    assert border_share(top_row, n, np.ones((10, 1), bool)) == 1.0
    assert border_share(np.full((10, 3, 2), 4), n, np.ones((10, 3), bool)) == 0.0
    # inactive (image, filter) pairs are not counted
    units = np.concatenate([top_row, np.full((10, 1, 2), 3)])
    active = np.concatenate([np.zeros((10, 1), bool), np.ones((10, 1), bool)])
    assert border_share(units, n, active) == 0.0
    assert math.isnan(border_share(units, n, np.zeros((20, 1), bool)))


def test_top_k_border_share_counts_each_filters_own_top_images():
    n, top_k = 8, 4
    # filter 0: its 4 strongest images fire on the top row, the 4 weaker ones inside;
    # filter 1: the reverse; filter 2: never fires; filter 3: fires on 2 images only.
    units = np.full((8, 4, 2), 3)
    units[:4, 0, 0] = 0
    units[4:, 1, 1] = n - 1
    strong_first = np.arange(8, 0, -1, dtype=float)
    scores = np.stack([strong_first, strong_first, np.zeros(8), np.zeros(8)], axis=1)
    scores[[1, 5], 3] = 1.0
    units[5, 3] = (n - 1, 0)
    share = top_k_border_share(units, scores, n, top_k)
    assert share[0] == 1.0 and share[1] == 0.0 and math.isnan(share[2])
    assert share[3] == 0.5  # of its 4 top images only the 2 active count, 1 on the ring
    # a larger top-K takes in filter 0's inner images too
    assert top_k_border_share(units, scores, n, 8)[0] == 0.5
    # every image uniform on the grid: about the uniform share
    rng = np.random.default_rng(6)
    uniform = rng.integers(0, n, (4000, 3, 2))
    share = top_k_border_share(uniform, rng.random((4000, 3)) + 0.1, n, 4000)
    np.testing.assert_allclose(share, uniform_border_share(n), atol=0.03)


def test_part_offsets_counts_tracking_filters_on_the_ring():
    rng = np.random.default_rng(7)
    lm = rng.uniform(8, 56, (80, 1, 2))
    vis = np.ones((80, 1), bool)
    # filters 0 and 1 track the landmark, 2 sits still; filter 0's top images are on the ring
    pos = np.concatenate([lm, lm + 3.0, np.full((80, 1, 2), 20.0)], axis=1)
    scores = rng.random((80, 3)) + 0.1
    diag = 64 * math.sqrt(2)
    inst = location_instability(pos, scores, lm, vis, None, diag)
    ctrl = shuffled_control(pos, scores, lm, vis, None, diag, repeats=5, seed=0)
    off = part_offsets(inst, ctrl, ring_share=np.array([0.9, 0.2, 1.0]))
    assert off["filters"] == 2 and off["on_ring"] == 1  # filter 2 is on the ring but does not track
    assert "on_ring" not in part_offsets(inst, ctrl)


def test_reference_values():
    n, start, jump = 8, 4.0, 8.0
    rng = np.random.default_rng(5)
    # landmarks exactly at cell centres: the oracle's own deviation is 0
    cells = rng.integers(0, n, (120, 3, 2))
    lm = start + cells * jump
    vis = rng.random((120, 3)) < 0.9
    ref = reference_values(lm, vis, n, start, jump, 64 * math.sqrt(2), top_k=100, seed=0)
    assert ref["landmark_oracle_own"] == [0.0, 0.0, 0.0]
    assert all(0 < v < ref["random_argmax"] for v in ref["landmark_oracle"])
    assert ref["fixed_unit_best"] <= ref["fixed_unit_centre"]
    assert ref["fixed_unit_best"] <= ref["fixed_unit_mean"] < ref["random_argmax"]
    assert ref["centre_unit"] == [4, 4] and ref["uniform_centre_share"] == 0.25
    assert ref == reference_values(lm, vis, n, start, jump, 64 * math.sqrt(2), seed=0)
    # the share of the visible landmarks whose cell is on the outer ring, landmark by landmark
    ring = ((cells == 0) | (cells == n - 1)).any(-1)
    assert ref["landmark_on_ring"] == pytest.approx([ring[vis[:, k], k].mean() for k in range(3)])


def test_landmark_on_ring_counts_cells_not_pixels_and_only_where_visible():
    n, start, jump = 8, 4.0, 8.0
    # landmark 0 in the top row's cells (y 0..7.9), landmark 1 just inside (y 8),
    # landmark 2 on the ring where hidden, inside where visible
    lm = np.zeros((4, 3, 2))
    lm[:, 0] = [[30.0, 0.0], [30.0, 7.9], [0.0, 30.0], [63.9, 30.0]]
    lm[:, 1] = [[30.0, 8.0], [8.0, 8.0], [55.9, 55.9], [30.0, 30.0]]
    lm[:, 2] = [[0.0, 0.0], [30.0, 30.0], [63.0, 63.0], [30.0, 30.0]]
    vis = np.array([[True, True, False], [True, True, True], [True, True, False], [True, True, True]])
    ref = reference_values(lm, vis, n, start, jump, 64 * math.sqrt(2), top_k=4, seed=0)
    assert ref["landmark_on_ring"] == [1.0, 0.0, 0.0]


# ------------------------------------------------------------ receptive fields, brute force

def naive_support(x, layer):
    """Which output units an input impulse reaches: a naive conv with an all-ones kernel
    (or a max-pool) on non-negative maps (B, S, S), written out with loops."""
    (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
    b, size, _ = x.shape
    padded = np.zeros((b, size + 2 * p, size + 2 * p))
    padded[:, p:p + size, p:p + size] = x
    out_n = (size + 2 * p - k) // s + 1
    out = np.zeros((b, out_n, out_n))
    for i in range(out_n):
        for j in range(out_n):
            window = padded[:, s * i:s * i + k, s * j:s * j + k]
            out[:, i, j] = window.sum(axis=(1, 2)) if isinstance(layer, Conv2d) else window.max(axis=(1, 2))
    return out


def test_unit_centres_match_brute_force_receptive_fields():
    size = 24
    model = Sequential(Conv2d(1, 1, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(1, 1, 3),
                       ReLU(), Conv2d(1, 1, 3, stride=2, padding=1), MaxPool2d(2),
                       Conv2d(1, 1, 3, padding=1))
    impulses = np.eye(size * size).reshape(size * size, size, size)  # one per input pixel
    x = impulses
    checked = 0
    for index, layer in enumerate(model.layers):
        if isinstance(layer, ReLU):
            continue
        x = naive_support(x, layer)
        start, jump, rf = receptive_field(model, index)
        n = x.shape[1]
        units = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1)
        centres = unit_centres(units, start, jump)  # (n, n, 2) as (x, y)
        for i in range(n):
            for j in range(n):
                hit = (x[:, i, j] > 0).reshape(size, size)
                rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
                # the affected pixels' extent, continuous coordinates [a, b + 1)
                extent_x, extent_y = (cols[0], cols[-1] + 1), (rows[0], rows[-1] + 1)
                cx, cy = centres[i, j]
                # the affected pixels always lie inside the formula's window ...
                assert cx - rf / 2 <= extent_x[0] and extent_x[1] <= cx + rf / 2
                assert cy - rf / 2 <= extent_y[0] and extent_y[1] <= cy + rf / 2
                # ... and where no padding cut it short, they fill it, centred on the unit
                if len(cols) == rf and len(rows) == rf:
                    assert (cols[0] + cols[-1] + 1) / 2 == pytest.approx(cx)
                    assert (rows[0] + rows[-1] + 1) / 2 == pytest.approx(cy)
                    assert hit.sum() == rf * rf
                    checked += 1
                elif index < 3 and min(cx, cy) - rf / 2 >= 0 and max(cx, cy) + rf / 2 <= size:
                    # before the unpadded conv only the image border can cut a window
                    raise AssertionError(f"unit {(i, j)} of layer {index} cut short inside the image")
    assert checked > 10  # interior units were compared at several layers


# -------------------------------------------------------------------- maps and end to end

def tiny_dataset(n=7, size=16, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(0, size, (n, len(PART_NAMES), 2)).astype(np.float32)
    visible = rng.random((n, len(PART_NAMES))) < 0.8
    return CubDataset(images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                      labels=np.arange(n) % classes, class_ids=np.arange(1, classes + 1),
                      class_names=[f"c{i}" for i in range(classes)],
                      is_train=np.zeros(n, bool), landmarks=landmarks, visible=visible,
                      image_ids=np.arange(1, n + 1), part_names=PART_NAMES, report={})


def tiny_vgg(**kw):
    return small_vgg(num_classes=3, input_size=16, widths=(4,), top_channels=4, fc_width=8, **kw)


def test_cub_landmark_groups_head_falls_back_to_crown():
    ds = tiny_dataset(n=4)
    fore, crown = PART_NAMES.index("forehead"), PART_NAMES.index("crown")
    ds.visible[:, [fore, crown]] = [[True, True], [False, True], [True, False], [False, False]]
    lm, vis = cub_landmark_groups(ds)
    assert lm.shape == (4, 3, 2) and vis.shape == (4, 3) and LANDMARK_GROUPS == ("head", "back", "tail")
    np.testing.assert_array_equal(lm[:, 0], [ds.landmarks[0, fore], ds.landmarks[1, crown],
                                             ds.landmarks[2, fore], [0, 0]])
    assert vis[:, 0].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(lm[:, 1], ds.landmarks[:, PART_NAMES.index("back")])
    np.testing.assert_array_equal(vis[:, 2], ds.visible[:, PART_NAMES.index("tail")])


@pytest.mark.parametrize("interpretable", [False, True])
def test_collect_maps_matches_manual_forward(interpretable):
    ds = tiny_dataset()
    mean, std = ds.mean_std()
    model = tiny_vgg(interpretable=interpretable)
    got = collect_maps(model, ds, mean, std, batch_size=3)  # 3 batches, the last short
    assert model.training  # mode restored
    model.eval()
    x = next(ds.batches(len(ds), shuffle=False, flip=False, mean=mean, std=std))["x"]
    outs = {}
    for i, layer in enumerate(model.layers):
        x = layer.forward(x)
        outs[i] = x
    assert sorted(got["layers"]) == sorted(model.interpretable_indices)
    for index in model.interpretable_indices:
        maps = outs[index]  # post-ReLU, pre-mask
        assert isinstance(model.layers[index], ReLU)
        b, f, n, _ = maps.shape
        flat = maps.reshape(b, f, n * n)
        m = got["layers"][index]
        assert m["n"] == n == 8 and m["max"].shape == (7, 4) and m["units"].shape == (7, 4, 2)
        np.testing.assert_allclose(m["max"], flat.max(-1), rtol=1e-5, atol=1e-7)
        for bi in range(b):
            for fi in range(f):
                r, c = m["units"][bi, fi]
                assert maps[bi, fi, r, c] == pytest.approx(flat[bi, fi].max(), rel=1e-5, abs=1e-7)
                if flat[bi, fi].max() == 0:  # all-zero map: first unit
                    assert (r, c) == (0, 0)
    np.testing.assert_array_equal(got["pred"], x.argmax(1))
    np.testing.assert_array_equal(got["labels"], ds.labels)


def test_collect_maps_reads_the_map_before_the_mask():
    ds = tiny_dataset()
    mean, std = ds.mean_std()
    plain = collect_maps(tiny_vgg(), ds, mean, std)
    masked = collect_maps(tiny_vgg(interpretable=True), ds, mean, std)
    top_plain = plain["layers"][tiny_vgg().interpretable_indices[0]]
    top_masked = masked["layers"][tiny_vgg(interpretable=True).interpretable_indices[0]]
    np.testing.assert_allclose(top_plain["max"], top_masked["max"], rtol=1e-6)
    np.testing.assert_array_equal(top_plain["units"], top_masked["units"])


def test_evaluate_model_returns_finite_numbers():
    ds = tiny_dataset(n=24, seed=1)
    mean, std = ds.mean_std()
    model = small_vgg(num_classes=3, input_size=16, widths=(4,), top_channels=8, fc_width=8)
    res = evaluate_model(model, ds, mean, std, top_k=10, seed=0)
    json.dumps(res, allow_nan=False)  # JSON-able
    assert set(res) >= {"accuracy", "images", "top_k", "layers", "reference", "visible_images"}
    assert set(res["layers"]) == {"top", "new"}
    assert 0 <= res["accuracy"] <= 1 and res["images"] == 24
    assert res["correct"] == round(res["accuracy"] * 24)
    for layer in res["layers"].values():
        for key in ("instability", "control", "ratio", "centre_share", "border_share"):
            assert math.isfinite(layer[key]), key
        assert set(layer["tracking"]) == {"below_0.8", "below_0.9", "compared", "min_ratio"}
        assert layer["filters"] == 8 and len(layer["per_filter"]) == 8
        assert layer["dropped_filters"] >= layer["dead_filters"] >= 0
        assert set(layer["per_landmark"]) == set(LANDMARK_GROUPS)
    ref = res["reference"]
    for key in ("random_argmax", "fixed_unit_mean", "fixed_unit_best", "fixed_unit_centre"):
        assert math.isfinite(ref[key])
    assert set(ref["landmark_oracle"]) == set(LANDMARK_GROUPS)
    table = format_table({"untrained": res})
    assert "untrained" in table and "random argmax" in table and "new" in table


def test_evaluate_runs_writes_both_files(tmp_path):
    from tinyinterp.runs import TOY_BIRDS, TrainConfig
    from tinyinterp.train import train_one

    cfg = TrainConfig(data=str(TOY_BIRDS), size=32, epochs=1, widths=[8], top_channels=8,
                      batch_size=32, images_per_class=6)
    train_one(cfg, tmp_path / "ordinary", log=lambda *a: None)
    results = evaluate_runs(tmp_path, top_k=100)
    assert list(results) == ["ordinary"]
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved == results
    assert saved["ordinary"]["split"] == "test" and saved["ordinary"]["layers"]["top"]["n"] == 16
    text = (tmp_path / "evaluation.txt").read_text()
    assert "ordinary" in text and "reference values" in text
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------- the authors' protocol

def forehead_tracker_dataset(n, seed=0):
    """8x8 images whose red channel is brightest at the forehead landmark's pixel; the
    crown elsewhere. In every third image the forehead is hidden and the crown visible."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 8, (n, 2))  # forehead pixel (row, col)
    images = rng.integers(0, 100, (n, 8, 8, 3), dtype=np.uint8)
    images[np.arange(n), cells[:, 0], cells[:, 1], 0] = 255
    landmarks = rng.uniform(0, 8, (n, len(PART_NAMES), 2)).astype(np.float32)
    fore, crown = PART_NAMES.index("forehead"), PART_NAMES.index("crown")
    landmarks[:, fore] = cells[:, ::-1] + 0.5  # (x, y) of the pixel centre
    visible = np.ones((n, len(PART_NAMES)), bool)
    visible[::3, fore] = False
    return CubDataset(images=images, labels=np.arange(n) % 3, class_ids=np.arange(1, 4),
                      class_names=["a", "b", "c"], is_train=np.zeros(n, bool),
                      landmarks=landmarks, visible=visible, image_ids=np.arange(1, n + 1),
                      part_names=PART_NAMES, report={}), crown


def forehead_tracker():
    """One 1x1 filter reading the red channel: its argmax is the forehead's pixel."""
    conv = Conv2d(3, 1, 1)
    conv.params["W"][...] = np.array([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    conv.params["b"][...] = 0.0
    from tinyinterp.layers import Flatten, Linear
    model = Sequential(conv, ReLU(), Flatten(), Linear(64, 3))
    model.interpretable_indices = [1]
    return model


def test_authors_protocol_scores_forehead_back_tail_on_a_fixed_sample():
    from tinyinterp.metrics import AUTHORS_IMAGES, AUTHORS_PARTS, authors_sample, landmark_groups

    ds, crown = forehead_tracker_dataset(2300)
    mean, std = ds.mean_std()
    model = forehead_tracker()
    res = evaluate_model(model, ds, mean, std, top_k=100, protocol="authors")
    layer = res["layers"]["top"]
    assert res["protocol"] == "authors" and res["landmarks"] == list(AUTHORS_PARTS)
    assert res["images"] == AUTHORS_IMAGES
    # the filter sits on the forehead of every image that shows it: D = 0 exactly there
    assert layer["per_landmark"]["forehead"] == 0.0
    assert layer["per_landmark"]["back"] > 0.05 and layer["per_landmark"]["tail"] > 0.05
    # ours reads the crown where the forehead is hidden, and the filter is not there
    ours = evaluate_model(model, ds, mean, std, top_k=100)
    assert ours["images"] == 2300 and ours["layers"]["top"]["per_landmark"]["head"] > 0.05
    # the sample: fixed, without repeats, in image order; the whole set when small
    sample = authors_sample(2300)
    assert len(set(sample)) == AUTHORS_IMAGES and np.all(np.diff(sample) > 0)
    np.testing.assert_array_equal(sample, authors_sample(2300))
    np.testing.assert_array_equal(authors_sample(150), np.arange(150))
    assert res["visible_images"]["forehead"] == int(ds.visible[sample, PART_NAMES.index("forehead")].sum())
    # the layer value is location_instability on those images and parts
    sub = ds.subset(sample)
    lm, vis, names = landmark_groups(sub, "authors")
    assert names == AUTHORS_PARTS and not vis[:, 1][::3].all()
    maps = collect_maps(model, sub, mean, std)["layers"][1]
    positions = unit_centres(maps["units"], 0.5, 1.0)
    expected = location_instability(positions, maps["max"], lm, vis, None, math.hypot(8, 8), 100)
    assert layer["instability"] == pytest.approx(expected["value"], rel=1e-12)
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_model(model, ds, mean, std, protocol="paper")


def test_evaluate_runs_with_moved_images_writes_its_own_report(tmp_path):
    from tinyinterp.evaluate import evaluation_files
    from tinyinterp.runs import TOY_BIRDS, TrainConfig, load_data, load_run
    from tinyinterp.train import train_one

    cfg = TrainConfig(data=str(TOY_BIRDS), size=32, epochs=1, widths=[8], top_channels=8,
                      batch_size=32, images_per_class=6, task="bird")
    train_one(cfg, tmp_path / "ordinary", log=lambda *a: None)
    ours = evaluate_runs(tmp_path, top_k=10)
    moved = evaluate_runs(tmp_path, top_k=10, shift=4, seed=3)
    assert json.loads((tmp_path / "evaluation-shift4.json").read_text()) == moved
    assert json.loads((tmp_path / "evaluation.json").read_text()) == ours  # left as it was
    assert moved["ordinary"]["shift"] == 4 and ours["ordinary"]["shift"] == 0
    # the same net on the test birds moved by CubDataset.moved with the same seed
    model, _, _ = load_run(tmp_path / "ordinary")
    _, _, test, mean, std = load_data(cfg)
    birds = test.moved(4, 3).subset(test.labels == 1)
    direct = evaluate_model(model, birds, mean, std, top_k=10, seed=3)
    assert moved["ordinary"]["layers"]["top"]["per_filter"] == direct["layers"]["top"]["per_filter"]
    assert moved["ordinary"]["layers"]["top"]["per_filter"] != ours["ordinary"]["layers"]["top"]["per_filter"]
    assert evaluation_files("authors", 8) == ("evaluation-authors-shift8.json", "evaluation-authors-shift8.txt")


def test_evaluate_runs_writes_the_authors_protocol_beside_ours(tmp_path):
    from tinyinterp.runs import TOY_BIRDS, TrainConfig
    from tinyinterp.train import train_one

    cfg = TrainConfig(data=str(TOY_BIRDS), size=32, epochs=1, widths=[8], top_channels=8,
                      batch_size=32, images_per_class=6, task="bird")
    train_one(cfg, tmp_path / "ordinary", log=lambda *a: None)
    ours = evaluate_runs(tmp_path, top_k=10)
    authors = evaluate_runs(tmp_path, top_k=10, protocol="authors")
    assert json.loads((tmp_path / "evaluation-authors.json").read_text()) == authors
    assert json.loads((tmp_path / "evaluation.json").read_text()) == ours  # left as it was
    assert (tmp_path / "evaluation-authors.txt").is_file()
    a, o = authors["ordinary"], ours["ordinary"]
    assert a["landmarks"] == ["back", "forehead", "tail"] and o["landmarks"] == ["head", "back", "tail"]
    assert a["accuracy"] == o["accuracy"] and a["recall"] == o["recall"]  # over all images alike
