"""tinyinterp's own GPU kernels, each beside its NumPy twin.

On a GPU a training step of the small VGG is bound by the host issuing kernel launches,
not by arithmetic: CuPy runs every slice copy, every element-wise operation and every
reduction as a kernel of its own. So the few places where the CPU's NumPy code would
become dozens of small kernels each run one kernel here:

- ``im2col``: the conv's im2col matrix, zero / replicate / reflect padding included;
- ``col2im``: its adjoint, the input gradient of a conv, summed per input pixel;
- ``bias_relu``: a conv's bias and the ReLU after it, with the ReLU's mask;
- ``maxpool2x2_forward`` / ``maxpool2x2_backward``: the VGG's 2x2, stride-2 pooling;
- ``sgd_update``: SGD with momentum and weight decay, one pass per parameter.

Each kernel is CUDA source (a CuPy ``ElementwiseKernel``: the body runs once per output
element ``i``) and a NumPy *twin* with the same arguments and the same result: the same
index math, written once per element in C and once over whole arrays in NumPy, so a
reader can check one against the other. The twins are what runs without a GPU: the tests
check them against the CPU's own engine (tests/test_cuda_kernels.py), the launch counter
(benchmarks/launches.py) runs them as one launch each, and ``sgd_update``'s twin is the
CPU's SGD itself. ``launch`` picks one by the array module, the only place that does.

Shapes (notation of im2col.py): x (C, N, H, W), C-contiguous, channel first as the convs
keep their maps; the im2col matrix col (C*KH*KW, N*OH*OW), rows (c, i, j) so that a
weight (OC, C, KH, KW) is an (OC, C*KH*KW) matrix without a copy, columns (n, oh, ow).
"""
from .backend import get_array_module

PADDING_CODES = {"zeros": 0, "replicate": 1, "reflect": 2}


class Kernel:
    """CUDA source for ``ElementwiseKernel(in_params, out_params, body)``, and its twin."""

    def __init__(self, name, in_params, out_params, body, twin, preamble=""):
        self.name, self.in_params, self.out_params = name, in_params, out_params
        self.body, self.twin, self.preamble = body, twin, preamble
        self._compiled = None

    def compiled(self, cupy):
        if self._compiled is None:
            self._compiled = cupy.ElementwiseKernel(self.in_params, self.out_params, self.body,
                                                    "tinyinterp_" + self.name, preamble=self.preamble)
        return self._compiled


def launch(kernel, xp, *args):
    """Run ``kernel`` with ``args`` (its inputs, then its outputs, which it fills) on the
    module ``xp``: the CUDA kernel on CuPy; the NumPy twin on NumPy, and on the launch
    counter's stand-in for CuPy, which counts it as one launch (``run_twin``)."""
    if xp.__name__ == "numpy":
        return kernel.twin(*args)
    run_twin = getattr(xp, "run_twin", None)
    if run_twin is not None:
        return run_twin(kernel.twin, *args)
    return kernel.compiled(xp)(*args)


# ---- padding: which pixel a padded position holds ----

SOURCE_INDEX_CUDA = r"""
// Position k of a padded axis of n pixels -> the pixel it holds, or -1 for a zero.
// mode 0: zeros; 1: replicate (the edge pixel repeated); 2: reflect (mirrored about it).
__device__ int source_index(int k, int n, int mode) {
    if (k >= 0 && k < n) return k;
    if (mode == 0) return -1;
    if (mode == 1) return k < 0 ? 0 : n - 1;
    return k < 0 ? -k : 2 * (n - 1) - k;
}
"""


def source_index(k, n, mode):
    """The twin of ``source_index`` (CUDA above), over an integer array ``k``."""
    xp = get_array_module(k)
    if mode == 0:
        outside = -1
    elif mode == 1:
        outside = xp.where(k < 0, 0, n - 1)
    else:
        outside = xp.where(k < 0, -k, 2 * (n - 1) - k)
    return xp.where((k >= 0) & (k < n), k, outside)


# ---- im2col ----

IM2COL_CUDA = r"""
// i: the flat index of col (C*KH*KW, N*OH*OW): row (c, ki, kj), column (n, oh, ow)
ptrdiff_t t = i;
const int ow = t % OW; t /= OW;
const int oh = t % OH; t /= OH;
const int n = t % N; t /= N;
const int kj = t % KW; t /= KW;
const int ki = t % KH;
const ptrdiff_t c = t / KH;
const int h = source_index(oh * SH - PH + ki, H, mode);
const int w = source_index(ow * SW - PW + kj, W, mode);
col = (h < 0 || w < 0) ? (T)0 : x[((c * N + n) * H + h) * W + w];
"""


