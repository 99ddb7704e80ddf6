"""Lesson 07: the filter loss, minus the mutual information between maps and templates.

What you will learn:
- the filter loss of one filter, Loss_f = -MI(X; T) (paper Eq. 1), with the likelihood
  p(x | T) = exp(tr(x . T)) / Z_T (Eq. 2) and Z_T summed over the batch
  (``ti.MutualInformationLoss``): it is low when each image's map matches one template
  and different images match different templates;
- its value on hand-made batches: one spike at a different place per image, the same
  spike everywhere, noise, silence, and spikes in only half of the images;
- the scale: templates carry tau = 0.5 / n^2, so activations must reach ~1/tau = 2 n^2
  before the loss notices them;
- the paper's Eq. 5, -MI = -H(T) + H(T'|X) + sum_x p(T+, x) H(T+|X=x) (inter-category
  and spatial entropy), printed term by term (``mi_terms``) and checked to add up.

Picture: 07_batches.png, the five batches, one row each, with their loss.

Run:  python lessons/07_mutual_information.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["07_batches.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)

n, B, h = 6, 6, 400.0  # map side, batch size, spike height (~5 / tau)
places = [(0, 0), (1, 4), (2, 2), (3, 5), (5, 1), (4, 3)]
spikes = np.zeros((B, 1, n, n))  # (B, F, n, n), one filter
for b, (i, j) in enumerate(places):
    spikes[b, 0, i, j] = h
same = np.zeros((B, 1, n, n))
same[:, 0, 2, 2] = h  # the same spike in every image
noise = np.random.default_rng(0).random((B, 1, n, n))
noise *= h / noise.sum(axis=(2, 3), keepdims=True)  # as much activation per map as a spike
silence = np.zeros((B, 1, n, n))
half = spikes.copy()
half[3:] = 0  # images 3-5 are of another category: the filter stays silent on them
batches = {"spikes at different places": spikes, "the same spike in every image": same,
           "noise (same total)": noise, "silence": silence, "3 spikes, 3 silent": half}

loss = ti.MutualInformationLoss(n)  # priors uniform, tau = 0.5 / n^2, beta = 4
for name, x in batches.items():
    print(f"{name:30} {float(loss.forward(x)[0]):+.3f}")
# spikes at different places     -1.443    the lowest: each map points at its own template
# the same spike in every image  -0.000    identical maps carry no information about T
# noise (same total)             -0.024
# silence                        -0.000
# 3 spikes, 3 silent             -0.635
# 0 <= MI <= min(H(T), log B): with uniform priors H(T) = log 37, and the batch caps it at log 6
print(round(np.log(n * n + 1), 3), round(np.log(B), 3))  # 3.611 1.792

# ---- the scale: the loss sees tau * x ----
for height in (1, 10, 72, 400, 3000):
    print(height, round(float(loss.forward(spikes / h * height)[0]), 3))
# 1 -0.0       spikes of 1 are invisible: tr(x . T) changes by ~tau = 1/72
# 10 -0.003
# 72 -0.176    ~1/tau: the loss starts to care
# 400 -1.443
# 3000 -1.608  saturated, near -log 6 = -1.792 (why not all the way: below)

# ---- Eq. 5, term by term, for the spike batch ----
terms = loss.mi_terms(spikes)
H_T, inter, spatial = terms["H_T"][0], terms["H_Tprime_given_X"][0], terms["spatial"][0]
print(f"-H(T)             {-H_T:+.4f}")  # -3.6109   prior entropy, fixed by the priors
print(f"H(T'|X)           {inter:+.4f}")  # +0.1239   inter-category: T^- vs T+ (part absent or present)
print(f"spatial           {spatial:+.4f}")  # +2.0439   sum_x p(T+, x) H(T+ | X = x): where the part is
print(f"sum (Eq. 5)       {-H_T + inter + spatial:+.4f}")  # -1.4431
print(f"-MI (Eq. 1)       {float(loss.forward(spikes)[0]):+.4f}")  # -1.4431   the same number
print(abs(float(terms["minus_MI_eq5"][0] + terms["MI"][0])) < 1e-12)  # True
# H(T'|X) can never exceed the binary entropy of (36/37, 1/37) = 0.124: with uniform priors
# T^- holds only 1/37 of the mass, so the inter-category term is small; most of the loss
# is spatial. Silent images of another category lower H(T'|X) a little (they pick T^-),
# and a silent batch leaves the spatial term as high as it can be:
print(round(float(loss.mi_terms(half)["H_Tprime_given_X"][0]), 4))  # 0.1157
print(round(float(loss.mi_terms(silence)["spatial"][0]), 4))  # 3.4867

# Why not -log 6 exactly? Z_T sums over the batch, so p(x_b | T_k) is a softmax over the
# B images: template T_k "picks" the image whose map scores highest on it. Here every
# T_mu picks the image whose spike is nearest to mu (ties to the first image):
T = ti.templates(n, dtype=np.float64)
s = np.einsum("bij,kij->kb", spikes[:, 0], T)  # tr(x_b . T_k), (K, B)
print(s[:n * n].argmax(axis=1).reshape(n, n))  # T_mu drawn at mu: the image it picks
# [[0 0 0 1 1 1]
#  [0 0 2 1 1 1]
#  [0 2 2 2 1 3]
#  [0 2 2 5 3 3]
#  [4 4 5 5 5 3]
#  [4 4 4 5 5 3]]
# so the posterior p(T | x_2) of image 2 (spike at (2, 2)) spreads over its whole region,
# and that is the spatial entropy left in Eq. 5:
post = terms["posterior"][2, 0]  # (37,)
print(post[:n * n].reshape(n, n).round(2))
# [[0.   0.   0.06 0.   0.   0.  ]
#  [0.   0.06 0.13 0.   0.   0.  ]
#  [0.06 0.14 0.14 0.13 0.   0.  ]
#  [0.02 0.06 0.13 0.   0.   0.  ]
#  [0.   0.   0.   0.   0.   0.  ]
#  [0.   0.   0.   0.   0.   0.  ]]


# ---- picture: one row per batch ----
def to_image(a, peak, scale=12):
    v = np.clip(a / peak, 0, 1)  # black 0, white = peak
    return Image.fromarray((v * 255).astype(np.uint8)).resize((n * scale, n * scale), Image.NEAREST)


cell = n * 12 + 6
canvas = Image.new("RGB", (B * cell + 230, len(batches) * cell + 10), "white")
draw = ImageDraw.Draw(canvas)
for row, (name, x) in enumerate(batches.items()):
    peak = max(float(x.max()), 1e-9)
    for b in range(B):
        canvas.paste(to_image(x[b, 0], peak), (6 + b * cell, 6 + row * cell))
        draw.rectangle([5 + b * cell, 5 + row * cell, 6 + b * cell + n * 12, 6 + row * cell + n * 12],
                       outline="gray")
    draw.text((B * cell + 12, 6 + row * cell + 20), f"{name}\n-MI = {float(loss.forward(x)[0]):+.3f}",
              fill="black")
canvas.save(OUT / "07_batches.png")
print("saved", OUT / "07_batches.png")
