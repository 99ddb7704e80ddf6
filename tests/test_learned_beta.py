"""Learned mask slopes (the authors' code): the spread and the target on maps with a known
answer, the per-channel masks against the fixed-slope ones, the update after a step, a
gradient check with the slopes learned, and their way through training and a checkpoint."""
import numpy as np
import pytest

from tinyinterp import gradcheck
from tinyinterp.gradcheck_paper import interpretable_case
from tinyinterp.interpretable import BETA_RATE, InterpretableMask
from tinyinterp.mask import (
    activation_spread,
    beta_target,
    centroid_shape,
    channel_template_shape,
    template_shape,
)
from tinyinterp.runs import load_run
from tinyinterp.train import train_one

from test_train import tiny_config


def test_spread_of_constructed_maps():
    x = np.zeros((1, 3, 7, 7))
    x[0, 0, 3, 3] = 5.0  # one unit: no spread
    x[0, 1, 2, 2] = x[0, 1, 2, 4] = 1.0  # two units 2 apart, centroid between: 1 cell each
    x[0, 2, 1, 1] = x[0, 2, 5, 5] = 2.0  # centroid (3, 3): sqrt(2^2 + 2^2) from each
    np.testing.assert_allclose(activation_spread(x)[0], [0.0, 1.0, np.sqrt(8.0)], rtol=1e-12)


def test_target_is_three_over_the_weighted_spread_clipped():
    n = 7
    x = np.zeros((2, 4, n, n))
    x[:, 0, 3, 3] = 1.0  # spread 0: 3 / 0 clips to 3
    x[:, 1, 2, 2] = x[:, 1, 2, 4] = 1.0  # spread 1 -> 3
    x[:, 2, 1, 1] = x[:, 2, 5, 5] = 1.0  # spread sqrt(8) -> 3 / 2.83 = 1.06, clips to 1.5
    x[0, 3, 3, 2] = x[0, 3, 3, 4] = 1.0  # image 0: spread 1
    x[1, 3, 3, 1] = x[1, 3, 3, 5] = 1.0  # image 1: spread 2
    signed = np.ones_like(x)  # strength = mean of x: image 0 and 1 of filter 3 weigh equally
    beta = np.full(4, 2.0)
    t = beta_target(x, signed, np.ones((2, 4)), beta)
    np.testing.assert_allclose(t, [3.0, 3.0, 1.5, 3.0 / 1.5], rtol=1e-12)
    # weights: image 1 three times as strong -> sigma_bar = (1 * 1 + 3 * 2) / 4 = 1.75
    signed[1, 3] = 3.0
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == pytest.approx(3.0 / 1.75)
    # only the filter's own category counts; a filter with no positive keeps its slope
    positives = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=float)
    assert beta_target(x, signed, positives, beta)[3] == pytest.approx(3.0 / 2.0)
    positives[:, 3] = 0
    assert beta_target(x, signed, positives, beta)[3] == 2.0
    # weights as they come (the code): all negative is the same weighted mean; mixed signs
    # give what the arithmetic gives; a zero denominator gives 3
    signed[:, 3] = -1.0  # equal weights: (1 + 2) / 2 = 1.5 -> 2
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == pytest.approx(2.0)
    signed[0, 3], signed[1, 3] = 2.0, -1.0  # sum(s sqrtvar) = 2 * 1 - 1 * 2 = 0 -> 3
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 3.0
    signed[0, 3], signed[1, 3] = 1.0, -1.0  # sum(s) = 0: sigma_bar = -inf, 3 / -inf -> 1.5
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 1.5
    signed[0, 3], signed[1, 3] = 3.0, -1.0  # (3 - 2) / (3 - 1) = 0.5 -> 6, clipped to 3
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 3.0
    signed[0, 3], signed[1, 3] = -3.0, 1.0  # (-3 + 2) / (-3 + 1) = 0.5 as well
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 3.0
    signed[0, 3], signed[1, 3] = 1.0, -2.0  # (1 - 4) / (1 - 2) = 3 -> 1, clipped to 1.5
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 1.5
    x[:, 3] = 0
    assert beta_target(x, signed, np.ones((2, 4)), beta)[3] == 3.0


