"""Lesson 09: training an ordinary and an interpretable small VGG on the toy birds.

What you will learn:
- how one training run is set up (``ti.TrainConfig``) and run (``ti.train_one``): SGD
  with momentum, a warm-up then cosine learning rate, random flips, one line per epoch;
- that the interpretable net is the ordinary one plus two mask layers
  (``interpretable=True``): the same convs, the same data order, the same seed;
- what the epoch lines mean: the task loss (cross-entropy), the filter loss (the sum of
  -MI over the filters of both masked layers, lesson 07), lambda_t (paper Sec. 5:
  lambda0 * mean max x / t, smaller every epoch) and the train/test accuracy;
- what a run folder holds (checkpoint.npz, metrics.json) and how to load a net back
  (``ti.load_run``); lesson 10 measures the nets saved here.

By default this is a quick run (32 px birds, thin convs, 6 epochs: ~10 s on a laptop
CPU), enough to see the machinery; the numbers are those of a lightly trained net. Set
TINYINTERP_LESSON_LONG=1 for the real thing (the command line's sizes: 64 px, widths
32/64/128, 12 epochs; several minutes on a CPU).

Both nets train from random weights here, to show one training run plainly. The command
line's default recipe is the paper's two-stage protocol, which the recipe study (studies/README.md)
found costs less accuracy: train the ordinary net, then fine-tune it twice for as many
epochs, once as it is (the fair baseline) and once with the masks, each started from its
weights with ``ti.TrainConfig(init_from="<run>/checkpoint.npz", lr=1e-3, warmup_epochs=0)``.

Picture: 09_curves.png, task loss, filter loss and accuracy per epoch for both nets.

Run:  python lessons/09_training.py
      TINYINTERP_LESSON_LONG=1 python lessons/09_training.py
"""
import os
from pathlib import Path

# Small matrices: a second BLAS thread costs more than it gains (training here ran several
# times slower with OpenBLAS's default threads on a busy 2-core machine). It must be set
# before NumPy loads; set OPENBLAS_NUM_THREADS in the shell to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import tinyinterp as ti

PICTURES = ["09_curves.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)
RUN = OUT / "run_09"  # one folder per net inside: run_09/ordinary, run_09/interpretable
LONG = os.environ.get("TINYINTERP_LESSON_LONG") == "1"

# ---- the settings: everything else is a TrainConfig default ----
settings = {} if LONG else dict(size=32, widths=[8, 16], top_channels=16, epochs=6, batch_size=16)
base = ti.TrainConfig(**settings)
print(base.data.endswith("toy_birds"), base.crop, base.lr, base.momentum)  # True box 0.01 0.9
# size 32 with two conv blocks: 32 -> 16 -> 8, so the top conv's maps are 8 x 8, as at
# the defaults (64 px, three blocks): the same n = 8 templates as in lessons 05-08.

# the data are loaded once and shared, so both nets see exactly the same images
ds, train, test, mean, std = ti.runs.load_data(base)
print(len(ds.class_ids), len(train), len(test), train.images.shape[1:])  # 5 200 300 (32, 32, 3)   (uint8)
print(mean.round(2), std.round(2))  # [0.53 0.53 0.45] [0.22 0.18 0.21]
# the training split's per-channel mean and std (pixels in [0, 1]): every batch is normalised with them

# ---- train both nets; train_one prints one line per epoch ----
finals = {}
for kind in ("ordinary", "interpretable"):
    cfg = ti.TrainConfig(**settings, interpretable=(kind == "interpretable"))
    metrics = ti.train_one(cfg, RUN / kind, data=(ds, train, test, mean, std))
    finals[kind] = metrics["final"]
# the last lines of the quick run, about (the last digits depend on the machine's BLAS):
#      ordinary epoch   6/6  loss 0.354  filter +0  lambda -  train 0.810  test 0.800
# interpretable epoch   6/6  loss 0.881  filter -0.0376  lambda 4.6e-05,4.2e-05  train 0.625  test 0.537

# ---- the final numbers ----
for kind, row in finals.items():
    print(f"{kind:>13}: test {row['test_acc']:.3f}  train {row['train_acc']:.3f}  "
          f"filter loss {row['filter_loss']:+.4f}  lambda {row['lambda']}")
# ordinary: test 0.800  train 0.810  filter loss +0.0000  lambda []   (no masks: nothing to log)
# interpretable: test 0.537  train 0.625  filter loss -0.0376  lambda [4.6e-05, 4.2e-05]   (top, new conv)

# How to read the filter loss: it is sum_f -MI_f over the 16 + 16 masked filters, averaged
# over the batches of the last epoch. Each -MI_f lies in [-log B, 0] = [-2.77, 0] for
# B = 16 (lesson 07), so the floor is about -89; -0.04 means the filters are still
# far from firing at one place per image. The loss also rewards plain growth of the
# activations (lesson 08), so compare it only between runs of the same kind.
print(round(2 * base.top_channels * float(np.log(base.batch_size)), 1))  # 88.7   (-89 is the floor)
# lambda: lambda0 * mean max x / t with lambda0 = 1e-4, so it falls like 1/epoch; with
# activations of order 1 the filter loss is a gentle push next to the cross-entropy.
# The masks themselves cost accuracy (the next layer sees only a diamond of each map):
# 26 points here, about 20 on real CUB birds (docs/calibration.md#what-the-masks-cost).

# ---- the run folder ----
for kind in finals:
    print(sorted(p.name for p in (RUN / kind).iterdir()))  # ['checkpoint.npz', 'metrics.json']
model, cfg, meta = ti.load_run(RUN / "interpretable")
print(cfg.interpretable, meta["epoch"], len(meta["history"]))  # True 6 6   (12 12 with LONG=1)
masks = [layer for layer in model.layers if isinstance(layer, ti.InterpretableMask)]
print(model.interpretable_indices, masks[0])
# [11, 14] InterpretableMask(16, 8, num_classes=5, lambda0=0.0001, gradient='exact')
# (with LONG=1: [16, 19] and 128 filters). The evaluation reads the ReLU outputs at those
# indices, before the masks: the maps the filters themselves produce.
reloaded = ti.predictions.accuracy(model, test, mean, std, "cpu")  # the saved weights, eval mode
print(reloaded == finals["interpretable"]["test_acc"])  # True

# ---- picture: the training curves of both nets ----
ti.curves.curves_figure(RUN).save(OUT / "09_curves.png")
print("saved", OUT / "09_curves.png", "and the run in", RUN)
