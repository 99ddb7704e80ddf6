"""Inner parts (``train --inner-parts``; docs/paper.md#inner-parts): the mask's part
position is the argmax over the cells off the map's outer ring. Its positions against a
loop over the inner cells, the mask it builds, a gradient check, the authors' rule that
reads it, the refusals, and the option's way through the command line and a checkpoint."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.cli import UsageError
from tinyinterp.filter_loss import authors_rule
from tinyinterp.gradcheck import TOLERANCE, check_layer
from tinyinterp.interpretable import InterpretableMask
from tinyinterp.mask import TemplateMask, argmax_positions, template_shape
from tinyinterp.recipes import mask_options_from
from tinyinterp.runs import load_run
from tinyinterp.train import train_one
from tinyinterp.train_cli import check_train_args

from test_mask_beta import _train_args
from test_train import tiny_config


def device(xp):
    return "cpu" if xp is np else "gpu"


def inner_argmax_by_loops(x):
    """The first inner cell (row-major) holding the largest inner value, as i * n + j."""
    B, F, n, _ = x.shape
    out = np.empty((B, F), dtype=int)
    for b in range(B):
        for f in range(F):
            best = None
            for i in range(1, n - 1):
                for j in range(1, n - 1):
                    if best is None or x[b, f, i, j] > x[b, f, best[0], best[1]]:
                        best = (i, j)
            out[b, f] = best[0] * n + best[1]
    return out


@given(st.integers(1, 3), st.integers(1, 3), st.integers(3, 9), st.integers(0, 2**31 - 1),
       st.booleans())
def test_inner_positions_are_the_inner_argmax(B, F, n, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (B, F, n, n)).astype(float) if ties else rng.random((B, F, n, n))
    mu = argmax_positions(x, inner=True)
    np.testing.assert_array_equal(mu, inner_argmax_by_loops(x))
    i, j = mu // n, mu % n
    assert ((i >= 1) & (i <= n - 2) & (j >= 1) & (j <= n - 2)).all()


def test_a_peak_on_the_ring_is_passed_over_for_the_best_inner_cell(xp):
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 0, 5] = 9.0  # the map's maximum, on the top row
    x[0, 0, 1, 5] = 4.0  # the best inner cell, right under it
    x[0, 0, 4, 2] = 3.0
    x = to_device(x, device(xp))
    assert int(argmax_positions(x)[0, 0]) == 5
    layer = TemplateMask(inner=True)
    y = to_numpy(layer.forward(x))
    assert int(layer.mu_hat[0, 0]) == 1 * 8 + 5
    # the diamond sits at (1, 5): the ring cell above it, one step away, keeps half
    assert y[0, 0, 0, 5] == 9.0 * 0.5 and y[0, 0, 1, 5] == 4.0 and y[0, 0, 4, 2] == 0.0
    np.testing.assert_array_equal(to_numpy(layer.signed_mask), to_numpy(template_shape(layer.mu_hat, 8, like=x)))


def inner_peaked_maps(B, F, n, seed):
    """Random maps with one inner cell well above every other cell: the inner argmax
    stays put under the check's small steps."""
    rng = np.random.default_rng(seed)
    x = rng.random((B, F, n, n))
    i, j = rng.integers(1, n - 1, (2, B, F))
    x[np.arange(B)[:, None], np.arange(F)[None, :], i, j] += 5.0
    x[:, :, 0, :] += 10.0  # a brighter ring, which the inner argmax must ignore
    return x


@pytest.mark.parametrize("B, F, n", [(2, 3, 4), (1, 2, 5), (2, 2, 8)])
def test_gradient_away_from_ties(xp, B, F, n):
    x = to_device(inner_peaked_maps(B, F, n, seed=n), device(xp))
    result = check_layer(TemplateMask(inner=True), x, seed=1)
    assert result.max_rel_error < TOLERANCE, str(result)


def test_the_authors_rule_reads_the_inner_mask():
    B, F, n = 4, 3, 6
    x = inner_peaked_maps(B, F, n, seed=2)
    layer = InterpretableMask(F, n, gradient="authors", lam=10.0, inner_parts=True).astype(np.float64)
    layer.set_labels(np.array([1, 0, 1, 1]))
    layer.forward(x)
    dout = np.random.default_rng(3).standard_normal(x.shape)
    dx = layer.backward(dout)
    m = template_shape(argmax_positions(x, inner=True), n, like=x)
    positive = np.array([1, 0, 1, 1], dtype=bool)[:, None].repeat(F, axis=1)
    expected = dout * np.maximum(m, 0) + 10.0 * authors_rule(x, m, positive)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-300)


def test_refusals():
    with pytest.raises(ValueError, match="centroid"):
        TemplateMask(mode="centroid", inner=True)
    with pytest.raises(ValueError, match="no cell off its outer ring"):
        TemplateMask(inner=True).forward(np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="every cell"):
        InterpretableMask(4, 8, gradient="exact", inner_parts=True)
    for argv in (["--inner-parts", "--filter-loss", "exact"], ["--inner-parts", "--mask", "centroid",
                                                              "--filter-loss", "authors"]):
        with pytest.raises(UsageError, match="--inner-parts"):
            check_train_args(_train_args("--task", "bird", *argv))


def test_the_option_reaches_the_masks_and_the_checkpoint(tmp_path):
    opts = mask_options_from(_train_args("--task", "bird", "--filter-loss", "authors", "--inner-parts"))
    assert opts["inner_parts"] is True
    assert "inner_parts" not in mask_options_from(_train_args())  # older configs stay as they were
    cfg = tiny_config(interpretable=True, size=64, mask_options={"gradient": "authors", "lam": 10.0,
                                                                 "inner_parts": True})
    train_one(cfg, tmp_path, log=lambda *_: None)
    model, _, _ = load_run(tmp_path)
    masks = [layer for layer in model.layers if isinstance(layer, InterpretableMask)]
    assert len(masks) == 2 and all(m.template_mask.inner for m in masks)
    assert "inner_parts=True" in repr(masks[0])
