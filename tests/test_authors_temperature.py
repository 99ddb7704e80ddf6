"""The authors' rule's temperature (``train --authors-temperature``;
docs/paper.md#the-rules-temperature): the default is the code's 0.5, scaling the maps and
the temperature together leaves the rule as it was, a warmer rule spreads its weight over
more images, the refusals, and the option's way through the command line and a checkpoint."""
import numpy as np
import pytest

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.cli import UsageError
from tinyinterp.filter_loss import AUTHORS_TEMPERATURE, MutualInformationLoss, authors_rule
from tinyinterp.interpretable import InterpretableMask
from tinyinterp.mask import argmax_positions, template_shape
from tinyinterp.recipes import apply_recipe, mask_options_from
from tinyinterp.runs import load_run
from tinyinterp.train import train_one
from tinyinterp.train_cli import check_train_args

from test_mask_beta import _train_args
from test_train import tiny_config


def device(xp):
    return "cpu" if xp is np else "gpu"


def maps_and_mask(B=8, F=3, n=6, seed=0):
    """Non-negative maps with distinct strengths per image, their argmax mask, and labels
    that make both positives and negatives of every filter."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 1.0, size=(B, F, n, n)) * rng.uniform(0.5, 3.0, size=(B, F, 1, 1))
    m = template_shape(argmax_positions(x), n, like=x)
    positive = np.zeros((B, F), dtype=bool)
    positive[: B - 3] = True
    return x, m, positive


def test_the_default_is_the_codes_half():
    x, m, positive = maps_and_mask()
    assert AUTHORS_TEMPERATURE == 0.5
    np.testing.assert_array_equal(authors_rule(x, m, positive), authors_rule(x, m, positive, temperature=0.5))


@pytest.mark.parametrize("k", [0.25, 1.8, 7.0])
def test_scaling_maps_and_temperature_together_changes_nothing(xp, k):
    x, m, positive = maps_and_mask(seed=1)
    x, m, positive = (to_device(a, device(xp)) for a in (x, m, positive))
    base = to_numpy(authors_rule(x, m, positive, temperature=0.5))
    scaled = to_numpy(authors_rule(k * x, m, positive, temperature=0.5 * k))
    np.testing.assert_allclose(scaled, base, rtol=1e-10, atol=1e-25)
    # the maps scaled alone are pushed otherwise: the temperature is what carries the scale
    alone = to_numpy(authors_rule(k * x, m, positive, temperature=0.5))
    assert np.abs(alone - base).max() > 1e-3 * np.abs(base).max()


def test_a_warmer_rule_spreads_its_weight_over_more_images():
    x, m, positive = maps_and_mask(B=16, seed=2)
    positive[:] = True  # every image a positive: the weights are the rule's size per image

    def weights(a):
        push = authors_rule(x, m, positive, temperature=a)
        w = np.abs(push).sum(axis=(2, 3))  # (B, F), the push each image gets
        return w / w.sum(axis=0, keepdims=True)

    cold, code, warm = weights(0.1), weights(0.5), weights(5.0)
    for f in range(x.shape[1]):  # the largest share of one image falls as a rises
        assert cold[:, f].max() > code[:, f].max() > warm[:, f].max()
    # warm enough, the weights approach the linear term's (s_b - A+ + a) spread: no image
    # takes more than a few times its 1/B share
    assert warm.max() < 4 / x.shape[0]


def test_the_loss_object_and_the_mask_layer_pass_it_on():
    x, m, positive = maps_and_mask(seed=3)
    B, F, n = x.shape[:3]
    labels = positive[:, 0].astype(int)
    loss = MutualInformationLoss(n, gradient="authors", authors_temperature=2.0)
    loss.forward(x, labels, np.ones(F, dtype=int), mask=m)
    np.testing.assert_allclose(loss.backward(), authors_rule(x, m, positive, temperature=2.0), rtol=1e-12)
    layer = InterpretableMask(F, n, gradient="authors", lam=10.0, authors_temperature=2.0).astype(np.float64)
    layer.set_labels(labels)
    layer.forward(x)
    dout = np.random.default_rng(4).standard_normal(x.shape)
    expected = dout * np.maximum(m, 0) + 10.0 * authors_rule(x, m, positive, temperature=2.0)
    np.testing.assert_allclose(layer.backward(dout), expected, rtol=1e-12, atol=1e-300)
    assert "authors_temperature=2" in repr(layer)
    assert "authors_temperature" not in repr(InterpretableMask(F, n, gradient="authors"))


def test_refusals():
    x, m, positive = maps_and_mask()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            authors_rule(x, m, positive, temperature=bad)
        with pytest.raises(ValueError, match="authors_temperature"):
            MutualInformationLoss(6, gradient="authors", authors_temperature=bad)
    with pytest.raises(ValueError, match="authors_temperature"):
        MutualInformationLoss(6, gradient="exact", authors_temperature=0.9)
    with pytest.raises(UsageError, match="--authors-temperature"):
        check_train_args(_train_args("--task", "bird", "--filter-loss", "exact", "--authors-temperature", "0.9"))
    with pytest.raises(SystemExit):  # argparse: not a positive number
        _train_args("--task", "bird", "--authors-temperature", "0")


def test_the_option_reaches_the_masks_and_the_checkpoint(tmp_path):
    opts = mask_options_from(apply_recipe(_train_args("--task", "bird", "--authors-temperature", "0.9")))
    assert opts["authors_temperature"] == 0.9 and opts["gradient"] == "authors"
    assert "authors_temperature" not in mask_options_from(apply_recipe(_train_args("--task", "bird")))
    cfg = tiny_config(interpretable=True, size=64, mask_options={"gradient": "authors", "lam": 10.0,
                                                                 "authors_temperature": 0.9})
    train_one(cfg, tmp_path, log=lambda *_: None)
    model, _, _ = load_run(tmp_path)
    masks = [layer for layer in model.layers if isinstance(layer, InterpretableMask)]
    assert len(masks) == 2 and all(m.filter_loss.authors_temperature == 0.9 for m in masks)
