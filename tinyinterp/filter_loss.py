"""The filter loss Loss_f = -MI(X; T) (paper Eq. 1-7) and the filter -> category map.

Notation (docs/paper.md#notation): feature maps x_b, b = 1..B, of F filters,
shape (B, F, n, n); templates T_k, k = 0..n^2 (T^- last) with priors p_k. Per filter:

    s_bk = tr(x_b . T_k)                        the template score (Eq. 2's exponent)
    q_bk = exp(s_bk) / Z_k,  Z_k = sum_b exp(s_bk)   = p(x_b | T_k), Eq. 2, Z over the batch
    r_b  = sum_k p_k q_bk                       = p(x_b)
    MI   = sum_k p_k sum_b q_bk (log q_bk - log r_b)    Eq. 1

Everything is computed from log q and log r (logsumexp), so the loss stays finite for
activations in the hundreds, even in float32. The loss is per filter, shape (F,), in
nats, and lies in [-min(H(T), log B), 0].

Gradient modes of :class:`MutualInformationLoss`:

- "exact": the true gradient of -MI with Z over the batch
  (docs/paper.md#decision-5-the-exact-gradient).
- "paper": Eq. 4 (docs/paper.md#decision-6-the-papers-gradient), a surrogate, not the
  gradient of -MI.
- "authors": the released MATLAB code's update rule (docs/paper.md#the-update-rule), a
  heuristic that is the gradient of no loss at all.
"""
import math

import numpy as np

from ._checks import check_array, check_same_device
from .backend import get_array_module, to_device
from .mask import argmax_positions, template_shape
from .templates import BETA, default_tau, template_log_priors, templates

GRADIENTS = ("exact", "paper", "authors")
SCALE_GRADIENTS = ("frozen", "exact")
# floor of the normaliser c: the stable run in docs/calibration.md#the-scale-normalised-loss
MIN_SCALE = 0.1
CATEGORY_MOMENTUM = 0.9  # sliceMag EMA, our_cnn_train.m:370-392 (authors' code)
AUTHORS_TEMPERATURE = 0.5  # alpha = 0.5 in our_vl_simplenn.m:269 (not the paper's alpha)
AUTHORS_STEP = 1e-5  # the 0.00001 * w_pos / w_neg factor, our_vl_simplenn.m:306, 318
AUTHORS_MAG = 0.1  # mag = 0.1 in code/tool/nets/vgg_vd_16.m; the rule is scaled by mag / epoch


# ---- the functional core (per filter, batched over F) ----

def logsumexp(a, axis, keepdims=False):
    """log sum exp(a) along ``axis``, shifted by the max so nothing overflows (for Eq. 1, 2)."""
    xp = get_array_module(a)
    m = a.max(axis=axis, keepdims=True)
    out = m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))
    return out if keepdims else out.squeeze(axis)


def scores(x, T):
    """s_bk = tr(x_b . T_k) = sum_ij x_bij t_kij (Eq. 2). x (B, F, n, n), T (K, n, n) -> (B, F, K)."""
    B, F, n, _ = x.shape
    K = T.shape[0]
    # one 2-D product over all B*F maps: NumPy runs (B, F, n*n) @ (n*n, K) as B products
    # of F rows each, 5-10x slower for a batch of 32 on the Intel host
    return (x.reshape(B * F, n * n) @ T.reshape(K, n * n).T).reshape(B, F, K)


def log_marginal(log_q, log_p):
    """log r_b = log sum_k p_k q_bk = log p(x_b) (Eq. 1). (B, F, K) -> (B, F)."""
    return logsumexp(log_q + log_p, axis=2)


def mutual_information(log_q, log_r, log_p):
    """MI = sum_k p_k sum_b q_bk (log q_bk - log r_b) (Eq. 1), per filter: (F,)."""
    xp = get_array_module(log_q)
    q = xp.exp(log_q)
    return (xp.exp(log_p) * q * (log_q - log_r[..., None])).sum(axis=(0, 2))


def mi_score_gradient(log_q, log_r, log_p, fixed_z=False):
    """dMI/ds_bk (B, F, K) (docs/paper.md#decision-5-the-exact-gradient).

    With g_bk = p_k (log q_bk - log r_b):
    exact (Z over the batch):  dMI/ds_bk = q_bk (g_bk - sum_b' q_b'k g_b'k);
    ``fixed_z`` (Z held constant, Eq. 4's first line): dMI/ds_bk = q_bk g_bk.
    """
    xp = get_array_module(log_q)
    q = xp.exp(log_q)
    g = xp.exp(log_p) * (log_q - log_r[..., None])
    if fixed_z:
        return q * g
    return q * (g - (q * g).sum(axis=0, keepdims=True))


