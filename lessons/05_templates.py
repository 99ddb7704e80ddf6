"""Lesson 05: part templates and their priors (paper Sec. 3, Fig. 3).

What you will learn:
- an interpretable filter's n x n map should show one bump at the part, or nothing.
  The paper writes this down as n^2 + 1 templates (``ti.templates``): one positive
  template T_mu per position mu, an L1 "diamond" tau * max(1 - beta ||[i,j] - mu||_1 / n, -1)
  (tau at mu, falling to -tau far away), and one negative template T^- = -tau everywhere
  for images in which the part is absent;
- their priors (``ti.template_priors``): p(T_mu) = alpha / n^2, p(T^-) = 1 - alpha, and why
  the paper's alpha = n^2 / (1 + n^2) makes all n^2 + 1 of them equal.

Picture: 05_templates.png, all 37 templates for n = 6: T_mu drawn at grid cell mu, T^- last.

Run:  python lessons/05_templates.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["05_templates.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)

n = 6
T = ti.templates(n)  # (n*n + 1, n, n): T_mu for mu = (i, j) at k = i*n + j, then T^- at k = n*n
tau = ti.default_tau(n)
print(T.shape, T.dtype)  # (37, 6, 6) float32
print(tau)  # 0.013888888888888888   tau = 0.5 / n^2, small on purpose (lesson 07)

k = 2 * n + 3  # mu = (2, 3)
print(k, T[k, 2, 3])  # 15 0.013888889   at mu: tau
print(T[k, 2, 4], T[k, 3, 4])  # 0.0046296297 -0.0046296297   L1 distance 1: tau/3, distance 2: -tau/3
print(T[k, 0, 0], T[k, 5, 0])  # -0.013888889 -0.013888889   far corners: -tau (the floor)
print((T[k] / tau).round(2))  # the diamond in units of tau: 1 at mu, 1/3, -1/3, then -1
# [[-1.   -1.   -1.   -0.33 -1.   -1.  ]
#  [-1.   -1.   -0.33  0.33 -0.33 -1.  ]
#  [-1.   -0.33  0.33  1.    0.33 -0.33]
#  [-1.   -1.   -0.33  0.33 -0.33 -1.  ]
#  [-1.   -1.   -1.   -0.33 -1.   -1.  ]
#  [-1.   -1.   -1.   -1.   -1.   -1.  ]]
print(T[n * n].min(), T[n * n].max())  # -0.013888889 -0.013888889   T^-: -tau everywhere
# with beta = 4 the template changes by 4 tau / n = tau * 2/3 per step: only mu's neighbours
# are positive, so the "part" is about 3 cells across whatever n is (relative to n: small)
print(int((T[k] > 0).sum()))  # 5   mu and its 4 neighbours

# ---- priors ----
p = ti.template_priors(n)  # (37,): alpha / n^2 for each T_mu, then 1 - alpha for T^-
alpha = ti.default_alpha(n)
print(alpha)  # 0.972972972972973   = 36 / 37
print(p[0], p[n * n])  # 0.027027028 0.027027028   both 1 / 37
print(round(float(p.sum()), 6))  # 1.0
# alpha / n^2 = (n^2 / (1 + n^2)) / n^2 = 1 / (1 + n^2), and 1 - alpha = 1 / (1 + n^2):
# every template is equally likely a priori, which makes H(T) as large as it can be
# (log 37), so the mutual information of lesson 07 has the most room to grow.
entropy = lambda q: float(-(q * np.log(q)).sum())
print(round(entropy(p), 4), round(np.log(n * n + 1), 4))  # 3.6109 3.6109
# another alpha, say 0.5: half the mass on "part absent", the rest spread over 36 positions
p_half = ti.template_priors(n, alpha=0.5)
print(p_half[0], p_half[n * n], round(entropy(p_half), 4))  # 0.013888889 0.5 2.4849


# ---- picture: T_mu at grid cell mu, T^- after them ----
def to_image(a, scale, peak):
    """2-D array -> RGB: red > 0, white = 0, blue < 0 (|a| = peak is full colour)."""
    v = np.clip(a / peak, -1, 1)
    rgb = np.stack([1 - np.clip(-v, 0, 1), 1 - np.abs(v), 1 - np.clip(v, 0, 1)], axis=-1)
    return Image.fromarray((rgb * 255).astype(np.uint8)).resize((a.shape[1] * scale, a.shape[0] * scale),
                                                                 Image.NEAREST)


cell, gap = 10 * n, 6  # each template is 60 px square
side = n * (cell + gap) + gap
canvas = Image.new("RGB", (side + cell + 3 * gap, side + 40), "white")
draw = ImageDraw.Draw(canvas)
for kk in range(n * n + 1):
    i, j = divmod(kk, n)
    left, top = (gap + j * (cell + gap), gap + i * (cell + gap)) if kk < n * n else (side + gap, gap)
    canvas.paste(to_image(T[kk], 10, tau), (left, top))
    draw.rectangle([left, top, left + cell - 1, top + cell - 1], outline="gray")
draw.text((side + gap, cell + 2 * gap), "T^-", fill="black")
draw.text((gap, side + 6), f"n = {n}: T_mu at cell mu (red +tau, white 0, blue -tau); T^- alone at right",
          fill="black")
canvas.save(OUT / "05_templates.png")
print("saved", OUT / "05_templates.png")
