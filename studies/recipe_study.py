"""The recipe study behind studies/README.md (species task).

Trains every recipe on the toy birds (``data_samples/``), on the toy birds in poses (whose
parts move inside the box; generated on first use into ``runs/posed_birds/``: 5 species,
100 train and 210 test photos each, seed 0; ``posed-head``: the same with species told
apart by the head alone, ``runs/posed_birds_head/``; ``posed-repeat``: and the head's mark
repeated on the tail, ``runs/posed_birds_repeat/``) and, when it is there, on the real
10-species CUB subset (``cub_real_subset/`` in the folder ``TINYINTERP_DATA`` names),
over several seeds, through the ordinary command line (``python -m tinyinterp train`` /
``evaluate``), then prints the table of means and spreads::

    python studies/recipe_study.py run --jobs 2          # ~100 min on a 2-core CPU
    python studies/recipe_study.py table                 # the tables of studies/README.md

Each run lands in ``runs/study/<data>/s<seed>/<recipe>/`` with its own evaluation.json;
a finished run is not trained again (``--resume``), so the study can be interrupted.
With ``--jobs 2`` two runs share the machine, each with one BLAS thread and one
tinyinterp thread.

Recipes: ``scratch`` trains the ordinary net and the interpretable one from random
weights; every ``ft-*`` recipe fine-tunes that ordinary net with the masks on (the paper's
protocol), and ``ft`` also fine-tunes it without masks for as many epochs: the fair
baseline of every ``ft-*`` recipe.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from jobs import run_jobs  # beside this script

from tinyinterp.data.root import data_root, missing
from tinyinterp.vgg import LAYER_NAMES

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    # name: (folder, scratch epochs, fine-tune epochs)
    "toy": (ROOT / "data_samples" / "toy_birds", 12, 6),
    "posed": (ROOT / "runs" / "posed_birds", 12, 6),
    "posed-head": (ROOT / "runs" / "posed_birds_head", 12, 6),
    "posed-repeat": (ROOT / "runs" / "posed_birds_repeat", 12, 6),
    "real": (data_root() / "cub_real_subset", 40, 15),  # $TINYINTERP_DATA, else ../shared
}
# recipe: (protocol, nets, extra train flags). Strengths: the filter-loss gradient at the
# top conv's mask input is about 1.5-5x the task gradient in epoch 1 on a trained ordinary
# net (studies/gradient_strength.py), except exact-MI at lambda0 1e-4 (the inert library
# default, ~2e-4x).
RECIPES = {
    "scratch": ("scratch", "both", []),
    "scratch-exact-l1": ("scratch", "interpretable", ["--lambda0", "1"]),
    "scratch-scalenorm": ("scratch", "interpretable", ["--scale-normalise", "--lambda0", "1e-3"]),
    "scratch-authors": ("scratch", "interpretable", ["--filter-loss", "authors", "--lam", "10"]),
    "ft": ("finetune", "both", []),
    "ft-centroid": ("finetune", "interpretable", ["--mask", "centroid"]),
    "ft-exact-l1": ("finetune", "interpretable", ["--lambda0", "1"]),
    "ft-scalenorm": ("finetune", "interpretable", ["--scale-normalise", "--lambda0", "1e-3"]),
    "ft-authors": ("finetune", "interpretable", ["--filter-loss", "authors", "--lam", "10"]),
    "ft-authors-centroid": ("finetune", "interpretable",
                            ["--filter-loss", "authors", "--lam", "10", "--mask", "centroid"]),
}


# Recipes to run on the first seed only, per dataset (a cheaper screen): none today, every
# recipe runs on every seed. E.g. {"real": {"scratch-authors"}}.
SCREEN_ONLY = {}


def run_dir(out, data, seed, recipe):
    return Path(out) / data / f"s{seed}" / recipe


def job_command(out, data, seed, recipe):
    folder, scratch_epochs, ft_epochs = DATASETS[data]
    protocol, nets, extra = RECIPES[recipe]
    cmd = [sys.executable, "-m", "tinyinterp", "train", "--data", str(folder), "--seed", str(seed),
           "--nets", nets, "--out", str(run_dir(out, data, seed, recipe)), "--resume",
           "--no-report"] + extra
    if protocol == "finetune":
        pre = run_dir(out, data, seed, "scratch") / "ordinary" / "checkpoint.npz"
        cmd += ["--protocol", "finetune", "--pretrained", str(pre), "--finetune-epochs", str(ft_epochs)]
    else:
        cmd += ["--protocol", "scratch", "--epochs", str(scratch_epochs)]
    return cmd


def jobs_in_order(datasets, seeds, recipes):
    """(data, seed, recipe) in the order they should run: the ordinary nets first (every
    fine-tune needs one), then the fine-tunes, then the other from-scratch recipes."""
    order = []
    for group in (["scratch"], [r for r in recipes if r.startswith("ft")],
                  [r for r in recipes if r.startswith("scratch-")]):
        for data in datasets:
            for seed in seeds:
                order += [(data, seed, r) for r in group if r in recipes
                          and (seed == seeds[0] or r not in SCREEN_ONLY.get(data, ()))]
    return order


POSED_SET = dict(n_species=5, train_per_species=100, test_per_species=210, seed=0, poses=True)
GENERATED = {"posed": POSED_SET, "posed-head": dict(POSED_SET, head_marks=True),
             "posed-repeat": dict(POSED_SET, head_marks=True, repeat_mark=True)}


def make_generated_set(name):
    """A generated dataset (GENERATED), written once (about 20 s; 8 MB): the same bytes
    each time."""
    folder = DATASETS[name][0]
    if not (folder / "MANIFEST.sha256").is_file():
        from tinyinterp.data import generate_toy_birds
        generate_toy_birds(folder, overwrite=folder.is_dir(), **GENERATED[name])
    return folder


def run(args):
    for name in set(args.data) & set(GENERATED):
        make_generated_set(name)
    datasets = [d for d in args.data if DATASETS[d][0].is_dir()]
    for d in set(args.data) - set(datasets):
        print(f"skipping {d}: {missing(DATASETS[d][0].name)}")
    pending = jobs_in_order(datasets, args.seeds, args.recipes)
    env = dict(os.environ)
    if args.jobs > 1:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = env["TINYINTERP_NUM_THREADS"] = "1"

    def ready(job, done):
        data, seed, recipe = job
        return not recipe.startswith("ft") or (data, seed, "scratch") in done

    def commands(job):
        return [job_command(args.out, *job),
                [sys.executable, "-m", "tinyinterp", "evaluate", str(run_dir(args.out, *job))]]

    run_jobs(pending, ready, commands, lambda job: "-".join(map(str, job)), Path(args.out) / "logs",
             env, args.jobs, ROOT)


# ------------------------------------------------------------------------------ the table

def _load(out, data, seed, recipe):
    """(evaluation.json or {}, {net: metrics.json}) of one run folder."""
    folder = run_dir(out, data, seed, recipe)
    ev = folder / "evaluation.json"
    evaluation = json.loads(ev.read_text()) if ev.exists() else {}
    metrics = {}
    for net in ("ordinary", "interpretable"):
        m = folder / net / "metrics.json"
        if m.exists():
            metrics[net] = json.loads(m.read_text())
    return evaluation, metrics


def baseline_recipe(recipe):
    """The run whose ordinary net is the fair baseline: trained for as many epochs."""
    return "ft" if recipe.startswith("ft") else "scratch"


def seed_values(out, data, seed, recipe, net):
    """One net of one run: None if it never ran; {"unfinished": True} if it did not finish
    (diverged); else accuracy, instability and controls per layer, and the changes
    against the fair baseline of the same seed."""
    evaluation, metrics = _load(out, data, seed, recipe)
    if net not in metrics and not (run_dir(out, data, seed, recipe) / net).is_dir():
        return None
    hist = metrics.get(net, {}).get("history", [])
    epochs = metrics.get(net, {}).get("config", {}).get("epochs")
    if net not in evaluation or not epochs or len(hist) < epochs:
        return {"unfinished": True}
    e = evaluation[net]
    v = {"unfinished": False, "acc": e["accuracy"]}
    for layer in LAYER_NAMES:
        L = e["layers"][layer]
        v[layer] = L["instability"]
        v[layer + "_ctl"] = L["control"]
        v[layer + "_to_ctl"] = L["ratio"]
        v[layer + "_below8"] = L["tracking"]["below_0.8"]
        v[layer + "_below"] = L["tracking"]["below_0.9"]
        v[layer + "_centre"] = L["centre_share"]
    base = _load(out, data, seed, baseline_recipe(recipe))[0].get("ordinary")
    if base:
        v["dacc"] = v["acc"] - base["accuracy"]
        for layer in LAYER_NAMES:
            v[layer + "_to_base"] = v[layer] / base["layers"][layer]["instability"]
    return v


def format_stat(values, spec=".3f"):
    """mean ±half-range over seeds."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return format(mean, spec)
    return f"{format(mean, spec)} ±{format((max(values) - min(values)) / 2, spec.lstrip('+'))}"


