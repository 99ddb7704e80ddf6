"""The command line: a run folder is never replaced by accident, every user error is one
line on stderr (no traceback) that leaves nothing half-made, arguments are checked before
any work, Ctrl-C says how to resume, and --help shows every default."""
import argparse
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyinterp as ti
from tinyinterp import backend, train_cli
from tinyinterp.__main__ import build_parser, main
from tinyinterp.data import CubFormatError
from tinyinterp.runs import TOY_BIRDS, load_run

from commandline import one_line, run_main  # beside this file

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "32", "--epochs", "1", "--finetune-epochs", "1", "--images-per-class", "4",
        "--batch-size", "8"]


def files(folder):
    """{relative path: bytes} of everything under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """(folder, what train printed) of a tiny finished run with its report."""
    out = tmp_path_factory.mktemp("run") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", *TINY, "--out", str(out)]) == 0
    assert (out / "evaluation.txt").is_file() and (out / "pictures" / "curves.png").is_file()
    return out, printed.getvalue()


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return Path(shutil.copytree(trained_run[0], tmp_path / "run"))


# ------------------------------------------------------------------ an existing run is kept

def test_train_refuses_a_folder_holding_a_trained_run_and_keeps_it(run_copy, capsys):
    before = files(run_copy)
    rc, out, err = run_main(["train", *TINY, "--out", str(run_copy), "--seed", "1", "--no-report"], capsys)
    line = one_line(err)
    assert rc == 1
    assert str(run_copy) in line and "--resume" in line and "--overwrite" in line
    assert "ordinary" in line and "interpretable" in line and "pretrained" in line
    assert files(run_copy) == before  # byte for byte
    assert "epoch" not in out  # nothing was trained


def test_overwrite_replaces_the_nets_and_removes_the_old_report(run_copy, capsys):
    (run_copy / "notes.txt").write_text("mine")  # not tinyinterp's: left alone
    (run_copy / "evaluation-authors.json").write_text("{}")  # the authors' protocol's report too
    (run_copy / "evaluation-shift8.json").write_text("{}")  # and those of the moved images
    (run_copy / "evaluation-authors-shift3.txt").write_text("")
    (run_copy / "pictures" / "mine.png").write_bytes(b"not ours")
    old = load_run(run_copy / "ordinary")[2]["history"]
    rc, _, err = run_main(["train", *TINY, "--out", str(run_copy), "--seed", "1", "--overwrite",
                           "--no-report"], capsys)
    assert rc == 0, err
    assert not (run_copy / "evaluation.json").exists() and not (run_copy / "evaluation.txt").exists()
    assert not (run_copy / "evaluation-authors.json").exists()
    assert not (run_copy / "evaluation-shift8.json").exists()
    assert not (run_copy / "evaluation-authors-shift3.txt").exists()
    assert sorted(p.name for p in (run_copy / "pictures").iterdir()) == ["mine.png"]
    assert (run_copy / "notes.txt").read_text() == "mine"
    _, cfg, meta = load_run(run_copy / "ordinary")
    assert cfg.seed == 1 and meta["history"] != old


def test_overwrite_keeps_the_net_it_fine_tunes_from(run_copy, capsys):
    pre = run_copy / "pretrained" / "checkpoint.npz"
    before = pre.read_bytes()
    rc, _, err = run_main(["train", *TINY, "--out", str(run_copy), "--pretrained", str(pre),
                           "--finetune-lr", "0.002", "--overwrite", "--no-report"], capsys)
    assert rc == 0, err
    assert pre.read_bytes() == before
    assert load_run(run_copy / "interpretable")[1].lr == 0.002


def test_resume_continues_and_drops_the_report_of_the_old_weights(run_copy, capsys):
    rc, out, err = run_main(["train", *TINY[:2], "--epochs", "1", "--finetune-epochs", "2",
                             *TINY[6:], "--out", str(run_copy), "--resume", "--no-report"], capsys)
    assert rc == 0, err
    assert "resumed" in out and "interpretable epoch   2/2" in out
    assert not (run_copy / "evaluation.json").exists() and not (run_copy / "pictures").exists()


def test_resume_on_an_empty_folder_says_it_starts_afresh(tmp_path, capsys):
    rc, out, _ = run_main(["train", *TINY, "--protocol", "scratch", "--nets", "ordinary",
                           "--out", str(tmp_path / "new"), "--resume", "--no-report"], capsys)
    assert rc == 0
    assert f"nothing to resume in {tmp_path / 'new' / 'ordinary'}: starting at epoch 1" in out


# ------------------------------------------------------- bad arguments: one line, exit 2

BAD_ARGUMENTS = [
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "0"], "--epochs"),
    (["--finetune-epochs", "-2"], "--finetune-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--size", "7"], "--size 7"),
    (["--size", "0"], "--size"),
    (["--images-per-class", "0"], "--images-per-class"),
    (["--eval-every", "0"], "--eval-every"),
    (["--seed", "-1"], "--seed"),
    (["--lr", "nan"], "--lr"),
    (["--lam", "-1"], "--lam"),
    (["--epochs", "two"], "--epochs"),
    (["--data", "no/such/folder"], "--data no/such/folder"),
    (["--pretrained", "no/such.npz"], "--pretrained no/such.npz"),
    (["--resume", "--overwrite"], "--resume"),
    (["--task", "cat"], "--task"),
    (["--crop-margin", "-0.1"], "--crop-margin"),
]


@pytest.mark.parametrize("extra,named", BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_argument_is_one_line_before_any_work(extra, named, tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(train_cli, "load_data", no_work)
    out = tmp_path / "run"
    rc, stdout, err = run_main(["train", *TINY, "--out", str(out), *extra], capsys)
    line = one_line(err)
    assert rc == 2 and named in line and line.startswith("python -m tinyinterp train: error:")
    assert not out.exists() and stdout == ""


def test_no_gpu_is_one_line_naming_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    rc, _, err = run_main(["train", *TINY, "--out", str(tmp_path / "run"), "--device", "gpu"], capsys)
    line = one_line(err)
    assert rc == 1 and "CuPy" in line and "tinyinterp/README.md" in line and "device='cpu'" not in line
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------- bad data: one line, exit 1, nothing made

def _toy_copy(tmp_path):
    return Path(shutil.copytree(TOY_BIRDS, tmp_path / "toy"))


def _break_images_txt(root):
    lines = (root / "images.txt").read_text().splitlines()
    lines[2] = "3"  # one field instead of two
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    return "images.txt, line 3"


def _truncate_a_jpeg(root):
    rel = (root / "images.txt").read_text().split("\n")[0].split()[1]
    path = root / "images" / rel
    path.write_bytes(path.read_bytes()[:300])
    return rel


def _drop_images_txt(root):
    (root / "images.txt").unlink()
    return "images.txt"


@pytest.mark.parametrize("damage", [_break_images_txt, _truncate_a_jpeg, _drop_images_txt],
                         ids=["malformed images.txt", "truncated jpeg", "no images.txt"])
def test_bad_data_is_one_line_naming_the_file_and_nothing_is_made(damage, tmp_path, capsys):
    data = _toy_copy(tmp_path)
    named = damage(data)
    out = tmp_path / "run"
    rc, _, err = run_main(["train", *TINY, "--data", str(data), "--out", str(out)], capsys)
    line = one_line(err)
    assert rc == 1 and named in line
    assert not out.exists()


def test_evaluate_on_a_truncated_checkpoint_is_one_line(run_copy, capsys):
    ckpt = run_copy / "ordinary" / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = files(run_copy)
    rc, _, err = run_main(["evaluate", str(run_copy)], capsys)
    line = one_line(err)
    assert rc == 1 and "checkpoint.npz is truncated or corrupt" in line
    assert files(run_copy) == before  # the old evaluation is left as it was, not half-written


def test_evaluate_with_a_shift_as_large_as_the_images_is_one_line(run_copy, capsys):
    before = files(run_copy)
    rc, _, err = run_main(["evaluate", str(run_copy), "--shift", "32"], capsys)
    line = one_line(err)
    assert rc == 2 and "--shift 32 must be below the input size" in line and "32 px" in line
    assert files(run_copy) == before


def test_train_with_a_shift_as_large_as_the_images_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_main(["train", *TINY, "--shift", "32", "--out", str(out)], capsys)
    line = one_line(err)
    assert rc == 2 and "--shift 32 must be below --size 32" in line and "Traceback" not in err
    assert not out.exists()


def test_a_corrupt_pretrained_checkpoint_is_refused_before_anything_is_made(run_copy, tmp_path, capsys):
    ckpt = run_copy / "pretrained" / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    out = tmp_path / "ft"
    rc, _, err = run_main(["train", *TINY, "--pretrained", str(ckpt), "--out", str(out)], capsys)
    assert rc == 1 and "truncated or corrupt" in one_line(err)
    assert not out.exists()


def test_evaluate_and_visualize_on_a_missing_folder_are_one_line(tmp_path, capsys):
    for command in ("evaluate", "visualize"):
        rc, _, err = run_main([command, str(tmp_path / "none")], capsys)
        assert rc == 1 and str(tmp_path / "none") in one_line(err)


def test_evaluate_and_visualize_on_a_file_say_it_is_a_file(tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.npz"
    ckpt.write_bytes(b"x")
    for command in ("evaluate", "visualize"):
        rc, _, err = run_main([command, str(ckpt)], capsys)
        line = one_line(err)
        assert rc == 1 and str(ckpt) in line and "a file, not a run folder" in line


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    data = _toy_copy(tmp_path)
    _break_images_txt(data)
    argv = ["train", *TINY, "--data", str(data), "--out", str(tmp_path / "run")]
    with pytest.raises(CubFormatError, match="images.txt, line 3"):
        main(argv + ["--debug"])
    monkeypatch.setenv("TINYINTERP_DEBUG", "1")
    with pytest.raises(CubFormatError):
        main(argv)


def test_the_real_command_prints_one_line_and_no_traceback(tmp_path):
    """The same through a real process: what a user's terminal shows."""
    data = _toy_copy(tmp_path)
    _break_images_txt(data)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("TINYINTERP_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "tinyinterp", "train", "--data", str(data),
                           "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert one_line(proc.stderr).startswith("python -m tinyinterp train: ")
    assert "images.txt, line 3" in proc.stderr


# ------------------------------------------------------------------- Ctrl-C, then --resume

def test_ctrl_c_says_what_is_kept_and_resume_ends_as_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    argv = ["train", "--size", "32", "--epochs", "2", "--finetune-epochs", "2", "--images-per-class",
            "4", "--batch-size", "8", "--no-report"]
    assert main(argv + ["--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()

    real, steps = ti.train.progress, []

    def interrupt_in_stage_2(i, n, **kw):  # called once a step, n steps an epoch
        steps.append(i)
        if len(steps) == 3 * n + 1:  # stage 1's 2 epochs, stage 2's ordinary net's first: done
            raise KeyboardInterrupt
        return real(i, n, **kw)

    monkeypatch.setattr(ti.train, "progress", interrupt_in_stage_2)
    split = tmp_path / "split"
    rc, _, err = run_main(argv + ["--out", str(split)], capsys)
    assert rc == 130 and "Traceback" not in err
    ordinary = split / "ordinary"
    assert f"ordinary: its checkpoint after epoch 1 is kept ({ordinary / 'checkpoint.npz'})" in err
    resume = err.split("Resume with: ")[1].strip()
    words = shlex.split(resume)
    assert words[:3] == ["python", "-m", "tinyinterp"] and words[-1] == "--resume"
    monkeypatch.undo()
    assert main(words[3:]) == 0
    for net in ("pretrained", "ordinary", "interpretable"):
        a = load_run(tmp_path / "whole" / net)[0].state_dict()
        b = load_run(split / net)[0].state_dict()
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{net} {k}")


# ------------------------------------------------------------------------------- --help

def _subparser(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["train", "evaluate", "visualize", "gradcheck", "download-cub"])
def test_help_has_a_line_and_the_default_for_every_option(command, capsys):
    parser = _subparser(command)
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
        flag = action.nargs == 0 or not action.option_strings
        if not flag:
            helped = parser._get_formatter()._get_help_string(action)
            assert "default" in helped, f"{command} {action.option_strings}: no default shown"
    assert "``" not in text and "see the README" not in text


def test_train_help_shows_the_recipe_defaults_per_task(capsys):
    text = " ".join(_subparser("train").format_help().split())
    for expected in ("--epochs EPOCHS epochs from random weights (with --protocol finetune: of "
                     "stage 1) (default: 12)",
                     "(default: exact with --task species, authors with --task bird)",
                     "(default: the schedule with --task species, 3.0 with --task bird)",
                     "--finetune-epochs N finetune: epochs of stage 2 (default: 6 with --task species, 20 "
                     "with --task bird)",
                     "--batch-size N images per training step (default: 32)",
                     "(default: the bundled toy birds, data_samples/toy_birds)"):
        assert expected in text, expected
    top = build_parser().format_help()
    assert "``" not in top and "download-cub" in top


def test_main_command_output_reads_well(trained_run):
    """The data line in words (no Python dict), "1 epoch", the last line naming the table."""
    _, out = trained_run
    assert "{" not in out.split("data: ")[1].split("\n")[0]
    assert "20 of 500 listed images read, 480 skipped: over the images_per_class cap" in out
    assert "1 epochs" not in out and "1 epoch at lr" in out
    assert "evaluation.txt" in out.rstrip().split("\n")[-1]
