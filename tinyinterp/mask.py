"""TemplateMask: the forward-pass mask of an interpretable filter (paper Sec. 3, Fig. 2).

For each feature map x (n x n, after ReLU) the layer picks the part position mu_hat and
multiplies x by a non-negative L1 "diamond" centred there, so that the next layer only
sees activation around the part. Shapes: (B, F, n, n) in and out.

Two ways to pick mu_hat:

- ``mode="argmax"`` (the paper, Sec. 3): mu_hat = argmax_ij x_ij, ties to the first
  index in row-major order; the mask is max(T_mu_hat / tau, 0), i.e.
  max(1 - beta * ||[i,j] - mu_hat||_1 / n, 0): the template's *shape*, peak 1
  (docs/paper.md#decision-4-the-mask).
- ``mode="centroid"`` (the authors' released code, not the paper: getMu.m with
  IsUseMax=false, getMask.m): mu_hat is the activation-weighted centroid rounded to the
  grid, and the mask is max(m, 0) with m = max(1 - beta_c * (|u - mu_u| + |v - mu_v|), -1)
  on linspace(-1, 1, n) coordinates u, v. One grid step is 2 / (n - 1) there, so in cell
  units m = max(1 - (2 beta_c / (n - 1)) ||.||_1, -1): beta_c = 2 is the paper's
  beta = 4 n / (n - 1), about 4 (4.57 at n = 8; docs/paper.md#the-mask-a-rounded-centroid).
  The code learns beta_c per channel; here it is fixed unless the layer is given
  per-channel slopes (``channel_beta``, learned by :func:`beta_target`).

Learned slopes (the authors' code, add_block_mask.m and our_vl_simplenn.m; not in the
paper): each channel f has its own beta_c[f], starting at 2, and after every training
step it moves toward clip(3 / sigma_bar_f, 1.5, 3), where sigma_bar_f is the spread of
the filter's activation about its centroid, in map cells, averaged over the images of
its category weighted by the filter's masked strength. A filter whose activation is
compact gets a sharp mask, one whose activation is spread out a wide one. In the
argmax mode the same beta_c sets the template's slope: beta = beta_c * 2 n / (n - 1).

Why the shape and not the literal x * T_mu_hat: the paper writes x_masked =
max(x o T_mu_hat, 0) with T's values scaled by tau = 0.5 / n^2. Multiplying by tau
shrinks every activation about 2 n^2 times (128x at n = 8) and starves the next layer
of signal; the authors' code applies the tau-free mask, and so do we.

The mask is held constant in backward: mu_hat is a discrete choice, so no gradient
flows through it (docs/paper.md#decision-4-the-mask).

Inner parts (``inner=True``, argmax mode; ours, not the paper's): mu_hat is the argmax
over the cells off the map's outer ring, so the mask, and the authors' rule that reads
it, never centre a part on the ring, where at 64 px the box crop's edge lies
(docs/paper.md#inner-parts).
"""
import numpy as np

from ._checks import check_array
from .backend import get_array_module
from .layers import Layer
from .templates import BETA, templates

BETA_CENTROID = 2.0  # initial per-channel slope "alphaInit" in add_block_mask.m (authors' code)
CENTROID_SUM_FLOOR = 1e-9  # sumX = max(sum(x), 0.000000001), getMu.m (authors' code)
MODES = ("argmax", "centroid")


# ---- the paper: argmax position, template shape ----