def test_per_channel_masks_match_the_fixed_slope_masks():
    n, rng = 8, np.random.default_rng(0)
    mu = rng.integers(0, n * n, (3, 4))
    like = np.zeros((1,), dtype=np.float64)
    beta_c = np.array([1.5, 2.0, 2.5, 3.0])
    per_channel = centroid_shape(mu, n, beta_c, like=like)
    argmax = channel_template_shape(mu, n, beta_c, like=like)
    for f, b in enumerate(beta_c):
        np.testing.assert_allclose(per_channel[:, f], centroid_shape(mu, n, b, like=like)[:, f], rtol=1e-12)
        paper_beta = b * 2 * n / (n - 1)  # the code's beta_c as the paper's slope
        np.testing.assert_allclose(argmax[:, f], template_shape(mu, n, paper_beta, like=like)[:, f],
                                   rtol=1e-12, atol=1e-12)


def _layer(mode="argmax", gradient="authors"):
    layer = InterpretableMask(4, 6, num_classes=1, mode=mode, gradient=gradient, lam=3.0,
                              learn_beta=True).astype(np.float64)
    layer.set_labels(np.array([1, 0, 1]))
    return layer


@pytest.mark.parametrize("mode", ["argmax", "centroid"])
def test_slopes_move_toward_their_target_only_in_step_beta(mode):
    layer = _layer(mode)
    x = np.abs(np.random.default_rng(1).standard_normal((3, 4, 6, 6)))
    beta = layer.buffers["beta_c"]
    assert np.all(beta == 2.0)
    layer.forward(x)
    layer.backward(np.ones_like(x))
    assert np.all(layer.buffers["beta_c"] == 2.0)  # forward and backward leave it alone
    target = layer._beta_target.copy()
    assert np.all((target >= 1.5) & (target <= 3.0))
    # the same as from scratch, positives the birds (labels 1, 0, 1), centroids recomputed
    positives = np.repeat(np.array([[1.0], [0.0], [1.0]]), 4, axis=1)
    np.testing.assert_array_equal(target, beta_target(x, layer.template_mask.signed_mask, positives,
                                                      np.full(4, 2.0)))
    layer.step_beta()
    np.testing.assert_allclose(layer.buffers["beta_c"], 2.0 + BETA_RATE * (target - 2.0), rtol=1e-12)
    before = layer.buffers["beta_c"].copy()
    layer.step_beta()  # no new forward: nothing to apply
    np.testing.assert_array_equal(layer.buffers["beta_c"], before)
    # the next forward's mask uses the new slopes
    layer.forward(x)
    assert layer.template_mask.channel_beta is layer.buffers["beta_c"]


@pytest.mark.parametrize("mode", ["argmax", "centroid"])
def test_gradcheck_with_learned_slopes(mode):
    # the whole layer, task term and lambda * exact -MI term (the authors' rule is a rule,
    # not the gradient of a loss); the mask with the slopes as they stand
    result = interpretable_case(3, 2, 4, seed=5, lam=100.0, mode=mode, learn_beta=True)
    assert result.max_rel_error < gradcheck.TOLERANCE, str(result)


def test_training_learns_slopes_and_a_checkpoint_keeps_them(tmp_path):
    cfg = tiny_config(interpretable=True, task="bird", mask_options={"learn_beta": True,
                                                                      "gradient": "authors", "lam": 1.0})
    train_one(cfg, tmp_path, log=lambda *_: None)
    model, _, _ = load_run(tmp_path)
    slopes = [v for k, v in model.state_dict().items() if k.endswith("beta_c")]
    assert len(slopes) == 2  # both masked layers
    for beta in slopes:
        assert np.all((beta >= 1.5) & (beta <= 3.0)) and not np.all(beta == 2.0)
