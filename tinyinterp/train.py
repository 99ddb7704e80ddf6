"""Training: ``python -m tinyinterp train`` (defaults: the bundled toy birds, both nets,
the paper's two-stage protocol).

A run folder ``runs/<name>/`` holds one folder per net: ``pretrained/`` (stage 1, the
ordinary net from random weights; only with ``--protocol finetune``), ``ordinary/`` and
``interpretable/``. Each holds:
    checkpoint.npz   weights, optimiser state, RNG states and config (atomic, no pickle)
    metrics.json     one entry per epoch, plus the final summary
and the console shows a progress bar within each epoch and one line per epoch. After
training, the command writes the run's evaluation (evaluation.json / .txt) and pictures
(pictures/*.png), unless ``--no-report``.

Resuming (``--resume``) continues from the checkpoint so that an interrupted and
resumed run ends with the same weights as an uninterrupted one: the data order of
epoch e is drawn from seed (seed, e), and the dropout generators' states are saved.
"""
import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backend import device_module, to_device
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .layers import Dropout
from .losses import SoftmaxCrossEntropy
from .optim import SGD
from .vgg import small_vgg

TOY_BIRDS = Path(__file__).resolve().parents[1] / "data_samples" / "toy_birds"


@dataclass
class TrainConfig:
    data: str = str(TOY_BIRDS)  # a folder in the CUB-200-2011 layout
    classes: list = None  # CUB class ids, or None for all
    images_per_class: int = None
    size: int = 64  # input side in pixels
    crop: str = "box"  # "box": the bird's box + 10%; "whole": the whole image
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: int = 2  # linear warm-up, then cosine decay to 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    widths: list = field(default_factory=lambda: [32, 64, 128])
    top_channels: int = 128
    interpretable: bool = False
    mask_options: dict = field(default_factory=dict)  # InterpretableMask keyword arguments
    init_from: str = None  # a checkpoint whose conv/fc weights start this net (two-stage protocol)
    seed: int = 0
    device: str = "cpu"


# The command line's default recipe (README, "Recipe study"); TrainConfig.mask_options
# stays {} so that library users get InterpretableMask's own defaults.
RECIPE = {"protocol": "finetune", "finetune_epochs": 6, "finetune_lr": 1e-3, "mask": "argmax",
          "filter_loss": "exact", "scale_normalise": False, "lambda0": 1e-4, "lam": None}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


# ---- pieces ----

def load_data(cfg):
    from .data import load_cub

    ds = load_cub(cfg.data, classes=cfg.classes, images_per_class=cfg.images_per_class,
                  size=cfg.size, crop=cfg.crop)
    train, test = ds.split("train"), ds.split("test")
    mean, std = train.mean_std()
    return ds, train, test, mean, std


def build_model(cfg, num_classes):
    return small_vgg(num_classes=num_classes, input_size=cfg.size, widths=tuple(cfg.widths),
                     top_channels=cfg.top_channels, dropout=cfg.dropout,
                     interpretable=cfg.interpretable, seed=cfg.seed,
                     mask_options=cfg.mask_options)


def init_weights_from(model, ckpt, device="cpu"):
    """Copy the weights of the net saved in ``ckpt`` into ``model`` (stage 2 of the paper's
    protocol: an ordinary net trained first, then the masks added and the whole net
    fine-tuned). The two nets must have the same parameter layers in the same order;
    mask layers have no parameters, so an ordinary checkpoint fits an interpretable
    net. Buffers (filter categories, running log Z) start fresh."""
    source, _, _ = load_run(Path(ckpt).parent)
    src = [layer for layer in source.layers if layer.params]
    dst = [layer for layer in model.layers if layer.params]
    if len(src) != len(dst):
        raise ValueError(f"init_from {ckpt}: {len(src)} parameter layers, this net has {len(dst)}")
    for a, b in zip(src, dst):
        for name, value in a.params.items():
            if b.params[name].shape != value.shape:
                raise ValueError(f"init_from {ckpt}: {a!r}.{name} has shape {value.shape}, "
                                 f"this net's {b!r} needs {b.params[name].shape}")
            b.params[name][...] = to_device(value, device)
    return model


