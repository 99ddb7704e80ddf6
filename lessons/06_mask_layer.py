"""Lesson 06: the mask layer (paper Sec. 3, Fig. 2).

What you will learn:
- how an interpretable filter's map is masked in the forward pass (``ti.TemplateMask``):
  find the strongest unit, mu_hat = argmax_ij x_ij, and multiply the map by the positive
  part of the template centred there, so the next layer sees only the part's
  neighbourhood, not the noise around it;
- why the mask is the template's *shape* max(T_mu_hat / tau, 0) (peak 1), as in the
  authors' code, and not the literal x * T_mu_hat, whose tau = 0.5 / n^2 would shrink
  every activation ~2 n^2 times;
- the backward pass: the mask is held constant (mu_hat is a discrete choice).

Picture: 06_mask.png, a hand-made map (a blob plus noise), the mask at its argmax, and the
masked map.

Run:  python lessons/06_mask_layer.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["06_mask.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)

# one 8x8 map after ReLU: a blob at (2, 5) plus weaker noise everywhere
n = 8
rng = np.random.default_rng(0)
ii, jj = np.mgrid[0:n, 0:n]
blob = 3.0 * np.exp(-((ii - 2) ** 2 + (jj - 5) ** 2) / 2.0)
x = (blob + 0.8 * rng.random((n, n))).astype(np.float32)[None, None]  # (B, F, n, n) = (1, 1, 8, 8)

mask_layer = ti.TemplateMask()
y = mask_layer(x)
print(y.shape)  # (1, 1, 8, 8)   the mask keeps the shape
k = int(mask_layer.mu_hat[0, 0])
print(k, divmod(k, n))  # 21 (2, 5)   mu_hat as flat index i*n + j, and as (i, j)
print(mask_layer.mask[0, 0, 1:4, 3:8])  # rows 1-3, columns 3-7: the diamond around (2, 5)
# [[0.  0.  0.5 0.  0. ]
#  [0.  0.5 1.  0.5 0. ]
#  [0.  0.  0.5 0.  0. ]]   1 at mu_hat, 0.5 at its 4 neighbours, 0 everywhere else
# with beta = 4: max(1 - 4 d / n, 0) = max(1 - d / 2, 0) at L1 distance d from mu_hat
print(int((mask_layer.mask > 0).sum()))  # 5
print(f"{x.sum():.1f} -> {y.sum():.1f}")  # 44.0 -> 7.3   the noise outside the diamond is gone
print(y[0, 0, 2, 5] == x[0, 0, 2, 5])  # True   the peak passes unchanged

# ---- why the shape, not tau * shape ----
tau = ti.default_tau(n)
T_hat = ti.templates(n)[k]  # T_mu_hat itself, values in [-tau, tau]
literal = np.maximum(x[0, 0] * T_hat, 0)  # the paper's formula taken literally
print(1 / tau)  # 128.0   = 2 n^2
print(f"{y.max():.3f} {literal.max():.4f}")  # 3.099 0.0242   128 times smaller
# Stacked after a conv, the literal mask would hand the next layer activations ~1% of
# their size (and its gradient would be as small): the authors' code uses the shape.

# ---- backward: the mask is a constant factor ----
dout = np.ones_like(y)
dx = mask_layer.backward(dout)
print(bool((dx == mask_layer.mask).all()))  # True   dL/dx = mask * dout, no gradient through mu_hat

# ---- the argmax decides: a second, stronger blob moves the mask ----
x2 = x.copy()
x2[0, 0, 6, 1] = 5.0
mask_layer(x2)
print(divmod(int(mask_layer.mu_hat[0, 0]), n))  # (6, 1)   one peak wins; the old blob is now masked out
# A silent map (all zero) picks the first index, (0, 0); multiplying zeros changes nothing.
mask_layer(np.zeros_like(x))
print(int(mask_layer.mu_hat[0, 0]))  # 0

# ---- the same on a batch of many filters: one mu_hat per (image, filter) ----
batch = rng.random((4, 16, n, n)).astype(np.float32)
print(mask_layer(batch).shape, mask_layer.mu_hat.shape)  # (4, 16, 8, 8) (4, 16)


# ---- picture ----
def to_image(a, peak, scale=24):
    """Non-negative 2-D array -> grey picture (black 0, white = peak), upscaled."""
    v = np.clip(a / peak, 0, 1)
    return Image.fromarray((v * 255).astype(np.uint8)).resize((a.shape[1] * scale, a.shape[0] * scale),
                                                               Image.NEAREST)


mask_layer(x)
panels = [("x (after ReLU)", to_image(x[0, 0], x.max())), ("mask at mu_hat", to_image(mask_layer.mask[0, 0], 1.0)),
          ("x * mask", to_image(y[0, 0], x.max()))]
side = n * 24
canvas = Image.new("RGB", (3 * side + 4 * 16, side + 40), "white")
draw = ImageDraw.Draw(canvas)
for col, (title, pic) in enumerate(panels):
    left = 16 + col * (side + 16)
    canvas.paste(pic, (left, 28))
    draw.text((left, 8), title, fill="black")
    i, j = divmod(k, n)  # outline mu_hat in each panel
    draw.rectangle([left + j * 24, 28 + i * 24, left + j * 24 + 23, 28 + i * 24 + 23], outline="red", width=2)
canvas.save(OUT / "06_mask.png")
print("saved", OUT / "06_mask.png")
