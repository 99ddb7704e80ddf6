"""The learning-rate schedules of train: cosine with warm-up, and the authors' per-epoch
log-linear decay to a tenth over 10 epochs, then flat."""
import math

import pytest

from tinyinterp.runs import TrainConfig
from tinyinterp.train import learning_rate


def test_cosine_warms_up_then_decays_to_zero():
    cfg = TrainConfig(epochs=4, lr=0.1, warmup_epochs=1)
    steps = 10
    assert learning_rate(cfg, 0, steps) == pytest.approx(0.01)
    assert learning_rate(cfg, 9, steps) == pytest.approx(0.1)
    assert learning_rate(cfg, 10, steps) == pytest.approx(0.1)
    assert learning_rate(cfg, 25, steps) == pytest.approx(0.05)
    assert learning_rate(cfg, 39, steps) < 0.001


def test_authors_schedule_is_logspace_over_ten_epochs_then_flat():
    cfg = TrainConfig(epochs=50, lr=1e-4, lr_schedule="authors", warmup_epochs=0)
    steps = 7
    per_epoch = [learning_rate(cfg, e * steps, steps) for e in range(50)]
    # MATLAB's logspace(-4, -5, 10): ten values from 1e-4 to 1e-5, evenly spaced in log
    expected = [10 ** (-4 - k / 9) for k in range(10)]
    assert per_epoch[:10] == pytest.approx(expected, rel=1e-12)
    assert per_epoch[10:] == pytest.approx([1e-5] * 40, rel=1e-12)
    # constant within an epoch
    assert {learning_rate(cfg, 3 * steps + i, steps) for i in range(steps)} == {per_epoch[3]}
    assert math.isclose(per_epoch[9], 1e-5, rel_tol=1e-12)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")
