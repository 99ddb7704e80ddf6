"""Gradient checks: analytic backward vs. central finite differences, in float64.

For a layer y = f(x) we never check dy/dx directly (a Jacobian). We contract the
output with a random upstream gradient ``dout`` and check the scalar

    L(x) = sum(f(x) * dout),      dL/dx = backward(dout),

element by element with central differences  (L(x + eps) - L(x - eps)) / (2 eps).
A random ``dout`` (not all ones) catches a backward that permutes or transposes its
input: with ones every position looks alike.

Why float64: central differences lose about half the significant digits; in float32
that leaves ~3 digits, too few to tell a subtle bug from round-off. In float64 a
correct backward agrees to ~1e-9 or better, many orders below any real bug.

Relative error per element: |a - n| / max(|a| + |n|, floor), where the floor is
``FLOOR_RATIO`` times the largest gradient entry of that array. The floor keeps
entries that are (nearly) zero from turning round-off into a large ratio; a wrong
entry that is small but not negligible is still caught.
"""
from dataclasses import dataclass

import numpy as np

from .backend import device_of, get_array_module, host_rng, to_device, to_numpy

TOLERANCE = 1e-6  # max relative error a correct backward must stay below
EPS = 1e-5  # step of the central differences
FLOOR_RATIO = 1e-3


@dataclass
class GradcheckResult:
    name: str
    shapes: str
    max_rel_error: float
    worst: str  # e.g. "W[0, 1, 2, 0]"
    analytic: float  # the two values at the worst index
    numeric: float
    tolerance: float = TOLERANCE

    @property
    def passed(self):
        return bool(self.max_rel_error < self.tolerance)

    def __str__(self):
        status = "pass" if self.passed else "FAIL"
        return (f"{self.name} [{self.shapes}] max rel error {self.max_rel_error:.2e} at "
                f"{self.worst} (analytic {self.analytic:.6g}, numeric {self.numeric:.6g}): {status}")


def relative_error(analytic, numeric, floor_ratio=FLOOR_RATIO):
    """Max element-wise relative error and its index (NumPy arrays of one shape)."""
    a, n = to_numpy(analytic).astype(np.float64), to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {n.shape}")
    if a.size == 0:
        return 0.0, ()
    both = np.abs(np.concatenate([a.ravel(), n.ravel()]))
    both = both[np.isfinite(both)]
    floor = max(floor_ratio * (both.max() if both.size else 0.0), 1e-300)
    err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)
    err[~np.isfinite(err)] = np.inf  # a NaN or inf gradient is the worst error, never a pass
    idx = np.unravel_index(int(np.argmax(err)), err.shape)
    return float(err[idx]), tuple(int(i) for i in idx)


def numerical_gradient(f, x, eps=EPS):
    """Central differences of the scalar ``f()`` w.r.t. every element of ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it.
    """
    xp = get_array_module(x)
    grad = xp.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        old = float(x[idx])
        x[idx] = old + eps
        f_plus = f()
        x[idx] = old - eps
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def compare(name, f, inputs, analytic, eps=EPS, tolerance=TOLERANCE):
    """Check ``analytic[k]`` = d f() / d inputs[k] for every k; one result for all inputs.

    Args:
        f: a function of no arguments returning a float; it reads ``inputs`` (perturbed
            in place).
        inputs: name -> float64 array. analytic: name -> gradient array.
    """
    worst = (-1.0, "", 0.0, 0.0)
    for k, x in inputs.items():
        if x.dtype != np.float64:
            raise ValueError(f"gradcheck {name}: input {k!r} must be float64, got {x.dtype}")
        num = numerical_gradient(f, x, eps)
        err, idx = relative_error(analytic[k], num)
        if err > worst[0]:
            a_np, n_np = to_numpy(analytic[k]), to_numpy(num)
            worst = (err, f"{k}{list(idx)}", float(a_np[idx]), float(n_np[idx]))
    shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in inputs.items())
    return GradcheckResult(name, shapes, worst[0], worst[1], worst[2], worst[3], tolerance)


def random_like(y, seed=0):
    """Standard normal array of ``y``'s shape, float64, on ``y``'s device."""
    return to_device(host_rng(seed).standard_normal(y.shape), device_of(y))


def check_layer(layer, x, seed=0, name=None, eps=EPS, tolerance=TOLERANCE, before_forward=None):
    """Check ``layer.backward`` (dx and every parameter gradient) in float64.

    ``before_forward`` (optional) is called before each forward pass, e.g. to reset a
    random generator so that dropout draws the same mask every time.
    """
    layer.astype(np.float64)
    x = x.astype(np.float64)
    prepare = before_forward or (lambda: None)
    prepare()
    y = layer.forward(x)
    dout = random_like(y, seed)
    dout_before = dout.copy()
    analytic = {"x": layer.backward(dout).copy()}
    if not bool((dout == dout_before).all()):
        raise AssertionError(f"{layer!r}: backward changed dout in place")
    analytic.update({k: g.copy() for k, g in layer.grads.items()})

    def f():
        prepare()
        return float((layer.forward(x) * dout).sum())

    inputs = {"x": x, **layer.params}
    return compare(name or repr(layer), f, inputs, analytic, eps, tolerance)


def check_loss(loss, logits, targets, name=None, eps=EPS, tolerance=TOLERANCE):
    """Check ``loss.backward()`` against central differences of ``loss.forward``."""
    logits = logits.astype(np.float64)
    loss.forward(logits, targets)
    analytic = {"logits": loss.backward().copy()}

    def f():
        return float(loss.forward(logits, targets))

    return compare(name or type(loss).__name__, f, {"logits": logits}, analytic, eps, tolerance)
