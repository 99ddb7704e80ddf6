"""Padding a map with its own pixels: the "replicate" and "reflect" modes of the convs'
padding, beside the zeros of the paper's nets.

Zero padding puts a frame of zeros around every map, and a filter can tell where the
frame is: near the border its input looks unlike anywhere else, so the net can learn
where on the map a unit sits, not only what it sees (docs/paper.md#conv-padding). The
other two modes fill the frame from the image itself:
  replicate: the edge pixel repeated outward   a b c d -> a a b c d d   (pad 1)
  reflect:   mirrored about the edge pixel     a b c d -> b a b c d c   (pad 1)
A conv with either mode is the conv, with no padding, of the padded input x_pad
(``layers.conv2d_forward``); for the engine's geometry (stride 1, "same") it runs as the
fast zero-padded conv of x_pad and drops its outer ring of outputs, the only ones that
saw zeros.
"""

PADDING_MODES = ("zeros", "replicate", "reflect")


def check_padding_mode(mode, size=(), pad=(), who=""):
    """A clear error for an unknown mode, or (given the map's ``size`` and the ``pad``)
    for reflect padding as wide as the map (reflect needs a pixel beyond the edge to
    mirror: pad < side). ``who`` starts the message ("Conv2d: ")."""
    if mode not in PADDING_MODES:
        raise ValueError(f"{who}padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    if mode == "reflect" and any(p >= n for p, n in zip(pad, size)):
        raise ValueError(f"reflect padding {tuple(pad)} needs an input larger than the padding "
                         f"in each direction, got {tuple(size)}")


def pad_source(n, p, mode):
    """For each of the n + 2p positions of a padded axis, the input position it copies."""
    source = []
    for k in range(-p, n + p):
        if mode == "replicate":
            source.append(min(max(k, 0), n - 1))
        elif k < 0:  # reflect, before the first pixel
            source.append(-k)
        elif k > n - 1:  # reflect, after the last
            source.append(2 * (n - 1) - k)
        else:
            source.append(k)
    return source


def pad2d(x, pad, mode):
    """x (N, C, H, W) -> x_pad (N, C, H + 2PH, W + 2PW), the frame filled by ``mode``
    ("replicate" or "reflect"): x_pad[..., r, c] = x[..., rows[r], cols[c]]."""
    (PH, PW), (H, W) = pad, x.shape[2:]
    return x[:, :, pad_source(H, PH, mode)][:, :, :, pad_source(W, PW, mode)]


def pad2d_backward(dpad, pad, mode):
    """Adjoint of :func:`pad2d`: each padded position's gradient is added to the pixel it
    copied. (N, C, H + 2PH, W + 2PW) -> (N, C, H, W)."""
    PH, PW = pad
    H, W = dpad.shape[2] - 2 * PH, dpad.shape[3] - 2 * PW
    d = dpad[:, :, PH:PH + H].copy()  # the image's own rows
    for r, src in enumerate(pad_source(H, PH, mode)):
        if not PH <= r < PH + H:  # a frame row: back onto the row it copied
            d[:, :, src] += dpad[:, :, r]
    dx = d[:, :, :, PW:PW + W].copy()  # then the same along the columns
    for c, src in enumerate(pad_source(W, PW, mode)):
        if not PW <= c < PW + W:
            dx[:, :, :, src] += d[:, :, :, c]
    return dx
