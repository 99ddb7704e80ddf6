"""im2col / col2im: turn sliding windows into columns, and back.

Notation (used in every conv and pooling function of tinyinterp):
    N   batch size              C, OC  input / output channels
    H, W   input height, width  KH, KW kernel height, width
    SH, SW strides              PH, PW zero padding (each side)
    OH, OW output height, width = conv_out_size(H, KH, SH, PH), ...

``im2col`` takes any 4-D array (A, B, H, W) and returns the windows as a 6-D array
(KH, KW, A, B, OH, OW): entry [i, j, a, b, oh, ow] is the input pixel that kernel
offset (i, j) sees at output position (oh, ow). It loops over the KH*KW kernel
offsets (a handful), never over pixels: each offset is one strided slice.

- Convolution calls it with x transposed to (C, N, H, W), so the windows reshape to
  a (KH*KW*C, N*OH*OW) matrix and the whole conv is one matrix product.
- Max-pooling calls it with x as (N, C, H, W) and takes the max over the KH*KW axis.

``col2im`` is the adjoint: it scatters (adds) each window entry back onto the pixel
it came from, which is exactly the backward pass of im2col.

These two are the general (and the readable) path. Stride-1 convs with "same" padding,
every conv of the small VGG, take a faster route through the same idea: the padded grid
(padded_grid.py) builds the im2col matrix from shifted rows of a padded copy of the
input, a cache-sized chunk at a time.
"""
from .backend import get_array_module


def pair(v):
    """7 -> (7, 7); (3, 5) -> (3, 5)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def short_pair(p):
    """(3, 3) -> 3 for printing a layer; (2, 3) stays."""
    return p[0] if p[0] == p[1] else p


def conv_out_size(size, kernel, stride, pad):
    """Output length of a conv or pool along one axis: floor((size + 2*pad - kernel) / stride) + 1.

    The one formula shared by Conv2d and MaxPool2d.
    """
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x, KH, KW, SH, SW, PH, PW, fill=0.0):
    """Windows of ``x`` (A, B, H, W) as an array (KH, KW, A, B, OH, OW).

    Padding uses ``fill`` (0 for convolution, -inf for max-pooling).
    """
    xp = get_array_module(x)
    A, B, H, W = x.shape
    OH = conv_out_size(H, KH, SH, PH)
    OW = conv_out_size(W, KW, SW, PW)
    if PH or PW:
        x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=fill)
    col = xp.empty((KH, KW, A, B, OH, OW), dtype=x.dtype)
    for i in range(KH):
        i_end = i + SH * (OH - 1) + 1
        for j in range(KW):
            j_end = j + SW * (OW - 1) + 1
            col[i, j] = x[:, :, i:i_end:SH, j:j_end:SW]
    return col


def col2im(col, input_shape, SH, SW, PH, PW):
    """Adjoint of :func:`im2col`: sum windows (KH, KW, A, B, OH, OW) back to (A, B, H, W)."""
    xp = get_array_module(col)
    KH, KW, A, B, OH, OW = col.shape
    _, _, H, W = input_shape
    out = xp.zeros((A, B, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        i_end = i + SH * (OH - 1) + 1
        for j in range(KW):
            j_end = j + SW * (OW - 1) + 1
            # windows overlap when stride < kernel, hence += (not =)
            out[:, :, i:i_end:SH, j:j_end:SW] += col[i, j]
    return out[:, :, PH:PH + H, PW:PW + W]
