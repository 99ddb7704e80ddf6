"""SGD with momentum and weight decay: steps by hand, velocity placement, state dicts."""
import numpy as np
import pytest

from tinyinterp.backend import get_array_module, to_numpy
from tinyinterp.optim import SGD


def make_params(xp, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "0.W": xp.asarray(rng.standard_normal((3, 2, 2, 2)).astype(dtype)),
        "0.b": xp.asarray(rng.standard_normal(3).astype(dtype)),
        "1.W": xp.asarray(rng.standard_normal((4, 3)).astype(dtype)),
        "1.b": xp.asarray(rng.standard_normal(3).astype(dtype)),
    }


def make_grads(params, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape) for k, v in params.items()}


def as_xp(xp, grads, dtype=np.float64):
    return {k: xp.asarray(v.astype(dtype)) for k, v in grads.items()}


def test_two_steps_by_hand(xp):
    lr, m, wd = 0.1, 0.9, 0.01
    params = make_params(xp)
    p0 = {k: to_numpy(v).copy() for k, v in params.items()}
    g1, g2 = make_grads(params, 1), make_grads(params, 2)
    opt = SGD(params, lr=lr, momentum=m, weight_decay=wd)
    opt.step(as_xp(xp, g1))
    opt.step(as_xp(xp, g2))
    for k, p in p0.items():
        decay = wd if p.ndim >= 2 else 0.0  # weights only, never biases
        v1 = g1[k] + decay * p
        p1 = p - lr * v1
        v2 = m * v1 + g2[k] + decay * p1
        p2 = p1 - lr * v2
        np.testing.assert_allclose(to_numpy(params[k]), p2, rtol=1e-13, atol=1e-15, err_msg=k)
        np.testing.assert_allclose(to_numpy(opt.velocity[k]), v2, rtol=1e-13, atol=1e-15, err_msg=k)


def test_bias_is_not_decayed(xp):
    params = make_params(xp)
    b0, w0 = to_numpy(params["0.b"]).copy(), to_numpy(params["0.W"]).copy()
    zero = {k: xp.zeros_like(v) for k, v in params.items()}
    SGD(params, lr=0.5, momentum=0.0, weight_decay=0.1).step(zero)
    np.testing.assert_array_equal(to_numpy(params["0.b"]), b0)
    np.testing.assert_allclose(to_numpy(params["0.W"]), w0 * (1 - 0.5 * 0.1), rtol=1e-14)


def test_plain_sgd_without_momentum(xp):
    params = make_params(xp)
    p0 = {k: to_numpy(v).copy() for k, v in params.items()}
    g = make_grads(params, 3)
    opt = SGD(params, lr=0.2, momentum=0.0)
    opt.step(as_xp(xp, g))
    assert opt.velocity == {}
    for k in p0:
        np.testing.assert_allclose(to_numpy(params[k]), p0[k] - 0.2 * g[k], rtol=1e-14, err_msg=k)


def test_updates_in_place_and_skips_params_without_grads(xp):
    params = make_params(xp)
    arrays = dict(params)
    before = to_numpy(params["1.b"]).copy()
    grads = as_xp(xp, make_grads(params, 4))
    del grads["1.b"]
    SGD(params, lr=0.1).step(grads)
    assert all(params[k] is arrays[k] for k in params)  # a model's live arrays, updated in place
    np.testing.assert_array_equal(to_numpy(params["1.b"]), before)
    assert not np.array_equal(to_numpy(params["1.W"]), to_numpy(make_params(xp)["1.W"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_velocity_uses_the_parameter_array_module_and_dtype(xp, dtype):
    params = make_params(xp, dtype)
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt.step(as_xp(xp, make_grads(params, 5), dtype))
    assert set(opt.velocity) == set(params)
    for k, v in opt.velocity.items():
        assert get_array_module(v) is xp, k
        assert type(v) is type(params[k]), k
        assert v.dtype == dtype and params[k].dtype == dtype, k


def test_state_dict_round_trip(xp):
    grads = [make_grads(make_params(np), s) for s in (6, 7, 8)]
    a_params, b_params = make_params(xp), make_params(xp)
    a = SGD(a_params, lr=0.05, momentum=0.9, weight_decay=1e-2)
    a.step(as_xp(xp, grads[0]))
    state = a.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    assert set(state) == set(a_params)
    # b: same parameters as a after its first step, velocity from a's state dict
    for k in b_params:
        b_params[k][...] = a_params[k]
    b = SGD(b_params, lr=0.05, momentum=0.9, weight_decay=1e-2)
    b.load_state_dict(state)
    for k in b.velocity:
        assert get_array_module(b.velocity[k]) is xp and b.velocity[k].dtype == b_params[k].dtype
    for g in grads[1:]:
        a.step(as_xp(xp, g))
        b.step(as_xp(xp, g))
    for k in a_params:
        np.testing.assert_array_equal(to_numpy(b_params[k]), to_numpy(a_params[k]), err_msg=k)


def test_state_dict_is_a_snapshot(xp):
    # What state_dict() returns must not change when training goes on (as
    # Sequential.state_dict, which returns copies). On CuPy to_numpy copies anyway; on
    # NumPy SGD.state_dict returns the live velocity arrays themselves.
    params = make_params(xp)
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step(as_xp(xp, make_grads(params, 9)))
    state = opt.state_dict()
    saved = {k: v.copy() for k, v in state.items()}
    opt.step(as_xp(xp, make_grads(params, 10)))
    for k, v in saved.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_load_state_dict_refuses_unknown_keys_and_shapes(xp):
    params = make_params(xp)
    opt = SGD(params, lr=0.1)
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: no parameter named \['9.W'\]"):
        opt.load_state_dict({"9.W": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"velocity '1.W' has shape \(3, 4\), parameter has \(4, 3\)"):
        opt.load_state_dict({"1.W": np.zeros((3, 4))})
    assert opt.velocity == {}
