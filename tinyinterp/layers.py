"""Layers: each a pair of pure functions wrapped by a thin class.

The functional core::

    y, cache = conv2d_forward(x, weight, bias, stride, pad)
    dx, dweight, dbias = conv2d_backward(dout, cache)

and the layer object that holds parameters and the cache::

    layer = Conv2d(3, 8, 3, padding=1)
    y = layer.forward(x)          # caches what backward needs
    dx = layer.backward(dout)     # returns dL/dx, *sets* layer.grads["W"], ["b"]

Contract for every layer: ``params`` and ``grads`` are dicts with the same keys;
backward never changes ``dout`` and returns arrays in the input's dtype (shape-only
layers such as Flatten may return a view of ``dout``; nothing writes into it).
Shapes are (N, C, H, W) for images and feature maps (notation in im2col.py).
"""
from .backend import get_array_module, he_normal, host_rng, host_zeros, random_uniform_like, to_device
from ._checks import check_array, check_channels
from .im2col import PaddedGrid, chunk_columns, col2im, conv_out_size, grid_columns, im2col, pair


def _short(p):
    """(3, 3) -> 3 for printing; (2, 3) stays."""
    return p[0] if p[0] == p[1] else p


class Layer:
    """Base class: parameters, gradients, train/eval mode and device moves."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}  # non-trained state that a checkpoint must keep
        self.training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move parameters and buffers to "cpu" or "gpu" (build the optimiser after this)."""
        for d in (self.params, self.buffers):
            for k in d:
                d[k] = to_device(d[k], device)
        self.grads = {}
        return self

    def astype(self, dtype):
        """Cast parameters (e.g. to float64 for gradient checks)."""
        for k in self.params:
            self.params[k] = self.params[k].astype(dtype)
        self.grads = {}
        return self

    def __repr__(self):
        return f"{type(self).__name__}()"


# ---- convolution ----
#
# Two implementations of the same function, chosen by the conv's geometry:
#
# - stride 1 and "same" padding (odd kernel, pad = kernel // 2; every conv of the small
#   VGG): the padded grid of im2col.py. Forward is im2col (built from shifted rows of the
#   grid, a cache-sized chunk at a time) times the weights; the backward never builds
#   col2im: dx is the same kind of product, a convolution of dout with the transposed,
#   flipped weights (the flip is the negated shifts), and dW comes from the same chunk.
# - anything else (strides, other paddings): plain im2col and col2im, as in lesson 02.
#
# Both keep the channel axis first in memory: y is returned as a (N, OC, H, W) view of a
# (OC, N, H, W) array. Element-wise layers keep that layout, so the next conv reads its
# input channel by channel without a transposing copy.

def _is_same_conv(KH, KW, SH, SW, PH, PW):
    return SH == SW == 1 and KH == 2 * PH + 1 and KW == 2 * PW + 1


def _matmul_into(a, b, out):
    """out[...] = a @ b. NumPy writes the product straight into ``out`` (a slice of a
    larger array is fine); CuPy's matmul has no ``out`` in every version, so it copies."""
    xp = get_array_module(out)
    if xp.__name__ == "numpy":
        xp.matmul(a, b, out=out)
    else:
        out[...] = a @ b


