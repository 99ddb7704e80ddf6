"""The fast paths of conv_engine.py and layers.py against the readable ones, PyTorch and
finite differences.

conv2d_forward/backward take the padded-grid path (padded_grid.PaddedGrid) for stride-1
"same" convs (odd kernel, pad = kernel // 2), and maxpool2d_forward/backward a two-step
path for 2x2 / stride-2 pooling. The random cases of test_layers.py seldom draw exactly
those geometries, so this file draws only them: values against the naive loops and
against PyTorch (float64), gradients against central differences, several chunkings of
the im2col matrix (chunk boundaries anywhere), both layouts of that matrix (every kernel
offset stacked, or one kernel row with its rows summed after the product) in the
forward and in the backward, the weight gradient without dx, inputs in either memory
layout, and the ReLU fused into the conv (``relu=True``) against a conv and then a ReLU.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import XP_SETTINGS, distinct_values, seeds
from tinyinterp import conv_engine, gradcheck
from tinyinterp.backend import to_numpy
from tinyinterp.im2col import im2col
from tinyinterp.padded_grid import PaddedGrid, grid_columns
from tinyinterp.layers import Conv2d, conv2d_backward, conv2d_forward, conv2d_naive
from tinyinterp.pooling import MaxPool2d, maxpool2d_backward, maxpool2d_forward, maxpool2d_naive


@st.composite
def same_conv_cases(draw):
    """(N, C, OC, H, W, KH, KW, seed) for stride 1 and pad = kernel // 2 (odd kernels)."""
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    # OC < KW * C: kernel rows summed in the forward, stacked in the backward's dx conv
    # (whose input has OC channels); 3C + 1 and up the other way round (for KW <= 3)
    OC = draw(st.sampled_from([1, 2, 5, 3 * C + 1]))
    KH, KW = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    return N, C, OC, H, W, KH, KW, draw(seeds)


def arrays(case):
    N, C, OC, H, W, KH, KW, seed = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, C, H, W)), rng.standard_normal((OC, C, KH, KW)),
            rng.standard_normal(OC), rng.standard_normal((N, OC, H, W)))


def channel_major(a):
    """The same values with the channel axis first in memory, as the convs return them."""
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


@pytest.fixture(params=[None, 1, 7], ids=["chunk-default", "chunk-1", "chunk-7"])
def chunking(request, monkeypatch):
    """Default chunks, or chunks of 1 or 7 im2col columns: boundaries everywhere."""
    if request.param is not None:
        monkeypatch.setattr(conv_engine, "chunk_columns", lambda rows, itemsize, xp, length, **kw: request.param)
    return request.param


