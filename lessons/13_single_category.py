"""Lesson 13: the single-category task, bird vs. not, and the negative template T^- at work.

What you will learn:
- the paper's CUB setting (Sec. 5.1, Table 5): one category. Every bird is a *positive*
  (its box crop, label 1, logistic loss on one output); a *negative* (label 0) is
  something that is not a bird. ``ti.data.load_bird_task`` takes, from each photo, the
  largest square that does not touch the bird's box (``ti.data.background_square``),
  no larger than the bird's crop; a photo the bird fills gives none. Its
  ``report["negatives"]`` says how many were made and skipped and how their size
  compares with the positives';
- T^- at work: one filter's maps over a batch of birds and backgrounds. T^- = -tau
  everywhere, so under T^- the likeliest maps are the emptiest (Eq. 2). The labels
  enter only the *gradient rules* that pick a target template (``gradient="paper"``,
  Eq. 4, and ``"authors"``, the released code's rule: the command line's bird recipe):
  a bird's map is pulled toward the diamond T_mu at its peak, a background's map is
  pushed down everywhere, toward T^-; the exact -MI (the library's default) never
  reads them. And that the push, weighted by how well T^- already fits, mostly misses
  the negative where the filter fires;
- both nets on the task (``ti.TrainConfig(task="bird")``, ``ti.train_one``), measured
  with their controls (``ti.evaluate_runs``, ``ti.evaluate.format_table``): the filters
  are measured on the birds only, the accuracy and each class's recall on all images.
  Here on the toy birds, in seconds; the command for the full CUB is printed, and when
  the folder ``TINYINTERP_DATA`` names holds ``cub200_160/`` (``python -m tinyinterp
  download-cub DIR --long-side 160`` makes one) its negatives report too (~10 s).

Picture: 13_negatives.png, toy photos with the bird's box (red) and the background
square (blue), the bird crop (label 1) and the background crop (label 0) beside each;
the last photo is one the bird fills: no negative.

Run:  python lessons/13_single_category.py
"""
import os
import time
from pathlib import Path

# Small matrices: a second BLAS thread costs more than it gains (training here ran several
# times slower with OpenBLAS's default threads on a busy 2-core machine). It must be set
# before NumPy loads; set OPENBLAS_NUM_THREADS in the shell to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["13_negatives.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)
RUN = OUT / "run_13"  # run_13/ordinary, run_13/interpretable (stage 1 in run_13_stage1)
TOY = ti.runs.TOY_BIRDS  # the bundled toy birds: 500 photos of 128 px, 5 species
CUB = ti.data.find_data("cub200_160")  # all of CUB at 160 px in $TINYINTERP_DATA, or None
started = time.time()

# ---- 1. what a negative is ----
# background_square(box, W, H): the largest square in the W x H photo that does not touch
# the box (x, y, w, h) enlarged by 5% on every side. Any square that misses the box lies
# wholly left of it, right of it, above or below it, so it is the largest square of the
# four strips beside the box, centred in its strip. Constructed photos, 200 x 100:
W, H = 200, 100
for name, box in {"bird in the left corner": (5, 10, 60, 60), "bird in the middle": (70, 20, 60, 60),
                  "bird fills the photo": (4, 3, 192, 94)}.items():
    print(f"{name:<23}", ti.data.background_square(box, W, H))
# bird in the left corner (84.0, 0.0, 184.0, 100.0)   the strip right of it, as tall as the photo
# bird in the middle      (0.0, 16.5, 67.0, 83.5)     left and right strips tie: the first wins
# bird fills the photo    None                        no square fits: no negative from this photo
print(ti.data.background_square((5, 10, 60, 60), W, H, max_side=66))  # (101.0, 17.0, 167.0, 83.0)
# load_bird_task caps the side at the bird crop's (box + 10% a side: 66 px here), so that a
# negative is never a bigger, sharper view than a positive: size and blur must not give
# the class away. It also drops squares under min_fraction = 1/4 of the photo's longer
# side (a sliver of sky is no image). A negative keeps its photo's train/test split.

