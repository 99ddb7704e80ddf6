"""Sequential (chaining, keys, modes, state dicts) and .npz checkpoints."""
import os
import pickle

import numpy as np
import pytest

from tinyinterp.backend import to_numpy
from tinyinterp.checkpoint import META_KEY, load_checkpoint, save_checkpoint
from tinyinterp.layers import Conv2d, Dropout, Flatten, Linear, ReLU
from tinyinterp.pooling import MaxPool2d
from tinyinterp.model import Sequential


def make_layers(seed=0):
    """A small conv net: 2x6x6 images -> 4 logits. Same seed, same weights and masks."""
    return [
        Conv2d(2, 3, 3, padding=1, rng=seed),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(3 * 3 * 3, 5, rng=seed + 1),
        ReLU(),
        Dropout(0.5, rng=seed + 2),
        Linear(5, 4, rng=seed + 3),
    ]


def on(xp, model_or_layer):
    return model_or_layer.to("gpu") if xp is not np else model_or_layer


def inputs(xp, seed=0, n=2):
    rng = np.random.default_rng(seed)
    return xp.asarray(rng.standard_normal((n, 2, 6, 6))), xp.asarray(rng.standard_normal((n, 4)))


PARAM_KEYS = {"0.W", "0.b", "4.W", "4.b", "7.W", "7.b"}


# ---- chaining ----

def test_forward_backward_equal_manual_composition(xp):
    # two copies built from the same seeds: same weights, same dropout mask per forward
    model = on(xp, Sequential(*make_layers()).astype(np.float64))
    manual = [on(xp, layer.astype(np.float64)) for layer in make_layers()]
    x, dout = inputs(xp)

    y = model.forward(x)
    h = x
    for layer in manual:
        h = layer.forward(h)
    np.testing.assert_array_equal(to_numpy(y), to_numpy(h))

    dx = model.backward(dout)
    g = dout
    for layer in reversed(manual):
        g = layer.backward(g)
    np.testing.assert_array_equal(to_numpy(dx), to_numpy(g))
    grads = model.grads()
    assert set(grads) == PARAM_KEYS
    for i, layer in enumerate(manual):
        for k, v in layer.grads.items():
            np.testing.assert_array_equal(to_numpy(grads[f"{i}.{k}"]), to_numpy(v))


