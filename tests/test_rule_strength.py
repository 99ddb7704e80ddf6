"""studies/rule_strength.py: the rule's share of the conv gradients, on a tiny net (the
study itself reads the bird study's pretrained nets)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))
import rule_strength as rs  # noqa: E402
from tinyinterp.runs import TrainConfig, build_model  # noqa: E402


def share(lam, interpretable=True, size=16):
    cfg = TrainConfig(task="bird", size=size, widths=[4, 4, 4], top_channels=6, dropout=0.0,
                      interpretable=interpretable,
                      mask_options={"gradient": "authors", "lam": lam, "mode": "argmax"})
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((6, 3, size, size)).astype(np.float32),
             "labels": np.array([1, 1, 1, 0, 0, 0])}
    return rs.rule_share(build_model(cfg, 1), cfg, [batch])


def test_the_rules_share_is_linear_in_its_multiplier():
    one, two = share(1.0), share(2.0)
    assert set(one) == {"conv below", "top conv", "new conv"}
    for name in one:
        assert one[name] > 0
        assert two[name] == pytest.approx(2 * one[name], rel=1e-3)


def test_an_ordinary_net_has_no_rule():
    assert all(v == 0 for v in share(1.0, interpretable=False).values())