ds = ti.data.load_bird_task(TOY, size=64)
print(len(ds), ds.class_names, int(ds.labels.sum()), int((ds.labels == 0).sum()))
# 996 ['not a bird', 'bird'] 500 496
neg = ds.report["negatives"]
print(neg["made"], neg["skipped_too_full"], neg["side_px_mean"], neg["positive_side_px_mean"],
      neg["side_to_positive_median"], neg["as_large_as_positive"])  # 496 4 54.5 70.1 0.839 162
# 496 of the 500 photos give a negative (4 birds fill theirs); a negative's side is 54.5 px
# of the photo on average against the bird crop's 70.1 (median ratio 0.84), and 162 reach
# the cap. Both are stretched to the same 64 px, so a negative is a slightly closer view.
print(int(ds.is_train.sum()), int((~ds.is_train).sum()))  # 399 597   (200 + 199 train, 300 + 297 test)

# ---- 2. T^- at work: one filter, three birds and three backgrounds ----
n = 8  # the maps of the nets below are 8 x 8
tau = ti.default_tau(n)  # 1/128: scores tr(x . T) need activations of ~1/tau to matter (lesson 07)
rows, cols = np.mgrid[0:n, 0:n]


def blob(i, j, height):
    return height * np.exp(-((rows - i) ** 2 + (cols - j) ** 2) / (2 * 0.8 ** 2))


def batch(height):
    rng = np.random.default_rng(0)
    maps = [blob(1, 2, height), blob(5, 5, height), blob(2, 6, height),  # birds: a part, each its place
            height / 40 * (0.5 + rng.random((n, n))),  # background: the filter hardly fires
            height / 40 * (0.5 + rng.random((n, n))),
            blob(4, 1, height)]  # background where the filter fires anyway (bark like a wing)
    return np.stack(maps)[:, None]  # (B, F, n, n) = (6, 1, 8, 8)


labels = np.array([1, 1, 1, 0, 0, 0])  # bird, bird, bird, not, not, not
what = ["bird", "bird", "bird", "background, quiet", "background, quiet", "background, firing"]
T = ti.templates(n)  # T[i*n + j] = T_mu at mu = (i, j); T[-1] = T^-
x = batch(300.0)  # ~2.3 / tau: the loss sees it clearly

# Eq. 2 for T^-: tr(x . T^-) = -tau * sum(x), so p(x_b | T^-) = exp(-tau sum x_b) / Z over
# the batch: T^- likes the emptiest maps, whatever their label.
s_neg = (x[:, 0] * T[-1]).sum(axis=(1, 2))
print(np.round(np.exp(s_neg - s_neg.max()) / np.exp(s_neg - s_neg.max()).sum(), 3))
# [0.002 0.002 0.002 0.575 0.416 0.002]   the two quiet backgrounds share T^-

exact = ti.MutualInformationLoss(n)  # gradient="exact", the library's default
print(round(float(exact.forward(x)[0]), 4))  # -1.1583
dx = exact.backward()
flipped = ti.MutualInformationLoss(n)
flipped.forward(x, 1 - labels[:, None], np.zeros(1, int))
print(np.array_equal(dx, flipped.backward()))  # True
# The exact -MI has no labels in it: T^- is one of its 65 templates, the one a silent map
# fits best, and no image is told to match it (its steps are in the first table below).

# The gradient rules that pick one target template per image read the labels. In one
# category, pass them as (B, 1) targets (1 = the filters' category) with categories (F,)
# = 0. (B,) labels would be read as class ids and compared with category 0: the
# non-birds would become the positives. InterpretableMask(num_classes=1) converts the
# (B,) 0/1 labels the trainer sets for you.
targets, categories = labels[:, None], np.zeros(1, int)


def steps(gradient, x):
    """Per image: the descent step -dLoss/dx, described by its direction and size."""
    loss = ti.MutualInformationLoss(n, gradient=gradient)
    loss.forward(x, targets, categories)
    step = -loss.backward()[:, 0]
    out = []
    for b in range(len(x)):
        d = step[b].ravel()
        peak = int(x[b, 0].argmax())  # mu_hat, row-major
        cos = [float(d @ t.ravel() / (np.linalg.norm(d) * np.linalg.norm(t))) for t in (T[peak], T[-1])]
        out.append((cos[0], cos[1], float(np.linalg.norm(d)), bool(np.ptp(d) == 0)))
    return out


