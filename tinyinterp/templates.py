"""Part templates and their priors (paper Sec. 3, Fig. 3; docs/paper.md#decisions, 1-3).

Notation: a filter's feature map after ReLU is x, n x n. Templates are indexed
k = 0..n^2:

- k = i*n + j (row-major) is the positive template T_mu centred at mu = (i, j),
      t+_ab = tau * max(1 - beta * ||[a, b] - mu||_1 / n, -1),
  an L1 "diamond" that is tau at mu and falls linearly to -tau far away;
- k = n^2 (the last one) is the negative template T^-, t-_ab = -tau everywhere.

Priors (Sec. 3): p(T_mu) = alpha / n^2 for each of the n^2 positions, p(T^-) = 1 - alpha.
"""
import numpy as np

from .backend import DEFAULT_DTYPE, get_array_module

BETA = 4.0  # template slope, paper Sec. 5 "Implementation details"
TAU_NUMERATOR = 0.5  # tau = 0.5 / n^2, paper Sec. 5


def default_tau(n):
    """tau = 0.5 / n^2 (paper Sec. 5)."""
    return TAU_NUMERATOR / n ** 2


def default_alpha(n):
    """alpha = n^2 / (1 + n^2) (paper Sec. 5): all n^2 + 1 priors equal 1 / (1 + n^2)."""
    return n ** 2 / (1.0 + n ** 2)


def _module_and_dtype(like, dtype):
    xp = np if like is None else get_array_module(like)
    if dtype is None:
        dtype = DEFAULT_DTYPE if like is None else like.dtype
    if np.dtype(dtype).kind != "f":
        dtype = DEFAULT_DTYPE  # templates are real-valued whatever the `like` array holds
    return xp, np.dtype(dtype)


# Built once per (what, n, tau or alpha, beta, dtype, module, device) and reused: every mask
# layer asks for them on every forward, and on a GPU building them is some 20 kernel
# launches each time. The arrays are shared: read them, never write (NumPy's are
# read-only, so a write raises).
_CACHE = {}
_CACHE_SIZE = 64


def _cached(key, like, build):
    xp = np if like is None else get_array_module(like)
    device = getattr(getattr(like, "device", None), "id", None)  # CuPy's device; None on the host
    key = key + (xp.__name__, device)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        value = build()
        if xp is np:
            value.flags.writeable = False
        _CACHE[key] = value
    return _CACHE[key]


def templates(n, tau=None, beta=BETA, like=None, dtype=None):
    """All n^2 + 1 templates of an n x n map (paper Sec. 3, Fig. 3).

    Args:
        n: map side. tau: template magnitude, default 0.5 / n^2. beta: slope, default 4.
        like: an array whose module (NumPy or CuPy) and float dtype the result takes.
        dtype: overrides the dtype (default: ``like``'s, else float32).
    Returns:
        (n*n + 1, n, n): T_mu for mu = (i, j) at k = i*n + j, then T^- at k = n^2.
    """
    if n < 1:
        raise ValueError(f"templates: n must be >= 1, got {n}")
    tau = default_tau(n) if tau is None else tau
    xp, dtype = _module_and_dtype(like, dtype)
    return _cached(("templates", n, tau, beta, dtype), like, lambda: _build_templates(n, tau, beta, xp, dtype))


def _build_templates(n, tau, beta, xp, dtype):
    # built in float64, then rounded once to the target dtype
    pos = xp.arange(n, dtype=np.float64)
    k = xp.arange(n * n)
    mu_i, mu_j = (k // n).astype(np.float64), (k % n).astype(np.float64)
    l1 = (xp.abs(pos[None, :, None] - mu_i[:, None, None])
          + xp.abs(pos[None, None, :] - mu_j[:, None, None]))  # (n*n, n, n)
    positive = tau * xp.maximum(1.0 - beta * l1 / n, -1.0)
    negative = xp.full((1, n, n), -tau, dtype=np.float64)
    return xp.concatenate([positive, negative], axis=0).astype(dtype)


def template_priors(n, alpha=None, like=None, dtype=None):
    """Priors p(T) of the n^2 + 1 templates (paper Sec. 3).

    Returns:
        (n*n + 1,): alpha / n^2 for each T_mu, then 1 - alpha for T^-. The default
        alpha = n^2 / (1 + n^2) makes them uniform, 1 / (1 + n^2).
    """
    alpha = default_alpha(n) if alpha is None else alpha
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"template_priors: alpha must lie in (0, 1), got {alpha}")
    xp, dtype = _module_and_dtype(like, dtype)

    def build():
        p = xp.full((n * n + 1,), alpha / n ** 2, dtype=np.float64)
        p[-1] = 1.0 - alpha
        return p.astype(dtype)

    return _cached(("priors", n, alpha, dtype), like, build)


def template_log_priors(n, alpha=None, like=None, dtype=None):
    """log of :func:`template_priors` (the filter loss works in log space), cached alike."""
    p = template_priors(n, alpha, like, dtype)
    return _cached(("log priors", n, alpha, p.dtype), like, lambda: get_array_module(p).log(p))
