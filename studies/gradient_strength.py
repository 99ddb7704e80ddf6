"""How strong is each filter loss against the task loss? (studies/README.md, the recipe study)

Loads a trained ordinary net, switches the masks on with each recipe's filter loss, runs
one training batch (epoch 1, so lambda_t = lambda0 * mean max x) and prints, for the top
conv's and the new conv's mask, the mean |gradient| at the mask input from the task loss
(through the mask) and from lambda * filter loss, and their ratio::

    python -m tinyinterp train --protocol scratch --nets ordinary --no-report --out runs/strength
    python studies/gradient_strength.py runs/strength/ordinary

The study's strengths were chosen with it: a ratio of about 1.5-5 at the top conv in epoch 1.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from tinyinterp.losses import SoftmaxCrossEntropy
from tinyinterp.runs import build_model, init_weights_from, load_data, load_run
from tinyinterp.train import interpretable_layers

VARIANTS = {
    "exact, lambda0 1e-4 (library default)": {},
    "exact, lambda0 1e-2": {"lambda0": 1e-2},
    "exact, lambda0 1": {"lambda0": 1.0},
    "scale-normalised, lambda0 1e-4": {"scale_normalise": True},
    "scale-normalised, lambda0 1e-3": {"scale_normalise": True, "lambda0": 1e-3},
    "authors' rule, lam 1": {"gradient": "authors"},
    "authors' rule, lam 10": {"gradient": "authors", "lam": 10.0},
}


def strengths(run, options, batch_size=32, seed=0):
    """[(task |grad|, filter |grad|)] per mask layer, bottom to top."""
    ordinary, cfg, _ = load_run(run)
    _, train, _, mean, std = load_data(cfg)
    batch = next(train.batches(batch_size, seed=(seed, 0), shuffle=True, flip=True, mean=mean, std=std))
    cfg.interpretable, cfg.mask_options = True, options
    model = build_model(cfg, ordinary.num_classes)
    model.fuse = False  # the backward below runs layer by layer: no ReLU fused into a conv
    init_weights_from(model, Path(run) / "checkpoint.npz")
    for layer in interpretable_layers(model):
        layer.set_labels(batch["labels"])
        layer.epoch = 1
    criterion = SoftmaxCrossEntropy()
    criterion.forward(model.forward(batch["x"]), batch["labels"])
    grad, found = criterion.backward(), []
    for layer in reversed(model.layers):  # Sequential.backward, with the two parts apart
        if layer in interpretable_layers(model):
            task = layer.template_mask.backward(grad)
            filt = layer.filter_loss.backward(layer.lam_values)
            found.append((float(np.abs(task).mean()), float(np.abs(filt).mean())))
            grad = task + filt
        else:
            grad = layer.backward(grad)
    return found[::-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="folder of a trained ordinary net (holds checkpoint.npz)")
    args = p.parse_args(argv)
    print(f"{'recipe':40s} {'top conv: task, filter, ratio':>34s} {'new conv: task, filter, ratio':>34s}")
    for name, options in VARIANTS.items():
        cells = [f"{t:9.2e} {f:9.2e} {f / t:8.3g}" for t, f in strengths(args.run, options)]
        print(f"{name:40s} " + "   ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