@pytest.mark.parametrize("first", ["conv", "linear", "relu"])
def test_backward_without_input_grad_sets_the_same_grads(xp, first):
    # training passes input_grad=False: the first layer computes only its parameter
    # gradients (Conv2d skips dx; other layers run their backward and drop dx)
    def head():  # fresh layers (same seeds) for each of the two models
        return {"conv": [], "linear": [Flatten(), Linear(72, 72, rng=9), Reshape((2, 6, 6))],
                "relu": [ReLU()]}[first]

    x, dout = inputs(xp)
    grads, dxs = [], []
    for input_grad in (True, False):
        model = on(xp, Sequential(*head(), *make_layers()).astype(np.float64))
        model.forward(x)
        dxs.append(model.backward(dout, input_grad=input_grad))
        grads.append({k: to_numpy(v) for k, v in model.grads().items()})
    assert dxs[0] is not None and dxs[0].shape == x.shape and dxs[1] is None
    assert list(grads[0]) == list(grads[1]) and len(grads[0]) >= 6
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k], grads[0][k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("stride", [1, 2])  # the padded-grid conv and the im2col conv
def test_fused_conv_relu_equals_the_layers_one_by_one(xp, stride):
    # Sequential runs a Conv2d and the ReLU after it as one fused step; fuse=False runs
    # them apart. Same outputs, dx and grads, bit for bit
    def layers():  # make_layers with the conv swapped; 3x3 maps after a strided conv
        rest = make_layers()[2:]
        if stride == 2:
            rest[2] = Linear(3, 5, rng=1)
        return [Conv2d(2, 3, 3, stride=stride, padding=1, rng=4), ReLU(), *rest]

    x, _ = inputs(xp)
    results = []
    for fuse in (True, False):
        model = on(xp, Sequential(*layers(), fuse=fuse).astype(np.float64))
        y = model.forward(x)
        ran = model.layers[1].mask is not None  # set by ReLU.forward
        dx = model.backward(xp.ones_like(y))
        results.append((ran, to_numpy(y), to_numpy(dx), {k: to_numpy(v) for k, v in model.grads().items()}))
    (fused_ran, *fused), (apart_ran, *apart) = results
    assert not fused_ran and apart_ran  # fused: the ReLU's own forward never ran
    for a, b in zip(fused[:2], apart[:2]):
        np.testing.assert_array_equal(a, b)
    assert list(fused[2]) == list(apart[2])
    for k in fused[2]:
        np.testing.assert_array_equal(fused[2][k], apart[2][k], err_msg=k)


def test_a_fused_relu_refuses_a_backward_by_hand(xp):
    # after a fused forward the ReLU holds no mask (not even one from an earlier unfused
    # forward): a backward run layer by layer must fail loudly, not use a stale mask
    x, _ = inputs(xp)
    model = on(xp, Sequential(Conv2d(2, 3, 3, padding=1), ReLU()).astype(np.float64))
    model.fuse = False
    model.forward(x)
    model.fuse = True
    y = model.forward(x)
    with pytest.raises(RuntimeError, match="fuse=False"):
        model.layers[1].backward(xp.ones_like(y))
    assert model.backward(xp.ones_like(y)).shape == x.shape  # the model's own backward works


def test_a_relu_subclass_is_not_fused(xp):
    class LeakyReLU(ReLU):
        def forward(self, x):
            self.x = x
            return xp.where(x > 0, x, 0.1 * x)

        def backward(self, dout):
            return xp.where(self.x > 0, dout, 0.1 * dout)

    x, _ = inputs(xp)
    conv = on(xp, Conv2d(2, 3, 3, padding=1).astype(np.float64))
    model = Sequential(conv, LeakyReLU())
    y = to_numpy(model.forward(x))
    plain = to_numpy(conv.forward(x))
    np.testing.assert_array_equal(y, np.where(plain > 0, plain, 0.1 * plain))
    assert (y < 0).any()  # the leak shows: not rectified by a fused ReLU


def test_empty_sequential_backward_is_the_identity():
    dout = np.ones((2, 3))
    assert Sequential().backward(dout) is dout and Sequential().backward(dout, input_grad=False) is None


class Reshape(Flatten):
    """(N, D) -> (N, *shape): lets a Linear layer come first in the test above."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        self.input_shape = x.shape
        return x.reshape(x.shape[0], *self.shape)


def test_call_is_forward(xp):
    model = on(xp, Sequential(*make_layers()).eval())
    x, _ = inputs(xp)
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(model.forward(x)))


def test_forward_keep_keeps_the_layers_asked_for(xp):
    model = on(xp, Sequential(*make_layers()).eval())
    x, _ = inputs(xp)
    out, kept = model.forward_keep(x, [1, 4])
    np.testing.assert_array_equal(to_numpy(out), to_numpy(model.forward(x)))
    by_hand = x
    for i, layer in enumerate(model.layers):
        by_hand = layer.forward(by_hand)
        if i in (1, 4):
            np.testing.assert_array_equal(to_numpy(kept[i]), to_numpy(by_hand))
    assert sorted(kept) == [1, 4]
    early, kept = model.forward_keep(x, [1], to_end=False)  # stops after layer 1
    np.testing.assert_array_equal(to_numpy(early), to_numpy(kept[1]))


def test_params_and_grads_share_keys(xp):
    model = on(xp, Sequential(*make_layers()))
    assert set(model.params()) == PARAM_KEYS
    x, dout = inputs(xp)
    model.forward(x.astype(np.float32))
    model.backward(dout.astype(np.float32))
    assert list(model.grads()) == list(model.params())
    for k, g in model.grads().items():
        assert g.shape == model.params()[k].shape, k
    assert set(model.state_dict()) == PARAM_KEYS


def test_params_are_live(xp):
    model = on(xp, Sequential(*make_layers()))
    model.params()["4.b"][...] = 3.0
    np.testing.assert_array_equal(to_numpy(model[4].params["b"]), np.full(5, 3.0, np.float32))


def test_container_protocol():
    layers = make_layers()
    model = Sequential(*layers)
    assert len(model) == len(layers)
    assert list(model) == layers and model[2] is layers[2]
    assert "(4) Linear(27, 5)" in repr(model)


def test_train_eval_propagate(xp):
    model = on(xp, Sequential(*make_layers()))
    assert model.training and all(layer.training for layer in model)
    assert model.eval() is model
    assert not model.training and not any(layer.training for layer in model)
    h = xp.asarray(np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32))
    np.testing.assert_array_equal(to_numpy(model[6].forward(h)), to_numpy(h))  # dropout: identity
    x, _ = inputs(xp)
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(model(x)))  # deterministic
    model.train()
    assert model.training and all(layer.training for layer in model)
    assert bool((model[6].forward(xp.ones((20, 20), dtype=np.float32)) == 0).any())
    model.train(False)
    assert not any(layer.training for layer in model)


# ---- state dicts and checkpoints ----

def test_state_dict_is_a_numpy_copy(xp):
    model = on(xp, Sequential(*make_layers()))
    state = model.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    state["0.W"][...] = 0.0
    assert bool((model.params()["0.W"] != 0).any())


def test_save_load_round_trip_gives_identical_outputs(xp, tmp_path):
    a = on(xp, Sequential(*make_layers(seed=0))).eval()
    b = on(xp, Sequential(*make_layers(seed=10))).eval()
    x, _ = inputs(xp)
    assert not np.array_equal(to_numpy(a(x)), to_numpy(b(x)))
    path = tmp_path / "model.npz"
    a.save(path, meta={"epoch": 3, "note": "ok"})
    before = b.params()["0.W"]
    assert b.load(path) == {"epoch": 3, "note": "ok"}
    assert b.params()["0.W"] is before  # loaded in place: an optimiser's references stay valid
    np.testing.assert_array_equal(to_numpy(b(x)), to_numpy(a(x)))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
        assert b.params()[k].dtype == v.dtype


def test_load_refuses_missing_and_unexpected_keys(tmp_path):
    small = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    path = tmp_path / "small.npz"
    small.save(path)
    other = Sequential(Linear(4, 3), Linear(3, 2))  # has "1.*" where the file has "2.*"
    with pytest.raises(ValueError) as info:
        other.load(path)
    message = str(info.value)
    assert "load_state_dict" in message
    assert "missing keys ['1.W', '1.b']" in message
    assert "unexpected keys ['2.W', '2.b']" in message
    assert "shape mismatch" not in message
    bigger = Sequential(Linear(4, 3), ReLU(), Linear(3, 2), Linear(2, 2))
    with pytest.raises(ValueError, match=r"missing keys \['3.W', '3.b'\]"):
        bigger.load(path)


def test_load_refuses_shape_mismatch_and_changes_nothing(tmp_path):
    saved = Sequential(Conv2d(2, 3, 3))
    path = tmp_path / "conv.npz"
    saved.save(path)
    model = Sequential(Conv2d(2, 4, 3, rng=5))
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load(path)
    message = str(info.value)
    assert "0.W: model (4, 2, 3, 3), given (3, 2, 3, 3)" in message
    assert "0.b: model (4,), given (3,)" in message
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_checkpoint_round_trip_arrays_and_meta(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    meta = {"epoch": 2, "rng": {"state": [1, 2, 3]}, "name": "ü"}
    save_checkpoint(tmp_path / "ck.npz", arrays, meta)
    loaded, got_meta = load_checkpoint(tmp_path / "ck.npz")
    assert got_meta == meta
    assert set(loaded) == set(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded[k], v)


def test_save_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.ones(3)})
    save_checkpoint(path, {"w": np.zeros(3)})  # overwrite
    assert os.listdir(tmp_path) == ["ck.npz"]
    np.testing.assert_array_equal(load_checkpoint(path)[0]["w"], np.zeros(3))


def test_save_refuses_reserved_name(tmp_path):
    with pytest.raises(ValueError, match=META_KEY):
        save_checkpoint(tmp_path / "ck.npz", {META_KEY: np.ones(1)})
    assert os.listdir(tmp_path) == []


class _RaisesOnConversion:
    """An array-like whose conversion to an array fails."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("conversion failed")


class _RaisesWhilePickled:
    """Fails while np.savez is writing it (object arrays are pickled): records what the
    folder held at that moment, to show the failure happened mid-write."""

    seen = []

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        _RaisesWhilePickled.seen.append(sorted(os.listdir(self.folder)))
        raise RuntimeError("write failed midway")


def _existing_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.arange(4.0)}, {"epoch": 1})
    return path, path.read_bytes()


