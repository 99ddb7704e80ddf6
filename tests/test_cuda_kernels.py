"""The GPU kernels of cuda_kernels.py: their NumPy twins against the CPU's own engine, and
(on a GPU, marked `gpu`) the CUDA kernels against their twins.

The twins are what the launch counter runs in place of the CUDA kernels, and the CUDA
kernels compute, element by element, the same index math; so a twin that matches the
CPU engine, and a CUDA kernel that matches its twin, make the GPU's conv, pool and SGD
the CPU's. The conv cases draw the geometries the net uses (3x3, stride 1, padding 1) and
others (kernels 1-5, strides 1-2, any padding up to the kernel's half), with each
padding mode.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import XP_SETTINGS, distinct_values, seeds
from tinyinterp import cuda_kernels, layers
from tinyinterp.backend import to_numpy
from tinyinterp.im2col import im2col as plain_im2col
from tinyinterp.layers import conv2d_backward, conv2d_forward
from tinyinterp.pooling import _maxpool2x2_backward, _maxpool2x2_forward


@st.composite
def conv_cases(draw):
    """(N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed), the net's 3x3 "same" conv often."""
    if draw(st.booleans()):
        KH = KW = 3
        SH = SW = PH = PW = 1
    else:
        KH, KW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        SH, SW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    mode = draw(st.sampled_from(["zeros", "replicate", "reflect"]))
    low_h, low_w = max(KH - 2 * PH, 1), max(KW - 2 * PW, 1)
    if mode == "reflect":  # reflect needs a pixel beyond the edge: pad < side
        low_h, low_w = max(low_h, PH + 1), max(low_w, PW + 1)
    H, W = draw(st.integers(low_h, low_h + 6)), draw(st.integers(low_w, low_w + 6))
    N, C, OC = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    return N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, draw(seeds)


def conv_arrays(case):
    N, C, OC, H, W, KH, KW, *_, seed = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, C, H, W)), rng.standard_normal((OC, C, KH, KW)),
            rng.standard_normal(OC))


def channel_first(a):
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def assert_close(got, expected, what):
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@given(case=conv_cases(), relu=st.booleans(), layout=st.booleans())
def test_kernel_conv_twins_match_the_cpu_engine(case, relu, layout):
    # the GPU's conv (im2col twin, product, col2im twin) against conv2d_forward/backward
    # on NumPy (the padded grid for "same" convs, plain im2col otherwise), float64
    N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed = case
    x, w, b = conv_arrays(case)
    if layout:
        x = channel_first(x)
    y, cache = conv2d_forward(x, w, b, (SH, SW), (PH, PW), relu, mode)
    gy, gcache = layers._kernel_conv_forward(x, w, b, (SH, SW), (PH, PW), relu, mode)
    assert gcache[0] == "kernel" and gy.shape == y.shape
    assert_close(gy, y, "y")
    dout = np.random.default_rng(seed + 1).standard_normal(y.shape)
    for input_grad in (True, False):
        expected = conv2d_backward(dout, cache, input_grad)
        got = layers._kernel_conv_backward(dout, gcache, input_grad)
        for e, g, what in zip(expected, got, ("dx", "dW", "db")):
            if e is None:
                assert g is None
            else:
                assert g.shape == e.shape and g.dtype == e.dtype, what
                assert_close(g, e, what)


@given(case=conv_cases())
def test_im2col_twin_is_plain_im2col_with_rows_channel_first(case):
    N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed = case
    if mode != "zeros":
        return  # the padding modes are checked through the conv above
    x, _, _ = conv_arrays(case)
    col = cuda_kernels.im2col(x, KH, KW, SH, SW, PH, PW)
    expected = plain_im2col(x.transpose(1, 0, 2, 3), KH, KW, SH, SW, PH, PW)  # (KH, KW, C, N, OH, OW)
    np.testing.assert_array_equal(col, expected.transpose(2, 0, 1, 3, 4, 5).reshape(col.shape))


@given(case=conv_cases())
def test_col2im_twin_is_the_adjoint_of_im2col(case):
    # <im2col(x), c> == <x, col2im(c)>: col2im sends every entry back where it was read
    N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    col = cuda_kernels.im2col(x, KH, KW, SH, SW, PH, PW)
    c = rng.standard_normal(col.shape)
    back = cuda_kernels.col2im(c, N, H, W, KH, KW, SH, SW, PH, PW)
    assert back.shape == x.shape
    assert float((col * c).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12, abs=1e-12)


@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(2, 9), W=st.integers(2, 9),
       seed=seeds, layout=st.booleans(), ties=st.booleans())