def batch_scale(x, min_scale=MIN_SCALE):
    """c_f = max(mean_b max_ij x_bf, min_scale): (F,), the per-filter normaliser of the
    scale-normalised loss (docs/calibration.md#the-scale-normalised-loss; not in the paper)."""
    B, F = x.shape[:2]
    return get_array_module(x).maximum(x.reshape(B, F, -1).max(axis=2).mean(axis=0), min_scale)


def positive_images(labels, categories, B, F, xp):
    """(B, F) bool: image b belongs to filter f's category, i.e. Eq. 4 targets T_mu_hat
    rather than T^- (Sec. 3).

    labels: (B,) integer classes, or (B, C) targets (positive where > 0); categories: (F,)
    ints. If either is None, every image counts as the filter's category.
    """
    if labels is None or categories is None:
        return xp.ones((B, F), dtype=bool)
    labels, categories = xp.asarray(labels), xp.asarray(categories)
    if labels.shape[0] != B or categories.shape != (F,):
        raise ValueError(f"labels {tuple(labels.shape)} / categories {tuple(categories.shape)} "
                         f"do not fit a batch of {B} maps of {F} filters")
    if labels.ndim == 2:
        return labels[:, categories] > 0
    return labels[:, None] == categories[None, :]


def authors_rule(x, m, positive, epoch=1, w_pos=1.0, w_neg=1.0, temperature=AUTHORS_TEMPERATURE):
    """The released code's filter-loss "gradient" (docs/paper.md#the-update-rule).

    A heuristic, not the gradient of any loss. Per filter, with temperature a (the code's
    0.5; ``temperature``, docs/paper.md#the-rules-temperature):
      strength  s_b = mean_ij(x_b . m_b) (m the signed mask, values in [-1, 1]);
      A+ = a log mean_b exp(mean_ij(x_b . m_flip(b)) / a), m_flip the mask flipped along
           batch *and* channel, exactly as the code pairs each map with another image's
           and filter's mask (a cheap "random template" estimate of log Z+);
      A- = a log mean_b exp(-mean_ij x_b / a), the log Z of T^- ~ -1;
      positives:  r_b = e^{s_b/a} (s_b - A+ + a),  dL/dx_b = -1e-5 w_pos r_b / (mean_P r . mag) . m_b
      negatives:  u_b = e^{-t_b/a}(-t_b - A- + a), t_b = mean_ij x_b,
                  dL/dx_b = +1e-5 w_neg u_b / (mean_N u . mag), the same at every ij;
    with mag = epoch / 0.1. e^{s/a} is shifted by its max over the set before the
    division by the mean, which cancels; that replaces the code's clipping of inf.

    The rule is unchanged when x and a are scaled together (r_b and u_b scale with them and
    the mean normalisation takes the factor out): maps k times larger, at temperature
    k a, are pushed as the original maps at a.

    Args: x (B, F, n, n) pre-mask maps; m (B, F, n, n) signed mask; positive (B, F) bool.
    Returns: (B, F, n, n) dL/dx to add to the task gradient.
    """
    if not temperature > 0:
        raise ValueError(f"authors_rule: the temperature must be > 0, got {temperature!r}")
    a, B = temperature, x.shape[0]
    strength = (x * m).mean(axis=(2, 3))  # (B, F)
    flipped = (x * m[::-1, ::-1]).mean(axis=(2, 3))
    a_pos = a * (logsumexp(flipped / a, axis=0) - math.log(B))  # (F,)
    level = x.mean(axis=(2, 3))
    a_neg = a * (logsumexp(-level / a, axis=0) - math.log(B))
    mag = epoch / AUTHORS_MAG
    r_hat = _mean_normalised(strength, a_pos, positive, a) / mag
    u_hat = _mean_normalised(-level, a_neg, ~positive, a) / mag
    push = -w_pos * r_hat[..., None, None] * m + w_neg * u_hat[..., None, None]
    return (AUTHORS_STEP * push).astype(x.dtype)


