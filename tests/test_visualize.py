"""Pictures: colour map, overlay, layer maps, templates figure, and a whole run folder."""
import argparse
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tinyinterp import curves as cv
from tinyinterp import drawing as dr
from tinyinterp import visualize as vz
from tinyinterp.runs import TOY_BIRDS, TrainConfig, net_dirs
from tinyinterp.train import train_one
from tinyinterp.vgg import receptive_field, small_vgg


def luminance(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# ---- colour map and overlay

def test_colormap_endpoints_and_monotone_brightness():
    cm = dr.colormap(np.linspace(0, 1, 256))
    assert cm.shape == (256, 3) and cm.dtype == np.uint8
    np.testing.assert_array_equal(cm[0], dr._ANCHORS[0])
    np.testing.assert_array_equal(cm[-1], dr._ANCHORS[-1])
    lum = luminance(cm.astype(np.float64))
    assert np.all(np.diff(lum) >= -0.6), "brightness must not fall (up to uint8 rounding)"
    assert lum[-1] - lum[0] > 200
    # out of range is clipped, NaN reads as 0
    np.testing.assert_array_equal(dr.colormap([-3.0, 7.0, np.nan]),
                                  dr.colormap([0.0, 1.0, 0.0]))


def test_heatmap_overlay_keeps_size_and_dtype():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    fmap = rng.random((5, 5)).astype(np.float32)
    out = dr.heatmap_overlay(image, fmap)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert dr.heatmap_overlay(image, fmap, size=40).shape == (40, 40, 3)
    np.testing.assert_array_equal(dr.heatmap_overlay(image, fmap, alpha=0.0), image)
    full = dr.heatmap_overlay(image, np.ones((5, 5)), alpha=1.0)
    assert np.all(full == dr._ANCHORS[-1].astype(np.uint8))
    dark = dr.heatmap_overlay(image, np.zeros((5, 5)), alpha=1.0)  # no division by zero
    assert np.all(dark == dr._ANCHORS[0].astype(np.uint8))


def test_heatmap_peak_sits_at_the_units_receptive_field_centre():
    model = small_vgg(num_classes=3, input_size=32, widths=(4,), top_channels=6)
    index = model.interpretable_indices[0]
    start, jump, _ = receptive_field(model, index)
    n = 32 // 2  # one pool before the top conv
    assert start == jump / 2 and n * jump == 32  # what heatmap_overlay's resize assumes
    fmap = np.zeros((n, n), np.float32)
    fmap[5, 11] = 1.0
    lum = luminance(dr.heatmap_overlay(np.zeros((32, 32, 3), np.uint8), fmap, alpha=1.0)
                    .astype(np.float64))
    r, c = np.unravel_index(np.argmax(lum), lum.shape)
    assert abs(c + 0.5 - (start + 11 * jump)) <= 0.5 and abs(r + 0.5 - (start + 5 * jump)) <= 0.5
    assert vz.inference_position(fmap, start, jump) == (start + 11 * jump, start + 5 * jump)
    assert vz.inference_position(np.zeros((n, n)), start, jump) is None


# ---- maps

@pytest.mark.parametrize("interpretable", [False, True])
def test_layer_maps_equals_a_manual_forward(interpretable):
    model = small_vgg(num_classes=3, input_size=16, widths=(4,), top_channels=6,
                      interpretable=interpretable, seed=1)
    x = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
    for index in model.interpretable_indices:
        got = vz.layer_maps(model, x, index)
        assert model.training, "layer_maps must restore the model's mode"
        model.eval()
        want = x
        for layer in model.layers[:index + 1]:
            want = layer.forward(want)
        model.train()
        assert got.shape == (3, 6, 8, 8)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError):
        vz.layer_maps(model, x, len(model.layers))


def test_top_filters_and_pick_images():
    maps = np.zeros((2, 4, 3, 3))
    maps[:, 2, 0, 0] = 5.0
    maps[0, 0, 1, 1] = 3.0
    assert vz.top_filters(maps, 2) == [2, 0]
    ds = list(range(10))
    np.testing.assert_array_equal(vz.pick_images(ds, 3), [0, 4, 9])
    np.testing.assert_array_equal(vz.pick_images(ds, 50), np.arange(10))
    np.testing.assert_array_equal(vz.pick_images(ds, [7, 1]), [7, 1])


def test_head_falls_back_to_crown():
    names = ["back", "crown", "forehead", "tail"]
    ds = SimpleNamespace(part_names=names,
                         landmarks=np.array([[[1, 2], [3, 4], [5, 6], [7, 8]]] * 2, np.float32),
                         visible=np.array([[1, 1, 1, 0], [0, 1, 0, 1]], bool))
    assert vz.head_back_tail(ds, 0) == {"head": (5.0, 6.0), "back": (1.0, 2.0), "tail": None}
    assert vz.head_back_tail(ds, 1) == {"head": (3.0, 4.0), "back": None, "tail": (7.0, 8.0)}