def conv2d_forward(x, weight, bias, stride=1, pad=0):
    """y[n, o] = sum_c x_pad[n, c] (*) weight[o, c] + bias[o], as one matrix product.

    Args:
        x: (N, C, H, W). weight: (OC, C, KH, KW). bias: (OC,).
    Returns:
        y: (N, OC, OH, OW) and the cache for :func:`conv2d_backward`.
    """
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    SH, SW = pair(stride)
    PH, PW = pair(pad)
    xp = get_array_module(x)
    dtype = xp.result_type(x.dtype, weight.dtype)
    # weight rows in the same (i, j, c) order as the im2col rows
    w2d = weight.transpose(0, 2, 3, 1).reshape(OC, KH * KW * C).astype(dtype, copy=False)
    bias = bias.astype(dtype, copy=False)
    if _is_same_conv(KH, KW, SH, SW, PH, PW):
        g = PaddedGrid(N, H, W, PH, PW)
        grid = g.embed(x.transpose(1, 0, 2, 3).astype(dtype, copy=False))  # (C, flat)
        y = xp.empty((OC, g.length), dtype=dtype)  # the conv at every image grid position
        w2b = xp.concatenate([w2d, bias[:, None]], axis=1)  # the bias meets col's row of ones
        chunk = chunk_columns(KH * KW * C, grid.itemsize, xp)
        for s, e, col in grid_columns(grid, g.offsets(KH, KW), g.start, g.length, chunk, ones_row=True):
            _matmul_into(w2b, col, y[:, s:e])
        y = g.interior(y).transpose(1, 0, 2, 3)  # (N, OC, H, W) view of the pixels
        # the grid is all backward needs of x: 1.06x its size (im2col would be 9x)
        return y, ("grid", g, grid, weight, dtype)
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    col = im2col(x.transpose(1, 0, 2, 3), KH, KW, SH, SW, PH, PW)  # (KH, KW, C, N, OH, OW)
    col = col.reshape(KH * KW * C, N * OH * OW).astype(dtype, copy=False)
    y = w2d @ col + bias[:, None]  # (OC, N*OH*OW)
    y = y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3)  # (N, OC, OH, OW)
    # col is cached (memory for speed): dweight needs it, and recomputing it costs a pass
    cache = ("im2col", x.shape, weight.shape, col, w2d, (SH, SW), (PH, PW))
    return y, cache


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward. dout: (N, OC, OH, OW) -> (dx, dweight, dbias)."""
    if cache[0] == "grid":
        return _same_conv_backward(dout, *cache[1:])
    _, x_shape, w_shape, col, w2d, (SH, SW), (PH, PW) = cache
    N, C, H, W = x_shape
    OC, _, KH, KW = w_shape
    OH, OW = dout.shape[2:]
    dy = dout.transpose(1, 0, 2, 3).reshape(OC, N * OH * OW).astype(col.dtype, copy=False)
    dbias = dy.sum(axis=1)
    dweight = (dy @ col.T).reshape(OC, KH, KW, C).transpose(0, 3, 1, 2)  # (OC, C, KH, KW)
    dcol = (w2d.T @ dy).reshape(KH, KW, C, N, OH, OW)
    dx = col2im(dcol, (C, N, H, W), SH, SW, PH, PW).transpose(1, 0, 2, 3)  # (N, C, H, W)
    xp = get_array_module(dout)
    return xp.ascontiguousarray(dx), xp.ascontiguousarray(dweight), dbias


def _same_conv_backward(dout, g, grid, weight, dtype):
    """Backward of the padded-grid conv.

    With dy on the same grid (zeros in the gaps and margins), forward was
        y[o, p] = sum_k sum_c w[o, c, k] grid[c, p + off_k],
    so, substituting t = p + off_k,
        dx[c, t]    = sum_k sum_o w[o, c, k] dy[o, t - off_k]   (a conv of dy: shifts -off_k)
        dw[o, c, k] = sum_t dy[o, t - off_k] grid[c, t].
    Two ways to evaluate that, both a chunk of columns at a time:
    - gather dy (C >= OC / 3, every conv of the VGG but the first): one im2col matrix of
      dy with the shifts -off_k serves both: dx = (C, K*OC) @ col, dw += col @ grid.T;
    - gather x, scatter dx (few input channels: the first conv, C = 3): building dy's
      K*OC rows would cost far more than the products. Instead dw += dy @ xcol.T with x's
      K*C-row im2col, and dx is col2im on the grid: Z = (K*C, OC) @ dy, and row (k, c) of
      Z is added into dx[c] shifted by +off_k.
    """
    xp = get_array_module(dout)
    OC, C, KH, KW = weight.shape
    K = KH * KW
    offsets = g.offsets(KH, KW)
    start, length = g.start, g.length
    if 3 * C >= OC:
        dy = g.embed(dout.transpose(1, 0, 2, 3).astype(dtype, copy=False))  # (OC, flat)
        dbias = dy.sum(axis=1)  # the gaps are zeros
        # wt[c, (k, o)] = w[o, c, k]: the transposed weights; the flip is in the negated shifts
        wt = weight.transpose(1, 2, 3, 0).reshape(C, K * OC).astype(dtype, copy=False)
        dx = xp.empty((C, length), dtype=dtype)
        dw = xp.zeros((K * OC, C), dtype=dtype)  # rows in (k, o) order
        chunk = chunk_columns(K * OC, dy.itemsize, xp)
        for s, e, col in grid_columns(dy, [-off for off in offsets], start, length, chunk):
            _matmul_into(wt, col, dx[:, s:e])
            dw += col @ grid[:, start + s:start + e].T
        dweight = dw.reshape(K, OC, C).transpose(1, 2, 0)  # (OC, C, K)
        dx = g.interior(dx)
    else:
        w9t = weight.transpose(2, 3, 1, 0).reshape(K * C, OC).astype(dtype, copy=False)  # rows (k, c)
        N, H, W = g.N, g.H, g.W
        dy = dout.transpose(1, 0, 2, 3).astype(dtype, copy=False)  # (OC, N, H, W)
        dbias = dy.reshape(OC, -1).sum(axis=1)
        dxg = xp.zeros_like(grid)  # the scatter target: every grid position, margins too
        dw = xp.zeros((OC, K * C), dtype=dtype)  # columns in (k, c) order
        per = max(1, chunk_columns(K * C, grid.itemsize, xp, mib=8) // (H * W))  # images per chunk
        for n0 in range(0, N, per):
            n1 = min(n0 + per, N)
            dyc = dy[:, n0:n1].reshape(OC, -1)  # dy at the pixels only: no gaps to skip
            xcol = xp.empty((K * C, (n1 - n0) * H * W), dtype=dtype)  # x's im2col, pixels only
            for k, off in enumerate(offsets):
                xcol[k * C:(k + 1) * C].reshape(C, n1 - n0, H, W)[...] = g.pixels(grid, off, n0, n1)
            dw += dyc @ xcol.T
            z = w9t @ dyc  # (K*C, pixels): row (k, c) belongs to the pixel at +off_k
            for k, off in enumerate(offsets):
                dxg_k = g.pixels(dxg, off, n0, n1)
                dxg_k += z[k * C:(k + 1) * C].reshape(C, n1 - n0, H, W)
        dweight = dw.reshape(OC, K, C).transpose(0, 2, 1)  # (OC, C, K)
        dx = g.pixels(dxg, 0, 0, N)
    dweight = xp.ascontiguousarray(dweight.reshape(OC, C, KH, KW))
    return dx.transpose(1, 0, 2, 3), dweight, dbias  # dx: (N, C, H, W) view of the pixels


def conv2d_naive(x, weight, bias, stride=1, pad=0):
    """The same convolution by explicit loops: reads like the math, used as a test oracle."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    SH, SW = pair(stride)
    PH, PW = pair(pad)
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    xpad = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    y = xp.zeros((N, OC, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(OC):
            for i in range(OH):
                for j in range(OW):
                    window = xpad[n, :, i * SH:i * SH + KH, j * SW:j * SW + KW]
                    y[n, o, i, j] = (window * weight[o]).sum() + bias[o]
    return y


class Conv2d(Layer):
    """2-D convolution with params W (OC, C, KH, KW) and b (OC,); He-initialised."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, rng=0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        KH, KW = self.kernel_size
        rng = host_rng(rng)
        self.params["W"] = he_normal(rng, (out_channels, in_channels, KH, KW), in_channels * KH * KW)
        self.params["b"] = host_zeros((out_channels,))
        self.cache = None

    def forward(self, x):
        name = repr(self)
        check_array(name, x, 4)
        check_channels(name, x, self.in_channels)
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        H, W = x.shape[2] + 2 * PH, x.shape[3] + 2 * PW
        if KH > H or KW > W:
            raise ValueError(
                f"{name}: kernel {KH}x{KW} is larger than the padded input {H}x{W} "
                f"(input shape {tuple(x.shape)})"
            )
        y, self.cache = conv2d_forward(x, self.params["W"], self.params["b"], self.stride, self.padding)
        return y

    def backward(self, dout):
        dx, self.grads["W"], self.grads["b"] = conv2d_backward(dout, self.cache)
        return dx

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={_short(self.kernel_size)}, "
                f"stride={_short(self.stride)}, padding={_short(self.padding)})")


# ---- max-pooling ----

def maxpool2d_forward(x, kernel_size, stride=None, pad=0):
    """y[n, c, i, j] = max over the window; padding never wins (it is -inf).

    Returns y (N, C, OH, OW) and a cache of where each window's max was (ties go to the
    first element in row-major window order).
    """
    KH, KW = pair(kernel_size)
    SH, SW = pair(kernel_size if stride is None else stride)
    PH, PW = pair(pad)
    if (KH, KW, SH, SW, PH, PW) == (2, 2, 2, 2, 0, 0):
        return _maxpool2x2_forward(x)
    col = im2col(x, KH, KW, SH, SW, PH, PW, fill=-float("inf"))  # (KH, KW, N, C, OH, OW)
    col = col.reshape(KH * KW, *col.shape[2:])
    arg = col.argmax(axis=0)  # (N, C, OH, OW): all that backward needs
    y = col.max(axis=0)
    return y, ("im2col", x.shape, arg, (KH, KW), (SH, SW), (PH, PW))


def maxpool2d_backward(dout, cache):
    """Route each dout entry to the window element that was the max."""
    if cache[0] == "2x2":
        return _maxpool2x2_backward(dout, *cache[1:])
    xp = get_array_module(dout)
    _, x_shape, arg, (KH, KW), (SH, SW), (PH, PW) = cache
    k = xp.arange(KH * KW).reshape(-1, 1, 1, 1, 1)
    dcol = (k == arg[None]) * dout[None]  # (KH*KW, N, C, OH, OW), one winner per window
    dcol = dcol.astype(dout.dtype, copy=False).reshape(KH, KW, *dout.shape)
    return col2im(dcol, x_shape, SH, SW, PH, PW)


# The 2x2, stride-2 pooling of the VGG, without im2col: strided views pick the window
# elements, and the max is taken in two halving steps, first across each pair of columns,
# then across each pair of rows. Two booleans per window say where the max was: "the left
# column won" (for each of the window's two rows) and "the top row won". Comparing with >=
# gives ties to the left and the top, i.e. to the first element in row-major order.
# Everything is element-wise on views, so it runs in whatever memory layout x has (the
# convs give channel-major maps) and allocates its results in that same layout.

def _maxpool2x2_forward(x):
    xp = get_array_module(x)
    N, C, H, W = x.shape
    x = x[:, :, :H - H % 2, :W - W % 2]  # a trailing odd row or column is in no window
    left, right = x[..., 0::2], x[..., 1::2]
    cols = xp.maximum(left, right)  # (N, C, H, OW): max of each row of each window
    left_won = left >= right
    top, bottom = cols[:, :, 0::2], cols[:, :, 1::2]
    y = xp.maximum(top, bottom)  # (N, C, OH, OW)
    top_won = top >= bottom
    return y, ("2x2", (N, C, H, W), left_won, top_won)


def _maxpool2x2_backward(dout, x_shape, left_won, top_won):
    """dout goes to the winning row of each window, then to the winning column of that row."""
    xp = get_array_module(dout)
    N, C, OH, OW = dout.shape
    rows = xp.empty_like(dout, shape=(N, C, 2 * OH, OW))  # dout placed on the winning rows
    xp.multiply(dout, top_won, out=rows[:, :, 0::2])
    xp.multiply(dout, ~top_won, out=rows[:, :, 1::2])
    dx = xp.empty_like(dout, shape=x_shape)
    if x_shape[2] % 2 or x_shape[3] % 2:  # the row or column no window covered
        dx[...] = 0
    xp.multiply(rows, left_won, out=dx[:, :, :2 * OH, 0:2 * OW:2])
    xp.multiply(rows, ~left_won, out=dx[:, :, :2 * OH, 1:2 * OW:2])
    return dx


def maxpool2d_naive(x, kernel_size, stride=None, pad=0):
    """Max-pooling by explicit loops (test oracle)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW = pair(kernel_size)
    SH, SW = pair(kernel_size if stride is None else stride)
    PH, PW = pair(pad)
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    xpad = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=-float("inf"))
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = xpad[:, :, i * SH:i * SH + KH, j * SW:j * SW + KW].max(axis=(2, 3))
    return y