def im2col_twin(x, N, H, W, KH, KW, SH, SW, PH, PW, OH, OW, mode, col):
    """col[(c, ki, kj), (n, oh, ow)] = x_pad[c, n, oh*SH - PH + ki, ow*SW - PW + kj], the
    padded pixel at source_index(...) of each axis, 0 where that is -1."""
    xp = get_array_module(col)
    C = x.size // (N * H * W)
    x = x.reshape(C, N, H, W)
    h = source_index(xp.arange(OH)[None, :] * SH - PH + xp.arange(KH)[:, None], H, mode)  # (KH, OH)
    w = source_index(xp.arange(OW)[None, :] * SW - PW + xp.arange(KW)[:, None], W, mode)  # (KW, OW)
    c = xp.arange(C).reshape(C, 1, 1, 1, 1, 1)
    n = xp.arange(N).reshape(1, 1, 1, N, 1, 1)
    h, w = h.reshape(1, KH, 1, 1, OH, 1), w.reshape(1, 1, KW, 1, 1, OW)
    values = x[c, n, h, w]  # (C, KH, KW, N, OH, OW); -1 reads the last pixel, zeroed next
    col[...] = xp.where((h >= 0) & (w >= 0), values, 0).reshape(col.shape)
    return col


IM2COL = Kernel(
    "im2col", "raw T x, int32 N, int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, "
    "int32 PH, int32 PW, int32 OH, int32 OW, int32 mode", "T col", IM2COL_CUDA, im2col_twin,
    preamble=SOURCE_INDEX_CUDA)


def im2col(x, KH, KW, SH, SW, PH, PW, mode="zeros"):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW) in one kernel (module docstring).
    Reads x channel first: no copy when x is a channel-first view, as the convs return."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    xc = xp.ascontiguousarray(x.transpose(1, 0, 2, 3))
    col = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    return launch(IM2COL, xp, xc, N, H, W, KH, KW, SH, SW, PH, PW, OH, OW, PADDING_CODES[mode], col)


# ---- col2im: the adjoint of im2col with zero padding ----

COL2IM_CUDA = r"""
// i: the flat index of dx (C, N, H, W). Every entry of dcol that im2col read from pixel
// (h, w) comes back to it: kernel offset (ki, kj) at output (oh, ow) with
// oh*SH - PH + ki = h and ow*SW - PW + kj = w. Added in (ki, kj) order.
ptrdiff_t t = i;
const int w = t % W; t /= W;
const int h = t % H; t /= H;
const int n = t % N;
const ptrdiff_t c = t / N;
T sum = 0;
for (int ki = 0; ki < KH; ++ki) {
    const int hh = h + PH - ki;  // = oh * SH
    if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
    for (int kj = 0; kj < KW; ++kj) {
        const int ww = w + PW - kj;  // = ow * SW
        if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
        sum += dcol[(((c * KH + ki) * KW + kj) * N + n) * OH * OW + (hh / SH) * OW + ww / SW];
    }
}
dx = sum;
"""