def _mean_normalised(u, log_z, member, a):
    """e^{u/a} (u - log_z + a), divided by its mean over ``member`` per filter; 0 elsewhere."""
    xp = get_array_module(u)
    top = xp.where(member, u, -xp.inf).max(axis=0)  # (F,)
    top = xp.where(xp.isfinite(top), top, 0)  # a filter with no member image
    u_in = xp.where(member, u, top)  # keeps exp() finite outside the set
    r = xp.exp((u_in - top) / a) * (u_in - log_z + a) * member
    mean = r.sum(axis=0) / xp.maximum(member.sum(axis=0), 1)
    safe = xp.where(mean != 0, mean, 1)  # a zero mean (no member image) gives zero rule
    return xp.where(mean != 0, r / safe, 0)


class _Buffered:
    """State kept in ``buffers`` (saved in checkpoints) follows to(device) and astype(dtype).
    The arrays are replaced, not edited: owners re-link after to() / astype()."""

    def to(self, device):
        for k in self.buffers:
            self.buffers[k] = to_device(self.buffers[k], device)
        return self

    def astype(self, dtype):
        for k in self.buffers:
            self.buffers[k] = self.buffers[k].astype(dtype)
        return self

    def _check_device(self, x):
        # a clear error when x and this object's state live on different devices
        if self.buffers:
            check_same_device(type(self).__name__, x, next(iter(self.buffers.values())), "maps")


# ---- the loss object ----