for gradient in ("exact", "paper", "authors"):
    print(f"gradient={gradient!r}: image, label, cos(step, T_mu_hat), cos(step, T^-), |step|, flat")
    for b, (c_mu, c_neg, size, flat) in enumerate(steps(gradient, x)):
        print(f"  {what[b]:<19} {labels[b]}  {c_mu:+.2f}  {c_neg:+.2f}  {size:.1e}  {flat}")
# gradient='exact': image, label, cos(step, T_mu_hat), cos(step, T^-), |step|, flat
#   bird                1  +0.98  +0.84  1.2e-03  False    nearly its diamond
#   bird                1  +0.98  +0.82  1.1e-03  False
#   bird                1  +0.98  +0.84  1.2e-03  False
#   background, quiet   0  -0.84  -0.98  2.1e-03  False    nearly flat, and *up*
#   background, quiet   0  -0.83  -0.98  1.7e-03  False
#   background, firing  0  +0.98  +0.81  1.0e-03  False    treated as a bird
# gradient='paper': image, label, cos(step, T_mu_hat), cos(step, T^-), |step|, flat
#   bird                1  +1.00  +0.81  1.6e-03  False    up at its peak, down far from it: T_mu_hat
#   bird                1  +1.00  +0.80  1.5e-03  False
#   bird                1  +1.00  +0.81  1.6e-03  False
#   background, quiet   0  +0.79  +1.00  5.3e-04  True     the same at every unit, down: T^-
#   background, quiet   0  +0.81  +1.00  3.5e-04  True
#   background, firing  0  -0.81  -1.00  9.5e-06  True     flat too, but ~50x weaker, and *up*
# gradient='authors': image, label, cos(step, T_mu_hat), cos(step, T^-), |step|, flat
#   bird                1  +1.00  +0.81  7.4e-06  False    (its own scale: 1e-5 / (10 epoch))
#   bird                1  +1.00  +0.80  5.7e-06  False
#   bird                1  +1.00  +0.81  7.4e-06  False
#   background, quiet   0  +0.79  +1.00  2.1e-05  True
#   background, quiet   0  +0.81  +1.00  2.9e-06  True
#   background, firing  0  -0.81  -1.00  4.7e-14  True     nothing
# (cos(T_mu, T^-) is about 0.8 for every mu: a diamond is mostly its negative rim.)
# The exact -MI only sees how the maps differ within the batch: it sends the firing
# background toward its diamond like a bird and lifts the quiet ones. With labels, birds go
# toward their part's diamond and backgrounds flat toward T^-, as the paper says. But each
# negative's push is weighted by how well T^- already explains it (Eq. 4's
# e^{tr(x.T^-)} / Z; the rule's e^{-mean x / 0.5}): the background where the filter
# fires, the one that needs it most, gets almost nothing, and in Eq. 4 it even goes up
# (its factor tr(x.T^-) - log Z - log p(x) is negative: T^- explains it worse than the
# templates do on average). At the activations of the small nets below (peaks of 1-2 on
# the test birds) the weights are nearly equal, and the authors' rule then pushes every
# background down (the backgrounds' steps, cos with T^- and size):
for gradient in ("paper", "authors"):
    print(gradient, [f"{c_neg:+.2f} {size:.1e}" for _, c_neg, size, _ in steps(gradient, batch(1.5))[3:]])
# paper ['+1.00 9.4e-07', '+1.00 8.6e-07', '-1.00 4.4e-07']     the firing one still goes up
# authors ['+1.00 8.6e-06', '+1.00 8.5e-06', '+1.00 6.9e-06']   all down, nearly alike

