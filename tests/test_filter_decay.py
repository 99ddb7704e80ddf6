"""The filter loss's decay (``train --filter-decay / --no-filter-decay``;
docs/paper.md#the-filter-losss-decay): by default the filter loss's push in epoch t is 1/t
of its first epoch's, for the authors' rule and for the exact loss's lambda_t alike;
without the decay every epoch pushes as the first; the refusal, the recipe's say, and the
option's way through the command line and a checkpoint."""
import numpy as np
import pytest

from tinyinterp.cli import UsageError
from tinyinterp.interpretable import InterpretableMask
from tinyinterp import recipes
from tinyinterp.recipes import apply_recipe, mask_options_from
from tinyinterp.runs import load_run
from tinyinterp.train import train_one
from tinyinterp.train_cli import check_train_args

from test_authors_temperature import maps_and_mask
from test_mask_beta import _train_args
from test_train import tiny_config


def filter_push(epoch, **options):
    """The filter loss's part of the layer's input gradient at ``epoch``: its backward
    with a zero upstream gradient (the task's part, mask * dout, is then zero)."""
    x, _, positive = maps_and_mask(seed=5)
    B, F, n = x.shape[:3]
    layer = InterpretableMask(F, n, **options).astype(np.float64)
    layer.epoch = epoch
    layer.set_labels(positive[:, 0].astype(int))
    layer.forward(x)
    return layer.backward(np.zeros_like(x))


@pytest.mark.parametrize("options", [dict(gradient="authors", lam=10.0), dict(gradient="exact")],
                         ids=["authors", "exact lambda_t"])
def test_by_default_epoch_t_pushes_one_t_th_of_the_first(options):
    first = filter_push(1, **options)
    assert np.abs(first).max() > 0
    for t in (2, 5, 32):
        np.testing.assert_allclose(filter_push(t, **options), first / t, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("options", [dict(gradient="authors", lam=10.0), dict(gradient="exact")],
                         ids=["authors", "exact lambda_t"])
def test_without_the_decay_every_epoch_pushes_as_the_first(options):
    first = filter_push(1, **options)
    for t in (2, 32):
        held = filter_push(t, filter_decay=False, **options)
        np.testing.assert_array_equal(held, first)
        np.testing.assert_allclose(held, t * filter_push(t, **options), rtol=1e-12, atol=1e-300)


def test_the_layer_says_so():
    layer = InterpretableMask(4, 6, gradient="authors", filter_decay=False)
    layer.epoch = 7
    assert layer.t == 1 and "filter_decay=False" in repr(layer)
    default = InterpretableMask(4, 6, gradient="authors")
    default.epoch = 7
    assert default.t == 7 and "filter_decay" not in repr(default)


def test_a_fixed_lambda_of_the_exact_loss_is_refused():
    with pytest.raises(UsageError, match="--no-filter-decay"):
        check_train_args(_train_args("--task", "bird", "--filter-loss", "exact", "--lam", "0.1",
                                     "--no-filter-decay"))
    # the exact loss's lambda_t schedule, and the authors' rule, decay: both take it
    check_train_args(_train_args("--task", "bird", "--filter-loss", "exact", "--no-filter-decay"))
    check_train_args(_train_args("--task", "bird", "--no-filter-decay"))


def test_the_option_reaches_the_masks_and_the_checkpoint(tmp_path):
    opts = mask_options_from(apply_recipe(_train_args("--task", "bird", "--no-filter-decay")))
    assert opts["filter_decay"] is False and opts["gradient"] == "authors"
    assert "filter_decay" not in mask_options_from(apply_recipe(_train_args("--task", "bird", "--filter-decay")))
    cfg = tiny_config(interpretable=True, size=64, mask_options={"gradient": "authors", "lam": 10.0,
                                                                 "filter_decay": False})
    train_one(cfg, tmp_path, log=lambda *_: None)
    model, _, _ = load_run(tmp_path)
    masks = [layer for layer in model.layers if isinstance(layer, InterpretableMask)]
    assert len(masks) == 2 and all(m.filter_decay is False and m.t == 1 for m in masks)


def test_the_recipe_sets_the_decay_and_the_command_line_overrides_it(monkeypatch):
    def decay(*argv):
        return mask_options_from(apply_recipe(_train_args("--task", "bird", *argv))).get("filter_decay", True)

    for default in (True, False):  # whichever the recipe says, the command line wins
        monkeypatch.setitem(recipes.RECIPES, "bird", dict(recipes.RECIPES["bird"], filter_decay=default))
        assert decay() is default
        assert decay("--filter-decay") is True and decay("--no-filter-decay") is False
    # the decay belongs to the recipe's filter loss, as its fixed lam does: another loss
    # gets its own schedule, decaying, and no refusal
    args = _train_args("--task", "bird", "--filter-loss", "exact")
    check_train_args(args)
    assert args.lam is None and args.filter_decay is True
