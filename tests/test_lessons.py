"""The lessons: every lessons/NN_*.py runs to the end and writes the pictures it promises.

Each lesson declares its pictures in a module-level list ``PICTURES = ["02_conv.png", ...]``.
The list is read by parsing the file (ast), never by importing it: importing would run
the lesson. Each lesson runs in a fresh interpreter, in an empty folder, with its output
folder set by TINYINTERP_LESSON_OUT, and must write exactly the promised pictures there
and nothing anywhere else (training lessons may also leave run folders named run_*).
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
ALLOWED_IMPORTS = {"tinyinterp", "numpy", "PIL", "os", "pathlib", "sys", "time"}
TIMEOUT_S = 120


def module_tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def promised_pictures(path):
    """The literal value of the lesson's module-level ``PICTURES`` list."""
    for node in module_tree(path).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PICTURES" for t in node.targets):
            pictures = ast.literal_eval(node.value)
            assert isinstance(pictures, list) and all(isinstance(p, str) for p in pictures)
            return pictures
    raise AssertionError(f"{path.name}: no module-level PICTURES = [...] list")


def imported_modules(path):
    names = set()
    for node in ast.walk(module_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_lessons_exist():
    assert [p.name[:2] for p in LESSONS] == [f"{i:02d}" for i in range(1, len(LESSONS) + 1)]
    assert len(LESSONS) >= 8


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_self_contained(lesson):
    """A docstring that says how to run it; imports only tinyinterp, numpy, Pillow, os/pathlib/sys."""
    doc = ast.get_docstring(module_tree(lesson))
    assert doc and f"python lessons/{lesson.name}" in doc, f"{lesson.name}: docstring must say how to run it"
    extra = imported_modules(lesson) - ALLOWED_IMPORTS
    assert not extra, f"{lesson.name} imports {sorted(extra)}; lessons use only {sorted(ALLOWED_IMPORTS)}"
    for picture in promised_pictures(lesson):
        assert picture.endswith(".png") and picture.startswith(lesson.name[:3]), picture


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_and_writes_its_pictures(lesson, tmp_path):
    pictures = promised_pictures(lesson)
    out = tmp_path / "out"
    # the working tree's tinyinterp first, whatever is installed
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, TINYINTERP_LESSON_OUT=str(out), PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run([sys.executable, str(lesson)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (f"{lesson.name} exited with {proc.returncode}\n"
                                  f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}")
    assert proc.stdout.strip(), f"{lesson.name} printed nothing"
    written = sorted(p.name for p in out.iterdir() if p.is_file()) if out.exists() else []
    folders = sorted(p.name for p in out.iterdir() if p.is_dir()) if out.exists() else []
    assert all(f.startswith("run_") for f in folders), f"{lesson.name}: unexpected folders {folders}"
    assert written == sorted(pictures), f"{lesson.name}: wrote {written}, promised {sorted(pictures)}"
    for name in pictures:
        with Image.open(out / name) as image:
            assert image.format == "PNG", f"{name} is {image.format}, not PNG"
            image.verify()
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out"]), "a lesson wrote outside its output folder"


def test_lesson_13_reads_cub_from_the_data_root(tmp_path):
    """TINYINTERP_DATA names the folder whose cub200_160/ lesson 13 reads: here the toy
    birds stand in for it (a link), so the lesson reports their negatives."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "cub200_160").symlink_to(ROOT / "data_samples" / "toy_birds", target_is_directory=True)
    run = tmp_path / "run"
    run.mkdir()
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, TINYINTERP_LESSON_OUT=str(run / "out"), PYTHONPATH=os.pathsep.join(path),
               TINYINTERP_DATA=str(data))
    lesson = ROOT / "lessons" / "13_single_category.py"
    proc = subprocess.run([sys.executable, str(lesson)], cwd=run, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the toy birds' negatives (made, skipped as too full, ...), as the lesson prints them
    assert "\n496 4 " in proc.stdout, proc.stdout[-3000:]
    assert "set TINYINTERP_DATA" not in proc.stdout