# ---- layout

def test_grid_size():
    tiles = [np.zeros((10, 12, 3), np.uint8)] * 5
    assert dr.grid(tiles, cols=2, pad=3).size == (3 + 2 * (12 + 3), 3 + 3 * (10 + 3))
    im = dr.grid(tiles, cols=2, pad=3, labels=list("abcde"), title="t\nu")
    assert im.size == (3 + 2 * 15, 2 * dr.TITLE_H + 3 + 3 * (10 + dr.LABEL_H + 3))


@pytest.mark.parametrize("n", [3, 8])
def test_templates_figure_size_and_tiles(n):
    pad, tile = 4, n * math.ceil(48 / n)
    im = vz.templates_figure(n)
    rows = math.ceil((n * n + 1) / n)
    height = 3 * dr.TITLE_H + pad + rows * (tile + dr.LABEL_H + pad)  # 3 title lines
    assert im.size == (pad + n * (tile + pad), height)
    a = np.asarray(im)

    def tile_at(k):
        r, c = divmod(k, n)
        y, x = 3 * dr.TITLE_H + pad + r * (tile + dr.LABEL_H + pad), pad + c * (tile + pad)
        return a[y:y + tile, x:x + tile, 0]

    assert np.all(tile_at(n * n) == 0), "T- is -tau everywhere: black"
    centre = tile_at(0)[: tile // n, : tile // n]  # T_(0,0) at its own cell is +tau: white
    assert np.all(centre == 255)


def test_nice_ticks_cover_the_range():
    for lo, hi in [(0.13, 0.87), (-0.074, -0.070), (1.55, 1.72), (3.0, 3.0), (0, 250)]:
        ticks, step = dr.nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
        assert np.allclose(np.diff(ticks), step)


# ---- a whole run folder

@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    for kind in ("ordinary", "interpretable"):
        cfg = TrainConfig(data=str(TOY_BIRDS), size=32, epochs=1, widths=[4], top_channels=6,
                          batch_size=8, images_per_class=4, interpretable=kind == "interpretable")
        train_one(cfg, root / kind, log=lambda *_: None)
    return root


EXPECTED = ["filters_top.png", "positions_top.png", "filters_new.png", "positions_new.png",
            "templates.png", "curves.png"]


def test_visualize_runs_writes_valid_pngs(run_root):
    paths = vz.visualize_runs(run_root, images=4, filters=3)
    assert [p.name for p in paths] == EXPECTED
    assert all(p.parent == run_root / "pictures" for p in paths)
    for p in paths:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB" and min(im.size) > 100
            assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 4, f"{p} is blank"
    with Image.open(run_root / "pictures" / "templates.png") as im:
        assert im.size == vz.templates_figure(16).size  # 32 px input, one pool: 16 x 16 maps


def test_visualize_cli(run_root, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    vz.add_visualize_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["visualize", str(run_root), "--out", str(tmp_path / "pics"),
                              "--images", "2", "--filters", "1", "--split", "train"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == EXPECTED
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == sorted(EXPECTED)


def test_filter_figure_takes_given_filter_ids(run_root):
    from tinyinterp.runs import load_data, load_run

    model, cfg, _ = load_run(run_root / "interpretable")
    _, _, test, mean, std = load_data(cfg)
    a = vz.filter_figure({"a": model}, test, mean, std, "top", filters=[0, 1], images=3)
    b = vz.filter_figure({"a": model}, test, mean, std, "top", filters=[0, 1, 2], images=3)
    assert b.height - a.height == vz.CELL + 3  # one more row of cells
    with pytest.raises(ValueError):
        vz.filter_figure({"a": model}, test, mean, std, "middle")


def test_filter_notes_give_each_filters_ratio_and_whether_it_sits_on_the_ring(tmp_path):
    layer = {"per_filter": [0.1, None, 0.2, 0.05], "per_filter_control": [0.2, 0.1, 0.2, 0.1],
             "per_filter_border": [0.9, None, 0.1, 0.5]}
    (tmp_path / "evaluation.json").write_text(json.dumps({"interpretable": {"layers": {"new": layer}}}))
    notes = vz.filter_notes(tmp_path, "interpretable", "new")
    assert notes == {0: "0.50x ctl, on ring", 2: "1.00x ctl", 3: "0.50x ctl, on ring"}
    assert vz.filters_below_control(tmp_path, "interpretable", "new", 2) == [0, 3]
    assert vz.filter_notes(tmp_path, "ordinary", "new") == {} == vz.filter_notes(tmp_path / "x", "a", "b")
    del layer["per_filter_border"]  # an evaluation written before the ring share existed
    (tmp_path / "evaluation.json").write_text(json.dumps({"interpretable": {"layers": {"new": layer}}}))
    assert vz.filter_notes(tmp_path, "interpretable", "new")[0] == "0.50x ctl"
    assert vz._row_label(0, np.ones(3), None, {0: "0.50x ctl"}).splitlines()[-1] == "0.50x ctl"


def test_fine_tuned_run_curves_continue_the_pretrained_epochs(tmp_path):
    base = dict(data=str(TOY_BIRDS), size=32, widths=[4], top_channels=6, batch_size=8,
                images_per_class=4)
    train_one(TrainConfig(epochs=2, **base), tmp_path / "pretrained", log=lambda *_: None)
    init = str(tmp_path / "pretrained" / "checkpoint.npz")
    for kind in ("ordinary", "interpretable"):
        train_one(TrainConfig(epochs=1, init_from=init, interpretable=kind == "interpretable", **base),
                  tmp_path / kind, log=lambda *_: None)
    assert list(net_dirs(tmp_path, pretrained=False)) == ["ordinary", "interpretable"]
    assert list(net_dirs(tmp_path)) == ["ordinary", "interpretable", "pretrained"]
    histories = {name: cv._history(d) for name, d in net_dirs(tmp_path).items()}
    assert cv._epoch_offset(histories["interpretable"][1], histories) == 2
    assert cv._epoch_offset(histories["pretrained"][1], histories) == 0
    with Image.open(vz.visualize_runs(tmp_path, images=2, filters=1)[-1]) as im:
        assert im.size[0] > 100


def test_column_labels_wrap_instead_of_being_cut():
    small = dr.font()
    lines = dr._wrap("Red Capped Finch", vz.CELL, small, lines=2)
    assert " ".join(lines) == "Red Capped Finch" and len(lines) == 2
    assert all(dr.text_width(line, small) <= vz.CELL for line in lines)
    assert dr._wrap("Spotted Thrush", vz.CELL, small, lines=2) == ["Spotted Thrush"]


def test_a_layer_has_the_same_name_in_both_nets():
    """Masks shift an interpretable net's layer indices: the title counts convs instead."""
    plain = small_vgg(num_classes=3, input_size=32, widths=(4,), top_channels=6)
    masked = small_vgg(num_classes=3, input_size=32, widths=(4,), top_channels=6, interpretable=True)
    for k, name in enumerate(["top", "new"]):
        i, j = plain.interpretable_indices[k], masked.interpretable_indices[k]
        assert vz._conv_title(plain, i, name) == vz._conv_title(masked, j, name) == f"{name} conv (conv {3 + k})"
    assert plain.interpretable_indices[1] != masked.interpretable_indices[1]


def test_the_caption_explains_the_labels_drawn_with_an_example_drawn():
    class Data:
        class_names = ["001.Red_Capped_Finch", "002.Bar_Winged_Warbler", "003.Spotted_Thrush"]

    lines = vz._label_notes(Data, {2, 0}, ["0.77x ctl", "0.81x ctl, on ring"])
    assert lines[0].endswith(": 0 = Red Capped Finch, 2 = Spotted Thrush") and lines[0].startswith("cat k:")
    assert lines[1].startswith("0.77x ctl: ") and "on ring:" in lines[1]
    assert "on ring" not in vz._label_notes(Data, set(), ["0.77x ctl"])[0]
    assert vz._label_notes(Data, set(), []) == []


def test_the_epoch_axis_starts_at_the_first_epoch_drawn():
    assert dr.epoch_axis([([13, 14, 15, 16, 17, 18], [0, 0, 0, 0, 0, 0])]) == (13, 18, [13, 14, 15, 16, 17, 18])
    first, last, ticks = dr.epoch_axis([(list(range(1, 13)), [0] * 12), (list(range(13, 19)), [0] * 6)])
    assert (first, last, ticks[0]) == (1, 18, 1) and len(ticks) <= 9


@pytest.mark.parametrize("x,y", [(0.5, 0.5), (6, 90), (95.9, 48), (48, 1)])
def test_a_cross_at_the_border_stays_whole_in_its_tile(x, y):
    cx, cy, arm = dr.fit_cross(x, y, 7, vz.CELL)
    assert arm >= 4 and abs(cx - x) <= 6 and abs(cy - y) <= 6
    for c in (cx, cy):
        assert c - arm >= 2 and c + arm <= vz.CELL - 2  # the 5 px stroke fits too
    assert dr.fit_cross(30, 60, 7, vz.CELL) == (30, 60, 7)  # inside: unchanged
