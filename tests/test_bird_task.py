"""The single-category task (bird vs. not): negatives, labels, heads, evaluation."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import tinyinterp as ti
from tinyinterp.data import CubFormatError, background_square, load_bird_task
from tinyinterp.runs import TOY_BIRDS, TrainConfig, build_model, init_weights_from, load_run
from tinyinterp.train import train_one

from test_cub import write_cub


# ----------------------------------------------------------------- background squares

def enlarged(box, m):
    x, y, w, h = box
    return x - m * w, y - m * h, x + w + m * w, y + h + m * h


def touches(square, box, m):
    """Whether the square overlaps the box enlarged by m (open intervals: touching
    edges do not overlap)."""
    bx0, by0, bx1, by1 = enlarged(box, m)
    x0, y0, x1, y1 = square
    return x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1


def test_box_in_a_corner_gives_the_largest_square_on_the_far_side():
    # 200 x 100 photo, bird in the top-left 40 x 40: the square right of the enlarged
    # box (x from 42) is 100 x 100, centred in the strip [42, 200] x [0, 100]
    sq = background_square((0.0, 0.0, 40.0, 40.0), 200, 100, neg_margin=0.05)
    assert sq == pytest.approx((71.0, 0.0, 171.0, 100.0))
    assert not touches(sq, (0.0, 0.0, 40.0, 40.0), 0.05)


def test_side_is_capped_and_a_full_photo_gives_none():
    sq = background_square((0.0, 0.0, 40.0, 40.0), 200, 100, max_side=30)
    assert sq[2] - sq[0] == pytest.approx(30) and sq[3] - sq[1] == pytest.approx(30)
    assert background_square((0.0, 0.0, 100.0, 80.0), 100, 80) is None  # bird fills the photo
    assert background_square((3.0, 3.0, 94.0, 74.0), 100, 80) is None  # the 5% margin eats the rest
    assert background_square((5.0, 5.0, 90.0, 70.0), 100, 80)[3] == pytest.approx(1.5)  # a sliver on top


@given(W=st.integers(10, 300), H=st.integers(10, 300), fx=st.floats(0, 0.9), fy=st.floats(0, 0.9),
       fw=st.floats(0.05, 1), fh=st.floats(0.05, 1), m=st.sampled_from([0.0, 0.05, 0.2]))
def test_square_never_touches_the_box_and_stays_in_the_photo(W, H, fx, fy, fw, fh, m):
    box = (fx * W, fy * H, max(fw * (W - fx * W), 1.0), max(fh * (H - fy * H), 1.0))
    sq = background_square(box, W, H, neg_margin=m)
    if sq is None:  # then no strip beside the enlarged box is wider (or taller) than 0
        bx0, by0, bx1, by1 = enlarged(box, m)
        assert max(bx0, W - bx1, by0, H - by1) <= 0
        return
    x0, y0, x1, y1 = sq
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 > x0
    assert -1e-9 <= x0 and x1 <= W + 1e-9 and -1e-9 <= y0 and y1 <= H + 1e-9
    assert not touches((x0 + 1e-9, y0 + 1e-9, x1 - 1e-9, y1 - 1e-9), box, m)


# ------------------------------------------------------------------- the dataset

# 100 x 80 photos (test_cub's layout). Image 30's box fills the photo: it gives no negative.
def test_negatives_from_constructed_photos(tmp_path):
    root = write_cub(tmp_path / "cub")
    ds = load_bird_task(root, size=16)
    neg = ds.report["negatives"]
    assert neg["made"] == 6 and neg["skipped_too_full"] == 1
    assert len(ds) == 7 + 6 and ds.labels.sum() == 7
    assert ds.class_names == ["not a bird", "bird"]
    negatives = ds.labels == 0
    assert 30 not in ds.image_ids[negatives]
    # each negative keeps its photo's split; none has a visible landmark
    pos_split = dict(zip(ds.image_ids[~negatives], ds.is_train[~negatives]))
    for i, t in zip(ds.image_ids[negatives], ds.is_train[negatives]):
        assert pos_split[i] == t
    assert not ds.visible[negatives].any() and ds.visible[~negatives].any()
    # BOX = (20, 10, 40, 50) enlarged by 5% reaches x = 62: the largest free square is
    # right of it, in the blue and white quadrants (x >= 40), never the red/green bird side
    assert neg["side_px_mean"] == pytest.approx(38.0)
    img = ds.images[negatives][0].reshape(-1, 3)
    assert not ((img[:, 0] > 200) & (img[:, 1] < 50)).any()  # no red pixel


def test_each_photo_is_decoded_once_for_its_positive_and_its_negative(tmp_path, monkeypatch):
    import tinyinterp.data.cub as cub

    root = write_cub(tmp_path / "cub")
    decoded = []
    real = cub.decode_rgb
    monkeypatch.setattr(cub, "decode_rgb", lambda path, *a: decoded.append(Path(path).name) or real(path, *a))
    ds = load_bird_task(root, size=16)
    assert len(decoded) == (ds.labels == 1).sum() == 7 and len(set(decoded)) == 7
    # bad arguments are refused as load_cub refuses them
    with pytest.raises(ValueError, match="size >= 1"):
        load_bird_task(root, size=0)
    with pytest.raises(CubFormatError, match="does not exist"):
        load_bird_task(tmp_path / "nowhere")


def test_folder_negatives_split_deterministically_and_bad_files_are_named(tmp_path):
    root = write_cub(tmp_path / "cub")
    folder = tmp_path / "neg"
    (folder / "sub").mkdir(parents=True)
    for k in range(12):
        Image.fromarray(np.full((20, 30, 3), 10 * k, np.uint8)).save(folder / "sub" / f"n{k}.png")
    (folder / "notes.txt").write_text("not an image")
    a = load_bird_task(root, size=8, negatives=folder)
    b = load_bird_task(root, size=8, negatives=folder)
    assert a.report["negatives"]["made"] == 12 and (a.labels == 0).sum() == 12
    np.testing.assert_array_equal(a.is_train, b.is_train)
    neg_train = a.is_train[a.labels == 0]
    assert 0 < neg_train.sum() < 12  # both splits get some (hash of the path)
    assert (a.image_ids[a.labels == 0] < 0).all()
    (folder / "sub" / "n3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CubFormatError, match="n3.png"):
        load_bird_task(root, size=8, negatives=folder)
    with pytest.raises(CubFormatError, match="does not exist"):
        load_bird_task(root, size=8, negatives=tmp_path / "nowhere")


# ------------------------------------------------------- training: heads and masks

def bird_config(**kw):
    base = dict(task="bird", size=32, epochs=1, batch_size=8, images_per_class=6,
                classes=[1, 2], dropout=0.0, widths=[4, 8, 8], top_channels=8)
    base.update(kw)
    return TrainConfig(**base)


def test_bird_task_builds_one_output_and_single_category_masks():
    cfg = bird_config(interpretable=True)
    model = build_model(cfg, ti.runs.num_outputs(cfg, None))
    masks = [layer for layer in model.layers if isinstance(layer, ti.InterpretableMask)]
    assert model.num_classes == 1 and len(masks) == 2
    assert all(m.num_classes == 1 for m in masks)


def test_labels_reach_the_masks_and_negatives_get_the_negative_template(tmp_path):
    """One training step on a batch of birds and non-birds: the masks receive the 0/1
    labels; with one category, a negative's filter-loss gradient is that of the images
    outside the category (the T^- term), which differs from a positive's."""
    cfg = bird_config(interpretable=True)
    _, train, _, mean, std = ti.runs.load_data(cfg)
    assert set(np.unique(train.labels)) == {0, 1}
    model = build_model(cfg, 1)
    batch = next(train.batches(16, seed=0, shuffle=True, flip=False, mean=mean, std=std))
    masks = [layer for layer in model.layers if isinstance(layer, ti.InterpretableMask)]
    for m in masks:
        m.set_labels(batch["labels"])
    loss = ti.LogisticLoss()
    loss.forward(model.forward(batch["x"]), batch["labels"][:, None])
    model.backward(loss.backward())
    y = masks[0].category_tracker.label_matrix(batch["labels"], np)
    np.testing.assert_array_equal(y[:, 0], batch["labels"] == 1)
    assert (masks[0].categories == 0).all()
    # the same map labelled bird and not bird: under the bird recipe's rule (the authors'),
    # a negative's map is pushed down everywhere (T^-: descent lowers every unit), a
    # positive's is pulled up at its part (a negative gradient at its argmax)
    x = np.abs(np.random.default_rng(0).standard_normal((2, 8, 4, 4))).astype(np.float32)
    x[1] = x[0]
    fl = ti.MutualInformationLoss(4, gradient="authors")
    fl.forward(x, np.array([[True], [False]]), np.zeros(8, np.int64))
    g = fl.backward(np.ones(8, np.float32))
    assert (g[1] > 0).all()
    peak = x[0].reshape(8, -1).argmax(axis=1)
    assert (g[0].reshape(8, -1)[np.arange(8), peak] < 0).all()


