"""Layers: gradients vs. central differences, naive twins, dtypes, dout, views, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (
    XP_SETTINGS,
    away_from_zero,
    conv_cases,
    distinct_values,
    linear_cases,
    normal,
    pool_cases,
    seeds,
    shapes,
)
from tinyinterp import gradcheck
from tinyinterp.backend import to_numpy
from tinyinterp.im2col import pair
from tinyinterp.layers import Conv2d, Dropout, Flatten, Linear, ReLU, conv2d_forward, conv2d_naive
from tinyinterp.pooling import MaxPool2d, maxpool2d_forward, maxpool2d_naive

TOL = gradcheck.TOLERANCE


def assert_gradcheck(result):
    assert result.max_rel_error < TOL, str(result)


def make_conv(case, xp, w, b):
    layer = Conv2d(case.C, case.OC, case.kernel, stride=case.stride, padding=case.pad)
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    return layer


# ---- gradients vs. central differences (float64) ----

@XP_SETTINGS
@given(case=conv_cases())
def test_conv2d_gradcheck(xp, case):
    x, w, b, _ = case.arrays()
    layer = make_conv(case, xp, w, b)
    assert_gradcheck(gradcheck.check_layer(layer, xp.asarray(x), seed=case.seed))


@XP_SETTINGS
@given(case=pool_cases())
def test_maxpool2d_gradcheck(xp, case):
    # distinct inputs 0.01 apart: no ties and no argmax switch within the step
    x = distinct_values(np.random.default_rng(case.seed), case.x_shape)
    layer = MaxPool2d(case.kernel, stride=case.stride, padding=case.pad)
    assert_gradcheck(gradcheck.check_layer(layer, xp.asarray(x), seed=case.seed))


@XP_SETTINGS
@given(shape=shapes(1, 4), seed=seeds)
def test_relu_gradcheck(xp, shape, seed):
    # |x| >= 0.1: the step 1e-5 never crosses the kink at 0
    x = away_from_zero(np.random.default_rng(seed), shape)
    assert_gradcheck(gradcheck.check_layer(ReLU(), xp.asarray(x), seed=seed))


@XP_SETTINGS
@given(case=linear_cases())
def test_linear_gradcheck(xp, case):
    N, fin, fout, seed = case
    rng = np.random.default_rng(seed)
    layer = Linear(fin, fout, rng=seed)
    layer.params["b"] = normal(rng, (fout,))  # non-zero bias (init is zeros)
    layer.to("gpu" if xp is not np else "cpu")
    x = xp.asarray(normal(rng, (N, fin)))
    assert_gradcheck(gradcheck.check_layer(layer, x, seed=seed))


@XP_SETTINGS
@given(shape=shapes(2, 4), seed=seeds)
def test_flatten_gradcheck(xp, shape, seed):
    x = normal(np.random.default_rng(seed), shape)
    assert_gradcheck(gradcheck.check_layer(Flatten(), xp.asarray(x), seed=seed))


@XP_SETTINGS
@given(shape=shapes(1, 4), seed=seeds, p=st.sampled_from([0.0, 0.2, 0.5, 0.8]))
def test_dropout_train_gradcheck(xp, shape, seed, p):
    layer = Dropout(p)

    def reset():  # the same mask on every forward of the check
        layer.rng = np.random.default_rng(seed)

    x = normal(np.random.default_rng(seed + 1), shape)
    result = gradcheck.check_layer(layer, xp.asarray(x), seed=seed, before_forward=reset)
    assert_gradcheck(result)


# ---- forward equals the naive loops ----

@XP_SETTINGS
@given(case=conv_cases(max_extra=4))
def test_conv2d_forward_matches_naive(xp, case):
    x, w, b, _ = (xp.asarray(a) for a in case.arrays())
    y, _ = conv2d_forward(x, w, b, case.stride, case.pad)
    expected = conv2d_naive(x, w, b, case.stride, case.pad)
    assert y.shape == case.y_shape
    np.testing.assert_allclose(to_numpy(y), to_numpy(expected), rtol=1e-12, atol=1e-12)


@XP_SETTINGS
@given(case=conv_cases(max_extra=4))
def test_conv2d_layer_matches_naive_float32(xp, case):
    x, w, b, _ = (a.astype(np.float32) for a in case.arrays())
    layer = make_conv(case, xp, w, b)
    y = layer.forward(xp.asarray(x))
    assert y.dtype == np.float32
    expected = conv2d_naive(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            case.stride, case.pad)
    # float32 round-off of a sum of at most 3*4*4 products of unit-size terms
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-4, atol=1e-4)


@XP_SETTINGS
@given(case=pool_cases(max_extra=4), ties=st.booleans())
def test_maxpool2d_forward_matches_naive(xp, case, ties):
    rng = np.random.default_rng(case.seed)
    # with ties=True values repeat a lot (and may be negative everywhere): the max
    # value must still be exact, and padding (-inf) must never win
    x = rng.integers(-3, 0, size=case.x_shape).astype(np.float64) if ties else normal(rng, case.x_shape)
    x = xp.asarray(x)
    y, _ = maxpool2d_forward(x, case.kernel, case.stride, case.pad)
    assert y.shape == case.y_shape
    np.testing.assert_array_equal(to_numpy(y), to_numpy(maxpool2d_naive(x, case.kernel, case.stride, case.pad)))
    assert bool(xp.isfinite(y).all())


def test_maxpool2d_tie_goes_to_first_window_element(xp):
    x = xp.asarray(np.ones((1, 1, 2, 2)))
    pool = MaxPool2d(2)
    pool.forward(x)
    dx = to_numpy(pool.backward(xp.asarray(np.full((1, 1, 1, 1), 3.0))))
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0], [0.0, 0.0]])


# ---- one spec per layer for the dtype / dout / view checks ----

def _dropout_train(p=0.5):
    return Dropout(p, rng=7)


LAYER_SPECS = {
    # name: (layer factory, input shape, input builder)
    "conv": (lambda: Conv2d(2, 3, 3, stride=2, padding=1, rng=1), (2, 2, 5, 6), normal),
    "conv-rect": (lambda: Conv2d(3, 2, (2, 3), stride=(1, 2), padding=(1, 0), rng=2), (2, 3, 4, 7), normal),
    "relu": (ReLU, (2, 3, 4, 5), away_from_zero),
    "maxpool": (lambda: MaxPool2d(2), (2, 3, 4, 6), distinct_values),
    "maxpool-overlap": (lambda: MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 6), distinct_values),
    "linear": (lambda: Linear(5, 4, rng=3), (3, 5), normal),
    "flatten": (Flatten, (2, 3, 2, 4), normal),
    "dropout-train": (_dropout_train, (3, 7), normal),
    "dropout-eval": (lambda: _dropout_train().eval(), (3, 7), normal),
}


def build(name, xp, dtype=np.float64, seed=0):
    factory, shape, values = LAYER_SPECS[name]
    layer = factory()
    layer.astype(dtype)
    if xp is not np:
        layer.to("gpu")
    x = values(np.random.default_rng(seed), shape).astype(dtype)
    return layer, x


def forward_backward(layer, x, dout_np, xp):
    """Forward then backward; dropout's generator is reset so every call draws one mask."""
    if isinstance(layer, Dropout):
        layer.rng = np.random.default_rng(11)
    y = layer.forward(x)
    dout = xp.asarray(dout_np.astype(y.dtype))
    return y, dout, layer.backward(dout)


