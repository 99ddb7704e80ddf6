"""Run folders: what a training run saves and how a saved net is rebuilt.

``train`` writes, ``evaluate`` and ``visualize`` read; all three use this module (and
it uses none of them). A run folder ``runs/<name>/`` holds one folder per net
(``pretrained/`` for stage 1 of the two-stage protocol, ``ordinary/``,
``interpretable/``), each with ``checkpoint.npz`` (weights, optimiser and RNG state, and
the :class:`TrainConfig` it was trained with; no pickle) and ``metrics.json``.

A saved config says everything needed to rebuild the net and reload its data:
``load_run(folder)`` gives the net, ``load_data(cfg)`` its data with the training split's
normalisation. ``save_training_state`` / ``load_training_state`` write and read a whole
training state (what ``--resume`` continues from).
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backend import to_device
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .layers import Dropout
from .padding import check_padding_mode
from .vgg import small_vgg

TOY_BIRDS = Path(__file__).resolve().parents[1] / "data_samples" / "toy_birds"
TASKS = ("species", "bird")
LR_SCHEDULES = ("cosine", "authors")


@dataclass
class TrainConfig:
    data: str = str(TOY_BIRDS)  # a folder in the CUB-200-2011 layout
    classes: list = None  # CUB class ids, or None for all
    images_per_class: int = None
    size: int = 64  # input side in pixels
    crop: str = "box"  # "box": the bird's box + crop_margin; "whole": the whole image
    crop_margin: float = 0.1  # the box crop's margin on each side, a fraction of the box
    # "species": one class per species, softmax; "bird": bird vs. not (paper's CUB setting),
    # one logistic output, the negatives from `negatives` (None: background crops)
    task: str = "species"
    negatives: str = None
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: int = 2  # linear warm-up, then cosine decay to 0
    lr_schedule: str = "cosine"  # or "authors": log-linear to lr / 10 over 10 epochs, then flat
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    widths: list = field(default_factory=lambda: [32, 64, 128])
    top_channels: int = 128
    # every conv's padding: "zeros" (the paper's nets), "replicate" or "reflect" (padding.pad2d)
    padding_mode: str = "zeros"
    mask_after_pool: bool = False  # the new conv's mask after its pool (the authors' place)
    shift: int = 0  # training batches: each image moved by up to this many pixels (edge-filled)
    interpretable: bool = False
    mask_options: dict = field(default_factory=dict)  # InterpretableMask keyword arguments
    init_from: str = None  # a checkpoint whose conv/fc weights start this net (two-stage protocol)
    # the test pass after every eval_every-th epoch and after the last one: on all of CUB it
    # costs about a quarter of an epoch, and training does not depend on it
    eval_every: int = 1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"TrainConfig: task must be one of {TASKS}, got {self.task!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig: lr_schedule must be one of {LR_SCHEDULES}, "
                             f"got {self.lr_schedule!r}")
        check_padding_mode(self.padding_mode, who="TrainConfig: ")
        if not self.crop_margin >= 0:
            raise ValueError(f"TrainConfig: crop_margin must be >= 0, got {self.crop_margin!r}")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ValueError(f"TrainConfig: eval_every must be an integer >= 1, got {self.eval_every!r}")


def load_data(cfg):
    """(dataset, train split, test split, mean, std) for a config: the species of a
    CUB-layout folder, or bird vs. not (``cfg.task == "bird"``). mean/std are the
    training split's, used for both splits."""
    from .data import load_bird_task, load_cub

    if cfg.task == "bird":
        ds = load_bird_task(cfg.data, classes=cfg.classes, images_per_class=cfg.images_per_class,
                            size=cfg.size, margin=cfg.crop_margin, negatives=cfg.negatives)
    else:
        ds = load_cub(cfg.data, classes=cfg.classes, images_per_class=cfg.images_per_class,
                      size=cfg.size, crop=cfg.crop, margin=cfg.crop_margin)
    train, test = ds.split("train"), ds.split("test")
    mean, std = train.mean_std()
    return ds, train, test, mean, std


def data_key(cfg):
    """What decides a config's data: nets with equal keys share one load_data."""
    return json.dumps([cfg.data, cfg.classes, cfg.images_per_class, cfg.size, cfg.crop,
                       cfg.crop_margin, cfg.task, cfg.negatives])


def load_data_once(cfg, loaded):
    """load_data(cfg), taken from the dict ``loaded`` ({data_key: load_data result}) when
    it is there, else loaded and added to it."""
    key = data_key(cfg)
    if key not in loaded:
        loaded[key] = load_data(cfg)
    return loaded[key]


def num_outputs(cfg, ds):
    """Logits of the head: one (logistic, bird vs. not) or one per class (softmax)."""
    return 1 if cfg.task == "bird" else len(ds.class_ids)


def build_model(cfg, num_classes):
    """The small VGG a config describes, with ``num_classes`` outputs (1: a logistic head,
    whose masks then have one category)."""
    return small_vgg(num_classes=num_classes, input_size=cfg.size, widths=tuple(cfg.widths),
                     top_channels=cfg.top_channels, dropout=cfg.dropout,
                     interpretable=cfg.interpretable, seed=cfg.seed,
                     mask_options=cfg.mask_options, padding_mode=cfg.padding_mode,
                     mask_after_pool=cfg.mask_after_pool)