def test_checkpoint_with_another_head_loads_as_the_pretrained_net(tmp_path):
    species = bird_config(task="species", epochs=1)
    train_one(species, tmp_path / "pre", log=lambda *_: None)
    source, _, _ = load_run(tmp_path / "pre")
    assert source.num_classes == 2
    model = build_model(bird_config(interpretable=True), 1)
    head_before = {k: v.copy() for k, v in model.layers[-1].params.items()}
    lines = init_weights_from(model, tmp_path / "pre" / "checkpoint.npz")
    assert len(lines) == 1 and "head" in lines[0] and "fresh" in lines[0]
    src = [layer for layer in source.layers if layer.params]
    dst = [layer for layer in model.layers if layer.params]
    for a, b in zip(src[:-1], dst[:-1]):
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
    for k, v in head_before.items():
        np.testing.assert_array_equal(dst[-1].params[k], v)  # the head kept its fresh weights
    # a mismatch anywhere but the head is still an error
    other = build_model(bird_config(top_channels=4), 1)
    with pytest.raises(ValueError, match="shape"):
        init_weights_from(other, tmp_path / "pre" / "checkpoint.npz")


def test_evaluation_measures_filters_on_the_birds_only(tmp_path):
    cfg = bird_config()
    train_one(cfg, tmp_path / "run" / "ordinary", log=lambda *_: None)
    results = ti.evaluate_runs(tmp_path / "run", top_k=5)
    res = results["ordinary"]
    _, _, test, mean, std = ti.runs.load_data(cfg)
    birds = int((test.labels == 1).sum())
    assert res["task"] == "bird" and res["images"] == birds < len(test)
    assert res["negatives"] == len(test) - birds
    # accuracy and recalls as one forward pass over the whole split gives them
    pred = ti.predictions.collect_predictions(load_run(tmp_path / "run" / "ordinary")[0], test, mean, std)
    assert res["accuracy"] == pytest.approx(float((pred == test.labels).mean()), abs=1e-12)
    assert (res["correct"], res["accuracy_images"]) == (int((pred == test.labels).sum()), len(test))
    not_bird, bird = ti.predictions.class_recalls(pred, test.labels, 2)
    assert res["recall"] == pytest.approx({"bird": bird, "not a bird": not_bird}, abs=1e-12)
    assert "dist" in (tmp_path / "run" / "evaluation.txt").read_text()
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    offset = saved["ordinary"]["layers"]["new"]["offset"]
    assert len(offset["per_filter"]) == len(offset["landmark"]) == 8  # one entry per filter
    assert offset["filters"] == sum(d is not None for d in offset["per_filter"])
    assert 0 <= offset["on_ring"] <= offset["filters"]
    ring = saved["ordinary"]["layers"]["new"]["per_filter_border"]
    assert len(ring) == 8 and all(r is None or 0 <= r <= 1 for r in ring)