def argmax_positions(x, inner=False):
    """mu_hat = argmax_ij x_ij per map, as the flat index k = i*n + j (first on ties).

    ``inner``: the argmax over the map's inner (n - 2) x (n - 2) cells only, off its outer
    ring (a lever of ours, not the paper's: a part position is never on the ring; ties
    to the first inner cell in row-major order). Needs n >= 3.

    Args: x (B, F, n, n). Returns: (B, F) integer array, flat indices into the n x n map.
    """
    B, F, n, _ = x.shape
    if not inner:
        return x.reshape(B, F, n * n).argmax(axis=2)
    if n < 3:
        raise ValueError(f"argmax_positions: a {n}x{n} map has no cell off its outer ring")
    m = n - 2
    k = x[:, :, 1:-1, 1:-1].reshape(B, F, m * m).argmax(axis=2)
    return (k // m + 1) * n + (k % m + 1)


def template_shape(mu_hat, n, beta=BETA, like=None):
    """T_mu_hat / tau = max(1 - beta * ||[i,j] - mu_hat||_1 / n, -1), values in [-1, 1].

    Args: mu_hat (B, F) flat indices; ``like`` fixes module and dtype.
    Returns: (B, F, n, n), the signed template shape at each map's mu_hat.
    """
    shapes = templates(n, tau=1.0, beta=beta, like=like)  # tau = 1: the shape exactly
    return shapes[mu_hat]


# ---- the authors' code: centroid position, mask on [-1, 1] coordinates ----

def centroid_positions(x):
    """Activation-weighted centroid, rounded to the grid (authors' getMu.m).

    Rounding is MATLAB's round (half away from zero); the centroid is >= 0, so that is
    floor(c + 0.5). An all-zero map gives centroid 0, i.e. the corner (0, 0), as in the
    code.

    Args: x (B, F, n, n). Returns: (B, F) flat indices k = i*n + j.
    """
    xp = get_array_module(x)
    B, F, n, _ = x.shape
    grid = xp.arange(n, dtype=x.dtype)
    total = xp.maximum(x.sum(axis=(2, 3)), CENTROID_SUM_FLOOR)  # (B, F)
    ci = (x.sum(axis=3) * grid).sum(axis=2) / total  # row centroid (B, F)
    cj = (x.sum(axis=2) * grid).sum(axis=2) / total  # column centroid (B, F)
    mu_i = xp.clip(xp.floor(ci + 0.5), 0, n - 1).astype(np.int64)
    mu_j = xp.clip(xp.floor(cj + 0.5), 0, n - 1).astype(np.int64)
    return mu_i * n + mu_j


def centroid_shape(mu_hat, n, beta_c=BETA_CENTROID, like=None):
    """The code's mask m = max(1 - beta_c (|u - mu_u| + |v - mu_v|), -1) (getMask.m).

    u, v lie on linspace(-1, 1, n), so one grid step is 2 / (n - 1).

    Args: mu_hat (B, F) flat indices; ``like`` fixes module and dtype; beta_c a number
        or one per channel, (F,).
    Returns: (B, F, n, n), signed, values in [-1, 1].
    """
    xp = get_array_module(like)
    coord = xp.linspace(-1.0, 1.0, n).astype(like.dtype)  # (n,)
    mu_u = coord[mu_hat // n][..., None, None]  # (B, F, 1, 1)
    mu_v = coord[mu_hat % n][..., None, None]
    l1 = xp.abs(coord[:, None] - mu_u) + xp.abs(coord[None, :] - mu_v)  # (B, F, n, n)
    return xp.maximum(1 - _per_channel(beta_c, xp) * l1, -1).astype(like.dtype)


def _per_channel(beta, xp):
    """A number as it is; an (F,) array of per-channel slopes as (F, 1, 1), to broadcast
    against (B, F, n, n)."""
    return beta if xp.ndim(beta) == 0 else xp.asarray(beta).reshape(-1, 1, 1)


def channel_template_shape(mu_hat, n, beta_c, like):
    """The argmax mode's template shape with one slope per channel: max(1 - beta_f
    ||[i,j] - mu_hat||_1 / n, -1) with beta_f = beta_c[f] * 2 n / (n - 1), the paper's
    slope that matches the code's beta_c (module docstring)."""
    xp = get_array_module(like)
    cells = xp.arange(n, dtype=like.dtype)
    l1 = xp.abs(cells[:, None] - (mu_hat // n)[..., None, None]) \
        + xp.abs(cells[None, :] - (mu_hat % n)[..., None, None])  # (B, F, n, n), in cells
    beta = _per_channel(beta_c, xp) * (2.0 * n / (n - 1))
    return xp.maximum(1 - beta * l1 / n, -1).astype(like.dtype)


# ---- learned slopes: the target of each channel's beta_c (authors' code) ----

BETA_TARGET_NUMERATOR = 3.0  # beta=3 in our_vl_simplenn.m: target = beta / sigma_bar
BETA_TARGET_RANGE = (1.5, 3.0)  # max(min(beta ./ tmp, 3.0), 1.5)


def activation_spread(x, centroids=None):
    """sqrtvar of getMu.m: per map, the activation-weighted root mean squared distance, in
    cells, of the map's units from its rounded centroid (``centroids``, flat indices,
    when already computed). (B, F, n, n) -> (B, F)."""
    xp = get_array_module(x)
    B, F, n, _ = x.shape
    mu = centroid_positions(x) if centroids is None else centroids
    cells = xp.arange(n, dtype=x.dtype)
    d2 = (cells[:, None] - (mu // n)[..., None, None]) ** 2 \
        + (cells[None, :] - (mu % n)[..., None, None]) ** 2  # (B, F, n, n)
    total = xp.maximum(x.sum(axis=(2, 3)), CENTROID_SUM_FLOOR)
    return xp.sqrt((d2 * x).sum(axis=(2, 3)) / total)


def beta_target(x, signed_mask, positives, beta_c, centroids=None):
    """Where each channel's slope moves: clip(3 / sigma_bar_f, 1.5, 3), with

        strength[b, f] = mean_ij x[b, f] * m[b, f]       (m the signed mask)
        sigma_bar_f    = sum_b strength sqrtvar / sum_b strength, over the images b of
                         filter f's category (``positives``, (B, F) 0/1).

    As in the code, the weights are taken as they come: a strength can be negative (m is
    -1 far from the peak), so with mixed signs sigma_bar can be anything, a negative one
    sending the target to 1.5. 3 / sigma_bar is computed as 3 * sum(strength) /
    sum(strength sqrtvar); where that denominator is 0 (all activation on one unit, or
    none) the target is 3, as MATLAB gives (3 / 0 = inf, and its min ignores the NaN of
    0 / 0). A channel with no image of its category in the batch keeps its slope (our
    choice; the code's single-category batches always have some). Returns (F,) in
    beta_c's dtype.
    """
    xp = get_array_module(x)
    strength = (x * signed_mask).mean(axis=(2, 3)) * positives  # (B, F)
    weight = strength.sum(axis=0)
    spread = (strength * activation_spread(x, centroids)).sum(axis=0)
    inverse = BETA_TARGET_NUMERATOR * weight / xp.where(spread != 0, spread, 1)  # 3 / sigma_bar
    target = xp.where(spread != 0, xp.clip(inverse, *BETA_TARGET_RANGE), BETA_TARGET_RANGE[1])
    return xp.where(positives.sum(axis=0) > 0, target, beta_c).astype(beta_c.dtype)


# ---- the layer ----

class TemplateMask(Layer):
    """x_masked = x * max(shape_mu_hat, 0) per map
    (paper Sec. 3; docs/paper.md#decision-4-the-mask).

    After forward:
        ``mu_hat`` (B, F) int: the chosen position, flat k = i*n + j;
        ``signed_mask`` (B, F, n, n): T_mu_hat / tau (argmax) or the code's m (centroid),
        values in [-1, 1] (the authors' gradient rule reads the negative part);
        ``mask`` (B, F, n, n): max(signed_mask, 0), what forward and backward multiply by.
    """

    def __init__(self, beta=BETA, mode="argmax", beta_c=BETA_CENTROID, inner=False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"TemplateMask: mode must be one of {MODES}, got {mode!r}")
        if inner and mode != "argmax":
            raise ValueError("TemplateMask: inner=True picks the argmax off the outer ring; "
                             "the centroid mode has no argmax")
        self.beta, self.mode, self.beta_c, self.inner = beta, mode, beta_c, inner
        self.channel_beta = None  # (F,) learned slopes beta_c, in either mode (module docstring)
        self.mu_hat = self.signed_mask = self.mask = None

    def forward(self, x):
        check_array(repr(self), x, 4)
        xp = get_array_module(x)
        n = x.shape[2]
        if x.shape[3] != n:
            raise ValueError(f"{self!r}: feature maps must be square, got shape {tuple(x.shape)}")
        learned = self.channel_beta
        if self.mode == "argmax":
            self.mu_hat = argmax_positions(x, self.inner)
            self.signed_mask = template_shape(self.mu_hat, n, self.beta, like=x) if learned is None \
                else channel_template_shape(self.mu_hat, n, learned, like=x)
        else:
            self.mu_hat = centroid_positions(x)
            self.signed_mask = centroid_shape(self.mu_hat, n, self.beta_c if learned is None else learned,
                                              like=x)
        self.mask = xp.maximum(self.signed_mask, 0)
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask  # mask held constant: no gradient through mu_hat

    def __repr__(self):
        if self.mode == "argmax":
            return f"TemplateMask(beta={self.beta}" + (", inner=True)" if self.inner else ")")
        return f"TemplateMask(mode='centroid', beta_c={self.beta_c})"
