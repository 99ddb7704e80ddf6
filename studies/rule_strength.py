"""How strong is the authors' rule against the task, at each map size? (bird vs. not, 112 px)

At 112 px the bird task's default (the authors' rule at x10) collapsed or stopped
tracking on every seed, as x30 does at 64 px. The rule adds a fixed push at every
position of a map (``filter_loss.authors_rule``), not divided by the number of positions,
so its share of the conv weights' gradient should grow with the map's area. This script
measures that share with the interpretable net at x1 (the rule is linear in its
multiplier: xM is M times this) on the first training batches of the bird task, at two
points of each (size, seed) of the bird study: where fine-tuning starts (the pretrained
net, its head replaced by a fresh logistic output as stage 2 does; the fresh head is
small, so the task's gradient is too) and where the fair baseline ends (its fine-tuned
ordinary net: a trained head).

For each conv with a mask above it (top conv, new conv) and the conv below them, it
prints ||g_rule|| / ||g_task||, the norms of the weight gradient from the rule alone
(the backward pass from a zero loss gradient: only the masks' rule adds anything) and
from the task alone (the full gradient minus the rule's). (`gradient_strength.py` compares
every filter loss at the masks' inputs on one species net; this one follows the authors'
rule down to the weights it moves, across map sizes.) Run where the bird study's
pretrained nets are:

    python studies/rule_strength.py --sizes 64 112 --seeds 0 1 2
"""
import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from tinyinterp.backend import to_numpy
from tinyinterp.data.root import FULL_CUB, data_root, find_data
from tinyinterp.layers import Conv2d
from tinyinterp.runs import TrainConfig, build_model, init_weights_from, load_data
from tinyinterp.recipes import recipe_mask_options
from tinyinterp.train import interpretable_layers, loss_targets, task_loss

ROOT = Path(__file__).resolve().parents[1]
# all of CUB: cub200_160/ (or CUB_200_2011/) in $TINYINTERP_DATA, else in ../shared
DATA = find_data(*FULL_CUB) or data_root() / FULL_CUB[0]
OUT = ROOT / "runs" / "bird_study"


def conv_grads(model):
    """{position: weight gradient} of every Conv2d, as NumPy copies."""
    return {i: to_numpy(layer.grads["W"]).copy() for i, layer in enumerate(model.layers)
            if isinstance(layer, Conv2d)}


def rule_share(model, cfg, batches):
    """Mean over ``batches`` (dicts of "x", "labels") of ||g_rule|| / ||g_task|| for the
    weights of the new conv, the top conv and the conv below them."""
    model.train()
    masks = interpretable_layers(model)
    for layer in masks:
        layer.epoch = 1
    criterion = task_loss(cfg)
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2d)]
    names = {convs[-1]: "new conv", convs[-2]: "top conv", convs[-3]: "conv below"}
    ratios = {name: [] for name in names.values()}
    for batch in batches:
        for layer in masks:
            layer.set_labels(batch["labels"])
        # one forward, two backward passes: both see the same dropout draw and argmaxes
        logits = model.forward(batch["x"])
        criterion.forward(logits, loss_targets(cfg, batch["labels"]))
        model.backward(criterion.backward(), input_grad=False)
        full = conv_grads(model)
        model.backward(np.zeros_like(logits), input_grad=False)  # only the masks' rule
        rule = conv_grads(model)
        for i, name in names.items():
            task = full[i] - rule[i]
            ratios[name].append(float(np.linalg.norm(rule[i]) / np.linalg.norm(task)))
    return {name: float(np.mean(v)) for name, v in ratios.items()}


def measure(cfg, ckpt, data, batches):
    model = build_model(cfg, 1)
    init_weights_from(model, ckpt)  # every layer; the head too where it fits
    _, train, _, mean, std = data
    stream = train.batches(cfg.batch_size, seed=(cfg.seed, 0), shuffle=True, flip=True,
                           mean=mean, std=std)
    return rule_share(model, cfg, itertools.islice(stream, batches))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[64, 112])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"skipping: no CUB folder at {args.data}")
        return 0
    print("||g_rule|| / ||g_task|| of each conv's weights at x1, mean over "
          f"{args.batches} batches of 32 (xM: M times this)\n")
    print("| size | seed | map | weights | conv below | top conv | new conv |\n|---|---|---|---|---|---|---|")
    for size in args.sizes:
        opts = {**recipe_mask_options("bird"), "lam": 1.0}
        cfg = TrainConfig(data=args.data, task="bird", size=size, interpretable=True,
                          mask_options=opts)
        data = None
        for seed in args.seeds:
            for state, run in (("pretrained, fresh head", "pretrain"), ("baseline's end", "baseline")):
                ckpt = Path(args.out) / f"{size}px" / f"s{seed}" / run / "ordinary" / "checkpoint.npz"
                if not ckpt.is_file():
                    print(f"| {size} | {seed} | - | {state}: none at {ckpt} | | | |")
                    continue
                data = data or load_data(cfg)
                cfg.seed = seed
                r = measure(cfg, ckpt, data, args.batches)
                side = size // 2 ** len(cfg.widths)  # the top conv's map
                print(f"| {size} | {seed} | {side}x{side} | {state} | {r['conv below']:.3g} | "
                      f"{r['top conv']:.3g} | {r['new conv']:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
