"""TemplateMask (paper Sec. 3; docs/paper.md#decision-4-the-mask;
the authors' getMu.m / getMask.m)."""
import numpy as np
import pytest

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.gradcheck import TOLERANCE, check_layer
from tinyinterp.gradcheck_paper import peaked_maps
from tinyinterp.mask import TemplateMask, centroid_positions


def device(xp):
    return "cpu" if xp is np else "gpu"


def naive_masked(x, beta=4.0):
    """x * max(1 - beta L1 / n, 0) around the first argmax, by loops (NumPy)."""
    B, F, n, _ = x.shape
    out, mus = np.empty_like(x), np.empty((B, F), dtype=int)
    for b in range(B):
        for f in range(F):
            k = int(np.argmax(x[b, f]))  # row-major, first on ties
            mi, mj = divmod(k, n)
            mus[b, f] = k
            for i in range(n):
                for j in range(n):
                    shape = max(1 - beta * (abs(i - mi) + abs(j - mj)) / n, -1)
                    out[b, f, i, j] = x[b, f, i, j] * max(shape, 0)
    return out, mus


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 1, 1, 1), (3, 2, 7, 7), (2, 2, 8, 8)])
def test_equals_x_times_clipped_template_shape_at_argmax(xp, shape):
    x = np.random.default_rng(0).random(shape)
    layer = TemplateMask()
    y = layer.forward(to_device(x, device(xp)))
    expected, mus = naive_masked(x)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-14)
    np.testing.assert_array_equal(to_numpy(layer.mu_hat), mus)
    assert layer.mask.shape == shape and float(layer.mask.max()) == 1.0  # peak 1, not tau
    assert float(layer.signed_mask.min()) >= -1.0


def test_hand_example_n8():
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 2, 5] = 3.0
    x[0, 0, 2, 6] = 2.0  # L1 = 1 from the peak: shape 0.5
    x[0, 0, 4, 5] = 2.5  # L1 = 2: shape 0, masked out
    layer = TemplateMask()
    y = layer.forward(x)
    assert int(layer.mu_hat[0, 0]) == 2 * 8 + 5
    assert y[0, 0, 2, 5] == 3.0 and y[0, 0, 2, 6] == 1.0 and y[0, 0, 4, 5] == 0.0


def test_ties_go_to_the_first_index():
    x = np.zeros((1, 2, 3, 3))
    x[0, 0, 0, 2] = x[0, 0, 2, 0] = 1.0
    layer = TemplateMask()
    layer.forward(x)
    assert int(layer.mu_hat[0, 0]) == 2  # (0, 2) comes before (2, 0)
    assert int(layer.mu_hat[0, 1]) == 0  # an all-zero map: the first cell


@pytest.mark.parametrize("mode", ["argmax", "centroid"])
@pytest.mark.parametrize("B, F, n", [(2, 3, 4), (1, 2, 5), (3, 1, 3)])
def test_gradient_away_from_ties(xp, mode, B, F, n):
    # peaked_maps puts a clear maximum in every map, so no step of the check moves mu_hat
    x = peaked_maps(B, F, n, seed=B + n, device=device(xp))
    result = check_layer(TemplateMask(mode=mode), x, seed=1)
    assert result.passed, str(result)
    assert result.max_rel_error < TOLERANCE


def test_backward_is_the_same_mask_and_changes_nothing(xp):
    x = to_device(np.random.default_rng(1).random((2, 2, 4, 4)).astype(np.float32), device(xp))
    x_before = x.copy()
    layer = TemplateMask()
    y = layer.forward(x)
    dout = xp.ones_like(y)
    dx = layer.backward(dout)
    assert y.dtype == dx.dtype == np.float32
    assert bool((dx == layer.mask).all()) and bool((dout == 1).all()) and bool((x == x_before).all())


def test_centroid_hand_example():
    # the authors' code: centroid rounded half away from zero (MATLAB round), mask on
    # linspace(-1, 1, n): here u = [-1, -0.5, 0, 0.5, 1]
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 1, 2] = x[0, 0, 1, 3] = x[0, 0, 3, 2] = x[0, 0, 3, 3] = 1.0
    # row centroid 2, column centroid 2.5 -> 3 (NumPy's round would give 2)
    assert int(centroid_positions(x)[0, 0]) == 2 * 5 + 3
    layer = TemplateMask(mode="centroid", beta_c=1.0)
    y = layer.forward(x)
    m = layer.signed_mask[0, 0]
    assert m[2, 3] == 1.0  # at mu
    assert m[2, 2] == m[1, 3] == 0.5  # one step = 0.5 in u: 1 - 1 * 0.5
    assert m[1, 2] == 0.0  # L1 = 1 in u
    assert m[4, 0] == -1.0  # 1 - (1 + 1.5): clipped
    np.testing.assert_allclose(y[0, 0], x[0, 0] * np.maximum(m, 0))
    assert y[0, 0, 1, 3] == 0.5 and y[0, 0, 1, 2] == 0.0


def test_centroid_default_slope_is_about_paper_beta():
    # one step on linspace(-1, 1, n) is 2 / (n - 1), so beta_c = 2 on those coordinates is
    # beta = 4 n / (n - 1) in the paper's cell units (docs/paper.md#the-mask-a-rounded-centroid)
    n = 8
    x = np.zeros((1, 1, n, n))
    x[0, 0, 3, 3] = 1.0
    c = TemplateMask(mode="centroid")
    c.forward(x)
    a = TemplateMask(beta=4.0 * n / (n - 1))
    a.forward(x)
    np.testing.assert_allclose(c.signed_mask, a.signed_mask, atol=1e-6)


def test_centroid_of_an_empty_map_is_the_corner():
    layer = TemplateMask(mode="centroid")
    y = layer.forward(np.zeros((1, 1, 4, 4), dtype=np.float32))
    assert int(layer.mu_hat[0, 0]) == 0 and y.dtype == np.float32


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        TemplateMask(mode="mean")
    with pytest.raises(ValueError):
        TemplateMask().forward(np.zeros((1, 1, 3, 4)))
