"""Conv padding modes (zeros, replicate, reflect): the padding and its adjoint, the conv
against its naive twin and against central differences in float64, PyTorch parity where
installed, and the mode's way through the net, the config and a checkpoint."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import XP_SETTINGS, conv_cases
from tinyinterp import gradcheck
from tinyinterp.backend import to_numpy
from tinyinterp.layers import Conv2d, conv2d_forward, conv2d_naive
from tinyinterp.padding import PADDING_MODES, pad2d, pad2d_backward, pad_source
from tinyinterp.optim import SGD
from tinyinterp.runs import TrainConfig, build_model, init_weights_from, load_run, save_training_state

FILLED = ("replicate", "reflect")
NUMPY_MODE = {"replicate": "edge", "reflect": "reflect"}


def fits(case, mode):
    """reflect needs a pixel beyond the edge to mirror: pad < side."""
    return mode != "reflect" or (case.PH < case.H and case.PW < case.W)


def make_conv(case, xp, w, b, mode):
    layer = Conv2d(case.C, case.OC, case.kernel, stride=case.stride, padding=case.pad,
                   padding_mode=mode)
    layer.params["W"], layer.params["b"] = xp.asarray(w), xp.asarray(b)
    return layer


def test_pad_source_by_hand():
    assert pad_source(4, 2, "replicate") == [0, 0, 0, 1, 2, 3, 3, 3]
    assert pad_source(4, 2, "reflect") == [2, 1, 0, 1, 2, 3, 2, 1]
    assert pad_source(3, 0, "reflect") == [0, 1, 2]


@XP_SETTINGS
@given(case=conv_cases(), mode=st.sampled_from(FILLED))
def test_pad2d_is_numpys_pad_and_its_backward_is_the_adjoint(xp, case, mode):
    assume(fits(case, mode))
    x, _, _, _ = case.arrays()
    pad = case.pad
    padded = pad2d(xp.asarray(x), pad, mode)
    expected = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), mode=NUMPY_MODE[mode])
    np.testing.assert_array_equal(to_numpy(padded), expected)
    # <pad(x), g> = <x, pad_backward(g)> for any g: the backward is the adjoint
    g = np.random.default_rng(case.seed).standard_normal(expected.shape)
    back = to_numpy(pad2d_backward(xp.asarray(g), pad, mode))
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(expected, g), np.vdot(x, back), rtol=1e-12, atol=1e-12)


@XP_SETTINGS
@given(case=conv_cases(max_extra=4), mode=st.sampled_from(PADDING_MODES))
def test_conv2d_with_padding_mode_matches_naive(xp, case, mode):
    assume(fits(case, mode))
    x, w, b, _ = case.arrays()
    y, _ = conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), case.stride, case.pad,
                          padding_mode=mode)
    expected = conv2d_naive(x, w, b, case.stride, case.pad, padding_mode=mode)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-12, atol=1e-12)


@XP_SETTINGS
@given(case=conv_cases(), mode=st.sampled_from(FILLED), relu=st.booleans())
def test_conv2d_padding_mode_gradcheck(xp, case, mode, relu):
    assume(fits(case, mode))
    x, w, b, _ = case.arrays()
    layer = make_conv(case, xp, w, b, mode)
    if relu:  # the fused ReLU of Sequential, through the dropped ring of the fast engine
        forward = layer.forward
        layer.forward = lambda inp: forward(inp, relu=True)
        x = np.sign(x) * (np.abs(x) + 0.1)
    result = gradcheck.check_layer(layer, xp.asarray(x), seed=case.seed)
    assert result.max_rel_error < gradcheck.TOLERANCE, str(result)


@pytest.mark.parametrize("mode", FILLED)
def test_same_conv_takes_the_fast_engine_and_params_only_backward(mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 7))
    layer = Conv2d(3, 5, 3, padding=1, rng=1, padding_mode=mode).astype(np.float64)
    y = layer.forward(x)
    assert layer.cache[0] == "padded" and layer.cache[-1][0] == "grid"
    assert y.shape == (2, 5, 8, 7)
    dout = rng.standard_normal(y.shape)
    layer.backward(dout)
    full = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward_params(dout)
    for k in full:  # dW comes from x's columns there, not dy's: the same sums in another order
        np.testing.assert_allclose(layer.grads[k], full[k], rtol=1e-12, atol=1e-12)


def test_padding_mode_changes_only_the_border_outputs():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3)), np.zeros(3)
    zeros, _ = conv2d_forward(x, w, b, 1, 1)
    for mode in FILLED:
        y, _ = conv2d_forward(x, w, b, 1, 1, padding_mode=mode)
        np.testing.assert_allclose(y[:, :, 1:-1, 1:-1], zeros[:, :, 1:-1, 1:-1], rtol=1e-13)
        assert np.abs(y[:, :, 0] - zeros[:, :, 0]).max() > 1e-3


def test_bad_padding_modes_are_refused_clearly():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        TrainConfig(padding_mode="edge")
    with pytest.raises(ValueError, match="reflect padding"):
        Conv2d(1, 1, 3, padding=2, padding_mode="reflect").forward(np.zeros((1, 1, 2, 5)))


def test_the_mode_reaches_every_conv_and_survives_a_checkpoint(tmp_path):
    cfg = TrainConfig(size=32, widths=[4, 8], top_channels=8, padding_mode="replicate",
                      interpretable=True)
    model = build_model(cfg, 3)
    convs = [layer for layer in model.layers if isinstance(layer, Conv2d)]
    assert len(convs) == 6 and {c.padding_mode for c in convs} == {"replicate"}
    save_training_state(tmp_path / "checkpoint.npz", model, SGD(model.params(), lr=0.1), cfg, 1, [])
    loaded, loaded_cfg, _ = load_run(tmp_path)
    assert loaded_cfg.padding_mode == "replicate"
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    model.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    # fine-tuning a net with another padding is allowed, and the log says so
    other = build_model(TrainConfig(size=32, widths=[4, 8], top_channels=8), 3)
    lines = init_weights_from(other, tmp_path / "checkpoint.npz")
    assert any("'replicate' padding" in line and "'zeros'" in line for line in lines)
    assert not any("padding" in line for line in init_weights_from(build_model(cfg, 3),
                                                                   tmp_path / "checkpoint.npz"))