# ---- 3. both nets on bird vs. not, with the controls ----
# The command line's bird recipe, shrunk to seconds: stage 1, an ordinary net trained on
# the task from random weights; stage 2, fine-tuned from it at lr 1e-3, once as it is (the
# fair baseline) and once with the masks and the bird recipe's filter loss
# (ti.recipes.recipe_mask_options("bird"): the authors' rule at multiplier 3, held at its
# first epoch's strength rather than divided by the epoch: "lambda 3,3" below). The
# command line pretrains on the species instead (--pretrain-task species); its new head
# then starts fresh (init_from copies all but a differently shaped head, and says so).
quick = dict(task="bird", size=32, widths=[16, 32], top_channels=32, batch_size=16)
stage1 = ti.TrainConfig(**quick, epochs=6)
data = ti.runs.load_data(stage1)  # the 32 px bird task, loaded once for all three nets
row = ti.train_one(stage1, OUT / "run_13_stage1", data=data, log=lambda line: None)["final"]
not_bird, bird = row["test_recall"]  # the share of each class's test images called right
print(f"stage 1: test {row['test_acc']:.3f}, birds {bird:.3f}, not {not_bird:.3f}")
# stage 1: test 0.977, birds 1.000, not 0.953
for kind in ("ordinary", "interpretable"):
    interpretable = kind == "interpretable"
    cfg = ti.TrainConfig(**quick, epochs=3, lr=1e-3, warmup_epochs=0,
                         init_from=str(OUT / "run_13_stage1" / "checkpoint.npz"),
                         interpretable=interpretable,
                         mask_options=ti.recipes.recipe_mask_options("bird") if interpretable else {})
    ti.train_one(cfg, RUN / kind, data=data)
# the epoch lines end with each class's recall on the test split; the last ones, about
# (the 2-core AMD host, 2026-12-08):
#      ordinary epoch   3/3  loss 0.019  filter +0  lambda -  train 0.997
#                           test 0.990 (birds 0.990, not 0.990)
# interpretable epoch   3/3  loss 0.197  filter -0.029  lambda 3,3  train 0.952
#                           test 0.941 (birds 0.967, not 0.916)
# The masks cost 4.9 points, most of them on the non-birds. Accuracy alone hides a net that
# calls everything a bird (300 / 597 = 0.503 here): read the recalls.

results = ti.evaluate_runs(RUN)  # each net on its own config's test split; writes evaluation.txt
print(ti.evaluate.format_table(results).split("\n\nreference")[0])
ref = results["interpretable"]["reference"]
print(round(ref["random_argmax"], 3), round(ref["fixed_unit_centre"], 3))  # 0.159 0.044
# net            layer    acc  instab.  control  ratio  centre  border  <0.8x ctl  <0.9x ctl   dist  ring  dropped
# ordinary       top    0.990    0.122    0.122  0.999    0.45    0.33       0/32       1/32      -     0        0
# ordinary       new    0.990    0.103    0.107  0.958    0.46    0.25       0/32       6/32      -     0        0
# interpretable  top    0.941    0.121    0.121  0.995    0.45    0.34       0/32       3/32      -     0        0
# interpretable  new    0.941    0.092    0.094  0.980    0.63    0.08       0/32       3/32      -     0        0
# (about: the last digits depend on the machine's BLAS; then the notes on acc, each
# class's recall.) And two reference values on the same birds: a random argmax 0.159,
# a filter fixed at the centre unit 0.044.
# How to read it (lesson 10 for the metric): the filters are measured on the 300 test
# birds only (a background has no head), the accuracy on all 597 images.
# - instab. vs control: the interpretable new conv's 0.092 looks better than the
#   baseline's 0.103, but its shuffled control is as low (ratio 0.98): its positions do
#   not follow a part, they are merely packed together;
# - centre: 0.63 of its argmaxes sit in the central quarter (0.25 for a uniform argmax),
#   and a filter fixed at the centre unit scores 0.044 with no network at all: lower
#   instability here is centre bias, the mask's doing;
# - border: the share on the map's outer ring (0.44 for a uniform argmax on this 8 x 8
#   map). A filter that fires on the zero padding, e.g. the crop's edge above the head,
#   sits there: it can follow a part's column without sitting on the part. Here the
#   interpretable new conv leaves the ring (0.08): the other side of its centre bias;
# - <0.8x ctl: filters clearly below their own control, the only ones that track a part:
#   none in any layer (1-6 below 0.9x in each): about what chance gives among 32;
# - dist: for the tracking filters, their mean distance to the part they follow; "-"
#   when there are none. Near the landmark oracle's distance: on the part; farther: it
#   follows the part from an offset (a filter of a wing's edge that tracks the head);
# - ring: how many of the tracking filters put at least half of their own top images'
#   argmaxes on the outer ring: they follow a part's row or column at the padded edge
#   (the top conv on CUB, docs/calibration.md#the-papers-own-task-bird-vs-not: the
#   crop's top edge straight above the head).
# On the toy birds at 32 px, 9 epochs in all, this is machinery, not a result.
#
# The real measurement is the paper's Table 5 on all of CUB (paper: ordinary 0.14-0.15,
# interpretable 0.065-0.076), with its 5,794 test birds so that a filter's top 100 images
# are selective. Training it takes over an hour on a 2-core CPU, far too long for a lesson
# (the README's command; --eval-every 4 tests after every fourth epoch only):
print("python -m tinyinterp train --task bird --data ~/data/cub200_160 --epochs 14 "
      "--finetune-epochs 20 --eval-every 4 --out runs/cub_bird")
