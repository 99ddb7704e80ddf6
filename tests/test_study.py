"""studies/recipe_study.py: the job order, the commands, and the table on made-up runs."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))
import recipe_study as rs  # noqa: E402


def test_every_fine_tune_runs_after_its_pretrained_net():
    order = rs.jobs_in_order(["toy", "real"], [0, 1, 2], list(rs.RECIPES))
    assert len(order) == len(set(order))
    for i, (data, seed, recipe) in enumerate(order):
        if recipe.startswith("ft"):
            assert order.index((data, seed, "scratch")) < i
    assert sum(1 for j in order if j[0] == "toy") == 3 * len(rs.RECIPES)


def test_screened_recipes_run_on_the_first_seed_only(monkeypatch):
    monkeypatch.setattr(rs, "SCREEN_ONLY", {"real": {"ft-authors", "scratch-authors"}})
    order = rs.jobs_in_order(["toy", "real"], [0, 1, 2], list(rs.RECIPES))
    screened = [j for j in order if j[0] == "real" and j[2] in rs.SCREEN_ONLY["real"]]
    assert sorted(screened) == [("real", 0, "ft-authors"), ("real", 0, "scratch-authors")]
    assert ("toy", 2, "ft-authors") in order


def test_fine_tune_command_starts_from_the_scratch_ordinary_net(tmp_path):
    cmd = rs.job_command(tmp_path, "toy", 1, "ft-authors")
    assert cmd[cmd.index("--protocol") + 1] == "finetune"
    pre = Path(cmd[cmd.index("--pretrained") + 1])
    assert pre == tmp_path / "toy" / "s1" / "scratch" / "ordinary" / "checkpoint.npz"
    assert cmd[cmd.index("--filter-loss") + 1] == "authors"
    assert cmd[cmd.index("--finetune-epochs") + 1] == str(rs.DATASETS["toy"][2])
    scratch = rs.job_command(tmp_path, "real", 0, "scratch")
    assert scratch[scratch.index("--epochs") + 1] == str(rs.DATASETS["real"][1])


def fake_run(root, recipe, seed, nets, acc, inst, epochs=2, finished=True):
    folder = rs.run_dir(root, "toy", seed, recipe)
    evaluation = {}
    for net, a, x in zip(nets, acc, inst):
        (folder / net).mkdir(parents=True)
        hist = [{"epoch": e + 1} for e in range(epochs if finished else epochs - 1)]
        (folder / net / "metrics.json").write_text(json.dumps({"config": {"epochs": epochs}, "history": hist}))
        layer = {"instability": x, "control": x + 0.01, "ratio": x / (x + 0.01), "centre_share": 0.25,
                 "tracking": {"below_0.8": 1, "below_0.9": 2}}
        evaluation[net] = {"accuracy": a, "layers": {"top": layer, "new": layer}}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))


def test_table_pairs_each_seed_with_its_own_baseline(tmp_path):
    fake_run(tmp_path, "ft", 0, ["ordinary", "interpretable"], [0.8, 0.7], [0.10, 0.05])
    fake_run(tmp_path, "ft", 1, ["ordinary", "interpretable"], [0.6, 0.6], [0.20, 0.20])
    fake_run(tmp_path, "ft-authors", 0, ["interpretable"], [0.5], [0.08], finished=False)
    rows = {(r, n): (seeds, stopped, v) for r, n, seeds, stopped, v in
            rs.table_rows(tmp_path, "toy", [0, 1], ["ft", "ft-authors"])}
    seeds, stopped, v = rows[("ft", "interpretable")]
    assert (seeds, stopped) == (2, 0)
    assert v["dacc"] == pytest.approx([-0.1, 0.0])
    assert v["top_to_base"] == pytest.approx([0.5, 1.0])
    assert rows[("ft-authors", "interpretable")][:2] == (1, 1)
    text = rs.markdown_table(tmp_path, "toy", [0, 1], ["ft", "ft-authors"])
    assert "| ft | interpretable | 2 | 0.650 ±0.050 | -0.050 ±0.050 |" in text
    assert "| ft-authors | interpretable | 1 (1 unfinished) | - |" in text