class MutualInformationLoss(_Buffered):
    """Loss_f = -MI(X; T) per filter (Eq. 1, 2), with Z_T over the batch.

    ``forward(x, labels=None, categories=None, *, mask=None, scale=None) -> (F,)`` and
    ``backward(dloss=None) -> dLoss/dx`` (B, F, n, n); dloss (F,) defaults to ones, so
    backward gives d(sum_f dloss_f Loss_f)/dx.

    gradient="exact": g_bk = p_k (log q_bk - log r_b), dMI/ds_bk = q_bk (g_bk - sum_b'
        q_b'k g_b'k), dMI/dx_b = sum_k dMI/ds_bk T_k, dLoss/dx = -dMI/dx
        (docs/paper.md#decision-5-the-exact-gradient).
    gradient="paper": Eq. 4 with the sign of a minimised loss
        (docs/paper.md#decision-6-the-papers-gradient). Assumptions:
        Z_T held constant (the batch value, or with ``logz_momentum`` a running estimate,
        footnote 2, scaled to the batch size B); only the target template T_hat is kept,
        T_mu_hat (mu_hat = argmax x_b) for images of the filter's category, T^- for the
        others; p(x_b) is computed in full. Without labels or categories every image
        counts as the filter's category. dLoss/dx_b = -p_hat q_b,hat (s_b,hat - log Z_hat
        - log r_b) T_hat. Not the gradient of -MI: see tests/test_filter_loss.py.
    gradient="authors": :func:`authors_rule` on the pre-mask x and the signed ``mask``
        passed to forward (default: the argmax template shape). Its scale is its own:
        1e-5 * w / (10 * epoch) per image, set ``epoch``, ``w_pos``, ``w_neg``; its
        temperature is ``authors_temperature`` (default the code's 0.5).
        forward still returns -MI of Eq. 1, for logging only.

    scale_normalise=True is a departure from the paper
    (docs/calibration.md#the-scale-normalised-loss): per filter, x is divided by
    c = max(mean_b max_ij x_b, min_scale), and the templates are T / tau (values in
    [-1, 1]). The value of -MI then no longer changes when all activations grow
    together, so it cannot be lowered by growing them. ``scale_gradient`` says how c
    enters backward: "frozen" (default, as in the calibration) holds c
    constant, i.e. the gradient of x -> -MI(x / c) at fixed c; "exact" also
    differentiates c(x) (1/B at each map's argmax while c > min_scale): the true
    gradient of the scale-free loss, orthogonal to x. ``scale=`` in forward fixes c.
    """

    def __init__(self, n, tau=None, beta=BETA, alpha=None, gradient="exact",
                 scale_normalise=False, min_scale=MIN_SCALE, scale_gradient="frozen",
                 logz_momentum=None, num_filters=None, authors_temperature=AUTHORS_TEMPERATURE):
        if gradient not in GRADIENTS:
            raise ValueError(f"MutualInformationLoss: gradient must be one of {GRADIENTS}, got {gradient!r}")
        if scale_gradient not in SCALE_GRADIENTS:
            raise ValueError(f"MutualInformationLoss: scale_gradient must be one of {SCALE_GRADIENTS}")
        if scale_normalise and gradient == "authors":
            raise ValueError("MutualInformationLoss: the authors' rule has its own normalisation; "
                             "scale_normalise applies to 'exact' and 'paper' only")
        if authors_temperature != AUTHORS_TEMPERATURE and gradient != "authors":
            raise ValueError("MutualInformationLoss: authors_temperature is the authors' rule's; "
                             f"the {gradient!r} loss has none")
        if not authors_temperature > 0:
            raise ValueError(f"MutualInformationLoss: authors_temperature must be > 0, got {authors_temperature!r}")
        self.n, self.beta, self.alpha = n, beta, alpha
        self.tau = default_tau(n) if tau is None else tau
        self.gradient, self.scale_normalise = gradient, scale_normalise
        self.min_scale, self.scale_gradient = min_scale, scale_gradient
        self.logz_momentum = logz_momentum
        self.epoch, self.w_pos, self.w_neg = 1, 1.0, 1.0  # the authors' rule only
        self.authors_temperature = authors_temperature
        self.buffers = {}  # running log Z (paper mode with logz_momentum)
        if logz_momentum is not None and num_filters is not None:
            self._init_running(num_filters, np)
        self.cache = None

    # -- pieces shared by forward and the diagnostics --

    def _prepare(self, x, scale):
        check_array(repr(self), x, 4)
        self._check_device(x)
        if x.shape[2:] != (self.n, self.n):
            raise ValueError(f"{self!r}: expected maps of {self.n}x{self.n}, got shape {tuple(x.shape)}")
        xp = get_array_module(x)
        T = templates(self.n, 1.0 if self.scale_normalise else self.tau, self.beta, like=x)
        log_p = template_log_priors(self.n, self.alpha, like=x)
        c = None
        if self.scale_normalise:
            c = batch_scale(x, self.min_scale) if scale is None else xp.asarray(scale, dtype=x.dtype)
            x = x / c[None, :, None, None]
        elif scale is not None:
            raise ValueError(f"{self!r}: scale= is only meaningful with scale_normalise=True")
        # Z over the batch makes q_bk blind to a map common to all images, so the batch
        # mean is taken out first: same q, no rounding error from large common scores
        s = scores(x - x.mean(axis=0, keepdims=True), T)
        log_q = s - logsumexp(s, axis=0, keepdims=True)  # Eq. 2 with Z over the batch
        return T, log_p, c, x, log_q, log_marginal(log_q, log_p)

    def forward(self, x, labels=None, categories=None, *, mask=None, scale=None):
        """-MI per filter (F,), nats. x: (B, F, n, n) maps after ReLU, before the mask."""
        T, log_p, c, xs, log_q, log_r = self._prepare(x, scale)
        self.scale = c
        self.cache = dict(x=x, T=T, log_p=log_p, c=c, log_q=log_q, log_r=log_r,
                          labels=labels, categories=categories, mask=mask)
        if self.gradient == "paper":
            self.cache["log_q_fixed_z"] = self._paper_log_q(xs, T, log_q)
        return -mutual_information(log_q, log_r, log_p)

    def backward(self, dloss=None):
        """dLoss/dx (B, F, n, n) in x's dtype, weighted per filter by ``dloss`` (F,)."""
        if self.cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        cc = self.cache
        x = cc["x"]
        xp = get_array_module(x)
        B, F, n, _ = x.shape
        if self.gradient == "authors":
            m = cc["mask"] if cc["mask"] is not None else template_shape(argmax_positions(x), n, self.beta, like=x)
            positive = positive_images(cc["labels"], cc["categories"], B, F, xp)
            dx = authors_rule(x, m, positive, self.epoch, self.w_pos, self.w_neg, self.authors_temperature)
        else:
            dx = self._score_backward(cc, xp, B, F, n)
        if dloss is not None:
            dx = dx * xp.asarray(dloss, dtype=x.dtype)[None, :, None, None]
        return dx.astype(x.dtype, copy=False)

    def _score_backward(self, cc, xp, B, F, n):
        T = cc["T"]
        K = T.shape[0]
        if self.gradient == "exact":
            dmi_ds = mi_score_gradient(cc["log_q"], cc["log_r"], cc["log_p"])
            dx = -(dmi_ds.reshape(B * F, K) @ T.reshape(K, n * n)).reshape(B, F, n, n)  # as in scores
        else:
            dx = self._paper_backward(cc, xp, B, F, n)
        if not self.scale_normalise:
            return dx
        c = cc["c"][None, :, None, None]
        dx_raw = dx / c  # x' = x / c with c held constant
        if self.scale_gradient == "exact":
            x = cc["x"]
            dl_dc = -(dx * x).sum(axis=(0, 2, 3)) / cc["c"] ** 2  # (F,)
            active = x.reshape(B, F, -1).max(axis=2).mean(axis=0) > self.min_scale
            onehot = xp.arange(n * n) == argmax_positions(x)[..., None]  # (B, F, n*n)
            dc_dx = onehot.reshape(B, F, n, n) * (active.astype(x.dtype) / B)[None, :, None, None]
            dx_raw = dx_raw + dl_dc[None, :, None, None] * dc_dx
        return dx_raw

    def _paper_backward(self, cc, xp, B, F, n):
        """Eq. 4, second line, for a minimised loss: only T_hat's term of the Z-fixed gradient."""
        T, log_p = cc["T"], cc["log_p"]
        K = T.shape[0]
        log_q = cc["log_q_fixed_z"]
        log_r = log_marginal(log_q, log_p)
        positive = positive_images(cc["labels"], cc["categories"], B, F, xp)
        k_hat = xp.where(positive, argmax_positions(cc["x"]), K - 1)  # (B, F)
        lq = xp.take_along_axis(log_q, k_hat[..., None], axis=2)[..., 0]
        coef = xp.exp(log_p[k_hat] + lq) * (lq - log_r)  # dMI/ds at T_hat
        return -coef[..., None, None] * T[k_hat]

    # -- running log Z (footnote 2), paper mode only --

    def _init_running(self, F, xp, dtype=np.float32):
        K = self.n * self.n + 1
        self.buffers["logz_running"] = xp.zeros((F, K), dtype=dtype)
        self.buffers["logz_seen"] = xp.zeros((1,), dtype=dtype)

    def _paper_log_q(self, xs, T, log_q):
        """log q_bk = s_bk - log Z_k for Eq. 4: Z of the batch, or a running estimate
        (footnote 2): an EMA of mean_b exp(s_bk) over batches, times B."""
        if self.logz_momentum is None:
            return log_q
        s = scores(xs, T)  # absolute scores: they are compared across batches
        return s - self._running_log_z(s)[None]

    def _running_log_z(self, s):
        xp = get_array_module(s)
        batch = logsumexp(s, axis=0)  # (F, K)
        B, F = s.shape[:2]
        if "logz_running" not in self.buffers:
            self._init_running(F, xp)
        run, seen = self.buffers["logz_running"], self.buffers["logz_seen"]
        lme = batch - math.log(B)
        m = self.logz_momentum
        # an EMA of mean_b exp(s_bk), kept in log space
        ema = xp.logaddexp(math.log(m) + run.astype(s.dtype), math.log(1 - m) + lme)
        new = xp.where(seen > 0, ema, lme)
        run[...] = new
        seen[...] = 1
        return new + math.log(B)

    # -- teaching diagnostics (Eq. 5-7) --

    def mi_terms(self, x, scale=None):
        """The pieces of Eq. 1 and Eq. 5-7 per filter, in nats.

        Returns a dict:
            "posterior" (B, F, K): p(T_k | x_b) = p_k q_bk / r_b;
            "p_x" (B, F): p(x_b) = r_b;
            "H_T" (F,): the prior entropy H(T);
            "H_Tprime_given_X" (F,): inter-category entropy H(T' | X), T' = {T^-, T+};
            "spatial" (F,): sum_b p(T+, x_b) H(T+ | X = x_b), with p~(T_mu | x) =
                p(T_mu | x) / p(T+ | x) (Eq. 7);
            "MI" (F,): Eq. 1; "minus_MI_eq5" (F,): -H(T) + H(T'|X) + spatial (Eq. 5),
                which equals -MI.
        """
        _, log_p, _, _, log_q, log_r = self._prepare(x, scale)
        xp = get_array_module(x)
        F = x.shape[1]
        log_post = log_p + log_q - log_r[..., None]  # (B, F, K)
        r = xp.exp(log_r)
        h_t = -(xp.exp(log_p) * log_p).sum() * xp.ones((F,), dtype=x.dtype)
        log_pos = logsumexp(log_post[..., :-1], axis=2)  # log p(T+ | x_b)
        log_neg = log_post[..., -1]
        h_binary = -(xp.exp(log_pos) * log_pos + xp.exp(log_neg) * log_neg)  # H(T' | x_b)
        log_tilde = log_post[..., :-1] - log_pos[..., None]  # Eq. 7's p~(T_mu | x_b)
        h_spatial = -(xp.exp(log_tilde) * log_tilde).sum(axis=2)  # H(T+ | x_b)
        h_tp_x = (r * h_binary).sum(axis=0)
        spatial = (r * xp.exp(log_pos) * h_spatial).sum(axis=0)
        return {"posterior": xp.exp(log_post), "p_x": r, "H_T": h_t,
                "H_Tprime_given_X": h_tp_x, "spatial": spatial,
                "MI": mutual_information(log_q, log_r, log_p),
                "minus_MI_eq5": -h_t + h_tp_x + spatial}

    def __repr__(self):
        extra = ", scale_normalise=True" if self.scale_normalise else ""
        return f"MutualInformationLoss(n={self.n}, gradient={self.gradient!r}{extra})"


