"""Lesson 11: the paper vs the authors' released code (docs/paper.md#the-authors-released-code).

What you will learn, each with a small number to look at:
1. mu_hat: the paper's argmax vs the code's rounded activation-weighted centroid
   (``ti.TemplateMask(mode="centroid")``), which lands between two parts, where nothing
   fires, and is pulled to the middle of noisy maps
   (docs/calibration.md#centre-bias-and-the-shuffled-control);
2. the mask: the code's m in [-1, 1] (no tau) vs the paper's tau-scaled template; the
   code's loss reads the negative part of m, at an effective tau of 2 / n^2;
3. Z_T: over all training images (paper) vs a log-mean-exp over the mini-batch at
   temperature 0.5 (code), so an image's push depends on its batch
   (``ti.filter_loss.authors_rule``), and how few images it singles out depends on the
   net's scale unless the temperature follows it; and its push fades as 1/epoch;
4. beta: learned per filter in the code, pulled towards clip(3 / spread, 1.5, 3); fixed
   in tinyinterp (beta = 4 in cells, or beta_c = 2 for the centroid mask).

Picture: 11_masks.png, a two-part map with both masks and the code's signed m; where
mu_hat lands on 2000 one-blob maps with weak noise.

Run:  python lessons/11_paper_vs_authors_code.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["11_masks.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)
n, rng = 8, np.random.default_rng(0)
ii, jj = np.mgrid[0:n, 0:n]

# ---- 1. argmax vs centroid on one hand-made map: two parts, at (1, 1) and (6, 5) ----
x = 3.0 * np.exp(-((ii - 1) ** 2 + (jj - 1) ** 2) / 1.5) + 2.6 * np.exp(-((ii - 6) ** 2 + (jj - 5) ** 2) / 1.5)
x = x.astype(np.float32)[None, None]  # (B, F, n, n) = (1, 1, 8, 8)
paper, code = ti.TemplateMask(mode="argmax"), ti.TemplateMask(mode="centroid")
for layer in (paper, code):
    y = layer(x)  # x * mask
    k = int(layer.mu_hat[0, 0])
    print(layer.mode, divmod(k, n), round(float(x[0, 0].flat[k]), 3), round(float(y.sum()), 2))
# argmax (1, 1) 3.0 6.08       the stronger part; the mask keeps it
# centroid (3, 3) 0.015 0.11   between the parts, where x is ~0: the mask keeps almost nothing

# the centre bias: where mu_hat lands on random non-negative maps
print("maps                      argmax in central quarter   centroid in central quarter")
blobs = rng.integers(0, n, (2000, 2))  # one blob per map, anywhere on the grid
one_blob = np.exp(-((ii - blobs[:, 0, None, None]) ** 2 + (jj - blobs[:, 1, None, None]) ** 2) / 2.0)[:, None]
cases = {"uniform noise": rng.random((2000, 1, n, n)),
         "sparse: max(N(0,1) - 2, 0)": np.maximum(rng.standard_normal((2000, 1, n, n)) - 2, 0),
         "one blob, no noise": one_blob,
         "one blob + 5% noise": one_blob + 0.05 * rng.random((2000, 1, n, n))}
where = {}  # mu_hat counts per cell, for the picture (kept from the last case)
for name, maps in cases.items():
    shares = []
    for layer in (ti.TemplateMask(mode="argmax"), ti.TemplateMask(mode="centroid")):
        layer(maps.astype(np.float32))
        units = np.stack(np.divmod(layer.mu_hat, n), axis=-1)  # (2000, 1, 2) as (row, col)
        shares.append(ti.metrics.centre_share(units, n, maps.max(axis=(2, 3)) > 0))
        where[layer.mode] = np.bincount(layer.mu_hat.ravel(), minlength=n * n).reshape(n, n)
    print(f"{name:<27} {shares[0]:.2f}                        {shares[1]:.2f}")
# uniform noise               0.25                        1.00
# sparse: max(N(0,1) - 2, 0)  0.25                        0.41
# one blob, no noise          0.24                        0.24
# one blob + 5% noise         0.24                        0.59
# A uniform argmax is in the central quarter (rows, cols 2-5) a quarter of the time. The
# centroid averages the whole map, so activation anywhere pulls it inwards: 5% noise moves
# 59% of mu_hat there. The next layer then peaks in the centre too, which location
# instability rewards (lesson 10: a fixed centre unit) with nothing tracked.

# ---- 2. the mask: tau-free shape in [-1, 1] vs the paper's tau-scaled template ----
print(float(code.signed_mask.min()), float(code.signed_mask.max()), ti.default_tau(n))  # -1.0 1.0 0.0078125
literal = np.maximum(x * ti.default_tau(n) * paper.signed_mask, 0)  # max(x o T_mu_hat, 0) as printed
print(round(float((x * paper.mask).max()), 3), round(float(literal.max()), 4))  # 3.0 0.0234   (lesson 06)
# The slopes: on linspace(-1, 1, n) one grid step is 2 / (n - 1), so the code's beta_c = 2
# is beta = 4 n / (n - 1) = 4.57 in cells, close to the paper's 4:
mu = np.array([[27]])  # (3, 3); print row 3 of each shape
print(ti.mask.template_shape(mu, n, like=x)[0, 0, 3].round(2))
# [-0.5  0.   0.5  1.   0.5  0.  -0.5 -1. ]            paper: max(1 - 4 d / 8, -1), d = |j - 3|
print(ti.mask.centroid_shape(mu, n, like=x)[0, 0, 3].round(2))
# [-0.71 -0.14  0.43  1.    0.43 -0.14 -0.71 -1.  ]    code: max(1 - 4 d / 7, -1)
# Both keep the same diamond (1 at mu_hat, ~0.5 at its 4 neighbours); they differ outside.
# The code's loss reads the signed m: s = mean_ij(x . m) counts activation outside the
# diamond negatively (here both parts: s < 0); s / a (a = 0.5) = tr(x . T) at tau = 2 / n^2, 4x the paper's:
s = float((x * code.signed_mask).mean())
print(round(s / 0.5, 4), round(float((x * (2 / n**2) * code.signed_mask).sum()), 4))  # -0.6948 -0.6948

# ---- 3. Z_T: per batch (code) vs over the data set (paper) ----
# paper: Z_T sums over all training maps, "gradually updated" (footnote 2; a running
# estimate in MutualInformationLoss(gradient="paper", logz_momentum=0.9)). code: per step,
# A = a log mean_b exp(s_b / a) over the mini-batch, a = 0.5.
strengths = np.concatenate([rng.uniform(0.0, 0.4, 8), rng.uniform(0.6, 1.0, 8)])  # a weak, a strong batch
lme = lambda v: 0.5 * np.log(np.mean(np.exp(v / 0.5)))  # noqa: E731
print(round(lme(strengths[:8]), 3), round(lme(strengths[8:]), 3), round(lme(strengths), 3))
# 0.253 0.749 0.56   weak batch, strong batch, both together ("the data set")
first = 10 * np.exp(-((ii - 3) ** 2 + (jj - 4) ** 2) / 2.0)  # one map pushed by the code's rule, in 3 batches
for companions in (0.3, 1.0, 3.0):  # 7 shifted copies of it, this much weaker or stronger
    batch = np.stack([first] + [companions * np.roll(first, b, axis=1) for b in range(1, 8)])[:, None]
    m = ti.mask.template_shape(ti.mask.argmax_positions(batch), n, like=batch)  # signed, [-1, 1]
    push = ti.filter_loss.authors_rule(batch, m, np.ones((8, 1), bool))  # dL/dx, (8, 1, 8, 8)
    print(companions, f"{np.abs(push[0]).sum():.2e}")
# 0.3 8.61e-05 / 1.0 5.82e-05 / 3.0 1.87e-05: the same map, 4.6x less push among strong ones
# The rule divides each image's e^{s/a}(s - A + a) by its batch mean, and A is the batch's;
# with the paper's dataset-level Z (and no batch-mean division) the push would not change.

# The temperature a = 0.5 is fixed in the code, so how sharply the rule picks the strongest
# images depends on the net's scale (docs/paper.md#the-rules-temperature). A batch of 8
# copies of one map at strengths 1x to 3x: the share of the whole push that the strongest
# image gets, at the code's a, with the maps 1.8x larger, and with both scaled by 1.8.
batch = np.stack([k * first for k in np.linspace(1.0, 3.0, 8)])[:, None]
m = ti.mask.template_shape(ti.mask.argmax_positions(batch), n, like=batch)
for scale, a in ((1.0, 0.5), (1.8, 0.5), (1.8, 0.9)):
    push = np.abs(ti.filter_loss.authors_rule(scale * batch, m, np.ones((8, 1), bool), temperature=a))
    print(scale, a, round(float(push[-1].sum() / push.sum()), 3))
# 1.0 0.5 0.281   the strongest of 8 takes 28% of the push (an even share: 12.5%)
# 1.8 0.5 0.404   the same maps 1.8x larger: 40%, on one image
# 1.8 0.9 0.281   the temperature scaled with them: the rule is as it was
# A net trained longer has larger maps: at the code's a it pushes harder on fewer images
# (on CUB, x10 from a 30-epoch stage-1 net overflowed); `--authors-temperature` sets a.

# The code also divides the rule by the epoch t (its 1e-5 * 0.1 / epoch; the paper's
# lambda_t ~ 1/t): epoch t pushes 1/t of the first, and T epochs push 1 + 1/2 + ... + 1/T
# first epochs' worth (docs/paper.md#the-filter-losss-decay).
first_push = np.abs(ti.filter_loss.authors_rule(batch, m, np.ones((8, 1), bool), epoch=1)).sum()
for t in (1, 8, 32):
    push = np.abs(ti.filter_loss.authors_rule(batch, m, np.ones((8, 1), bool), epoch=t)).sum()
    print(t, round(float(push / first_push), 4))
print("32 epochs:", round(sum(1 / t for t in range(1, 33)), 2), "first epochs' worth")
# 1 1.0 / 8 0.125 / 32 0.0312; 32 epochs: 4.06, half of it in the first 4
# `--no-filter-decay` (InterpretableMask(filter_decay=False)) holds t at 1. On CUB, x3 held
# for 32 epochs made the new conv track more than x10 with the decay; x10 held silenced
# most of the top conv within four epochs, and x5 held for 16 epochs ran away on one
# seed of three (its filter loss grew from epoch 7 until the net called every image one
# class): the decay is what keeps a strong push safe (studies/README.md).

# ---- 4. beta: learned in the code, fixed here ----
# The code moves each filter's slope towards beta* = clip(3 / spread, 1.5, 3), spread =
# sqrt(sum x ((i - mu_i)^2 + (j - mu_j)^2) / sum x) in cells; the diamond's positive part
# then reaches (n - 1) / (2 beta) cells from mu: a wide part gets a wide mask.
for width in (0.7, 2.5):
    blob = np.exp(-((ii - 3.5) ** 2 + (jj - 3.5) ** 2) / (2 * width**2))
    spread = np.sqrt((blob * ((ii - 3.5) ** 2 + (jj - 3.5) ** 2)).sum() / blob.sum())
    beta = float(np.clip(3 / spread, 1.5, 3))
    print(width, round(spread, 2), beta, round((n - 1) / (2 * beta), 2))
# 0.7 0.99 3.0 1.17    a peaky part: the steepest mask, 1.2 cells
# 2.5 2.74 1.5 2.33    a broad part: the widest, 2.3 cells
# tinyinterp fixes beta (TemplateMask(beta=4), or beta_c=2 with mode="centroid"): one
# moving part less; every mask of a layer has the same diamond.


# ---- picture ----
def to_image(a, lo, hi, scale=24):
    """2-D array -> grey picture (black lo, white hi), upscaled nearest."""
    v = np.clip((np.asarray(a, float) - lo) / (hi - lo), 0, 1)
    return Image.fromarray((v * 255).astype(np.uint8)).resize((n * scale, n * scale), Image.NEAREST)


top_count, centre = max(w.max() for w in where.values()), ((2, 2), (5, 5))  # the central quarter
panels = [[("x: two parts", to_image(x[0, 0], 0, x.max()), ((1, 1), (1, 1))),
           ("argmax mask (paper)", to_image(paper.mask[0, 0], 0, 1), ((1, 1), (1, 1))),
           ("centroid mask (code)", to_image(code.mask[0, 0], 0, 1), ((3, 3), (3, 3))),
           ("code's signed m: black -1, white 1", to_image(code.signed_mask[0, 0], -1, 1),
            ((3, 3), (3, 3)))],
          [("argmax: where mu_hat lands", to_image(where["argmax"], 0, top_count), centre),
           ("centroid: where mu_hat lands", to_image(where["centroid"], 0, top_count), centre)]]
side = n * 24
canvas = Image.new("RGB", (4 * side + 5 * 16, 2 * side + 88), "white")
draw = ImageDraw.Draw(canvas)
for row, items in enumerate(panels):
    for col, (title, pic, ((i0, j0), (i1, j1))) in enumerate(items):
        left, top = 16 + col * (side + 16), 24 + row * (side + 36)
        draw.text((left, top - 16), title, fill="black")
        canvas.paste(pic, (left, top))
        draw.rectangle([left + j0 * 24, top + i0 * 24, left + j1 * 24 + 23, top + i1 * 24 + 23],
                       outline="red", width=2)
note = "bottom: 2000 maps, one blob each (anywhere) + 5% noise\nred box: the central quarter; share of mu_hat"
draw.multiline_text((2 * side + 48, side + 80), note + " in it:\nargmax 0.24, centroid 0.59\n\ntop: red box = "
                    "the mask's mu_hat", fill="black", spacing=6)
canvas.save(OUT / "11_masks.png")
print("saved", OUT / "11_masks.png")