class MaxPool2d(Layer):
    """Max-pooling; stride defaults to the kernel size; padding at most half the kernel."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = pair(kernel_size if stride is None else stride)
        self.padding = pair(padding)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            # a window made only of padding would have no input to take the max of
            raise ValueError(f"{self!r}: padding must be at most half the kernel size")
        self.cache = None

    def forward(self, x):
        check_array(repr(self), x, 4)
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        if KH > x.shape[2] + 2 * PH or KW > x.shape[3] + 2 * PW:
            raise ValueError(f"{self!r}: kernel larger than the padded input {tuple(x.shape)}")
        y, self.cache = maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return y

    def backward(self, dout):
        return maxpool2d_backward(dout, self.cache)

    def __repr__(self):
        return (f"MaxPool2d(kernel_size={_short(self.kernel_size)}, stride={_short(self.stride)}, "
                f"padding={_short(self.padding)})")


# ---- element-wise and shape layers ----

class ReLU(Layer):
    """y = max(x, 0)."""

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.maximum(x, 0)
        # all that backward needs; y > 0 exactly where x > 0, and y is contiguous where x
        # may be a view with gaps (a conv's output), so this pass reads memory faster
        self.mask = y > 0
        return y

    def backward(self, dout):
        return dout * self.mask  # a fresh array; dout untouched


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x):
        self.input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.input_shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest
    by 1/(1-p), so eval mode is the identity. Masks come from a seeded host generator."""

    def __init__(self, p=0.5, rng=0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p
        self.rng = host_rng(rng)

    def forward(self, x):
        check_array(repr(self), x, x.ndim if hasattr(x, "ndim") else -1)
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = random_uniform_like(self.rng, x) >= self.p
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask

    def __repr__(self):
        return f"Dropout(p={self.p})"


# ---- fully connected ----

def linear_forward(x, weight, bias):
    """y = x @ weight + bias. x: (N, in), weight: (in, out), bias: (out,)."""
    return x @ weight + bias, (x, weight)


def linear_backward(dout, cache):
    x, weight = cache
    return dout @ weight.T, x.T @ dout, dout.sum(axis=0)


class Linear(Layer):
    """Fully connected layer with params W (in, out) and b (out,).

    He-initialised, or N(0, weight_std^2) when ``weight_std`` is given (a small std for
    the last layer keeps the first logits near 0, so training starts at loss log K).
    """

    def __init__(self, in_features, out_features, rng=0, weight_std=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = host_rng(rng)
        fan_in = in_features if weight_std is None else 2.0 / weight_std ** 2
        self.params["W"] = he_normal(rng, (in_features, out_features), fan_in)
        self.params["b"] = host_zeros((out_features,))
        self.cache = None

    def forward(self, x):
        check_array(repr(self), x, 2)
        check_channels(repr(self), x, self.in_features)
        y, self.cache = linear_forward(x, self.params["W"], self.params["b"])
        return y

    def backward(self, dout):
        dx, self.grads["W"], self.grads["b"] = linear_backward(dout, self.cache)
        return dx

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"
