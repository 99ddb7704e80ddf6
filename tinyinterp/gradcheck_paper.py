"""Gradient checks of the paper's parts, as rows for a CLI: :func:`paper_cases`.

Each row compares an analytic backward with central differences in float64
(gradcheck.compare), contracting with a random upstream gradient:

- TemplateMask (Sec. 3): the mask held constant, as in backward;
- MutualInformationLoss, exact gradient of -MI (Eq. 1, 2;
  docs/paper.md#decision-5-the-exact-gradient), also with
  activations in the hundreds, and in the scale-normalised variant
  (docs/calibration.md#the-scale-normalised-loss)
  with c frozen and with c differentiated;
- InterpretableMask (Eq. 3): sum(mask(x) * dout) + sum_f lambda_f Loss_f(x), lambda held
  constant (it is a weight computed in forward).

Inputs are built away from argmax ties (see :func:`peaked_maps`): mu_hat is a discrete
choice, so a perturbation must never move it, or the check would compare two different
functions.

The "paper" (Eq. 4) and "authors" modes are not the gradient of any loss and have no
row here; tests/test_filter_loss.py checks what they are instead.
"""
import numpy as np

from .backend import host_rng, to_device
from .filter_loss import MutualInformationLoss, batch_scale
from .gradcheck import compare, check_layer, random_like
from .interpretable import InterpretableMask
from .mask import TemplateMask

PEAK = 2.0  # the bump added at one cell per map, in units of ``spread``
# Step of the central differences of the filter loss, in the units the loss sees (tau * x,
# or x / c when scale-normalised). A fixed step in raw activations is too small at n = 4
# (round-off of an O(1) loss swamps gradients ~1e-5) and too big at n = 1 (curvature):
# over hundreds of random shapes this step kept the error below 2e-7.
FD_STEP = 2e-5


def peaked_maps(B, F, n, seed=0, spread=None, offset=0.0, device="cpu"):
    """float64 maps offset + spread * U[0, 1) with a bump of 2 * spread at one cell each.

    The bumped cell beats every other by at least ``spread`` (>> the difference step),
    so the argmax is unique and stays put. ``spread`` defaults to n^2, which puts the
    template scores tau * sum x t (tau = 0.5 / n^2) at O(1): the softmax over images is
    neither flat nor saturated, and the gradient is worth checking.
    """
    spread = float(n * n) if spread is None else spread
    rng = host_rng(seed)
    x = offset + spread * rng.random((B, F, n * n))
    peak = rng.integers(0, n * n, size=(B, F))
    x += PEAK * spread * (np.arange(n * n) == peak[..., None])  # host-side construction
    return to_device(x.reshape(B, F, n, n), device)


def mask_case(B, F, n, mode="argmax", seed=0, device="cpu"):
    x = peaked_maps(B, F, n, seed, device=device)
    return check_layer(TemplateMask(mode=mode), x, seed, name=f"TemplateMask({mode})")


def loss_step(loss, x):
    """The difference step for ``loss`` at ``x``: FD_STEP in the units the loss sees."""
    if loss.scale_normalise:
        return FD_STEP * float(batch_scale(x, loss.min_scale).min())
    return FD_STEP / loss.tau


def mi_case(B, F, n, seed=0, offset=0.0, spread=None, device="cpu", eps=None, name=None, **kwargs):
    """-MI's backward vs central differences; with scale_normalise and a frozen c, the
    differences are taken of the same function: x -> -MI(x / c) with c fixed."""
    loss = MutualInformationLoss(n, **kwargs)
    x = peaked_maps(B, F, n, seed, spread, offset, device)
    eps = loss_step(loss, x) if eps is None else eps
    dloss = random_like(loss.forward(x), seed)  # a random weight per filter
    analytic = loss.backward(dloss)
    frozen = loss.scale if loss.scale_normalise and loss.scale_gradient == "frozen" else None

    def f():
        return float((loss.forward(x, scale=frozen) * dloss).sum())

    label = name or f"MutualInformationLoss({kwargs or 'exact'}, offset={offset:g})"
    return compare(label, f, {"x": x}, {"x": analytic}, eps)


def interpretable_case(B, F, n, seed=0, device="cpu", name=None, **kwargs):
    """The whole layer: backward vs differences of sum(y * dout) + sum_f lambda_f Loss_f(x)."""
    layer = InterpretableMask(F, n, **kwargs).astype(np.float64)
    if device != "cpu":
        layer.to(device)
    layer.epoch = 2
    x = peaked_maps(B, F, n, seed, device=device)
    layer.train()
    dout = random_like(layer.forward(x), seed)
    analytic = layer.backward(dout)
    lam = layer.lam_values  # held constant, as in backward; so is c unless differentiated
    loss = layer.filter_loss
    scale = loss.scale if loss.scale_normalise and loss.scale_gradient == "frozen" else None
    layer.eval()  # forward: the mask only; the loss is added below with lambda and c frozen

    def f():
        task = (layer.forward(x) * dout).sum()
        return float(task + (lam * loss.forward(x, scale=scale)).sum())

    result = compare(name or repr(layer), f, {"x": x}, {"x": analytic}, loss_step(loss, x))
    layer.train()
    return result


def paper_cases(seed=0):
    """All rows (list of GradcheckResult), on the CPU, a few small shapes each."""
    return [
        mask_case(2, 3, 4, seed=seed),
        mask_case(1, 2, 5, seed=seed + 1),
        mask_case(2, 2, 5, mode="centroid", seed=seed + 2),
        mi_case(3, 2, 3, seed=seed, name="MutualInformationLoss(exact)"),
        mi_case(4, 1, 4, seed=seed + 1, name="MutualInformationLoss(exact)"),
        mi_case(3, 2, 4, seed=seed + 2, offset=300.0,
                name="MutualInformationLoss(exact, activations ~300)"),
        mi_case(3, 2, 4, seed=seed + 3, scale_normalise=True,
                name="MutualInformationLoss(scale-normalised, c frozen)"),
        mi_case(3, 2, 4, seed=seed + 4, scale_normalise=True, scale_gradient="exact",
                name="MutualInformationLoss(scale-normalised, c differentiated)"),
        interpretable_case(3, 2, 4, seed=seed, lam=100.0,
                           name="InterpretableMask(exact, lam=100)"),
        interpretable_case(2, 3, 3, seed=seed + 1, lambda0=5.0,
                           name="InterpretableMask(exact, lambda_t = lambda0 mean max x / t)"),
        interpretable_case(3, 2, 4, seed=seed + 2, lam=100.0, scale_normalise=True,
                           name="InterpretableMask(scale-normalised, lam=100)"),
        interpretable_case(3, 2, 4, seed=seed + 3, lam=100.0, learn_beta=True,
                           name="InterpretableMask(exact, learned slopes, lam=100)"),
    ]
