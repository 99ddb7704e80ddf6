"""Losses: gradients vs. central differences, values, dtypes, input errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import XP_SETTINGS, logistic_cases, softmax_cases
from tinyinterp import gradcheck
from tinyinterp.backend import to_numpy
from tinyinterp.losses import LogisticLoss, SoftmaxCrossEntropy, log_softmax

TOL = gradcheck.TOLERANCE


# ---- gradients vs. central differences (float64) ----

@XP_SETTINGS
@given(case=softmax_cases())
def test_softmax_cross_entropy_gradcheck(xp, case):
    logits, labels = case
    result = gradcheck.check_loss(SoftmaxCrossEntropy(), xp.asarray(logits), xp.asarray(labels))
    assert result.max_rel_error < TOL, str(result)


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("encoding", ["0/1", "-1/+1"])
@XP_SETTINGS
@given(data=st.data())
def test_logistic_loss_gradcheck(xp, ndim, encoding, data):
    logits, targets = data.draw(logistic_cases(ndim=ndim, plus_minus=encoding == "-1/+1"))
    assert logits.ndim == ndim and set(np.unique(targets)) <= ({-1, 1} if encoding == "-1/+1" else {0, 1})
    result = gradcheck.check_loss(LogisticLoss(), xp.asarray(logits), xp.asarray(targets))
    assert result.max_rel_error < TOL, str(result)


# ---- values against plain formulas ----

@XP_SETTINGS
@given(case=softmax_cases(scale=3.0))
def test_softmax_cross_entropy_value(xp, case):
    logits, labels = case
    loss = float(SoftmaxCrossEntropy().forward(xp.asarray(logits), xp.asarray(labels)))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)


@XP_SETTINGS
@given(case=logistic_cases(scale=3.0))
def test_logistic_loss_value(xp, case):
    logits, targets = case
    loss = float(LogisticLoss().forward(xp.asarray(logits), xp.asarray(targets)))
    y = targets if targets.min() < 0 else 2 * targets - 1
    expected = np.log1p(np.exp(-y * logits)).sum() / logits.shape[0]
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_logistic_01_and_pm1_targets_agree(xp):
    rng = np.random.default_rng(0)
    logits = xp.asarray(rng.standard_normal((4, 3)))
    t01 = rng.integers(0, 2, size=(4, 3))
    a, b = LogisticLoss(), LogisticLoss()
    assert float(a.forward(logits, xp.asarray(t01))) == float(b.forward(logits, xp.asarray(2 * t01 - 1)))
    np.testing.assert_array_equal(to_numpy(a.backward()), to_numpy(b.backward()))


def test_losses_stable_for_huge_logits(xp):
    logits = xp.asarray(np.array([[1000.0, -1000.0, 0.0], [-800.0, 900.0, 5.0]]))
    sce = SoftmaxCrossEntropy()
    value = float(sce.forward(logits, xp.asarray(np.array([1, 1]))))
    assert value == pytest.approx(1000.0, rel=1e-12)  # (2000 + 0) / 2
    assert bool(xp.isfinite(sce.backward()).all())
    log = LogisticLoss()
    # margins y*z: (-1000, -1000, 0) and (-800, -900, -5); log(1 + e^-m) ~ -m for m << 0
    value = float(log.forward(logits, xp.asarray(np.array([[0, 1, 1], [1, 0, 0]]))))
    expected = (1000 + 1000 + np.log(2) + 800 + 900 + np.log1p(np.exp(5.0))) / 2
    assert value == pytest.approx(expected, rel=1e-12)
    assert bool(xp.isfinite(log.backward()).all())


def test_log_softmax_rows_normalise(xp):
    z = xp.asarray(np.random.default_rng(1).standard_normal((3, 5)) * 50)
    np.testing.assert_allclose(to_numpy(xp.exp(log_softmax(z)).sum(axis=1)), np.ones(3), rtol=1e-12)


# ---- dtypes and views ----

LOSS_CASES = {
    "softmax": (SoftmaxCrossEntropy, (4, 5), lambda rng, s: rng.integers(0, s[1], size=s[0])),
    "logistic-1d-01": (LogisticLoss, (6,), lambda rng, s: rng.integers(0, 2, size=s)),
    "logistic-2d-pm1": (LogisticLoss, (4, 3), lambda rng, s: 2 * rng.integers(0, 2, size=s) - 1),
}


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_float32_in_float32_out(xp, name):
    cls, shape, make_targets = LOSS_CASES[name]
    rng = np.random.default_rng(0)
    logits = xp.asarray(rng.standard_normal(shape).astype(np.float32))
    loss = cls()
    value = loss.forward(logits, xp.asarray(make_targets(rng, shape)))
    assert value.dtype == np.float32 and value.shape == ()
    grad = loss.backward()
    assert grad.dtype == np.float32 and grad.shape == shape


@pytest.mark.parametrize("name", ["softmax", "logistic-2d-pm1"])
def test_non_contiguous_logits_give_same_result(xp, name):
    cls, shape, make_targets = LOSS_CASES[name]
    rng = np.random.default_rng(0)
    logits_np = rng.standard_normal(shape)
    targets = xp.asarray(make_targets(rng, shape))
    view = xp.asarray(logits_np.T.copy()).T
    assert not view.flags.c_contiguous
    a, b = cls(), cls()
    expected = float(a.forward(xp.asarray(logits_np), targets))
    assert float(b.forward(view, targets)) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(to_numpy(b.backward()), to_numpy(a.backward()), rtol=1e-14)


def test_labels_may_be_a_list_or_unsigned(xp):
    logits = xp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    ref = float(SoftmaxCrossEntropy().forward(logits, xp.asarray(np.array([0, 3, 1]))))
    assert float(SoftmaxCrossEntropy().forward(logits, [0, 3, 1])) == ref
    assert float(SoftmaxCrossEntropy().forward(logits, xp.asarray(np.array([0, 3, 1], dtype=np.uint8)))) == ref


# ---- input errors: ValueError naming the loss and the shapes ----

def _logits(shape, fill=None):
    z = np.random.default_rng(0).standard_normal(shape)
    if fill is not None:
        z.flat[1] = fill
    return z


SCE_ERRORS = {
    "logits-1d": (_logits((4,)), np.zeros(4, int), ["SoftmaxCrossEntropy", "2-D", "(4,)"]),
    "logits-3d": (_logits((2, 3, 1)), np.zeros(2, int), ["SoftmaxCrossEntropy", "2-D", "(2, 3, 1)"]),
    "logits-int": (np.ones((2, 3), dtype=np.int64), np.zeros(2, int), ["SoftmaxCrossEntropy", "int64"]),
    "logits-nan": (_logits((2, 3), np.nan), np.zeros(2, int), ["SoftmaxCrossEntropy", "NaN or inf", "(2, 3)"]),
    "logits-inf": (_logits((2, 3), -np.inf), np.zeros(2, int), ["SoftmaxCrossEntropy", "NaN or inf", "(2, 3)"]),
    "label-too-big": (_logits((2, 3)), np.array([0, 3]), ["SoftmaxCrossEntropy", "[0, 3)", "[0, 3]"]),
    "label-negative": (_logits((2, 3)), np.array([-1, 2]), ["SoftmaxCrossEntropy", "[0, 3)", "[-1, 2]"]),
    "labels-2d": (_logits((2, 3)), np.zeros((2, 1), int), ["SoftmaxCrossEntropy", "(2,)", "(2, 1)"]),
    "labels-too-many": (_logits((2, 3)), np.zeros(3, int), ["SoftmaxCrossEntropy", "(2,)", "(3,)"]),
    "labels-float": (_logits((2, 3)), np.array([0.0, 1.0]), ["SoftmaxCrossEntropy", "integer", "float64"]),
    "labels-bool": (_logits((2, 3)), np.array([True, False]), ["SoftmaxCrossEntropy", "integer", "bool"]),
}


@pytest.mark.parametrize("name", sorted(SCE_ERRORS))
def test_softmax_cross_entropy_input_errors(xp, name):
    logits, labels, expected = SCE_ERRORS[name]
    with pytest.raises(ValueError) as info:
        SoftmaxCrossEntropy().forward(xp.asarray(logits), xp.asarray(labels))
    for part in expected:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"


LOGISTIC_ERRORS = {
    "logits-3d": (_logits((2, 3, 1)), np.zeros((2, 3, 1), int), ["LogisticLoss", "(2, 3, 1)"]),
    "logits-0d": (np.float64(1.0), 1, ["LogisticLoss", "(N, K) or (N,)"]),
    "logits-int": (np.ones((2, 3), dtype=np.int64), np.zeros((2, 3), int), ["LogisticLoss", "int64"]),
    "logits-nan": (_logits((2, 3), np.nan), np.zeros((2, 3), int), ["LogisticLoss", "NaN or inf", "(2, 3)"]),
    "logits-inf": (_logits((5,), np.inf), np.zeros(5, int), ["LogisticLoss", "NaN or inf", "(5,)"]),
    "targets-0-2": (_logits((2, 3)), np.array([[0, 1, 2], [0, 0, 1]]), ["LogisticLoss", "{0, 1}", "{-1, +1}"]),
    "targets-mixed": (_logits((3,)), np.array([-1, 0, 1]), ["LogisticLoss", "{0, 1}", "{-1, +1}"]),
    "targets-half": (_logits((2,)), np.array([0.5, 1.0]), ["LogisticLoss", "{0, 1}", "{-1, +1}"]),
    "targets-shape": (_logits((4, 1)), np.zeros(4, int), ["LogisticLoss", "(4, 1)", "(4,)"]),
    "targets-2d-for-1d": (_logits((4,)), np.zeros((4, 1), int), ["LogisticLoss", "(4,)", "(4, 1)"]),
}


@pytest.mark.parametrize("name", sorted(LOGISTIC_ERRORS))
def test_logistic_loss_input_errors(xp, name):
    logits, targets, expected = LOGISTIC_ERRORS[name]
    with pytest.raises(ValueError) as info:
        LogisticLoss().forward(xp.asarray(logits), xp.asarray(targets))
    for part in expected:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