def test_maxpool2x2_twins_match_the_cpu_path(N, C, H, W, seed, layout, ties):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 1, (N, C, H, W)).astype(np.float64) if ties else distinct_values(rng, (N, C, H, W))
    if layout:
        x = channel_first(x)
    y, cache = _maxpool2x2_forward(x)
    gy, gcache = cuda_kernels.maxpool2x2_forward(x)
    np.testing.assert_array_equal(gy, y)
    # the layout is kept: channel first in, channel first out
    assert (gy.transpose(1, 0, 2, 3) if layout else gy).flags.c_contiguous
    dout = rng.standard_normal(y.shape)
    for d in (dout, channel_first(dout)):  # dout in either layout
        np.testing.assert_array_equal(cuda_kernels.maxpool2x2_backward(d, *gcache), _maxpool2x2_backward(d, *cache[1:]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.0, 5e-4])
def test_sgd_update_is_the_former_step_bit_for_bit(dtype, decay):
    rng = np.random.default_rng(0)
    p, g, v = (rng.standard_normal((4, 3)).astype(dtype) for _ in range(3))
    ep, ev = p.copy(), v.copy()
    eg = g + decay * ep if decay else g
    ev *= 0.9
    ev += eg
    ep -= 0.05 * ev
    cuda_kernels.sgd_update(p, g, v, 0.05, 0.9, decay)
    assert p.dtype == dtype
    np.testing.assert_array_equal(p, ep)
    np.testing.assert_array_equal(v, ev)


# ---- on a GPU: the CUDA kernels against their twins ----

@pytest.mark.gpu
@XP_SETTINGS
@given(case=conv_cases(), relu=st.booleans())
def test_cuda_conv_matches_the_cpu_engine(cupy, case, relu):
    N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed = case
    x, w, b = conv_arrays(case)
    y, cache = conv2d_forward(x, w, b, (SH, SW), (PH, PW), relu, mode)
    gy, gcache = conv2d_forward(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), (SH, SW), (PH, PW), relu, mode)
    assert gcache[0] == "kernel"
    assert_close(to_numpy(gy), y, "y")
    dout = np.random.default_rng(seed + 1).standard_normal(y.shape)
    for e, g, what in zip(conv2d_backward(dout, cache), conv2d_backward(cupy.asarray(dout), gcache),
                          ("dx", "dW", "db")):
        assert_close(to_numpy(g), e, what)


@pytest.mark.gpu
@XP_SETTINGS
@given(case=conv_cases())
def test_cuda_im2col_and_col2im_match_their_twins(cupy, case):
    N, C, OC, H, W, KH, KW, SH, SW, PH, PW, mode, seed = case
    x, _, _ = conv_arrays(case)
    col = cuda_kernels.im2col(x, KH, KW, SH, SW, PH, PW, mode)
    gcol = cuda_kernels.im2col(cupy.asarray(channel_first(x)), KH, KW, SH, SW, PH, PW, mode)
    np.testing.assert_array_equal(to_numpy(gcol), col)
    c = np.random.default_rng(seed).standard_normal(col.shape)
    back = cuda_kernels.col2im(c, N, H, W, KH, KW, SH, SW, PH, PW)
    gback = cuda_kernels.col2im(cupy.asarray(c), N, H, W, KH, KW, SH, SW, PH, PW)
    assert_close(to_numpy(gback), back, "col2im")


@pytest.mark.gpu
@XP_SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(2, 9), W=st.integers(2, 9), seed=seeds,
       layout=st.booleans())
def test_cuda_maxpool2x2_matches_its_twins(cupy, N, C, H, W, seed, layout):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 1, (N, C, H, W)).astype(np.float32)  # ties
    if layout:
        x = channel_first(x)
    y, cache = cuda_kernels.maxpool2x2_forward(x)
    gy, gcache = cuda_kernels.maxpool2x2_forward(cupy.asarray(x) if not layout else
                                                 cupy.asarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(to_numpy(gy), y)
    np.testing.assert_array_equal(to_numpy(gcache[1]), cache[1])
    dout = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(to_numpy(cuda_kernels.maxpool2x2_backward(cupy.asarray(dout), *gcache)),
                                  cuda_kernels.maxpool2x2_backward(dout, *cache))


@pytest.mark.gpu
def test_cuda_sgd_update_matches_its_twin(cupy):
    rng = np.random.default_rng(0)
    p, g, v = (rng.standard_normal((64, 9)) for _ in range(3))
    gp, gg, gv = cupy.asarray(p), cupy.asarray(g), cupy.asarray(v)
    cuda_kernels.sgd_update(p, g, v, 0.05, 0.9, 5e-4)
    cuda_kernels.sgd_update(gp, gg, gv, 0.05, 0.9, 5e-4)
    np.testing.assert_allclose(to_numpy(gp), p, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(to_numpy(gv), v, rtol=1e-15, atol=1e-15)