def test_cli_bird_task_end_to_end_on_the_toy_birds(tmp_path, capsys):
    from tinyinterp.__main__ import main

    rc = main(["train", "--task", "bird", "--size", "32", "--epochs", "1", "--finetune-epochs", "1",
               "--images-per-class", "6", "--batch-size", "8", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "negatives:" in out and "head Linear(256, 1): fresh weights" in out
    assert "stage 1: the ordinary net, species task" in out and "bird task" in out
    _, cfg, _ = load_run(tmp_path / "interpretable")
    assert cfg.task == "bird" and cfg.mask_options["gradient"] == "authors"
    assert load_run(tmp_path / "pretrained")[1].task == "species"
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["interpretable"]["task"] == "bird"
    assert (tmp_path / "pictures" / "filters_new.png").exists()
    assert Path(cfg.data) == TOY_BIRDS


def test_a_net_that_calls_every_image_one_class_is_said_to_have_collapsed():
    labels = np.array([1, 1, 1, 0, 0])
    recalls = ti.predictions.class_recalls(np.ones(5, dtype=np.int64), labels, 2)  # all "bird"
    assert recalls == [0.0, 1.0] and ti.predictions.has_collapsed(recalls)
    assert not ti.predictions.has_collapsed(ti.predictions.class_recalls(np.array([1, 1, 0, 0, 1]), labels, 2))
    assert not ti.predictions.has_collapsed([None, 1.0])  # a class with no image cannot collapse
    # the training log says so beside the accuracy
    line = ti.train.format_test_result({"test_acc": 0.6, "test_recall": recalls})
    assert "birds 1.000, not 0.000" in line and "COLLAPSED" in line
    assert "COLLAPSED" not in ti.train.format_test_result({"test_acc": 0.9, "test_recall": [0.8, 0.9]})