@XP_SETTINGS
@given(case=same_conv_cases(), layout=st.booleans())
def test_same_conv_matches_naive_and_torch(xp, chunking, case, layout):
    torch = pytest.importorskip("torch")
    x, w, b, dout = arrays(case)
    KH, KW = case[5:7]
    pad = (KH // 2, KW // 2)
    if layout:
        x, dout = channel_major(x), channel_major(dout)
    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 1, pad)
    assert cache[0] == "grid"
    dx, dw, db = conv2d_backward(xp.asarray(dout), cache)
    np.testing.assert_allclose(to_numpy(y), conv2d_naive(x, w, b, 1, pad), rtol=1e-12, atol=1e-12)
    # without dx, dW comes from x's im2col instead of dout's: the same numbers
    none, dw2, db2 = conv2d_backward(xp.asarray(dout), cache, input_grad=False)
    assert none is None
    np.testing.assert_allclose(to_numpy(dw2), to_numpy(dw), rtol=1e-10, atol=1e-10 * float(abs(dw).max()))
    np.testing.assert_array_equal(to_numpy(db2), to_numpy(db))

    tx, tw, tb = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
    ty.backward(torch.tensor(np.ascontiguousarray(dout)))
    for ours, theirs, what in ((y, ty, "y"), (dx, tx.grad, "dx"), (dw, tw.grad, "dW"), (db, tb.grad, "db")):
        theirs = theirs.detach().numpy()
        assert ours.shape == theirs.shape, what
        scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-300)
        np.testing.assert_allclose(to_numpy(ours), theirs, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


@XP_SETTINGS
@given(case=same_conv_cases())
def test_same_conv_gradcheck(xp, case):
    x, w, b, _ = arrays(case)
    N, C, OC, H, W, KH, KW, seed = case
    layer = Conv2d(C, OC, (KH, KW), padding=(KH // 2, KW // 2))
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    result = gradcheck.check_layer(layer, xp.asarray(x), seed=seed)
    assert result.max_rel_error < gradcheck.TOLERANCE, str(result)


@pytest.mark.parametrize("C, OC, layouts", [(3, 32, ("stacked", "summed")), (4, 4, ("summed", "summed")),
                                            (32, 3, ("summed", "stacked"))])
def test_grid_layout_is_the_cheaper_one(C, OC, layouts):
    # summing kernel rows costs (KH-1)*OC rows of additions, stacking them (KH-1)*KW*C
    # copied rows: the forward conv maps C -> OC channels, the backward's dx conv OC -> C
    g = PaddedGrid(2, 6, 6, 1, 1)
    forward, backward = conv_engine._grid_layout(g, C, OC, 3, 3), conv_engine._grid_layout(g, OC, C, 3, 3)
    assert tuple("summed" if lay[0] else "stacked" for lay in (forward, backward)) == layouts
    assert forward[0] or (forward[2], forward[3]) == (1, 0)  # stacked: one block, no halo
    summed = forward if forward[0] else backward
    assert summed[2] == 3 and summed[3] == g.row and summed[1] == [-1, 0, 1]


@pytest.mark.parametrize("C, OC", [(3, 32), (4, 4), (32, 3)])  # both layouts, both ways round
def test_same_conv_float32_and_dout_untouched(xp, C, OC):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, C, 6, 5)).astype(np.float32)
    w = rng.standard_normal((OC, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    dout_np = rng.standard_normal((2, OC, 6, 5)).astype(np.float32)
    dout = xp.asarray(dout_np)
    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 1, 1)
    grads = conv2d_backward(dout, cache)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    np.testing.assert_array_equal(to_numpy(dout), dout_np)
    expected = conv2d_naive(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-4, atol=1e-4)


@XP_SETTINGS
@given(case=same_conv_cases(), general=st.booleans())
def test_fused_relu_is_the_conv_then_the_relu(xp, chunking, case, general):
    # relu=True must give max(y, 0) and, in the backward, the conv's gradients of
    # dout * (y > 0), bit for bit: the same products in the same order, the ReLU exact.
    # ``general``: stride 2, the im2col path, which fuses the plain way
    x, w, b, _ = arrays(case)
    KH, KW = case[5:7]
    stride, pad = (2 if general else 1), (KH // 2, KW // 2)
    x, w, b = xp.asarray(x), xp.asarray(w), xp.asarray(b)
    y, cache = conv2d_forward(x, w, b, stride, pad)
    fused, fused_cache = conv2d_forward(x, w, b, stride, pad, relu=True)
    assert fused_cache[0] == ("im2col" if general else "grid")
    np.testing.assert_array_equal(to_numpy(fused), np.maximum(to_numpy(y), 0))
    dout = xp.asarray(np.random.default_rng(case[-1]).standard_normal(y.shape))
    through_relu = dout * (y > 0)
    for input_grad in (True, False):
        expected = conv2d_backward(through_relu, cache, input_grad=input_grad)
        got = conv2d_backward(dout, fused_cache, input_grad=input_grad)
        for e, g, what in zip(expected, got, ("dx", "dW", "db")):
            if e is None:
                assert g is None
            else:
                np.testing.assert_array_equal(to_numpy(g), to_numpy(e), err_msg=what)


def test_fused_relu_float32_and_dout_untouched(xp):
    rng = np.random.default_rng(1)
    x, w, b = (xp.asarray(rng.standard_normal(s).astype(np.float32)) for s in ((2, 4, 6, 5), (8, 4, 3, 3), (8,)))
    dout_np = rng.standard_normal((2, 8, 6, 5)).astype(np.float32)
    dout = xp.asarray(dout_np)
    y, cache = conv2d_forward(x, w, b, 1, 1, relu=True)
    grads = conv2d_backward(dout, cache)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert float(y.min()) == 0.0 and float(y.max()) > 0.0  # rectified, and not all zero
    np.testing.assert_array_equal(to_numpy(dout), dout_np)


@XP_SETTINGS
@given(case=same_conv_cases(), chunk=st.sampled_from([1, 5, 13, 10**6]))
def test_grid_columns_are_the_im2col_of_the_zero_padded_images(xp, case, chunk):
    # the grid has no zero column, so the entries that cross the side of an image must be
    # zeroed in every chunk (``wrap``); at the pixels, the result is plain im2col's
    N, C, _, H, W, KH, KW, seed = case
    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    g = PaddedGrid(N, H, W, KH // 2, KW // 2)
    grid = g.embed(xp.asarray(x).transpose(1, 0, 2, 3))
    parts = [to_numpy(col).copy() for _, _, col in grid_columns(
        grid, g.offsets(KH, KW), g.start, g.length, chunk, wrap=(W, g.shifts(KH, KW)))]
    col = np.concatenate(parts, axis=1)  # (KH*KW*C, every grid position)
    pixels = col.reshape(KH * KW * C, N, H + KH // 2, W)[:, :, :H]
    expected = im2col(x.transpose(1, 0, 2, 3), KH, KW, 1, 1, KH // 2, KW // 2)
    np.testing.assert_array_equal(pixels, expected.reshape(KH * KW * C, N, H, W))


def test_padded_grid_round_trip_and_zeros(xp):
    a = xp.asarray(np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) + 1)
    g = PaddedGrid(3, 4, 5, 1, 2)
    grid = g.embed(a)
    assert g.margin == 1 and grid.shape == (2, (3 + 2) * g.block)
    inside = grid[:, g.start:g.start + g.length]
    np.testing.assert_array_equal(to_numpy(g.interior(inside)), to_numpy(a))
    # every other grid entry is padding: zero
    assert float(grid.sum()) == float(a.sum()) and int((grid != 0).sum()) == a.size
    # the pixel at kernel offset (i, j) of pixel (h, w) is offsets[k] away, padding included
    k = 2 * 5 + 4  # (i, j) = (2, 4) of a 3x5 kernel: one row down, two columns right
    off = g.offsets(3, 5)[k]
    flat = g.start + 1 * g.block + 2 * g.row + 1  # image 1, pixel (2, 1)
    assert float(grid[0, flat + off]) == float(a[0, 1, 3, 3])
    # tiny images: one blank image is not margin enough for the farthest offset
    tiny = PaddedGrid(2, 1, 1, 1, 2)  # a 3x5 kernel on 1x1 images: offsets reach 1*1 + 2
    assert tiny.margin == 2 and tiny.start == 2 * tiny.block >= 3
    assert tiny.embed(xp.ones((1, 2, 1, 1))).shape == (1, (2 + 2 * 2) * tiny.block)


@XP_SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(2, 9), W=st.integers(2, 9),
       seed=seeds, layout=st.booleans())
def test_maxpool2x2_matches_naive_and_torch(xp, N, C, H, W, seed, layout):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (N, C, H, W))  # no ties: both libraries pick the same element
    if layout:
        x = channel_major(x)
    y, cache = maxpool2d_forward(xp.asarray(x), 2)
    assert cache[0] == "2x2"
    dout = rng.standard_normal(y.shape)
    dx = maxpool2d_backward(xp.asarray(dout), cache)
    np.testing.assert_array_equal(to_numpy(y), maxpool2d_naive(x, 2))
    tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 2)
    ty.backward(torch.tensor(dout))
    np.testing.assert_array_equal(to_numpy(y), ty.detach().numpy())
    np.testing.assert_array_equal(to_numpy(dx), tx.grad.numpy())


@XP_SETTINGS
@given(seed=seeds, H=st.integers(2, 7), W=st.integers(2, 7))
def test_maxpool2x2_ties_go_to_the_first_element(xp, seed, H, W):
    # few distinct values: many ties; the gradient goes to the first max in row-major order
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 1, size=(2, 2, H, W)).astype(np.float32)
    y, cache = maxpool2d_forward(xp.asarray(x), 2)
    dx = to_numpy(maxpool2d_backward(xp.asarray(np.ones(y.shape, np.float32)), cache))
    assert dx.dtype == np.float32
    expected = np.zeros_like(x)
    for i in range(H // 2):
        for j in range(W // 2):
            window = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 2, 4)
            first = window.argmax(axis=2)  # argmax returns the first maximum
            for n in range(2):
                for c in range(2):
                    di, dj = divmod(int(first[n, c]), 2)
                    expected[n, c, 2 * i + di, 2 * j + dj] = 1
    np.testing.assert_array_equal(dx, expected)


def test_maxpool2x2_gradcheck(xp):
    x = distinct_values(np.random.default_rng(3), (2, 3, 5, 6))
    result = gradcheck.check_layer(MaxPool2d(2), xp.asarray(x), seed=3)
    assert result.max_rel_error < gradcheck.TOLERANCE, str(result)
