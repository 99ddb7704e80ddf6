"""Lesson 03: checking a backward pass with central differences.

What you will learn:
- the gradient check: contract the layer's output with an upstream gradient dout, so
  L(x) = sum(f(x) * dout) is a scalar, and compare backward(dout) with
  (L(x + eps) - L(x - eps)) / (2 eps), one element at a time (``ti.numerical_gradient``,
  ``ti.relative_error``, and ``ti.check_layer``, which does it all);
- why in float64: in float32 the differences keep too few digits to tell a small
  bug from round-off;
- why a *random* dout: a backward that transposes dout by mistake passes the check
  with dout = all ones (every entry alike) and fails it with a random dout.

Run:  python lessons/03_gradient_check.py
"""
import numpy as np

import tinyinterp as ti

PICTURES = []  # this lesson only prints
rng = np.random.default_rng(0)


def dx_error(layer, x, dout, eps=1e-5):
    """Max relative error between layer.backward(dout) and central differences, for dx."""
    layer.forward(x)
    analytic = layer.backward(dout)
    numeric = ti.numerical_gradient(lambda: float((layer.forward(x) * dout).sum()), x, eps)
    return ti.relative_error(analytic, numeric)[0]


# ---- 1. why float64: the error of a correct backward, for several steps eps ----
# A curved function (softmax cross-entropy) shows both sources of error: round-off, which
# grows as eps shrinks (L(x + eps) - L(x - eps) cancels the leading digits), and the
# curvature, which grows as eps grows (error ~ eps^2).
logits, labels = rng.standard_normal((4, 5)), np.array([0, 3, 1, 4])
print("eps    float32  float64")
for eps in (1e-6, 1e-4, 1e-2):
    errors = []
    for dtype in (np.float32, np.float64):
        z, loss = logits.astype(dtype), ti.SoftmaxCrossEntropy()
        loss.forward(z, labels)
        analytic = loss.backward()
        numeric = ti.numerical_gradient(lambda: float(loss.forward(z, labels)), z, eps)
        errors.append(ti.relative_error(analytic, numeric)[0])
    print(f"{eps:.0e}  {errors[0]:7.0e}  {errors[1]:7.0e}")
# eps    float32  float64
# 1e-06    1e+00    3e-09    float32: the difference drowns in round-off
# 1e-04    3e-02    8e-10
# 1e-02    1e-04    8e-06    float32 at its best, 4 digits; curvature now hurts float64
# A bug can hide under float32's 1e-4; a correct float64 backward lands near 1e-9, far
# below the tolerance that tinyinterp's checks never widen:
print(ti.gradcheck.TOLERANCE)  # 1e-06


# ---- 2. a buggy backward that an all-ones dout cannot see ----
class SwappedConv(ti.Layer):
    """A 3x3 conv (padding 1) whose backward swaps dout's rows and columns by mistake,
    the kind of slip a reshape or transpose makes (e.g. (N, C, H, W) read as (N, C, W, H))."""

    def __init__(self, C, OC, rng=0):
        super().__init__()
        self.params = ti.Conv2d(C, OC, 3, padding=1, rng=rng).params

    def forward(self, x):
        y, self.cache = ti.conv2d_forward(x, self.params["W"], self.params["b"], 1, 1)
        return y

    def backward(self, dout):
        wrong = dout.transpose(0, 1, 3, 2)  # BUG: should be dout itself
        dx, self.grads["W"], self.grads["b"] = ti.conv2d_backward(wrong, self.cache)
        return dx


x64, dout64 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 3, 5, 5))
bad = SwappedConv(2, 3, rng=1).astype(np.float64)
ones = np.ones((2, 3, 5, 5))
print(f"{dx_error(bad, x64, ones):.0e}")  # ~5e-10   passes: a transposed all-ones array is all ones
print(f"{dx_error(bad, x64, dout64):.0e}")  # 1e+00    fails: a random dout exposes the swap

# ti.check_layer casts to float64, draws a random dout, and checks dx and every parameter
# gradient; it reports the worst entry with both values.
print(ti.check_layer(ti.Conv2d(2, 3, 3, padding=1, rng=1), x64))
# Conv2d(2, 3, kernel_size=3, stride=1, padding=1) [x(2, 2, 5, 5), W(3, 2, 3, 3), b(3,)] max rel error ~4e-08 ...: pass
result = ti.check_layer(SwappedConv(2, 3, rng=1), x64, name="SwappedConv")
print(result)  # SwappedConv [x(2, 2, 5, 5), W(3, 2, 3, 3), b(3,)] max rel error ~1e+00 at ...: FAIL
print(result.passed)  # False

# ---- 3. losses have their checker too: d(loss)/d(logits), in float64 ----
print(ti.check_loss(ti.SoftmaxCrossEntropy(), logits, labels).passed)  # True
