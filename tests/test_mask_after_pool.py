"""The new conv's mask after its pool (the authors' place): the layout, the same weights
as the ordinary net, categories found by the pictures, and a short training run."""
import numpy as np

from tinyinterp.interpretable import InterpretableMask
from tinyinterp.layers import ReLU
from tinyinterp.pooling import MaxPool2d
from tinyinterp.runs import init_weights_from, load_run
from tinyinterp.train import train_one
from tinyinterp.visualize import mask_categories
from tinyinterp.vgg import small_vgg

from test_train import tiny_config


def test_layout_puts_the_second_mask_after_the_pool_on_half_the_side():
    model = small_vgg(1, 64, interpretable=True, mask_after_pool=True)
    top, new = model.interpretable_indices
    assert isinstance(model.layers[top], ReLU) and isinstance(model.layers[new], ReLU)
    assert isinstance(model.layers[top + 1], InterpretableMask) and model.layers[top + 1].size == 8
    assert isinstance(model.layers[new + 1], MaxPool2d)
    mask = model.layers[new + 2]
    assert isinstance(mask, InterpretableMask) and mask.size == 4
    # one pool after the new conv, not two: the head sees 4 x 4 maps as before
    assert sum(isinstance(layer, MaxPool2d) for layer in model.layers[new:]) == 1
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    model.eval()
    assert model.forward(x).shape == (2, 1)
    # the same parameter layers as the ordinary net, in the same order
    ordinary = small_vgg(1, 64)
    shapes = [tuple(v.shape) for v in ordinary.state_dict().values()]
    masked = [tuple(v.shape) for k, v in model.state_dict().items() if k.endswith((".W", ".b"))]
    assert masked == shapes
    # the pictures find the mask after the pool (with several categories to show)
    species = small_vgg(5, 64, interpretable=True, mask_after_pool=True)
    cats = mask_categories(species, species.interpretable_indices[1])
    assert cats is not None and cats.shape == (128,)
    assert mask_categories(small_vgg(5, 64), ordinary.interpretable_indices[1]) is None


def test_training_with_the_mask_after_the_pool_starts_from_an_ordinary_net(tmp_path):
    ordinary = tiny_config(task="bird", epochs=1)
    train_one(ordinary, tmp_path / "ordinary", log=lambda *_: None)
    cfg = tiny_config(task="bird", interpretable=True, mask_after_pool=True, epochs=1,
                      init_from=str(tmp_path / "ordinary" / "checkpoint.npz"),
                      mask_options={"gradient": "authors", "lam": 1.0})
    metrics = train_one(cfg, tmp_path / "masked", log=lambda *_: None)
    assert np.isfinite(metrics["final"]["task_loss"]) and metrics["final"]["filter_loss"] != 0
    model, loaded_cfg, _ = load_run(tmp_path / "masked")
    assert loaded_cfg.mask_after_pool
    masks = [layer for layer in model.layers if isinstance(layer, InterpretableMask)]
    assert [m.size for m in masks] == [16, 8]  # 32 px, one level of widths: 16 x 16, then pooled
    assert init_weights_from(model, tmp_path / "ordinary" / "checkpoint.npz") == []