def col2im_twin(dcol, N, H, W, KH, KW, SH, SW, PH, PW, OH, OW, dx):
    """dx[c, n, h, w] = sum over (ki, kj) of dcol[(c, ki, kj), (n, oh, ow)] where
    oh*SH - PH + ki = h and ow*SW - PW + kj = w (in range), in (ki, kj) order."""
    xp = get_array_module(dx)
    C = dx.size // (N * H * W)
    dcol = dcol.reshape(C, KH, KW, N, OH, OW)
    total = xp.zeros((C, N, H, W), dtype=dx.dtype)
    for ki in range(KH):
        hh = xp.arange(H) + PH - ki  # = oh * SH
        valid_h = (hh >= 0) & (hh % SH == 0) & (hh // SH < OH)
        oh = xp.where(valid_h, hh // SH, 0)
        for kj in range(KW):
            ww = xp.arange(W) + PW - kj
            valid_w = (ww >= 0) & (ww % SW == 0) & (ww // SW < OW)
            ow = xp.where(valid_w, ww // SW, 0)
            values = dcol[:, ki, kj][:, :, oh[:, None], ow[None, :]]  # (C, N, H, W)
            total += xp.where(valid_h[:, None] & valid_w[None, :], values, 0)
    dx[...] = total.reshape(dx.shape)
    return dx


COL2IM = Kernel(
    "col2im", "raw T dcol, int32 N, int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, "
    "int32 PH, int32 PW, int32 OH, int32 OW", "T dx", COL2IM_CUDA, col2im_twin)


def col2im(dcol, N, H, W, KH, KW, SH, SW, PH, PW):
    """dcol (C*KH*KW, N*OH*OW) -> dx (N, C, H, W) in one kernel, the adjoint of
    :func:`im2col` with zero padding; dx is a channel-first view."""
    xp = get_array_module(dcol)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    C = dcol.shape[0] // (KH * KW)
    dx = xp.empty((C, N, H, W), dtype=dcol.dtype)
    launch(COL2IM, xp, xp.ascontiguousarray(dcol), N, H, W, KH, KW, SH, SW, PH, PW, OH, OW, dx)
    return dx.transpose(1, 0, 2, 3)


# ---- a conv's bias and the ReLU after it ----

BIAS_RELU_CUDA = r"""
// i: the flat index of y (OC, M): y + bias of its row, rectified as v * (v > 0) (a
// negative v gives -0.0, as on the CPU), and the ReLU's mask
const T v = y + bias[i / M];
mask = v > (T)0;
y = v * (T)mask;
"""


def bias_relu_twin(bias, M, y, mask):
    """In place: y <- y + bias[:, None]; mask = y > 0; y <- y * mask (y is (OC, M))."""
    xp = get_array_module(y)
    y += bias.reshape(-1, 1)
    xp.greater(y, 0, out=mask)
    xp.multiply(y, mask, out=y)
    return y, mask


BIAS_RELU = Kernel("bias_relu", "raw T bias, int64 M", "T y, bool mask", BIAS_RELU_CUDA, bias_relu_twin)


def bias_relu(y, bias):
    """y (OC, M) + bias, rectified in place, in one kernel; returns the ReLU's mask y > 0."""
    xp = get_array_module(y)
    mask = xp.empty(y.shape, dtype=bool)
    launch(BIAS_RELU, xp, bias, y.shape[1], y, mask)
    return mask


# ---- 2x2, stride-2 max-pooling ----

MAXPOOL2X2_FORWARD_CUDA = r"""
// i: the flat index of y (P, OH, OW); x is (P, H, W). The window's max in two steps as on
// the CPU (pooling.py): across each row's two columns, then across the two rows; ties go
// to the left and to the top (>=), a NaN wins. arg: where the max was, di * 2 + dj.
ptrdiff_t t = i;
const int ow = t % OW; t /= OW;
const int oh = t % OH;
const ptrdiff_t p = t / OH;
const ptrdiff_t r = (p * H + 2 * oh) * W + 2 * ow;
const T a = x[r], b = x[r + 1], c = x[r + W], d = x[r + W + 1];
const T top = (a >= b || a != a) ? a : b;
const T bottom = (c >= d || c != c) ? c : d;
const int top_k = a >= b ? 0 : 1;
const int bottom_k = c >= d ? 2 : 3;
const bool top_won = top >= bottom || top != top;
y = top_won ? top : bottom;
arg = top >= bottom ? top_k : bottom_k;
"""


def maxpool2x2_forward_twin(x, H, W, OH, OW, y, arg):
    """y[p, oh, ow] = the max of x[p, 2oh:2oh+2, 2ow:2ow+2], arg = di * 2 + dj of it."""
    xp = get_array_module(y)
    x = x.reshape(-1, H, W)
    a, b = x[:, 0:2 * OH:2, 0:2 * OW:2], x[:, 0:2 * OH:2, 1:2 * OW:2]
    c, d = x[:, 1:2 * OH:2, 0:2 * OW:2], x[:, 1:2 * OH:2, 1:2 * OW:2]
    top = xp.where((a >= b) | (a != a), a, b)
    bottom = xp.where((c >= d) | (c != c), c, d)
    top_k, bottom_k = xp.where(a >= b, 0, 1), xp.where(c >= d, 2, 3)
    y[...] = xp.where((top >= bottom) | (top != top), top, bottom).reshape(y.shape)
    arg[...] = xp.where(top >= bottom, top_k, bottom_k).reshape(arg.shape)
    return y, arg


MAXPOOL2X2_BACKWARD_CUDA = r"""
// i: the flat index of dx (P, H, W): dy of its window where it was the max, else 0 (also
// on a trailing odd row or column, which no window covers)
ptrdiff_t t = i;
const int w = t % W; t /= W;
const int h = t % H;
const ptrdiff_t p = t / H;
const int oh = h / 2, ow = w / 2;
if (oh >= OH || ow >= OW) {
    dx = 0;
} else {
    const ptrdiff_t o = (p * OH + oh) * OW + ow;
    dx = arg[o] == (h - 2 * oh) * 2 + (w - 2 * ow) ? dy[o] : (T)0;
}
"""


def maxpool2x2_backward_twin(dy, arg, H, W, OH, OW, dx):
    """dx[p, h, w] = dy[p, h//2, w//2] where arg says (h, w) was the max, else 0."""
    xp = get_array_module(dx)
    out = xp.zeros((dx.size // (H * W), H, W), dtype=dx.dtype)
    dy, arg = dy.reshape(-1, OH, OW), arg.reshape(-1, OH, OW)
    for k in range(4):
        di, dj = divmod(k, 2)
        out[:, di:2 * OH:2, dj:2 * OW:2] = xp.where(arg == k, dy, 0)
    dx[...] = out.reshape(dx.shape)
    return dx


MAXPOOL2X2_FORWARD = Kernel("maxpool2x2_forward", "raw T x, int32 H, int32 W, int32 OH, int32 OW",
                            "T y, int8 arg", MAXPOOL2X2_FORWARD_CUDA, maxpool2x2_forward_twin)
MAXPOOL2X2_BACKWARD = Kernel("maxpool2x2_backward", "raw T dy, raw int8 arg, int32 H, int32 W, int32 OH, int32 OW",
                             "T dx", MAXPOOL2X2_BACKWARD_CUDA, maxpool2x2_backward_twin)


def _planes(a):
    """(N, C, H, W) -> ((N*C or C*N, H, W) C-contiguous, channel_first): the layout a is
    in already where it can be (a channel-first view, or plain C order), so no copy."""
    xp = get_array_module(a)
    N, C, H, W = a.shape
    if a.transpose(1, 0, 2, 3).flags.c_contiguous:
        return a.transpose(1, 0, 2, 3).reshape(C * N, H, W), True
    return xp.ascontiguousarray(a).reshape(N * C, H, W), False


def _unplanes(planes, shape, channel_first):
    """The inverse of :func:`_planes`: (N, C, h, w) views of (P, h, w) planes."""
    N, C = shape[:2]
    if channel_first:
        return planes.reshape(C, N, *planes.shape[1:]).transpose(1, 0, 2, 3)
    return planes.reshape(N, C, *planes.shape[1:])


def maxpool2x2_forward(x):
    """(y, (x_shape, arg, channel_first)) of the 2x2 pool of x (N, C, H, W), one kernel;
    y keeps x's layout."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = H // 2, W // 2
    planes, channel_first = _planes(x)
    y = xp.empty((planes.shape[0], OH, OW), dtype=x.dtype)
    arg = xp.empty((planes.shape[0], OH, OW), dtype=xp.int8)
    launch(MAXPOOL2X2_FORWARD, xp, planes, H, W, OH, OW, y, arg)
    return _unplanes(y, x.shape, channel_first), (x.shape, arg, channel_first)


def maxpool2x2_backward(dout, x_shape, arg, channel_first):
    """dx (N, C, H, W) of the 2x2 pool from dout, one kernel (plus a copy when dout is
    not in the forward's layout)."""
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    OH, OW = dout.shape[2:]
    if channel_first:
        planes = xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(C * N, OH, OW)
    else:
        planes = xp.ascontiguousarray(dout).reshape(N * C, OH, OW)
    dx = xp.empty((planes.shape[0], H, W), dtype=dout.dtype)
    launch(MAXPOOL2X2_BACKWARD, xp, planes, arg, H, W, OH, OW, dx)
    return _unplanes(dx, x_shape, channel_first)


# ---- SGD with momentum and weight decay ----

SGD_UPDATE_CUDA = r"""
// one parameter element: g + decay * p (decay 0: g as it is), into the velocity, then the step
const T d = decay != (T)0 ? g + decay * p : g;
v = v * momentum + d;
p = p - lr * v;
"""


def sgd_update_twin(g, lr, momentum, decay, p, v):
    """In place: v <- momentum * v + (g + decay * p); p <- p - lr * v (decay 0: g alone).
    The CPU's SGD step itself (optim.py), so NumPy's numbers stay what they were."""
    if decay:
        g = g + decay * p
    v *= momentum
    v += g
    p -= lr * v
    return p, v


SGD_UPDATE = Kernel("sgd_update", "T g, T lr, T momentum, T decay", "T p, T v",
                    SGD_UPDATE_CUDA, sgd_update_twin)


def sgd_update(p, g, v, lr, momentum, decay):
    """One fused SGD update of parameter ``p`` (in place) with gradient ``g`` and velocity
    ``v`` (in place); the scalars in p's dtype, as the CPU's NumPy rounds them."""
    xp = get_array_module(p)
    scalar = p.dtype.type
    launch(SGD_UPDATE, xp, g, scalar(lr), scalar(momentum), scalar(decay), p, v)
