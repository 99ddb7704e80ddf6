"""The same training on both devices.

The per-layer checks run on CuPy arrays through the `xp` fixture; this one runs whole
training steps of the interpretable small VGG (dropout, both masks with their filter
losses, the task loss, SGD with momentum and weight decay) on the CPU and on the GPU from
the same weights and batches, in float64, and asks for the same parameters. GPU only
(marked `gpu`): it skips without CuPy or a device.
"""
import numpy as np
import pytest

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.losses import LogisticLoss, SoftmaxCrossEntropy
from tinyinterp.optim import SGD
from tinyinterp.recipes import recipe_mask_options
from tinyinterp.train import interpretable_layers
from tinyinterp.vgg import small_vgg

STEPS = 8


def train_steps(device, task):
    """STEPS training steps on random images -> (initial params, final params, losses),
    all as NumPy arrays. Everything random is drawn on the host, so both devices see the
    same weights, batches and dropout masks."""
    bird = task == "bird"
    model = small_vgg(1 if bird else 3, input_size=32, widths=(8, 16), top_channels=16,
                      fc_width=32, interpretable=True, seed=0,
                      mask_options=recipe_mask_options(task))
    model.astype(np.float64).to(device)
    start = {k: to_numpy(v).copy() for k, v in model.params().items()}
    opt = SGD(model.params(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = LogisticLoss() if bird else SoftmaxCrossEntropy()
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(STEPS):
        x = to_device(rng.standard_normal((6, 3, 32, 32)), device)
        labels = to_device(rng.integers(0, 2 if bird else 3, 6), device)
        for layer in interpretable_layers(model):
            layer.set_labels(labels)
        logits = model.forward(x)
        losses.append(float(criterion.forward(logits, labels[:, None] if bird else labels))
                      + sum(float(layer.last_filter_loss) for layer in interpretable_layers(model)))
        model.backward(criterion.backward(), input_grad=False)
        opt.step(model.grads())
    return start, {k: to_numpy(v) for k, v in model.params().items()}, losses


@pytest.mark.gpu
@pytest.mark.parametrize("task", ["species", "bird"])
def test_training_steps_on_the_gpu_match_the_cpu(cupy, task):
    start, cpu, cpu_losses = train_steps("cpu", task)
    _, gpu, gpu_losses = train_steps("gpu", task)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-9)
    for k in cpu:
        moved = np.abs(cpu[k] - start[k]).max()
        apart = np.abs(gpu[k] - cpu[k]).max()
        print(f"{k}: moved {moved:.3g}, CPU-GPU apart {apart:.3g}")
        assert moved > 0, f"{k} did not train"
        # float64 sums in another order: rounding, a million times below the training's move
        assert apart <= 1e-6 * moved, f"{k}: CPU and GPU differ by {apart:.3g} (moved {moved:.3g})"
