"""The templates' slope beta as a training option (``train --mask-beta``): the mask it
builds on a map with a known argmax, a gradient check at another slope, the command
line's mapping and refusals, and the slope's way through training and a checkpoint."""
import numpy as np
import pytest

from tinyinterp import gradcheck
from tinyinterp.__main__ import build_parser
from tinyinterp.cli import UsageError
from tinyinterp.gradcheck_paper import interpretable_case
from tinyinterp.interpretable import InterpretableMask
from tinyinterp.recipes import mask_options_from
from tinyinterp.runs import load_run
from tinyinterp.templates import BETA
from tinyinterp.train import train_one
from tinyinterp.train_cli import check_train_args

from test_train import tiny_config


@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_mask_keeps_the_cells_within_n_over_beta(beta):
    n = 8
    x = np.full((1, 1, n, n), 0.1)
    x[0, 0, 2, 5] = 3.0  # the argmax
    layer = InterpretableMask(1, n, beta=beta).astype(np.float64)
    layer.eval()
    out = layer.forward(x)
    rows, cols = np.indices((n, n))
    l1 = np.abs(rows - 2) + np.abs(cols - 5)
    expected = x[0, 0] * np.maximum(1 - beta * l1 / n, 0)  # docs/paper.md: x * max(T / tau, 0)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-12)
    assert np.count_nonzero(out) == np.count_nonzero(l1 < n / beta)
    assert layer.filter_loss.beta == beta  # the loss's templates have the mask's slope


def test_gradcheck_at_a_gentler_slope():
    result = interpretable_case(3, 2, 6, seed=7, beta=2.0)
    assert result.max_rel_error < gradcheck.TOLERANCE, str(result)


def _train_args(*argv):
    return build_parser().parse_args(["train", "--data", ".", *argv])


def test_command_line_sets_the_slope_only_when_asked():
    assert "beta" not in mask_options_from(_train_args())  # the layer's default, BETA
    assert mask_options_from(_train_args("--mask-beta", "2"))["beta"] == 2.0
    assert BETA == 4.0


@pytest.mark.parametrize("argv", [["--mask-beta", "2", "--learn-beta"],
                                  ["--mask-beta", "2", "--mask", "centroid"]])
def test_command_line_refuses_a_slope_that_would_be_ignored(argv):
    with pytest.raises(UsageError, match="--mask-beta"):
        check_train_args(_train_args(*argv))


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_command_line_refuses_a_slope_not_above_zero(value, capsys):
    with pytest.raises(SystemExit):
        _train_args("--mask-beta", value)
    assert "--mask-beta" in capsys.readouterr().err


def test_training_keeps_the_slope_in_its_checkpoint(tmp_path):
    cfg = tiny_config(interpretable=True, mask_options={"beta": 2.0})
    train_one(cfg, tmp_path, log=lambda *_: None)
    model, _, _ = load_run(tmp_path)
    masks = [layer for layer in model.layers if isinstance(layer, InterpretableMask)]
    assert len(masks) == 2 and all(m.template_mask.beta == 2.0 for m in masks)
