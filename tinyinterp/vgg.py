"""A small VGG for 64-112 px birds, ordinary or interpretable (paper Sec. 5).

Layout at the defaults (input 64 x 64, widths (32, 64, 128), top 128):

    [conv3x3 -> ReLU] x2 -> pool        32 ch, 64 -> 32
    [conv3x3 -> ReLU] x2 -> pool        64 ch, 32 -> 16
    [conv3x3 -> ReLU] x2 -> pool       128 ch, 16 -> 8
    top conv3x3 -> ReLU [-> mask 1]    128 ch, 8 x 8   (the "top conv layer")
    new conv3x3 -> ReLU [-> mask 2]    128 ch, 8 x 8   (added above it, paper Sec. 5)
    pool -> flatten -> fc 256 -> ReLU -> dropout -> fc num_classes

The ordinary and the interpretable net have exactly the same convs; the interpretable
one adds the two masks (each with the filter loss), nothing else. So a comparison of
the two measures only what the paper adds.
"""
from .backend import host_rng
from .layers import Conv2d, Dropout, Flatten, Linear, ReLU
from .model import Sequential
from .pooling import MaxPool2d

HEAD_INIT_STD = 0.01
# The names of the layers in ``model.interpretable_indices``, in order: the top conv and
# the new conv above it. Evaluation's keys and the pictures' file names are these.
LAYER_NAMES = ("top", "new")


def input_step(widths):
    """The input sides small_vgg takes are the multiples of this: a 2x2 pool after each
    block of ``widths`` and one before the fully connected layers halve the input
    len(widths) + 1 times."""
    return 2 ** (len(widths) + 1)


def small_vgg(num_classes=10, input_size=64, widths=(32, 64, 128), top_channels=128,
              fc_width=256, dropout=0.5, interpretable=False, new_conv=True, seed=0,
              mask_options=None, padding_mode="zeros", mask_after_pool=False):
    """Build the net as a :class:`Sequential`.

    Args:
        num_classes: outputs of the last Linear (use 1 for a single-category logistic head).
        input_size: side S of the square input; must be divisible by 2**(len(widths)+1).
        interpretable: add a mask with the filter loss after the top conv's ReLU and after
            the new conv's ReLU (paper Sec. 5).
        new_conv: add the 3x3 conv above the top conv (paper Sec. 5); the benchmark's
            plain VGG turns it off.
        mask_options: keyword arguments for each :class:`InterpretableMask`.
        padding_mode: every conv's padding, "zeros" (the paper's nets), "replicate" or
            "reflect" (the map's frame filled from the map itself, so no filter can find
            the border by its zeros; ``padding.pad2d``).
        mask_after_pool: put the new conv's mask after the 2x2 pool that follows it (the
            authors' code masks VGG-16's new conv there, on 7x7 maps) instead of right
            after its ReLU. The ordinary net is the same either way.
    Returns:
        The model; ``model.interpretable_indices`` lists the positions of the layers whose
        output maps are evaluated (the ReLUs of the top conv and the new conv), and
        ``model.num_classes`` the head size.
    """
    step = input_step(widths)
    if input_size < step or input_size % step:
        raise ValueError(f"small_vgg: input_size {input_size} must be a positive multiple of {step}")
    rng = host_rng(seed)
    layers, in_ch = [], 3
    for width in widths:
        for _ in range(2):
            layers += [Conv2d(in_ch, width, 3, padding=1, rng=rng, padding_mode=padding_mode), ReLU()]
            in_ch = width
        layers.append(MaxPool2d(2))
    watched = []

    def interpretable_conv(c_in, pool_first=False):
        layers.extend([Conv2d(c_in, top_channels, 3, padding=1, rng=rng, padding_mode=padding_mode),
                       ReLU()])
        watched.append(len(layers) - 1)
        side = input_size // 2 ** len(widths)
        if pool_first:  # the authors' place for the second mask: after the pool
            layers.append(MaxPool2d(2))
            side //= 2
        if interpretable:
            from .interpretable import InterpretableMask
            layers.append(InterpretableMask(top_channels, side, num_classes=num_classes,
                                            **(mask_options or {})))

    interpretable_conv(in_ch)  # the top conv
    if new_conv:
        interpretable_conv(top_channels, mask_after_pool)  # the new conv, same channels, padding 1
    side = input_size // step
    if not (new_conv and mask_after_pool):
        layers.append(MaxPool2d(2))
    layers += [Flatten(), Linear(top_channels * side * side, fc_width, rng=rng), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, rng=rng.integers(2**31)))
    # a small last layer: the first logits are near 0 (He-initialised heads can start far
    # from log K and stall: docs/calibration.md#pretraining-on-all-of-cub-200)
    layers.append(Linear(fc_width, num_classes, rng=rng, weight_std=HEAD_INIT_STD))
    model = Sequential(*layers)
    model.interpretable_indices = watched
    model.num_classes = num_classes
    return model


def receptive_field(model, index):
    """Where the units of layer ``index``'s output sit in the input image.

    Returns (start, jump, size): unit i (along either axis) is centred at input coordinate
    ``start + i * jump`` and sees a ``size``-pixel window. Coordinates are continuous:
    input pixel p covers [p, p + 1), so its centre is p + 0.5 (the landmark convention of
    tinyinterp.data).

    Each conv or pool with kernel k, stride s and padding p maps output unit i to the
    window whose first input unit is s*i - p, so its centre is input unit
    s*i - p + (k - 1)/2. Composing these affine maps layer by layer:
        start <- start + ((k - 1)/2 - p) * jump,   size <- size + (k - 1) * jump,
        jump <- jump * s.
    """
    start, jump, size = 0.5, 1.0, 1.0
    for layer in model.layers[:index + 1]:
        if isinstance(layer, (Conv2d, MaxPool2d)):
            (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
            start += ((k - 1) / 2 - p) * jump
            size += (k - 1) * jump
            jump *= s
    return start, jump, size
