"""Training loop: a tiny run end to end, resume equivalence, the NaN stop, checkpoints."""
import json

import numpy as np
import pytest

import tinyinterp as ti
from tinyinterp import train_cli
from tinyinterp.runs import TOY_BIRDS, TrainConfig, load_run
from tinyinterp.train import TrainingDiverged, train_one


def tiny_config(**kw):
    base = dict(data=str(TOY_BIRDS), size=32, epochs=2, widths=[4], top_channels=6,
                batch_size=8, images_per_class=4, lr=0.02, warmup_epochs=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


def weights(run_dir):
    model, _, _ = load_run(run_dir)
    return model.state_dict()


@pytest.mark.parametrize("interpretable", [False, True])
def test_resumed_run_ends_with_the_same_weights(tmp_path, interpretable):
    cfg = tiny_config(interpretable=interpretable)
    train_one(cfg, tmp_path / "whole", log=lambda *_: None)

    def stop_after_first_epoch(line):
        if "epoch   1/" in line:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_one(cfg, tmp_path / "split", log=stop_after_first_epoch)
    train_one(cfg, tmp_path / "split", resume=True, log=lambda *_: None)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_run_folder_holds_checkpoint_and_metrics(tmp_path):
    metrics = train_one(tiny_config(epochs=1, interpretable=True), tmp_path, log=lambda *_: None)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["final"]["epoch"] == 1 and 0.0 <= saved["final"]["test_acc"] <= 1.0
    assert metrics["final"] == saved["final"]
    assert np.isfinite(saved["final"]["filter_loss"]) and saved["final"]["filter_loss"] <= 0
    model, cfg, meta = load_run(tmp_path)
    assert cfg.interpretable and meta["epoch"] == 1 and not model.training
    assert not list(tmp_path.glob(".tmp-*")), "a temporary checkpoint was left behind"


def poison_training_forwards(monkeypatch, poisoned):
    """Make the model's n-th training forward (from 1) return NaNs where ``poisoned(n)``;
    returns {"n": training forwards so far}."""
    calls = {"n": 0}
    real_forward = ti.Sequential.forward

    def poisoned_forward(self, x):
        y = real_forward(self, x)
        if self.training:
            calls["n"] += 1
            if poisoned(calls["n"]):
                y = y * np.float32("nan")
        return y

    monkeypatch.setattr(ti.Sequential, "forward", poisoned_forward)
    return calls


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=2)
    ds = ti.runs.load_data(cfg)
    steps_per_epoch = -(-len(ds[1]) // cfg.batch_size)
    poison_training_forwards(monkeypatch, lambda n: n > steps_per_epoch)  # from step 1 of epoch 2
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1.*last good checkpoint \\(epoch 1\\)"):
        train_one(cfg, tmp_path, data=ds, log=lambda *_: None)
    stop = json.loads((tmp_path / "diverged.json").read_text())  # what studies read
    assert (stop["epoch"], stop["step"], stop["loss"]) == (2, 1, "nan")
    monkeypatch.undo()
    _, _, meta = load_run(tmp_path)
    assert meta["epoch"] == 1
    # a new attempt that ends well leaves no stale mark
    train_one(cfg, tmp_path, data=ds, resume=True, log=lambda *_: None)
    assert not (tmp_path / "diverged.json").exists()


def test_nan_stop_fires_within_the_logging_interval(tmp_path, monkeypatch):
    # the logged values are read once every log_every steps (one host sync): a NaN at
    # step 2 of epoch 2 is caught at the read after step 3, named as step 2, before any
    # later step runs and before the epoch's checkpoint is written
    cfg = tiny_config(epochs=2, batch_size=2, images_per_class=8)
    ds = ti.runs.load_data(cfg)
    steps_per_epoch = -(-len(ds[1]) // cfg.batch_size)
    assert steps_per_epoch >= 6
    calls = poison_training_forwards(monkeypatch, lambda n: n == steps_per_epoch + 2)  # step 2 of epoch 2
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2.*last good checkpoint \\(epoch 1\\)"):
        train_one(cfg, tmp_path, data=ds, log=lambda *_: None, log_every=3)
    assert calls["n"] == steps_per_epoch + 3  # the read after step 3 of epoch 2 stopped it
    stop = json.loads((tmp_path / "diverged.json").read_text())
    assert (stop["epoch"], stop["step"], stop["loss"]) == (2, 2, "nan")
    monkeypatch.undo()
    _, _, meta = load_run(tmp_path)
    assert meta["epoch"] == 1


def test_truncated_checkpoint_is_refused_with_its_name(tmp_path):
    train_one(tiny_config(epochs=1), tmp_path, log=lambda *_: None)
    ckpt = tmp_path / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checkpoint.npz is truncated or corrupt"):
        load_run(tmp_path)


def test_cli_main_command_trains_evaluates_and_draws(tmp_path, capsys):
    from tinyinterp.__main__ import main

    rc = main(["train", "--size", "32", "--epochs", "1", "--finetune-epochs", "1",
               "--images-per-class", "4", "--batch-size", "8", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ordinary epoch   1/1" in out and "interpretable epoch   1/1" in out
    assert "stage 1" in out and "stage 2" in out
    assert (tmp_path / "ordinary" / "checkpoint.npz").exists()
    assert (tmp_path / "interpretable" / "metrics.json").exists()
    # the report: the evaluation table and the pictures, as evaluate / visualize write them
    assert "instability" in out and (tmp_path / "evaluation.json").exists()
    nets = {"pretrained", "ordinary", "interpretable"}  # the default protocol has two stages
    assert set(json.loads((tmp_path / "evaluation.json").read_text())) == nets
    assert (tmp_path / "pictures" / "curves.png").exists()
    assert (tmp_path / "pictures" / "filters_new.png").exists()


def test_init_from_copies_every_parameter_of_an_ordinary_net(tmp_path):
    train_one(tiny_config(epochs=1), tmp_path / "pre", log=lambda *_: None)
    source, _, _ = load_run(tmp_path / "pre")
    cfg = tiny_config(interpretable=True, init_from=str(tmp_path / "pre" / "checkpoint.npz"))
    model = ti.runs.build_model(cfg, source.num_classes)
    fresh = [{k: v.copy() for k, v in layer.params.items()} for layer in model.layers if layer.params]
    ti.runs.init_weights_from(model, cfg.init_from)
    src = [layer.params for layer in source.layers if layer.params]
    dst = [layer.params for layer in model.layers if layer.params]
    assert len(src) == len(dst) == len(fresh) > 0
    for a, b, f in zip(src, dst, fresh):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert not np.array_equal(f[k], b[k]) or not f[k].any()  # really overwritten


def test_init_from_refuses_a_net_of_another_shape(tmp_path):
    train_one(tiny_config(epochs=1), tmp_path / "pre", log=lambda *_: None)
    cfg = tiny_config(top_channels=8, init_from=str(tmp_path / "pre" / "checkpoint.npz"))
    with pytest.raises(ValueError, match="init_from .*checkpoint.npz.*shape"):
        train_one(cfg, tmp_path / "ft", log=lambda *_: None)


def test_fine_tune_starts_from_the_pretrained_accuracy(tmp_path):
    """Stage 2 with lr 0 keeps the pretrained weights: its ordinary net scores exactly the
    pretrained net's test accuracy (a fresh net would not, but could by chance; the
    weights are compared too)."""
    pre = train_one(tiny_config(epochs=2), tmp_path / "pre", log=lambda *_: None)
    cfg = tiny_config(epochs=1, lr=0.0, warmup_epochs=0, init_from=str(tmp_path / "pre" / "checkpoint.npz"))
    ft = train_one(cfg, tmp_path / "ft", log=lambda *_: None)
    assert ft["final"]["test_acc"] == pre["final"]["test_acc"]
    a, b = weights(tmp_path / "pre"), weights(tmp_path / "ft")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cli_finetune_protocol_writes_all_three_nets(tmp_path, capsys):
    from tinyinterp.__main__ import main

    rc = main(["train", "--size", "32", "--epochs", "2", "--finetune-epochs", "1",
               "--images-per-class", "4", "--batch-size", "8", "--out", str(tmp_path),
               "--protocol", "finetune", "--mask", "centroid", "--filter-loss", "authors",
               "--lam", "3", "--no-report"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "stage 1" in out and "stage 2" in out
    for net in ("pretrained", "ordinary", "interpretable"):
        assert (tmp_path / net / "checkpoint.npz").exists(), net
    _, cfg, _ = load_run(tmp_path / "interpretable")
    assert cfg.init_from == str(tmp_path / "pretrained" / "checkpoint.npz")
    assert cfg.warmup_epochs == 0 and cfg.lr == ti.recipes.RECIPES["species"]["finetune_lr"] and cfg.epochs == 1
    assert load_run(tmp_path / "pretrained")[1].epochs == 2
    assert cfg.mask_options["mode"] == "centroid" and cfg.mask_options["lam"] == 3
    assert cfg.mask_options["gradient"] == "authors"
    assert not (tmp_path / "pictures").exists() and not (tmp_path / "evaluation.json").exists()


def test_cli_scratch_protocol_trains_both_nets_from_random_weights(tmp_path):
    from tinyinterp.__main__ import main

    rc = main(["train", "--size", "32", "--epochs", "1", "--images-per-class", "4", "--batch-size", "8",
               "--out", str(tmp_path), "--protocol", "scratch", "--no-report"])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpretable", "ordinary"]
    for net in ("ordinary", "interpretable"):
        assert load_run(tmp_path / net)[1].init_from is None


@pytest.mark.parametrize("interpretable", [False, True])
def test_eval_every_skips_test_passes_without_changing_training(tmp_path, interpretable):
    every = train_one(tiny_config(epochs=3, interpretable=interpretable), tmp_path / "every",
                      log=lambda *_: None)
    lines = []
    sparse = train_one(tiny_config(epochs=3, eval_every=2, interpretable=interpretable),
                       tmp_path / "sparse", log=lines.append)
    # epoch 2 (every second) and epoch 3 (the last) have a test pass, epoch 1 none
    assert ["test_acc" in row for row in sparse["history"]] == [False, True, True]
    assert " test -  " in lines[0] and " test -  " not in lines[2]
    for a, b in zip(every["history"], sparse["history"]):
        assert a["task_loss"] == b["task_loss"] and a["filter_loss"] == b["filter_loss"]
    assert every["final"]["test_acc"] == sparse["final"]["test_acc"]
    a, b = weights(tmp_path / "every"), weights(tmp_path / "sparse")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_eval_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="eval_every"):
        tiny_config(eval_every=bad)


def test_cli_report_reuses_the_data_training_loaded(tmp_path, monkeypatch, capsys):
    from tinyinterp.__main__ import main

    real, calls = ti.runs.load_data, []

    def counting_load_data(cfg):
        calls.append(cfg.task)
        return real(cfg)

    for module in (train_cli, ti.runs):  # training loads through train_cli, the report through runs
        monkeypatch.setattr(module, "load_data", counting_load_data)
    rc = main(["train", "--size", "32", "--epochs", "1", "--finetune-epochs", "1", "--task", "bird",
               "--images-per-class", "4", "--batch-size", "8", "--out", str(tmp_path),
               "--eval-every", "2"])
    assert rc == 0
    assert (tmp_path / "evaluation.json").is_file() and (tmp_path / "pictures" / "curves.png").is_file()
    # stage 1 species, stage 2 bird vs. not: each loaded once, the report loads nothing more
    assert sorted(calls) == ["bird", "species"]
    out = capsys.readouterr().out
    assert "test -" not in out  # one epoch each: the last one is tested
    # the data's reports in words, not Python dicts
    assert "negatives: 20 from background crops (0 photos too full of bird for one)" in out
    assert "{'" not in out
