"""Lesson 08: the exact gradient of the filter loss, and the paper's Eq. 4 beside it.

What you will learn:
- the exact gradient of Loss_f = -MI (Z_T over the batch), written out from the
  scores s_bk = tr(x_b . T_k): with q_bk = p(x_b | T_k), r_b = p(x_b),
  g_bk = p_k (log q_bk - log r_b),
      dMI/ds_bk = q_bk (g_bk - sum_b' q_b'k g_b'k),   dLoss/dx_b = -sum_k dMI/ds_bk T_k,
  and checked against central differences;
- the paper's Eq. 4 (``gradient="paper"``) and its three differences from it:
  1. Z_T is held fixed, which drops the  - sum_b' q_b'k g_b'k  term;
  2. only one target template is kept: T_mu_hat for images of the filter's category,
     T^- for the others;
  3. the sign: Eq. 4 as printed is dMI/dx (Z fixed), the gradient of MI, not of the
     loss -MI: gradient descent along it would *raise* the loss;
- how far apart they are: cosine similarities at a few activation scales.

Run:  python lessons/08_filter_loss_gradient.py
"""
import numpy as np

import tinyinterp as ti

PICTURES = []  # this lesson only prints
n, B = 6, 8
T = ti.templates(n, dtype=np.float64)  # (37, 6, 6), T^- last
p = ti.template_priors(n, dtype=np.float64)  # (37,), uniform 1/37


def maps(scale, seed=0):
    """B maps of one filter, (B, 1, n, n): a blob at a random place, a little noise, times scale."""
    rng = np.random.default_rng(seed)
    ii, jj = np.mgrid[0:n, 0:n]
    x = 0.2 * rng.random((B, 1, n, n))
    for b in range(B):
        i, j = rng.integers(0, n, 2)
        x[b, 0] += np.exp(-((ii - i) ** 2 + (jj - j) ** 2))
    return scale * x


def score_gradient(x, fixed_z=False):
    """dMI/ds_bk (B, K) from the formulas above; fixed_z drops the Z_T term."""
    s = np.einsum("bij,kij->bk", x[:, 0], T)  # s_bk = tr(x_b . T_k), (B, K)
    log_q = s - np.logaddexp.reduce(s, axis=0, keepdims=True)  # Eq. 2, Z_k = sum_b exp(s_bk)
    log_r = np.logaddexp.reduce(log_q + np.log(p), axis=1, keepdims=True)  # log p(x_b), (B, 1)
    q, g = np.exp(log_q), p * (log_q - log_r)
    return q * g if fixed_z else q * (g - (q * g).sum(axis=0, keepdims=True))


def loss_gradient(dmi_ds):
    """dLoss/dx_b = -sum_k dMI/ds_bk T_k: (B, K) -> (B, 1, n, n)."""
    return -np.einsum("bk,kij->bij", dmi_ds, T)[:, None]


def cos(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- 1. the exact gradient, three ways ----
x = maps(100.0)  # float64; activations ~100, i.e. ~1/tau = 72: the loss is neither flat nor saturated
loss = ti.MutualInformationLoss(n)  # gradient="exact" is the default
print(round(float(loss.forward(x)[0]), 4))  # -0.6237
dx = loss.backward()  # (B, F, n, n), d(sum_f Loss_f)/dx
print(dx.shape)  # (8, 1, 6, 6)
print(f"{np.abs(dx - loss_gradient(score_gradient(x))).max():.0e}")  # ~7e-19   the library is the formula
# central differences; the loss sees tau * x, so a step of 1e-3 in x is ~1e-5 there
numeric = ti.numerical_gradient(lambda: float(loss.forward(x).sum()), x, eps=1e-3)
print(f"{ti.relative_error(dx, numeric)[0]:.0e}")  # ~4e-08   far below the 1e-6 tolerance

# ---- 2. the paper's gradient ----
paper = ti.MutualInformationLoss(n, gradient="paper")
print(round(float(paper.forward(x)[0]), 4))  # -0.6237   the same loss value; only backward differs
dx_paper = paper.backward()
numeric_paper = ti.numerical_gradient(lambda: float(paper.forward(x).sum()), x, eps=1e-3)
print(f"{ti.relative_error(dx_paper, numeric_paper)[0]:.0e}")  # 1e+00   not the gradient of -MI
# it is differences 1 + 2: the Z-fixed gradient, keeping only the term of T_hat; with no
# labels every image counts as the filter's category, so T_hat = T_mu_hat, mu_hat = argmax x_b
k_hat = x[:, 0].reshape(B, -1).argmax(axis=1)  # (B,)
coef = score_gradient(x, fixed_z=True)[np.arange(B), k_hat]  # dMI/ds at T_hat, (B,)
only_t_hat = -(coef[:, None, None] * T[k_hat])[:, None]
print(f"{np.abs(dx_paper - only_t_hat).max():.0e}")  # ~4e-19   the same numbers

# ---- 3. how far apart, as the activations grow ----
print("scale   -MI    cos(exact, Z fixed)  cos(Z fixed, T_hat only)  cos(exact, paper)")
for scale in (1.0, 10.0, 100.0, 300.0, 1000.0):
    xs = maps(scale)
    value = float(loss.forward(xs)[0])
    exact = loss.backward()
    paper.forward(xs)
    fixed = loss_gradient(score_gradient(xs, fixed_z=True))
    print(f"{scale:6g} {value:6.3f}   {cos(exact, fixed):+.2f}"
          f"                {cos(fixed, paper.backward()):+.2f}"
          f"                   {cos(exact, paper.backward()):+.2f}")
# scale   -MI    cos(exact, Z fixed)  cos(Z fixed, T_hat only)  cos(exact, paper)
#      1 -0.000   +1.00                +0.49                   +0.47
#     10 -0.009   +0.98                +0.66                   +0.48
#    100 -0.624   +0.45                +0.91                   +0.46
#    300 -1.350   +0.08                +0.82                   +0.12
#   1000 -1.636   +0.16                +0.76                   +0.11
# Small activations: q is nearly uniform, the Z term is tiny, and keeping one template loses
# half the direction. Large activations (the regime Eq. 4 argues from, "after initial
# learning episodes"): T_hat dominates the Z-fixed sum, but with Z over the batch the Z
# term is no longer small, and the exact gradient points elsewhere.

# -MI itself falls as all activations grow (column 2): firing harder lowers the loss.
# (MutualInformationLoss(..., scale_normalise=True), not in the paper, removes that.)

# difference 3, the sign: Eq. 4 as printed (its first line) is the Z-fixed dMI/dx, which
# points up MI, i.e. *down* the loss -MI: subtracting it, as gradient descent does, would
# raise the loss. paper mode flips it. At scale 10, where Z fixed is nearly exact:
x10 = maps(10.0)
loss.forward(x10)
eq4_as_printed = -loss_gradient(score_gradient(x10, fixed_z=True))  # dMI/dx, Z fixed
print(round(cos(loss.backward(), eq4_as_printed), 2))  # -0.98

# ---- 4. images of another category: T^- moves every pixel alike ----
labels, categories = np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0])  # the filter serves class 0
paper.forward(x, labels, categories)
dx_labels = paper.backward()
print(np.unique(dx_labels[5].round(15)).size)  # 1   one value on all 36 pixels of image 5
# T^- is flat: it can only raise or lower a whole map, never move its peak. The exact
# gradient of -MI does not look at labels at all, and for image 5 it is not flat:
print(np.unique(dx[5].round(15)).size > 1)  # True