def learning_rate(cfg, step, steps_per_epoch):
    """Linear warm-up over ``warmup_epochs``, then cosine decay to zero."""
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def interpretable_layers(model):
    return [layer for layer in model.layers if hasattr(layer, "set_labels")]


def accuracy(model, ds, mean, std, device, batch_size=64):
    """Top-1 accuracy of ``model`` (eval mode) on ``ds``."""
    model.eval()
    correct = 0
    for batch in ds.batches(batch_size, shuffle=False, flip=False, mean=mean, std=std):
        logits = model.forward(to_device(batch["x"], device))
        xp = device_module(device)
        correct += int((logits.argmax(axis=1) == xp.asarray(batch["labels"])).sum())
    model.train()
    return correct / max(1, len(ds))


def progress(i, n, width=24, extra=""):
    """A one-line progress bar, redrawn in place (only on a terminal: in a log file the
    redraws would pile up)."""
    if not sys.stdout.isatty():
        return
    done = int(width * i / max(1, n))
    sys.stdout.write(f"\r  [{'#' * done}{'.' * (width - done)}] {i}/{n} {extra}")
    sys.stdout.flush()


# ---- checkpoint of a whole training state ----

def _dropout_layers(model):
    return [layer for layer in model.layers if isinstance(layer, Dropout)]


def save_training_state(path, model, opt, cfg, epoch, history):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    meta = {"config": asdict(cfg), "epoch": epoch, "history": history,
            "dropout_rng": [d.rng.bit_generator.state for d in _dropout_layers(model)]}
    save_checkpoint(path, arrays, meta)


def load_training_state(path, model, opt):
    arrays, meta = load_checkpoint(path)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    opt.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
    for d, state in zip(_dropout_layers(model), meta["dropout_rng"]):
        d.rng.bit_generator.state = state
    return meta


def load_run(run_dir, device="cpu"):
    """Rebuild a trained net from its run folder -> (model in eval mode, TrainConfig, meta)."""
    ckpt = Path(run_dir) / "checkpoint.npz"
    arrays, meta = load_checkpoint(ckpt)
    cfg = TrainConfig(**meta["config"])
    cfg.device = device
    num_classes = int(arrays["model/" + _last_linear_key(arrays)].shape[-1])
    model = build_model(cfg, num_classes)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    return model.to(device).eval(), cfg, meta


def _last_linear_key(arrays):
    """The key of the head's bias: the highest-numbered layer with a "b"."""
    keys = [k[6:] for k in arrays if k.startswith("model/") and k.endswith(".b")]
    return max(keys, key=lambda k: int(k.split(".")[0]))


# ---- the loop ----