@pytest.mark.parametrize("name", sorted(LAYER_SPECS))
def test_float32_in_float32_out(xp, name):
    layer, x = build(name, xp, np.float32)
    y = layer.forward(xp.asarray(x))
    assert y.dtype == np.float32
    dout = xp.asarray(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
    dx = layer.backward(dout)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert set(layer.grads) == set(layer.params)
    for k, g in layer.grads.items():
        assert g.dtype == np.float32, k
        assert g.shape == layer.params[k].shape, k
        assert layer.params[k].dtype == np.float32, k


@pytest.mark.parametrize("name", sorted(LAYER_SPECS))
def test_backward_leaves_dout_unchanged(xp, name):
    layer, x = build(name, xp)
    y = layer.forward(xp.asarray(x))
    dout_np = np.random.default_rng(2).standard_normal(y.shape)
    dout = xp.asarray(dout_np)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_numpy(dout), dout_np)
    assert dx.shape == x.shape


def non_contiguous_twin(x):
    """A view with the values of ``x`` whose memory is not C-contiguous: the last two
    axes of a contiguous transposed copy, transposed back."""
    return x.swapaxes(-1, -2).copy().swapaxes(-1, -2)


@pytest.mark.parametrize("name", sorted(LAYER_SPECS))
def test_non_contiguous_input_gives_same_result(xp, name):
    layer, x_np = build(name, xp)
    x = xp.asarray(x_np)
    view = non_contiguous_twin(x)
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(to_numpy(view), x_np)
    dout_np = np.random.default_rng(3).standard_normal(layer.forward(x).shape)

    y1, _, dx1 = forward_backward(layer, x, dout_np, xp)
    grads1 = {k: to_numpy(g).copy() for k, g in layer.grads.items()}
    y2, _, dx2 = forward_backward(layer, view, non_contiguous_twin(dout_np), xp)
    np.testing.assert_allclose(to_numpy(y2), to_numpy(y1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(dx2), to_numpy(dx1), rtol=1e-12, atol=1e-12)
    for k, g in grads1.items():
        np.testing.assert_allclose(to_numpy(layer.grads[k]), g, rtol=1e-12, atol=1e-12, err_msg=k)


def test_conv2d_strided_slice_input(xp):
    # a slice with a step (not a transposed copy) is another common non-contiguous view
    big = np.random.default_rng(4).standard_normal((2, 4, 9, 8))
    x = xp.asarray(big)[:, ::2, ::2, 1:]
    assert not x.flags.c_contiguous
    layer = Conv2d(2, 3, 3, padding=1, rng=5).astype(np.float64)
    if xp is not np:
        layer.to("gpu")
    y = layer.forward(x)
    expected = conv2d_naive(big[:, ::2, ::2, 1:], to_numpy(layer.params["W"]), to_numpy(layer.params["b"]), 1, 1)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-12, atol=1e-12)


