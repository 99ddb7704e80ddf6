"""InterpretableMask: mask + filter loss + lambda schedule
(paper Eq. 3; docs/paper.md#decisions, 8-10)."""
import numpy as np
import pytest

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.gradcheck import TOLERANCE
from tinyinterp.gradcheck_paper import interpretable_case, paper_cases, peaked_maps
from tinyinterp.interpretable import InterpretableMask
from tinyinterp.layers import Conv2d, ReLU
from tinyinterp.model import Sequential


def device(xp):
    return "cpu" if xp is np else "gpu"


def on(xp, a):
    return to_device(a, device(xp))


@pytest.mark.parametrize("kwargs", [
    dict(lam=100.0),
    dict(lambda0=5.0),
    dict(lam=100.0, scale_normalise=True),
    dict(lam=100.0, scale_normalise=True, scale_gradient="exact"),
])
@pytest.mark.parametrize("B, F, n", [(3, 2, 4), (2, 3, 3)])
def test_layer_gradient_is_task_plus_lambda_filter_loss(xp, kwargs, B, F, n):
    # checks sum(mask(x) * dout) + sum_f lambda_f Loss_f(x), lambda (and c) held constant
    result = interpretable_case(B, F, n, seed=B * n, device=device(xp), **kwargs)
    assert result.max_rel_error < TOLERANCE, str(result)


def test_every_paper_row_passes():
    rows = paper_cases()
    assert len(rows) >= 10
    for row in rows:
        assert row.passed, str(row)


def test_backward_adds_lambda_times_the_filter_loss_gradient(xp):
    x = on(xp, peaked_maps(3, 2, 4, seed=1).astype(np.float32))
    layer = InterpretableMask(2, 4, lam=0.25).to(device(xp))
    y = layer.forward(x)
    dout = on(xp, np.random.default_rng(0).standard_normal(y.shape).astype(np.float32))
    dout_before, x_before = dout.copy(), x.copy()
    dx = layer.backward(dout)
    expected = layer.mask * dout + 0.25 * layer.filter_loss.backward()
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(to_numpy(dx), to_numpy(expected), rtol=1e-6, atol=1e-12)
    assert bool((dout == dout_before).all()) and bool((x == x_before).all())
    # 0-d arrays on the maps' device, read only when logged (no host sync in a step)
    assert layer.last_filter_loss.shape == () and float(layer.last_filter_loss) < 0
    assert layer.last_lambda == pytest.approx(0.25)


def test_eval_mode_has_no_filter_loss(xp):
    x = on(xp, peaked_maps(2, 2, 3, seed=2))
    layer = InterpretableMask(2, 3, num_classes=2).to(device(xp)).eval()
    layer.set_labels(on(xp, np.array([0, 1])))
    y = layer.forward(x)
    dout = xp.ones_like(y)
    assert bool((layer.backward(dout) == layer.mask).all())
    assert layer.last_filter_loss is None
    assert float(layer.buffers["category_seen"].sum()) == 0  # categories not updated


def test_lambda_schedule():
    x = peaked_maps(4, 3, 3, seed=3)
    layer = InterpretableMask(3, 3, lambda0=0.01)
    layer.forward(x)
    peak = x.reshape(4, 3, -1).max(axis=2).mean(axis=0)  # mean_x max_ij x, per filter
    np.testing.assert_allclose(layer.lam_values, 0.01 * peak)
    layer.epoch = 4  # lambda_t ~ 1 / t
    layer.forward(x)
    np.testing.assert_allclose(layer.lam_values, 0.01 * peak / 4)
    assert layer.last_lambda == pytest.approx(0.01 * peak.mean() / 4)


def test_labels_drive_the_categories_and_the_paper_targets():
    n, F = 3, 2
    x = peaked_maps(4, F, n, seed=4)
    x[[0, 2], 0] *= 10  # filter 0 fires on class 1 images (0 and 2)
    x[[1, 3], 1] *= 10  # filter 1 on class 0 images
    layer = InterpretableMask(F, n, num_classes=2, gradient="paper", lam=1.0)
    layer.set_labels(np.array([1, 0, 1, 0]))
    layer.forward(x)
    assert layer.categories.tolist() == [1, 0]
    dx = layer.filter_loss.backward()
    assert np.ptp(dx[1, 0]) < 1e-15 and np.ptp(dx[0, 1]) < 1e-15  # other class: flat T^-
    with pytest.raises(ValueError):
        layer.set_labels(np.array([0, 1]))
        layer.forward(x)


def test_single_class_binary_targets():
    layer = InterpretableMask(2, 3, num_classes=1, gradient="authors")
    assert layer.lam == 1.0  # the authors' rule carries its own scale
    layer.set_labels(np.array([1, 0, 0, 1]))
    layer.forward(peaked_maps(4, 2, 3, seed=5))
    dx = layer.filter_loss.backward()
    assert np.ptp(dx[1, 0]) == 0 and np.ptp(dx[0, 0]) > 0  # bird vs. not: negatives flat
    assert layer.categories.tolist() == [0, 0]


def test_buffers_travel_in_a_sequential_checkpoint(tmp_path):
    net = Sequential(Conv2d(1, 2, 3, padding=1, rng=0), ReLU(),
                     InterpretableMask(2, 4, num_classes=3, gradient="paper", logz_momentum=0.9))
    x = np.random.default_rng(6).random((3, 1, 4, 4)).astype(np.float32)
    net[2].set_labels(np.array([0, 2, 2]))
    y = net.forward(x)
    dx = net.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32 and dx.shape == x.shape
    state = net.state_dict()
    assert {"2.category_ema", "2.category_seen", "2.logz_running", "2.logz_seen"} <= set(state)
    assert state["2.category_seen"].tolist() == [1, 0, 1]
    net.save(tmp_path / "ckpt.npz")
    fresh = Sequential(Conv2d(1, 2, 3, padding=1, rng=1), ReLU(),
                       InterpretableMask(2, 4, num_classes=3, gradient="paper", logz_momentum=0.9))
    fresh.load(tmp_path / "ckpt.npz")
    for k, v in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    np.testing.assert_array_equal(fresh[2].categories, net[2].categories)
    # the sub-objects and the layer share the loaded arrays
    assert fresh[2].buffers["category_ema"] is fresh[2].category_tracker.buffers["category_ema"]


def test_astype_and_to_keep_the_buffers_linked(xp):
    layer = InterpretableMask(2, 3, num_classes=2).astype(np.float64).to(device(xp))
    assert layer.buffers["category_ema"].dtype == np.float64
    assert layer.buffers["category_ema"] is layer.category_tracker.buffers["category_ema"]
    layer.set_labels(on(xp, np.array([0, 1])))
    layer.forward(on(xp, peaked_maps(2, 2, 3, seed=7)))
    assert float(layer.buffers["category_seen"].sum()) == 2


def test_centroid_mode_and_rejections():
    layer = InterpretableMask(2, 4, mode="centroid", lam=1.0)
    x = peaked_maps(2, 2, 4, seed=8)
    y = layer.forward(x)
    np.testing.assert_allclose(y, x * layer.mask)
    with pytest.raises(ValueError):
        layer.forward(peaked_maps(2, 3, 4))  # wrong number of filters
    with pytest.raises(ValueError):
        layer.forward(peaked_maps(2, 2, 5))  # wrong map size