def test_failed_conversion_keeps_existing_checkpoint(tmp_path):
    path, old = _existing_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="conversion failed"):
        save_checkpoint(path, {"w": np.zeros(4), "bad": _RaisesOnConversion()}, {"epoch": 2})
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert path.read_bytes() == old
    assert load_checkpoint(path)[1] == {"epoch": 1}


def test_failure_midway_through_writing_keeps_existing_checkpoint(tmp_path):
    path, old = _existing_checkpoint(tmp_path)
    bad = np.empty(1, dtype=object)
    bad[0] = _RaisesWhilePickled(tmp_path)
    _RaisesWhilePickled.seen.clear()
    with pytest.raises(RuntimeError, match="write failed midway"):
        save_checkpoint(path, {"w": np.zeros(4), "bad": bad}, {"epoch": 2})
    # the temp file existed next to the checkpoint while writing...
    assert len(_RaisesWhilePickled.seen) == 1
    assert any(name.startswith(".tmp-") for name in _RaisesWhilePickled.seen[0])
    # ...and is gone now; the old checkpoint is untouched
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert path.read_bytes() == old
    arrays, meta = load_checkpoint(path)
    assert meta == {"epoch": 1}
    np.testing.assert_array_equal(arrays["w"], np.arange(4.0))