# ---- modes ----

def test_dropout_eval_is_identity_and_train_scales(xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((50, 40)))
    layer = Dropout(0.25, rng=0)
    y = to_numpy(layer.forward(x))
    kept = y != 0
    # inverted dropout: kept units are scaled by 1/(1-p), the others are exactly 0
    np.testing.assert_allclose(y[kept], to_numpy(x)[kept] / 0.75, rtol=1e-12)
    assert 0.6 < kept.mean() < 0.9  # p = 0.25 of 2000 units dropped, give or take
    layer.eval()
    np.testing.assert_array_equal(to_numpy(layer.forward(x)), to_numpy(x))
    dout = xp.asarray(np.random.default_rng(1).standard_normal((50, 40)))
    np.testing.assert_array_equal(to_numpy(layer.backward(dout)), to_numpy(dout))


# ---- input errors: ValueError naming the layer and the offending shapes ----

def _int_input(shape):
    return np.arange(int(np.prod(shape))).reshape(shape)


ERROR_CASES = {
    # name: (layer factory, input, substrings the message must contain)
    "conv-ndim": (lambda: Conv2d(3, 2, 3), np.zeros((3, 5, 5)), ["Conv2d(3, 2", "4-D", "(3, 5, 5)"]),
    "conv-channels": (lambda: Conv2d(3, 2, 3), np.zeros((1, 2, 5, 5)),
                      ["Conv2d(3, 2", "3 channels", "(1, 3, 5, 5)", "(1, 2, 5, 5)"]),
    "conv-kernel-too-big": (lambda: Conv2d(1, 1, 5, padding=1), np.zeros((1, 1, 2, 6)),
                            ["Conv2d(1, 1", "5x5", "4x8", "(1, 1, 2, 6)"]),
    "conv-int": (lambda: Conv2d(1, 1, 1), _int_input((1, 1, 2, 2)), ["Conv2d(1, 1", "int64"]),
    "pool-ndim": (lambda: MaxPool2d(2), np.zeros((4, 4)), ["MaxPool2d(", "4-D", "(4, 4)"]),
    "pool-kernel-too-big": (lambda: MaxPool2d(4, padding=1), np.zeros((1, 1, 1, 3)),
                            ["MaxPool2d(", "kernel larger", "(1, 1, 1, 3)"]),
    "pool-int": (lambda: MaxPool2d(2), _int_input((1, 1, 2, 2)), ["MaxPool2d(", "int64"]),
    "linear-ndim": (lambda: Linear(4, 2), np.zeros((1, 1, 2, 2)), ["Linear(4, 2)", "2-D", "(1, 1, 2, 2)"]),
    "linear-features": (lambda: Linear(4, 2), np.zeros((3, 5)), ["Linear(4, 2)", "(3, 4)", "(3, 5)"]),
    "linear-int": (lambda: Linear(4, 2), _int_input((3, 4)), ["Linear(4, 2)", "int64"]),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_input_errors_name_layer_and_shapes(xp, name):
    factory, x, expected = ERROR_CASES[name]
    layer = factory()
    with pytest.raises(ValueError) as info:
        layer.forward(xp.asarray(x))
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("kernel, padding", [(3, 2), (2, 2), ((2, 4), (0, 3)), (1, 1)])
def test_maxpool_padding_over_half_kernel_is_refused(kernel, padding):
    with pytest.raises(ValueError, match=r"MaxPool2d\(.*padding must be at most half the kernel"):
        MaxPool2d(kernel, padding=padding)


@pytest.mark.parametrize("kernel, padding", [(3, 1), (2, 1), ((2, 4), (1, 2)), (1, 0)])
def test_maxpool_padding_up_to_half_kernel_is_accepted(kernel, padding):
    assert MaxPool2d(kernel, padding=padding).padding == pair(padding)


def test_dropout_p_out_of_range():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="Dropout"):
            Dropout(p)


def test_dropout_refuses_integer_input(xp):
    # Integer input is a dtype error as for Conv2d/Linear/MaxPool2d; today Dropout
    # divides by x.dtype.type(1 - p) == int(0.5) == 0 and returns NaN/inf silently.
    layer = Dropout(0.5, rng=0)
    with pytest.raises(ValueError, match="Dropout"):
        layer.forward(xp.asarray(_int_input((2, 3))))