# (python -m tinyinterp download-cub ~/data --long-side 160 writes ~/data/cub200_160, all of
# CUB at 160 px; any folder in the CUB-200-2011 layout does.) The run ends with
# the same table for both nets on the full test split (python -m tinyinterp evaluate
# runs/cub_bird prints it again). Where that folder is here, its negatives:
if CUB is not None:
    full = ti.data.load_bird_task(CUB, size=32).report["negatives"]
    print(full["made"], full["skipped_too_full"], full["side_px_mean"], full["positive_side_px_mean"],
          full["side_to_positive_median"])  # 7095 4693 54.1 79.1 0.707
    # Real birds often fill their photo: 4,693 of 11,788 photos give no negative, so the
    # full task has 11,788 birds against 7,095 backgrounds (the toys: 4 of 500 skipped),
    # each about 0.7 of its bird crop's side.
else:
    print("(set TINYINTERP_DATA to a folder holding cub200_160/ to see the full CUB's negatives)")

# ---- 4. picture: photos, their bird crop and their background crop ----
boxes = {int(r[0]): tuple(map(float, r[1:])) for r in
         (line.split() for line in (TOY / "bounding_boxes.txt").read_text().splitlines() if line.strip())}
paths = {int(r[0]): r[1] for r in
         (line.split() for line in (TOY / "images.txt").read_text().splitlines() if line.strip())}
with_neg = set(ds.image_ids[ds.labels == 0].tolist())
chosen = [i for i in sorted(boxes) if i in with_neg][:3] + [min(set(boxes) - with_neg)]
print(chosen)  # [1, 2, 3, 60]   the last photo gave no negative
CELL = 128
tiles, names = [], []
for img_id in chosen:
    photo = Image.open(TOY / "images" / paths[img_id]).convert("RGB")
    x0, y0, w, h = boxes[img_id]
    region = (max(x0 - 0.1 * w, 0), max(y0 - 0.1 * h, 0),
              min(x0 + 1.1 * w, photo.width), min(y0 + 1.1 * h, photo.height))  # the bird crop
    pos_side = ((region[2] - region[0]) * (region[3] - region[1])) ** 0.5
    square = ti.data.background_square(boxes[img_id], photo.width, photo.height, max_side=pos_side)
    if square is not None and square[2] - square[0] < 0.25 * max(photo.width, photo.height):
        square = None  # too small: load_bird_task skips it (min_fraction)
    draw = ImageDraw.Draw(photo)
    draw.rectangle((x0, y0, x0 + w, y0 + h), outline=(230, 30, 30), width=2)
    if square is not None:
        draw.rectangle(square, outline=(40, 110, 255), width=2)
    tiles.append(photo.resize((CELL, CELL)))
    names.append(f"photo {img_id}")
    for label in (1, 0):
        k = np.flatnonzero((ds.image_ids == img_id) & (ds.labels == label))
        crop = Image.fromarray(ds.images[k[0]]).resize((CELL, CELL), Image.NEAREST) if len(k) \
            else Image.new("RGB", (CELL, CELL), (225, 225, 225))
        tiles.append(crop)
        names.append(("bird, 1" if label else "not a bird, 0") if len(k) else "no negative")
picture = ti.drawing.grid(tiles, cols=3, labels=names,
                            title="bird vs. not: positives and negatives\n"
                                  "red: the bird's box; blue: the largest square clear of it (64 px crops)")
picture.save(OUT / "13_negatives.png")
print("saved", OUT / "13_negatives.png", "and the runs in", RUN)
print(f"{time.time() - started:.0f} s")  # 21 s   (a busy 2-core machine; ~10 s without the full CUB)