COLUMNS = [  # header, key, format
    ("test acc", "acc", ".3f"), ("Δ acc vs baseline", "dacc", "+.3f"),
    ("top conv", "top", ".3f"), ("its control", "top_ctl", ".3f"),
    ("top / baseline", "top_to_base", ".2f"), ("new conv", "new", ".3f"),
    ("its control", "new_ctl", ".3f"), ("new / baseline", "new_to_base", ".2f"),
    ("filters < 0.8x control (top / new)", "_below8", None),
    ("filters < 0.9x control (top / new)", "_below", None), ("new-conv centre share", "new_centre", ".2f"),
]


def table_rows(out, data, seeds, recipes):
    """[(recipe, net, seeds run, seeds unfinished, {key: [value per finished seed]})]."""
    rows = []
    for recipe in recipes:
        for net in ("ordinary", "interpretable"):
            per_seed = [seed_values(out, data, s, recipe, net) for s in seeds]
            per_seed = [v for v in per_seed if v is not None]
            if not per_seed:
                continue
            done = [v for v in per_seed if not v["unfinished"]]
            keys = {k for v in done for k in v}
            rows.append((recipe, net, len(per_seed), len(per_seed) - len(done),
                         {k: [v.get(k) for v in done] for k in keys}))
    return rows


def markdown_table(out, data, seeds, recipes):
    lines = ["| recipe | net | seeds | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for recipe, net, n, unfinished, vals in table_rows(out, data, seeds, recipes):
        cells = []
        for _, key, spec in COLUMNS:
            if spec is None:
                top, new = vals.get("top" + key, []), vals.get("new" + key, [])
                cells.append(f"{sum(top) / len(top):.1f} / {sum(new) / len(new):.1f}" if top else "-")
            else:
                cells.append(format_stat(vals.get(key, []), spec))
        seeds_cell = f"{n}" + (f" ({unfinished} unfinished)" if unfinished else "")
        lines.append(f"| {recipe} | {net} | {seeds_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(args):
    for data in args.data:
        text = markdown_table(args.out, data, args.seeds, args.recipes)
        if text.count("\n") > 1:
            print(f"\n{data} (seeds {' '.join(map(str, args.seeds))}; mean ±half-range over the "
                  "seeds that finished)\n")
            print(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["run", "table"])
    p.add_argument("--data", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each with one BLAS thread)")
    p.add_argument("--out", default=str(ROOT / "runs" / "study"))
    args = p.parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