def test_truncated_checkpoint_names_the_file(tmp_path):
    model = Sequential(*make_layers())
    path = tmp_path / "cut.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError) as info:
        model.load(path)
    assert str(path) in str(info.value)


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_npz_without_meta_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(2))
    with pytest.raises(ValueError, match="not a tinyinterp checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_npy_file_is_not_a_checkpoint(tmp_path):
    # np.load returns a bare ndarray for .npy data; load_checkpoint's docstring promises
    # a ValueError naming the file for anything that is not a checkpoint.
    path = tmp_path / "weights.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_file_of_another_kind_is_named_so_and_not_offered_unpickling(tmp_path):
    # np.load alone calls any non-NumPy file "pickled (object) data" and suggests
    # allow_pickle=True: the one thing a checkpoint loader must not invite
    for name, content in (("notes.npz", b"plain text, not a checkpoint\n"),
                          ("pickled.npz", pickle.dumps({"w": [1.0, 2.0]})), ("empty.npz", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not an .npz archive") as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and "pickle" not in message.replace(str(path), "")


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(True)
    return "payload"


class _Trap:
    """Pickles to a call of _record_unpickling: unpickling it leaves a trace."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    np.savez(path, **{META_KEY: np.array("{}"), "w": np.ones(2), "trap": trap})
    UNPICKLED.clear()
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert UNPICKLED == []
    with pytest.raises(ValueError):
        Sequential(Linear(2, 1)).load(path)
    assert UNPICKLED == []


@pytest.mark.gpu
def test_input_on_another_device_than_the_model_is_a_clear_error(cupy):
    model = Sequential(*make_layers())  # left on the CPU
    x, _ = inputs(cupy)
    with pytest.raises(ValueError, match=r"got input on the gpu, .* on the cpu.*\.to\('gpu'\)"):
        model.forward(x)
    x_cpu, _ = inputs(np)
    with pytest.raises(ValueError, match=r"got input on the cpu, .* on the gpu"):
        model.to("gpu").forward(x_cpu)
