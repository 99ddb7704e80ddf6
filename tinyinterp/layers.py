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

The convs with stride 1 and "same" padding (every conv of the small VGG) run on the fast
padded-grid engine of conv_engine.py; ``conv2d_forward`` / ``conv2d_backward`` here choose
it and hold the plain im2col path for every other geometry. Max-pooling is in pooling.py,
the padding with a map's own pixels in padding.py.
"""
from . import cuda_kernels
from .backend import (get_array_module, he_normal, host_rng, host_zeros, random_uniform_like, to_device,
                      uses_cuda_kernels)
from ._checks import check_array, check_channels
from .conv_engine import is_same_conv, same_conv_backward, same_conv_forward
from .im2col import col2im, conv_out_size, im2col, pair, short_pair
from .padding import check_padding_mode, pad2d, pad2d_backward


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

    def backward_params(self, dout):
        """Only the parameter gradients, no dL/dx: all that the first layer of a net needs,
        whose input is the data. Layers that can skip the work of dx override this."""
        self.backward(dout)

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
#   VGG): the fast padded-grid engine of conv_engine.py (lesson 12), which builds the
#   im2col matrix from shifted rows of a padded copy of x, a cache-sized chunk at a time,
#   and needs no col2im in the backward.
# - anything else (strides, other paddings): plain im2col and col2im, as in lesson 02.
#
# On a GPU every conv takes a third way (``_kernel_conv_forward``): the im2col matrix built
# by one kernel and the input gradient summed back by one (cuda_kernels.py), since there
# a conv's cost is the number of kernels it launches, not its copies.
#
# Both keep the channel axis first in memory: y is returned as a (N, OC, H, W) view of a
# (OC, N, H, W) array. Element-wise layers keep that layout, so the next conv reads its
# input channel by channel without a transposing copy.

def conv2d_forward(x, weight, bias, stride=1, pad=0, relu=False, padding_mode="zeros"):
    """y[n, o] = sum_c x_pad[n, c] (*) weight[o, c] + bias[o], as one matrix product.

    Args:
        x: (N, C, H, W). weight: (OC, C, KH, KW). bias: (OC,).
        relu: return max(y, 0) instead, the conv and a ReLU after it in one function
            (``Sequential`` fuses them this way). Its backward then takes dL/d(max(y, 0)).
        padding_mode: what x_pad holds beyond the image: "zeros", or the image's own
            pixels, "replicate" or "reflect" (:func:`pad2d`).
    Returns:
        y: (N, OC, OH, OW) and the cache for :func:`conv2d_backward`.
    """
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    SH, SW = pair(stride)
    PH, PW = pair(pad)
    check_padding_mode(padding_mode, (H, W), (PH, PW))
    if uses_cuda_kernels(get_array_module(x)):
        dtype = get_array_module(x).result_type(x.dtype, weight.dtype)
        return _kernel_conv_forward(x, weight.astype(dtype, copy=False), bias.astype(dtype, copy=False),
                                    (SH, SW), (PH, PW), relu, padding_mode)
    if padding_mode != "zeros" and (PH or PW):
        return _padded_conv_forward(x, weight, bias, (SH, SW), (PH, PW), relu, padding_mode)
    xp = get_array_module(x)
    dtype = xp.result_type(x.dtype, weight.dtype)
    weight, bias = weight.astype(dtype, copy=False), bias.astype(dtype, copy=False)
    if is_same_conv(KH, KW, SH, SW, PH, PW):
        return same_conv_forward(x, weight, bias, (PH, PW), relu)
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    # weight rows in the same (i, j, c) order as the im2col rows
    w2d = weight.transpose(0, 2, 3, 1).reshape(OC, KH * KW * C)
    col = im2col(x.transpose(1, 0, 2, 3), KH, KW, SH, SW, PH, PW)  # (KH, KW, C, N, OH, OW)
    col = col.reshape(KH * KW * C, N * OH * OW).astype(dtype, copy=False)
    y = w2d @ col + bias[:, None]  # (OC, N*OH*OW)
    y = y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3)  # (N, OC, OH, OW)
    mask = None
    if relu:
        mask = y > 0
        y = y * mask
    # col is cached (memory for speed): dweight needs it, and recomputing it costs a pass
    cache = ("im2col", x.shape, weight.shape, col, w2d, (SH, SW), (PH, PW), mask)
    return y, cache


def conv2d_backward(dout, cache, input_grad=True):
    """Gradients of conv2d_forward. dout: (N, OC, OH, OW) -> (dx, dweight, dbias).

    With ``input_grad=False`` dx is not computed and comes back as None. After a forward
    with ``relu=True``, dout is dL/d(max(y, 0)): the ReLU's backward, dL/dy = dout where
    y > 0 and 0 elsewhere, comes first.
    """
    if cache[0] == "grid":
        return same_conv_backward(dout, *cache[1:], input_grad=input_grad)
    if cache[0] == "kernel":
        return _kernel_conv_backward(dout, cache, input_grad)
    if cache[0] == "padded":
        return _padded_conv_backward(dout, cache, input_grad)
    _, x_shape, w_shape, col, w2d, (SH, SW), (PH, PW), mask = cache
    if mask is not None:
        dout = dout * mask
    N, C, H, W = x_shape
    OC, _, KH, KW = w_shape
    OH, OW = dout.shape[2:]
    dy = dout.transpose(1, 0, 2, 3).reshape(OC, N * OH * OW).astype(col.dtype, copy=False)
    dbias = dy.sum(axis=1)
    dweight = (dy @ col.T).reshape(OC, KH, KW, C).transpose(0, 3, 1, 2)  # (OC, C, KH, KW)
    xp = get_array_module(dout)
    if not input_grad:
        return None, xp.ascontiguousarray(dweight), dbias
    dcol = (w2d.T @ dy).reshape(KH, KW, C, N, OH, OW)
    dx = col2im(dcol, (C, N, H, W), SH, SW, PH, PW).transpose(1, 0, 2, 3)  # (N, C, H, W)
    return xp.ascontiguousarray(dx), xp.ascontiguousarray(dweight), dbias


# ---- the conv on a GPU: im2col and col2im as one kernel each ----

def _kernel_conv_forward(x, weight, bias, stride, pad, relu, mode):
    """The GPU branch of :func:`conv2d_forward`: the im2col matrix (rows (c, i, j)) from
    one kernel, padding of any mode included, so the weights are an (OC, C*KH*KW) view;
    one product; the bias and the ReLU in one kernel. y is a channel-first view."""
    N = x.shape[0]
    OC, _, KH, KW = weight.shape
    col = cuda_kernels.im2col(x, KH, KW, *stride, *pad, mode)  # (C*KH*KW, N*OH*OW)
    y = weight.reshape(OC, -1) @ col
    mask = None
    if relu:
        mask = cuda_kernels.bias_relu(y, bias)  # one kernel for both
    else:
        y += bias[:, None]
    OH = (x.shape[2] + 2 * pad[0] - KH) // stride[0] + 1
    y = y.reshape(OC, N, OH, -1).transpose(1, 0, 2, 3)
    return y, ("kernel", x.shape, weight, col, stride, pad, mode, mask)


def _kernel_conv_backward(dout, cache, input_grad):
    """dx (col2im, one kernel), dweight, dbias of :func:`_kernel_conv_forward`. A padding
    mode other than zeros: dx of the padded input (col2im without padding), then
    :func:`pad2d_backward`. Operands reach the products C- or F-contiguous (no copies)."""
    _, (N, C, H, W), weight, col, (SH, SW), (PH, PW), mode, mask = cache
    xp = get_array_module(dout)
    OC, _, KH, KW = weight.shape
    dy = dout.transpose(1, 0, 2, 3)  # (OC, N, OH, OW): no copy when dout is channel-first
    dy = xp.ascontiguousarray(dy) if mask is None else dy * mask.reshape(dy.shape)
    dy = dy.reshape(OC, -1)
    dbias = dy.sum(axis=1)
    dweight = (dy @ col.T).reshape(weight.shape)
    if not input_grad:
        return None, dweight, dbias
    dcol = weight.reshape(OC, -1).T @ dy
    if mode == "zeros" or not (PH or PW):
        return cuda_kernels.col2im(dcol, N, H, W, KH, KW, SH, SW, PH, PW), dweight, dbias
    dx_pad = cuda_kernels.col2im(dcol, N, H + 2 * PH, W + 2 * PW, KH, KW, SH, SW, 0, 0)
    return pad2d_backward(dx_pad, (PH, PW), mode), dweight, dbias


# ---- a conv padded with the image's own pixels (padding.py) ----

def _padded_conv_forward(x, weight, bias, stride, pad, relu, mode):
    """The conv of x with its frame filled by ``mode``: the conv of pad2d(x)."""
    (PH, PW), (H, W) = pad, x.shape[2:]
    KH, KW = weight.shape[2:]
    x_pad = pad2d(x, pad, mode)
    if is_same_conv(KH, KW, *stride, PH, PW):  # the fast engine; keep the inner outputs
        y, inner = conv2d_forward(x_pad, weight, bias, 1, pad, relu)
        return y[:, :, PH:PH + H, PW:PW + W], ("padded", mode, pad, True, inner)
    y, inner = conv2d_forward(x_pad, weight, bias, stride, 0, relu)
    return y, ("padded", mode, pad, False, inner)


def _padded_conv_backward(dout, cache, input_grad):
    _, mode, (PH, PW), cropped, inner = cache
    if cropped:  # the outputs that were dropped get no gradient
        xp = get_array_module(dout)
        N, OC, H, W = dout.shape
        full = xp.zeros((N, OC, H + 2 * PH, W + 2 * PW), dtype=dout.dtype)
        full[:, :, PH:PH + H, PW:PW + W] = dout
        dout = full
    dx_pad, dweight, dbias = conv2d_backward(dout, inner, input_grad)
    dx = None if dx_pad is None else pad2d_backward(dx_pad, (PH, PW), mode)
    return dx, dweight, dbias


def conv2d_naive(x, weight, bias, stride=1, pad=0, padding_mode="zeros"):
    """The same convolution by explicit loops: reads like the math, used as a test oracle.
    (The padding comes from the array module's own ``pad``, not from :func:`pad2d`.)"""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    SH, SW = pair(stride)
    PH, PW = pair(pad)
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    mode = {"zeros": "constant", "replicate": "edge", "reflect": "reflect"}[padding_mode]
    xpad = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), mode=mode)
    y = xp.zeros((N, OC, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(OC):
            for i in range(OH):
                for j in range(OW):
                    window = xpad[n, :, i * SH:i * SH + KH, j * SW:j * SW + KW]
                    y[n, o, i, j] = (window * weight[o]).sum() + bias[o]
    return y


class Conv2d(Layer):
    """2-D convolution with params W (OC, C, KH, KW) and b (OC,); He-initialised.
    ``padding_mode``: "zeros", "replicate" or "reflect" (see :func:`pad2d`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, rng=0,
                 padding_mode="zeros"):
        super().__init__()
        check_padding_mode(padding_mode, who="Conv2d: ")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        self.padding_mode = padding_mode
        KH, KW = self.kernel_size
        rng = host_rng(rng)
        self.params["W"] = he_normal(rng, (out_channels, in_channels, KH, KW), in_channels * KH * KW)
        self.params["b"] = host_zeros((out_channels,))
        self.cache = None

    def forward(self, x, relu=False):
        """The conv of x; with ``relu=True`` the ReLU after it too, fused (see Sequential).
        ``backward`` takes dL/d(whatever this returned)."""
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
        y, self.cache = conv2d_forward(x, self.params["W"], self.params["b"], self.stride, self.padding,
                                       relu, self.padding_mode)
        return y

    def backward(self, dout):
        dx, self.grads["W"], self.grads["b"] = conv2d_backward(dout, self.cache)
        return dx

    def backward_params(self, dout):
        _, self.grads["W"], self.grads["b"] = conv2d_backward(dout, self.cache, input_grad=False)

    def __repr__(self):
        mode = "" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={short_pair(self.kernel_size)}, "
                f"stride={short_pair(self.stride)}, padding={short_pair(self.padding)}{mode})")


# ---- element-wise and shape layers ----

class ReLU(Layer):
    """y = max(x, 0)."""

    def __init__(self):
        super().__init__()
        self.mask = None

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.maximum(x, 0)
        # all that backward needs; y > 0 exactly where x > 0, and y is contiguous where x
        # may be a view with gaps (a conv's output), so this pass reads memory faster
        self.mask = y > 0
        return y

    def backward(self, dout):
        if self.mask is None:
            raise RuntimeError(
                "ReLU.backward: no forward to go back through. If a Sequential ran this ReLU "
                "fused into the Conv2d before it, that conv's backward does this ReLU's work: "
                "call the model's backward, or build it with fuse=False to run layers one by one")
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
