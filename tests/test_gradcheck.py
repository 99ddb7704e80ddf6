"""The gradient checker itself: it must catch wrong backwards and report where."""
import numpy as np
import pytest

from tinyinterp import gradcheck
from tinyinterp.backend import get_array_module, to_numpy
from tinyinterp.layers import Layer, Linear
from tinyinterp.losses import SoftmaxCrossEntropy

TOL = gradcheck.TOLERANCE


class Scale(Layer):
    """y = x * c (element-wise, c fixed), with a configurable (possibly wrong) backward."""

    def __init__(self, c, backward="right"):
        super().__init__()
        self.c, self.mode = c, backward

    def forward(self, x):
        return x * self.c

    def backward(self, dout):
        dx = dout * self.c
        if self.mode == "transposed":  # reads dout transposed: right only if dout is symmetric
            return dout.T * self.c
        if self.mode == "scaled":
            return dx * 1.01
        if self.mode == "one-wrong":
            dx = dx.copy()
            dx[1, 2] += 0.1
            return dx
        if self.mode == "nan":
            return dx * float("nan")
        if self.mode == "in-place":
            dout *= self.c
            return dout
        return dx


def square(xp, n=4, seed=0):
    return xp.asarray(np.random.default_rng(seed).standard_normal((n, n)))


def test_right_backward_passes(xp):
    result = gradcheck.check_layer(Scale(square(xp, seed=1)), square(xp))
    assert result.passed and result.max_rel_error < TOL, str(result)
    assert "pass" in str(result)


@pytest.mark.parametrize("mode, at_least", [("transposed", 1e-2), ("scaled", 1e-3), ("one-wrong", 1e-3)])
def test_wrong_backward_is_caught(xp, mode, at_least):
    # a transposed dout only looks right with a symmetric upstream gradient (e.g. all
    # ones); the checker contracts with a random dout, so it must see it. Errors are
    # many orders above TOLERANCE (1e-6).
    result = gradcheck.check_layer(Scale(square(xp, seed=1), backward=mode), square(xp))
    assert not result.passed, str(result)
    assert result.max_rel_error > at_least, str(result)
    assert "FAIL" in str(result)


def test_nan_backward_is_caught(xp):
    # A backward that returns NaN must fail the check. Today relative_error returns NaN,
    # compare()'s `err > worst[0]` is False for NaN, the -1.0 start value survives and
    # the result reads "max rel error -1.00e+00 ... pass".
    result = gradcheck.check_layer(Scale(square(xp, seed=1), backward="nan"), square(xp))
    assert not result.passed, str(result)


def test_worst_index_is_reported(xp):
    result = gradcheck.check_layer(Scale(square(xp, seed=1), backward="one-wrong"), square(xp))
    assert result.worst == "x[1, 2]", str(result)
    assert result.analytic == pytest.approx(result.numeric + 0.1, abs=1e-6)
    assert "at x[1, 2]" in str(result)


def test_backward_that_changes_dout_is_refused(xp):
    with pytest.raises(AssertionError, match="changed dout in place"):
        gradcheck.check_layer(Scale(square(xp, seed=1), backward="in-place"), square(xp))


def test_parameter_gradient_is_checked(xp):
    layer = Linear(3, 2, rng=0)
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    if xp is not np:
        layer.to("gpu")
    good = gradcheck.check_layer(layer, x)
    assert good.passed, str(good)
    assert good.shapes == "x(4, 3), W(3, 2), b(2,)"

    backward = layer.backward

    def wrong_bias_grad(dout):
        dx = backward(dout)
        layer.grads["b"] = layer.grads["b"] * 2.0
        return dx

    layer.backward = wrong_bias_grad
    bad = gradcheck.check_layer(layer, x)
    assert not bad.passed and bad.worst.startswith("b["), str(bad)


def test_relative_error_floors_tiny_denominators(xp):
    # the second entry is off by 1e-12 on a gradient whose largest entry is 1:
    # round-off, not a bug. Without the floor its relative error would be 1.0.
    a = xp.asarray(np.array([1.0, 1e-12]))
    n = xp.asarray(np.array([1.0, 0.0]))
    err, idx = gradcheck.relative_error(a, n)
    assert err == pytest.approx(1e-12 / gradcheck.FLOOR_RATIO, rel=1e-9)
    assert idx == (1,)
    # a small entry that is wrong but not negligible is still caught
    err, idx = gradcheck.relative_error(xp.asarray(np.array([1.0, 0.01])), xp.asarray(np.array([1.0, 0.02])))
    assert err == pytest.approx(1 / 3) and idx == (1,)


def test_relative_error_edge_cases(xp):
    zeros = xp.zeros((2, 3))
    assert gradcheck.relative_error(zeros, zeros) == (0.0, (0, 0))
    assert gradcheck.relative_error(xp.zeros(0), xp.zeros(0)) == (0.0, ())
    a = np.zeros((3, 4))
    n = a.copy()
    n[2, 1] = 5.0
    assert gradcheck.relative_error(xp.asarray(a), xp.asarray(n)) == (1.0, (2, 1))
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.relative_error(xp.zeros(3), xp.zeros(4))


def test_numerical_gradient_restores_input(xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3)))
    before = to_numpy(x).copy()
    grad = gradcheck.numerical_gradient(lambda: float((x ** 3).sum()), x)
    np.testing.assert_array_equal(to_numpy(x), before)
    assert get_array_module(grad) is xp
    np.testing.assert_allclose(to_numpy(grad), 3 * before ** 2, rtol=1e-8)


def test_compare_refuses_float32_inputs(xp):
    x = xp.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match="must be float64"):
        gradcheck.compare("f", lambda: float(x.sum()), {"x": x}, {"x": xp.ones(3)})


def test_check_loss_catches_wrong_loss_backward(xp):
    class HalfGrad(SoftmaxCrossEntropy):
        def backward(self):
            return super().backward() * 0.5

    logits = xp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    labels = xp.asarray(np.array([0, 3, 1]))
    assert gradcheck.check_loss(SoftmaxCrossEntropy(), logits, labels).passed
    bad = gradcheck.check_loss(HalfGrad(), logits, labels, name="half")
    assert not bad.passed and bad.max_rel_error > 0.1, str(bad)
    assert bad.name == "half" and bad.worst.startswith("logits[")