# ---- which category each filter serves (docs/paper.md#decision-9-filter-categories) ----

class FilterCategories(_Buffered):
    """c_hat(f) = argmax_c EMA over batches of mean_{b in class c} sum_ij x_bf
    (docs/paper.md#decision-9-filter-categories).

    The paper's statistic (spatial sum) with the authors' exponential moving average
    (momentum 0.9; the code averages the spatial max instead). A class is first seen
    with its batch value; classes never seen cannot win. With one class every filter
    has category 0. State in ``buffers`` ("category_ema" (F, C), "category_seen" (C,)),
    updated in place so a checkpoint and the owning layer share it.
    """

    def __init__(self, num_filters, num_classes, momentum=CATEGORY_MOMENTUM):
        if num_classes < 1:
            raise ValueError(f"FilterCategories: num_classes must be >= 1, got {num_classes}")
        self.num_filters, self.num_classes, self.momentum = num_filters, num_classes, momentum
        self.buffers = {"category_ema": np.zeros((num_filters, num_classes), dtype=np.float32),
                        "category_seen": np.zeros((num_classes,), dtype=np.float32)}

    def label_matrix(self, labels, xp):
        """(B, C) bool targets from (B,) class ids, (B,) binary targets when C = 1
        (positive where > 0: {0, 1} or {-1, +1}), or (B, C) targets (positive where > 0)."""
        labels = xp.asarray(labels)
        C = self.num_classes
        if labels.ndim == 2:
            if labels.shape[1] != C:
                raise ValueError(f"FilterCategories: expected (B, {C}) targets, got {tuple(labels.shape)}")
            return labels > 0
        if labels.ndim != 1:
            raise ValueError(f"FilterCategories: labels must be (B,) or (B, C), got {tuple(labels.shape)}")
        if C == 1:
            return (labels > 0)[:, None]
        return labels[:, None] == xp.arange(C)[None, :]

    def update(self, x, labels):
        """Fold one batch in. x: (B, F, n, n) maps; labels as in :meth:`label_matrix`."""
        xp = get_array_module(x)
        self._check_device(x)
        y = self.label_matrix(labels, xp)
        ema, seen = self.buffers["category_ema"], self.buffers["category_seen"]
        if y.shape[0] != x.shape[0] or x.shape[1] != ema.shape[0]:
            raise ValueError(f"FilterCategories: maps {tuple(x.shape)} and labels {tuple(y.shape)} "
                             f"do not fit {ema.shape[0]} filters")
        counts = y.sum(axis=0)  # (C,)
        class_mean = (x.sum(axis=(2, 3)).T @ y.astype(x.dtype)) / xp.maximum(counts, 1)  # (F, C)
        class_mean = class_mean.astype(ema.dtype, copy=False)
        m = self.momentum
        new = xp.where(seen > 0, m * ema + (1 - m) * class_mean, class_mean)
        present = counts > 0
        xp.copyto(ema, new, where=present)  # classes absent from the batch keep theirs
        xp.maximum(seen, present, out=seen)

    @property
    def categories(self):
        """(F,) int: each filter's category (0 for all before any update)."""
        xp = get_array_module(self.buffers["category_ema"])
        ema, seen = self.buffers["category_ema"], self.buffers["category_seen"]
        return xp.where(seen > 0, ema, -xp.inf).argmax(axis=1)  # all -inf rows give 0