def train_one(cfg, out_dir, data=None, resume=False, log=print):
    """Train one net; returns the metrics dict (also written to ``out_dir/metrics.json``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds, train, test, mean, std = data or load_data(cfg)
    num_classes = len(ds.class_ids)
    model = build_model(cfg, num_classes).to(cfg.device)
    opt = SGD(model.params(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ckpt = out_dir / "checkpoint.npz"
    history, start = [], 0
    if resume and ckpt.exists():
        meta = load_training_state(ckpt, model, opt)
        history, start = meta["history"], meta["epoch"]
        log(f"resumed {ckpt} at epoch {start}")
    elif cfg.init_from:
        init_weights_from(model, cfg.init_from, cfg.device)
    criterion = SoftmaxCrossEntropy()
    steps = math.ceil(len(train) / cfg.batch_size)
    kind = "interpretable" if cfg.interpretable else "ordinary"
    for epoch in range(start, cfg.epochs):
        t0, task_sum, filt_sum, n_seen, n_right = time.time(), 0.0, 0.0, 0, 0
        for layer in interpretable_layers(model):
            layer.epoch = epoch + 1  # paper: lambda_t ~ 1/t, t counted from 1
        batches = train.batches(cfg.batch_size, seed=(cfg.seed, epoch), shuffle=True, flip=True,
                                mean=mean, std=std)
        for i, batch in enumerate(batches):
            x = to_device(batch["x"], cfg.device)
            labels = to_device(batch["labels"], cfg.device)
            for layer in interpretable_layers(model):
                layer.set_labels(labels)
            logits = model.forward(x)
            xp = device_module(cfg.device)
            loss = float(criterion.forward(logits, labels)) if bool(xp.isfinite(logits).all()) \
                else float("nan")
            filt = sum(float(layer.last_filter_loss) for layer in interpretable_layers(model))
            if not (math.isfinite(loss) and math.isfinite(filt)):
                kept = f"the last good checkpoint (epoch {epoch}) is kept at {ckpt}" if epoch \
                    else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"{kind}: the loss became {loss} (filter loss {filt}) at epoch {epoch + 1}, "
                    f"step {i + 1}; {kept}. Try a smaller --lr"
                    + (" or a weaker filter loss (--lambda0, --lam)." if cfg.interpretable else "."))
            model.backward(criterion.backward(), input_grad=False)  # the images need no gradient
            opt.lr = learning_rate(cfg, epoch * steps + i, steps)
            opt.step(model.grads())
            n_right += int((logits.argmax(axis=1) == labels).sum())
            task_sum += loss * len(labels)
            filt_sum += filt * len(labels)
            n_seen += len(labels)
            progress(i + 1, steps, extra=f"loss {task_sum / n_seen:.3f}")
        row = {"epoch": epoch + 1, "task_loss": task_sum / n_seen, "filter_loss": filt_sum / n_seen,
               "lambda": [float(layer.last_lambda) for layer in interpretable_layers(model)],
               # on the epoch's training batches as they were seen (flipped, dropout on):
               # a second pass over the training set would cost as much as the test pass
               "train_acc": n_right / n_seen,
               "test_acc": accuracy(model, test, mean, std, cfg.device),
               "seconds": time.time() - t0}
        history.append(row)
        save_training_state(ckpt, model, opt, cfg, epoch + 1, history)
        if sys.stdout.isatty():
            sys.stdout.write("\r")
        lam = ",".join(f"{v:.2g}" for v in row["lambda"]) or "-"
        log(f"{kind:>13} epoch {row['epoch']:3d}/{cfg.epochs}  loss {row['task_loss']:.3f}  "
            f"filter {row['filter_loss']:+.3g}  lambda {lam}  train {row['train_acc']:.3f}  "
            f"test {row['test_acc']:.3f}  {row['seconds']:.1f}s")
    metrics = {"config": asdict(cfg), "history": history,
               "final": history[-1] if history else None}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


# ---- command line ----

def add_train_parser(sub):
    p = sub.add_parser("train", help="train ordinary and/or interpretable small VGGs")
    d = TrainConfig()
    p.add_argument("--data", default=d.data, help="folder in CUB-200-2011 layout (default: toy birds)")
    p.add_argument("--classes", type=int, nargs="*", help="CUB class ids (default: all)")
    p.add_argument("--images-per-class", type=int)
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--crop", choices=["box", "whole"], default=d.crop,
                   help="input: the bird's box enlarged by 10%% (default, as the paper's CUB "
                        "protocol) or the whole image")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="epochs from random weights (with --protocol finetune: of stage 1)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=["cpu", "gpu"], default=d.device)
    p.add_argument("--nets", choices=["both", "ordinary", "interpretable"], default="both")
    p.add_argument("--out", default="runs/toy_birds", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoints")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip the evaluation table and the pictures after training")
    g = p.add_argument_group("recipe (see the README's recipe study)")
    g.add_argument("--protocol", choices=["scratch", "finetune"], default=RECIPE["protocol"],
                   help="scratch: both nets from random weights; finetune (paper): an ordinary "
                        "net first (OUT/pretrained), then the ordinary net (fair baseline) and "
                        "the interpretable net both fine-tuned from it")
    g.add_argument("--finetune-epochs", type=int, default=RECIPE["finetune_epochs"],
                   help="finetune: epochs of stage 2")
    g.add_argument("--pretrained", help="finetune: start from this checkpoint instead of "
                                        "training OUT/pretrained")
    g.add_argument("--finetune-lr", type=float, default=RECIPE["finetune_lr"],
                   help="finetune: learning rate of stage 2 (cosine, no warm-up)")
    g.add_argument("--mask", choices=["argmax", "centroid"], default=RECIPE["mask"],
                   help="mu_hat: the argmax (paper) or the rounded centroid (authors' code)")
    g.add_argument("--filter-loss", choices=["exact", "paper", "authors"], default=RECIPE["filter_loss"],
                   help="gradient of the filter loss: exact -MI, paper's Eq. 4, or the authors' "
                        "released-code rule")
    g.add_argument("--scale-normalise", action=argparse.BooleanOptionalAction,
                   default=RECIPE["scale_normalise"], help="filter loss on maps divided by their batch scale")
    g.add_argument("--lambda0", type=float, default=RECIPE["lambda0"],
                   help="lambda_t = lambda0 * mean max x / t (exact and paper gradients)")
    g.add_argument("--lam", type=float, default=RECIPE["lam"],
                   help="a fixed lambda instead of the schedule (authors' rule: its multiplier)")
    p.set_defaults(func=cmd_train)


def mask_options_from(args):
    """The InterpretableMask keywords a command line asks for."""
    opts = {"mode": args.mask, "gradient": args.filter_loss, "scale_normalise": args.scale_normalise,
            "lambda0": args.lambda0}
    if args.lam is not None:
        opts["lam"] = args.lam
    return opts


def cmd_train(args):
    crop = args.crop
    base = TrainConfig(data=args.data, classes=args.classes, images_per_class=args.images_per_class,
                       size=args.size, crop=crop, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, device=args.device, mask_options=mask_options_from(args))
    data = load_data(base)
    ds = data[0]
    print(f"data: {args.data}: {len(ds.class_ids)} classes, {len(data[1])} train / "
          f"{len(data[2])} test images at {base.size} px ({crop} crop); report {ds.report}")
    kinds = ["ordinary", "interpretable"] if args.nets == "both" else [args.nets]
    out = Path(args.out)
    try:
        if args.protocol == "finetune":
            pretrained = args.pretrained
            if not pretrained:
                print(f"stage 1: the ordinary net, {args.epochs} epochs -> {out / 'pretrained'}")
                train_one(base, out / "pretrained", data=data, resume=args.resume)
                pretrained = str(out / "pretrained" / "checkpoint.npz")
            print(f"stage 2: fine-tune from {pretrained}, {args.finetune_epochs} epochs at lr "
                  f"{args.finetune_lr}, ordinary (the fair baseline) and interpretable")
            base = TrainConfig(**{**asdict(base), "epochs": args.finetune_epochs, "lr": args.finetune_lr,
                                  "warmup_epochs": 0, "init_from": pretrained})
        summary = {}
        for kind in kinds:
            cfg = TrainConfig(**{**asdict(base), "interpretable": kind == "interpretable"})
            summary[kind] = train_one(cfg, out / kind, data=data, resume=args.resume)["final"]
    except TrainingDiverged as e:
        print(f"\nstopped: {e}")
        return 2
    print("\nsummary (test accuracy): " + ", ".join(
        f"{k} {v['test_acc']:.3f}" for k, v in summary.items()))
    if args.report:
        report(out, args.device)
    print(f"run folder: {args.out}")
    return 0


def report(run_root, device="cpu"):
    """What ``evaluate RUN`` and ``visualize RUN`` do, run after training."""
    from .metrics import evaluate_runs, format_table
    from .visualize import visualize_runs

    print("\n" + format_table(evaluate_runs(run_root, device=device)))
    paths = visualize_runs(run_root, device=device)
    print(f"\nwrote {Path(run_root) / 'evaluation.json'} and {len(paths)} pictures in "
          f"{Path(run_root) / 'pictures'}")