# ---- the checkpoint of a whole training state ----
# checkpoint.npz holds the model's state under "model/", the optimiser's under "opt/", and
# in its meta the config, the epochs done, the history and the dropout generators' states.

def _dropout_layers(model):
    return [layer for layer in model.layers if isinstance(layer, Dropout)]


def saved_part(arrays, prefix):
    """The arrays of a checkpoint saved under ``prefix`` ("model" or "opt"), with the
    prefix taken off their keys."""
    start = prefix + "/"
    return {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}


def save_training_state(path, model, opt, cfg, epoch, history):
    """Write checkpoint.npz: weights, optimiser state, dropout RNG states, the config, the
    epochs done and the history (atomic, no pickle)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    meta = {"config": asdict(cfg), "epoch": epoch, "history": history,
            "dropout_rng": [d.rng.bit_generator.state for d in _dropout_layers(model)]}
    save_checkpoint(path, arrays, meta)


def load_training_state(path, model, opt):
    """Restore what :func:`save_training_state` wrote into ``model`` and ``opt``; returns
    the meta dict."""
    arrays, meta = load_checkpoint(path)
    model.load_state_dict(saved_part(arrays, "model"))
    opt.load_state_dict(saved_part(arrays, "opt"))
    for d, state in zip(_dropout_layers(model), meta["dropout_rng"]):
        d.rng.bit_generator.state = state
    return meta


def load_run(run_dir, device="cpu"):
    """Rebuild a trained net from its run folder -> (model in eval mode, TrainConfig, meta)."""
    ckpt = Path(run_dir) / "checkpoint.npz"
    arrays, meta = load_checkpoint(ckpt)
    cfg = TrainConfig(**meta["config"])
    cfg.device = device
    state = saved_part(arrays, "model")
    num_classes = int(state[_last_linear_key(state)].shape[-1])
    model = build_model(cfg, num_classes)
    model.load_state_dict(state)
    return model.to(device).eval(), cfg, meta


def _last_linear_key(state):
    """The key of the head's bias: the highest-numbered layer with a "b"."""
    keys = [k for k in state if k.endswith(".b")]
    return max(keys, key=lambda k: int(k.split(".")[0]))


def init_weights_from(model, ckpt, device="cpu"):
    """Copy the weights of the net saved in ``ckpt`` into ``model`` (stage 2 of the paper's
    protocol: an ordinary net trained first, then the masks added and the whole net
    fine-tuned). The two nets must have the same parameter layers in the same order;
    mask layers have no parameters, so an ordinary checkpoint fits an interpretable
    net. Buffers (filter categories, running log Z) start fresh.

    The head (the last parameter layer) may differ in shape, as when a net pretrained on
    200 species is fine-tuned as bird vs. not: then every layer but the head is copied
    and the head keeps its fresh weights. Returns the lines for the log: what was not
    copied, and a padding mode that differs from the checkpoint's (allowed); any other
    mismatch is a CheckpointError (a ValueError)."""
    source, source_cfg, _ = load_run(Path(ckpt).parent)
    src = [layer for layer in source.layers if layer.params]
    dst = [layer for layer in model.layers if layer.params]
    if len(src) != len(dst):
        raise CheckpointError(f"init_from {ckpt}: {len(src)} parameter layers, this net has {len(dst)}")
    fresh = []
    modes = {getattr(layer, "padding_mode", None) for layer in dst} - {None}
    if modes and modes != {source_cfg.padding_mode}:  # allowed, but worth a line in the log
        fresh.append(f"padding: the checkpoint's convs were trained with {source_cfg.padding_mode!r} "
                     f"padding, this net pads with {', '.join(sorted(map(repr, modes)))}")
    for i, (a, b) in enumerate(zip(src, dst)):
        mismatch = [name for name, value in a.params.items() if b.params[name].shape != value.shape]
        if mismatch and i == len(src) - 1:
            fresh.append(f"head {b!r}: fresh weights (the checkpoint's head is {a!r})")
            continue
        if mismatch:
            name = mismatch[0]
            raise CheckpointError(f"init_from {ckpt}: {a!r}.{name} has shape {a.params[name].shape}, "
                             f"this net's {b!r} needs {b.params[name].shape}")
        for name, value in a.params.items():
            b.params[name][...] = to_device(value, device)
    return fresh


NET_ORDER = ("ordinary", "interpretable")


def run_folder(root):
    """``root`` as a Path, or FileNotFoundError with one line that says what is wrong: it
    does not exist, or it is a file (a checkpoint given where its run folder is asked)."""
    root = Path(root)
    if root.is_file():
        raise FileNotFoundError(f"{root}: a file, not a run folder (give the folder that holds it)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: run folder does not exist")
    return root


def net_dirs(run_root, pretrained=True):
    """{name: folder} of the nets under ``run_root``: every subfolder holding a
    ``checkpoint.npz``, ordinary first, then interpretable, then the others by name.
    ``pretrained=False`` leaves out the stage-1 net (``pretrained/``)."""
    run_root = Path(run_root)
    if not run_root.is_dir():
        return {}
    found = {p.name: p for p in sorted(run_root.iterdir())
             if p.is_dir() and (p / "checkpoint.npz").is_file()
             and (pretrained or p.name != "pretrained")}
    order = [k for k in NET_ORDER if k in found]
    return {k: found[k] for k in order + [k for k in found if k not in order]}
