"""Forward and backward against PyTorch, in float64 (skipped when torch is missing).

PyTorch is a test-only oracle: tinyinterp itself never imports it (checked below).
Our Linear keeps W as (in, out); torch's weight is (out, in), hence the transposes.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import (
    XP_SETTINGS,
    conv_cases,
    distinct_values,
    linear_cases,
    logistic_cases,
    pool_cases,
    softmax_cases,
)
from tinyinterp.backend import to_numpy
from tinyinterp.layers import Conv2d, Linear
from tinyinterp.pooling import MaxPool2d
from tinyinterp.losses import LogisticLoss, SoftmaxCrossEntropy

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-10
REPO_ROOT = str(Path(__file__).resolve().parents[1])


def assert_close(ours, theirs, what):
    """Relative agreement to 1e-10, measured against the largest entry of the reference
    (entries near zero carry the round-off of the large ones)."""
    ours = to_numpy(ours)
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, what
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def leaf(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def test_tinyinterp_never_imports_torch():
    code = ("import sys, tinyinterp, tinyinterp.layers, tinyinterp.losses, tinyinterp.model, "
            "tinyinterp.optim, tinyinterp.checkpoint, tinyinterp.gradcheck, tinyinterp.im2col; "
            "assert 'torch' not in sys.modules, 'tinyinterp imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@XP_SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_torch(xp, case):
    x, w, b, dout = case.arrays()
    layer = Conv2d(case.C, case.OC, case.kernel, stride=case.stride, padding=case.pad)
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    y = layer.forward(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))

    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv2d(tx, tw, tb, stride=case.stride, padding=case.pad)
    ty.backward(torch.from_numpy(dout))
    assert_close(y, ty, "y")
    assert_close(dx, tx.grad, "dx")
    assert_close(layer.grads["W"], tw.grad, "dW")
    assert_close(layer.grads["b"], tb.grad, "db")


@XP_SETTINGS
@given(case=pool_cases())
def test_maxpool2d_matches_torch(xp, case):
    # distinct values: no ties, so both libraries must pick the same max element
    rng = np.random.default_rng(case.seed)
    x = distinct_values(rng, case.x_shape)
    pool = MaxPool2d(case.kernel, stride=case.stride, padding=case.pad)
    y = pool.forward(xp.asarray(x))
    dout = rng.standard_normal(y.shape)
    dx = pool.backward(xp.asarray(dout))

    tx = leaf(x)
    ty = F.max_pool2d(tx, case.kernel, stride=case.stride, padding=case.pad)
    ty.backward(torch.from_numpy(dout))
    assert_close(y, ty, "y")
    assert_close(dx, tx.grad, "dx")


@XP_SETTINGS
@given(case=linear_cases())
def test_linear_matches_torch(xp, case):
    N, fin, fout, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, fin)), rng.standard_normal((fin, fout)), rng.standard_normal(fout)
    dout = rng.standard_normal((N, fout))
    layer = Linear(fin, fout)
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    y = layer.forward(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))

    tx, tw, tb = leaf(x), leaf(w.T), leaf(b)  # torch weight: (out, in)
    ty = F.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(dout))
    assert_close(y, ty, "y")
    assert_close(dx, tx.grad, "dx")
    assert_close(layer.grads["W"], tw.grad.T, "dW")
    assert_close(layer.grads["b"], tb.grad, "db")


@XP_SETTINGS
@given(case=softmax_cases(scale=3.0))
def test_softmax_cross_entropy_matches_torch(xp, case):
    logits, labels = case
    loss = SoftmaxCrossEntropy()
    value = loss.forward(xp.asarray(logits), xp.asarray(labels))
    grad = loss.backward()

    tz = leaf(logits)
    tl = F.cross_entropy(tz, torch.from_numpy(labels.astype(np.int64)))  # mean over the batch
    tl.backward()
    assert_close(value, tl, "loss")
    assert_close(grad, tz.grad, "dlogits")


@XP_SETTINGS
@given(case=logistic_cases(scale=3.0))
def test_logistic_loss_matches_torch(xp, case):
    # BCE-with-logits on 0/1 targets, summed over outputs and averaged over the batch;
    # +-1 targets are given to torch as (t + 1) / 2
    logits, targets = case
    loss = LogisticLoss()
    value = loss.forward(xp.asarray(logits), xp.asarray(targets))
    grad = loss.backward()

    t01 = (targets + 1) // 2 if targets.min() < 0 else targets
    tz = leaf(logits)
    tl = F.binary_cross_entropy_with_logits(tz, torch.from_numpy(t01.astype(np.float64)), reduction="sum")
    tl = tl / logits.shape[0]
    tl.backward()
    assert_close(value, tl, "loss")
    assert_close(grad, tz.grad, "dlogits")


@XP_SETTINGS
@given(case=conv_cases(), mode=st.sampled_from(["replicate", "reflect"]))
def test_conv2d_padding_mode_matches_torch(xp, case, mode):
    """Our padding modes are torch's Conv2d(padding_mode=...) of the same names."""
    assume(mode != "reflect" or (case.PH < case.H and case.PW < case.W))
    x, w, b, dout = case.arrays()
    layer = Conv2d(case.C, case.OC, case.kernel, stride=case.stride, padding=case.pad,
                   padding_mode=mode)
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    y = layer.forward(xp.asarray(x))
    dx = layer.backward(xp.asarray(dout))

    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv2d(F.pad(tx, (case.PW, case.PW, case.PH, case.PH), mode=mode), tw, tb,
                  stride=case.stride)
    ty.backward(torch.from_numpy(dout))
    assert_close(y, ty, "y")
    assert_close(dx, tx.grad, "dx")
    assert_close(layer.grads["W"], tw.grad, "dW")
    assert_close(layer.grads["b"], tb.grad, "db")
