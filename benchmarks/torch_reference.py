"""The benchmark's nets and ops in PyTorch: the reference that tinyinterp is timed against.

Only ``benchmarks/bench.py`` imports this file, in its own worker process; tinyinterp itself
never imports torch. Everything here mirrors an object of tinyinterp one to one:

    small_vgg(...)           tinyinterp.vgg.small_vgg(..., new_conv=False)  (same layers, same order)
    make_train_step(...)     forward, softmax cross-entropy (batch mean), backward, SGD step
    conv_forward/backward    tinyinterp.layers.conv2d_forward / conv2d_backward
    maxpool_forward/backward tinyinterp.pooling.maxpool2d_forward / maxpool2d_backward (with argmax)
    relu_forward/backward    tinyinterp.layers.ReLU

The backward functions call the same ATen kernels that autograd would call, so a timing
measures the kernel and not the building of an autograd graph.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


def core_count():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n=None):
    """Use every core (the tinyinterp worker's BLAS does the same); returns the count."""
    n = n or core_count()
    torch.set_num_threads(n)
    return n


def small_vgg(num_classes=10, input_size=64, widths=(32, 64, 128), top_channels=128,
              fc_width=256, dropout=0.5, new_conv=False):
    """The layers of tinyinterp.vgg.small_vgg (the plain net: no masks)."""
    layers, c = [], 3
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Conv2d(c, top_channels, 3, padding=1), nn.ReLU()]  # the top conv
    if new_conv:
        layers += [nn.Conv2d(top_channels, top_channels, 3, padding=1), nn.ReLU()]
    side = input_size // 2 ** (len(widths) + 1)
    layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(top_channels * side * side, fc_width), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(fc_width, num_classes))
    return nn.Sequential(*layers)


def make_train_step(model, lr=0.01, momentum=0.9):
    """step(x, labels): one SGD step, as tinyinterp's training loop does it."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def step(x, labels):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss

    return step


def conv_forward(x, weight, bias, pad):
    with torch.no_grad():
        return F.conv2d(x, weight, bias, padding=pad)


def conv_backward(dout, x, weight, pad):
    """(dx, dweight, dbias), the kernel autograd runs for F.conv2d."""
    return torch.ops.aten.convolution_backward(
        dout, x, weight, [weight.shape[0]], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
        [True, True, True])


def maxpool_forward(x, k=2):
    """y and the argmax indices (what backward needs), like tinyinterp's forward."""
    with torch.no_grad():
        return F.max_pool2d_with_indices(x, k)


def maxpool_backward(dout, x, indices, k=2):
    return torch.ops.aten.max_pool2d_with_indices_backward(dout, x, [k, k], [k, k], [0, 0], [1, 1],
                                                           False, indices)


def relu_forward(x):
    with torch.no_grad():
        return torch.relu(x)


def relu_backward(dout, y):
    return torch.ops.aten.threshold_backward(dout, y, 0)
