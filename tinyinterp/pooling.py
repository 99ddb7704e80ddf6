"""Max-pooling: the pure functions, their loop twin (a test oracle) and the layer.

    y, cache = maxpool2d_forward(x, kernel_size, stride, pad)
    dx = maxpool2d_backward(dout, cache)

The 2x2, stride-2 pooling of the VGG has a path of its own without im2col, split over
the channels between threads on the CPU, one kernel each way on a GPU (cuda_kernels.py).
"""
from .backend import get_array_module, uses_cuda_kernels
from ._checks import check_array
from . import cuda_kernels
from .im2col import col2im, conv_out_size, im2col, pair, short_pair
from .layers import Layer
from .threads import in_parallel


def maxpool2d_forward(x, kernel_size, stride=None, pad=0):
    """y[n, c, i, j] = max over the window; padding never wins (it is -inf).

    Returns y (N, C, OH, OW) and a cache of where each window's max was (ties go to the
    first element in row-major window order).
    """
    KH, KW = pair(kernel_size)
    SH, SW = pair(kernel_size if stride is None else stride)
    PH, PW = pair(pad)
    if (KH, KW, SH, SW, PH, PW) == (2, 2, 2, 2, 0, 0):
        if uses_cuda_kernels(get_array_module(x)):  # one kernel each way on a GPU
            y, cache = cuda_kernels.maxpool2x2_forward(x)
            return y, ("2x2 kernel", *cache)
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
    if cache[0] == "2x2 kernel":
        return cuda_kernels.maxpool2x2_backward(dout, *cache[1:])
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
# convs give channel-major maps) and allocates its results in that same layout, and the
# channels can be split between threads (threads.in_parallel), each writing its own slice.

def _maxpool2x2_forward(x):
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    x = x[:, :, :2 * OH, :2 * OW]  # a trailing odd row or column is in no window
    y = xp.empty_like(x, shape=(N, C, OH, OW))
    left_won = xp.empty_like(x, shape=(N, C, 2 * OH, OW), dtype=bool)
    top_won = xp.empty_like(x, shape=(N, C, OH, OW), dtype=bool)

    def part(lo, hi):  # channels lo..hi-1 (in parallel threads on the CPU)
        v = x[:, lo:hi]
        left, right = v[..., 0::2], v[..., 1::2]
        cols = xp.maximum(left, right)  # max of each row of each window
        xp.greater_equal(left, right, out=left_won[:, lo:hi])
        top, bottom = cols[:, :, 0::2], cols[:, :, 1::2]
        xp.maximum(top, bottom, out=y[:, lo:hi])
        xp.greater_equal(top, bottom, out=top_won[:, lo:hi])

    in_parallel(part, C, xp, x.size)
    return y, ("2x2", (N, C, H, W), left_won, top_won)


def _maxpool2x2_backward(dout, x_shape, left_won, top_won):
    """dout goes to the winning row of each window, then to the winning column of that row."""
    xp = get_array_module(dout)
    N, C, OH, OW = dout.shape
    dx = xp.empty_like(dout, shape=x_shape)

    def part(lo, hi):  # channels lo..hi-1 (in parallel threads on the CPU)
        d, top, left = dout[:, lo:hi], top_won[:, lo:hi], left_won[:, lo:hi]
        rows = xp.empty_like(d, shape=(N, hi - lo, 2 * OH, OW))  # d on the winning rows
        xp.multiply(d, top, out=rows[:, :, 0::2])
        xp.multiply(d, ~top, out=rows[:, :, 1::2])
        out = dx[:, lo:hi]
        if x_shape[2] % 2 or x_shape[3] % 2:  # the row or column no window covered
            out[...] = 0
        xp.multiply(rows, left, out=out[:, :, :2 * OH, 0:2 * OW:2])
        xp.multiply(rows, ~left, out=out[:, :, :2 * OH, 1:2 * OW:2])

    in_parallel(part, C, xp, dx.size)
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
        return (f"MaxPool2d(kernel_size={short_pair(self.kernel_size)}, stride={short_pair(self.stride)}, "
                f"padding={short_pair(self.padding)})")
