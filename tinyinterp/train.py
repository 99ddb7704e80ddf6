"""Training: ``python -m tinyinterp train`` (defaults: the bundled toy birds, both nets,
the paper's two-stage protocol).

A run folder ``runs/<name>/`` holds one folder per net: ``pretrained/`` (stage 1, the
ordinary net from random weights; only with ``--protocol finetune``), ``ordinary/`` and
``interpretable/``. Each holds:
    checkpoint.npz   weights, optimiser state, RNG states and config (atomic, no pickle)
    metrics.json     one entry per epoch, plus the final summary
and the console shows a progress bar within each epoch and one line per epoch. After
training, the command writes the run's evaluation (evaluation.json / .txt) and pictures
(pictures/*.png), unless ``--no-report``. Run folders are read back through
``tinyinterp.runs`` (TrainConfig, load_run, load_data), which evaluate and visualize use too.

Two tasks (``--task``): ``species`` (one class per species, softmax cross-entropy) and
``bird``, the paper's CUB setting: every bird against non-bird images, one logistic output
(paper Sec. 5), so every filter of the interpretable layers belongs to one category and
the negatives' maps get the negative template T^-. With the two-stage protocol the bird
task's stage 1 trains the species (``--pretrain-task``), and stage 2 replaces the head.

Resuming (``--resume``) continues from the checkpoint so that an interrupted and
resumed run ends with the same weights as an uninterrupted one: the data order of
epoch e is drawn from seed (seed, e), and the dropout generators' states are saved.
Ctrl-C prints the command that does it. The command line never replaces a run folder
that holds a trained net unless asked (``--resume`` or ``--overwrite``), and removes a
folder's old evaluation and pictures before it trains: they described other weights.
"""
import argparse
import json
import math
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .backend import device_module, to_device
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .cli import (Interrupted, UsageError, UserError, add_parser, nonnegative_float, nonnegative_int,
                  positive_int)
from .layers import Dropout
from .losses import LogisticLoss, SoftmaxCrossEntropy
from .optim import SGD
from .predictions import class_recalls, collect_predictions, has_collapsed, predict
from .runs import (TOY_BIRDS, TrainConfig, build_model, data_key, init_weights_from, load_data,  # noqa: F401
                   load_run, net_dirs, num_outputs)
from .vgg import input_step


# The command line's default recipe per task (README). TrainConfig.mask_options stays {}
# so that library users get InterpretableMask's own defaults.
#  species: the recipe study on toy birds and the 10-species subset (studies/README.md);
#  bird: the paper's CUB setting (bird vs. not); the authors' released-code rule at
#    multiplier 10, the one recipe that put the new conv clearly below its shuffled
#    control when first measured (docs/calibration.md#the-papers-own-task-bird-vs-not);
#    studies/README.md has it over three seeds.
RECIPES = {
    "species": {"protocol": "finetune", "finetune_epochs": 6, "finetune_lr": 1e-3,
                "mask": "argmax", "filter_loss": "exact", "scale_normalise": False,
                "lambda0": 1e-4, "lam": None},
    "bird": {"protocol": "finetune", "finetune_epochs": 6, "finetune_lr": 1e-3,
             "mask": "argmax", "filter_loss": "authors", "scale_normalise": False,
             "lambda0": 1e-4, "lam": 10.0},
}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


# ---- pieces ----

def learning_rate(cfg, step, steps_per_epoch):
    """The learning rate of a step, by ``cfg.lr_schedule``:

    - "cosine": linear warm-up over ``warmup_epochs``, then cosine decay to zero;
    - "authors": the authors' released code, per epoch e (from 0) lr * 10^(-min(e, 9) / 9):
      log-linear from lr down to lr / 10 over the first 10 epochs, then flat (their
      ``logspace(-4, -5, 10)`` at lr 1e-4), no warm-up.
    """
    if cfg.lr_schedule == "authors":
        return cfg.lr * 10 ** (-min(step // steps_per_epoch, 9) / 9)
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def interpretable_layers(model):
    return [layer for layer in model.layers if hasattr(layer, "set_labels")]


def accuracy(model, ds, mean, std, device, batch_size=64):
    """Top-1 accuracy of ``model`` (eval mode) on ``ds`` (for a logistic head: logit > 0
    predicts 1)."""
    pred = collect_predictions(model, ds, mean, std, device, batch_size)
    return float((pred == ds.labels).mean()) if len(ds) else 0.0


def task_loss(cfg):
    """The classification loss of the task: softmax cross-entropy over species, or the
    paper's logistic loss on one output for bird vs. not."""
    return LogisticLoss() if cfg.task == "bird" else SoftmaxCrossEntropy()


def loss_targets(cfg, labels):
    """Labels as the task's loss wants them: (B,) class ids, or (B, 1) 0/1 targets."""
    return labels[:, None] if cfg.task == "bird" else labels


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


# ---- the loop ----

def _test_text(row):
    """The test accuracy of a history row (and for bird vs. not each class's recall); "-"
    for an epoch without a test pass (``eval_every``)."""
    if "test_acc" not in row:
        return "-"
    rec = row.get("test_recall")
    if not rec:
        return f"{row['test_acc']:.3f}"
    text = f"{row['test_acc']:.3f} (birds {rec[1]:.3f}, not {rec[0]:.3f})"
    return text + (" COLLAPSED: it calls (almost) every image one class" if has_collapsed(rec) else "")


def train_one(cfg, out_dir, data=None, resume=False, log=print):
    """Train one net; returns the metrics dict (also written to ``out_dir/metrics.json``)."""
    out_dir = Path(out_dir)  # made by the first checkpoint: a run that fails before has none
    ds, train, test, mean, std = data or load_data(cfg)
    model = build_model(cfg, num_outputs(cfg, ds)).to(cfg.device)
    opt = SGD(model.params(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ckpt = out_dir / "checkpoint.npz"
    history, start = [], 0
    # a run that diverged says so in this file (studies read it); a new attempt clears it
    diverged = out_dir / "diverged.json"
    diverged.unlink(missing_ok=True)
    if resume and ckpt.exists():
        meta = load_training_state(ckpt, model, opt)
        history, start = meta["history"], meta["epoch"]
        log(f"resumed {ckpt} at epoch {start}")
    elif resume:
        log(f"nothing to resume in {out_dir}: starting at epoch 1")
    if start == 0 and cfg.init_from:
        log(f"init from {cfg.init_from}")
        for line in init_weights_from(model, cfg.init_from, cfg.device):
            log(f"  {line}")
    criterion = task_loss(cfg)
    steps = math.ceil(len(train) / cfg.batch_size)
    kind = "interpretable" if cfg.interpretable else "ordinary"
    for epoch in range(start, cfg.epochs):
        t0, task_sum, filt_sum, n_seen, n_right = time.time(), 0.0, 0.0, 0, 0
        for layer in interpretable_layers(model):
            layer.epoch = epoch + 1  # paper: lambda_t ~ 1/t, t counted from 1
        batches = train.batches(cfg.batch_size, seed=(cfg.seed, epoch), shuffle=True, flip=True,
                                mean=mean, std=std, shift=cfg.shift)
        for i, batch in enumerate(batches):
            x = to_device(batch["x"], cfg.device)
            labels = to_device(batch["labels"], cfg.device)
            for layer in interpretable_layers(model):
                layer.set_labels(labels)
            logits = model.forward(x)
            xp = device_module(cfg.device)
            loss = float(criterion.forward(logits, loss_targets(cfg, labels))) \
                if bool(xp.isfinite(logits).all()) \
                else float("nan")
            filt = sum(float(layer.last_filter_loss) for layer in interpretable_layers(model))
            if not (math.isfinite(loss) and math.isfinite(filt)):
                kept = f"the last good checkpoint (epoch {epoch}) is kept at {ckpt}" if epoch \
                    else "no checkpoint was written yet"
                message = (f"{kind}: the loss became {loss} (filter loss {filt}) at epoch {epoch + 1}, "
                           f"step {i + 1}; {kept}. Try a smaller --lr"
                           + (" or a weaker filter loss (--lambda0, --lam)." if cfg.interpretable else "."))
                atomic_write_text(diverged, json.dumps(
                    {"epoch": epoch + 1, "step": i + 1, "loss": str(loss), "filter_loss": str(filt),
                     "message": message}, indent=1))
                raise TrainingDiverged(message)
            model.backward(criterion.backward(), input_grad=False)  # the images need no gradient
            opt.lr = learning_rate(cfg, epoch * steps + i, steps)
            opt.step(model.grads())
            for layer in interpretable_layers(model):
                layer.step_beta()  # learned mask slopes, if any (the authors' code)
            n_right += int((predict(logits) == labels).sum())
            task_sum += loss * len(labels)
            filt_sum += filt * len(labels)
            n_seen += len(labels)
            progress(i + 1, steps, extra=f"loss {task_sum / n_seen:.3f}")
        row = {"epoch": epoch + 1, "task_loss": task_sum / n_seen, "filter_loss": filt_sum / n_seen,
               "lambda": [float(layer.last_lambda) for layer in interpretable_layers(model)],
               # on the epoch's training batches as they were seen (flipped, dropout on):
               # a second pass over the training set would cost as much as the test pass
               "train_acc": n_right / n_seen}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            pred = collect_predictions(model, test, mean, std, cfg.device)
            row["test_acc"] = float((pred == test.labels).mean()) if len(test) else 0.0
            if cfg.task == "bird":  # the recall of each class: [not a bird, bird]
                row["test_recall"] = class_recalls(pred, test.labels, 2)
        row["seconds"] = time.time() - t0
        history.append(row)
        save_training_state(ckpt, model, opt, cfg, epoch + 1, history)
        if sys.stdout.isatty():
            sys.stdout.write("\r")
        lam = ",".join(f"{v:.2g}" for v in row["lambda"]) or "-"
        log(f"{kind:>13} epoch {row['epoch']:3d}/{cfg.epochs}  loss {row['task_loss']:.3f}  "
            f"filter {row['filter_loss']:+.3g}  lambda {lam}  train {row['train_acc']:.3f}  "
            f"test {_test_text(row)}  {row['seconds']:.1f}s")
    metrics = {"config": asdict(cfg), "history": history,
               "final": history[-1] if history else None}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


# ---- command line ----

def _per_task(key, show=str):
    """The recipe's defaults of ``key`` for --help: " (default: X with --task species, Y
    with --task bird)", or " (default: X)" where the tasks agree."""
    values = {task: show(recipe[key]) for task, recipe in RECIPES.items()}
    if len(set(values.values())) == 1:
        return f" (default: {next(iter(values.values()))})"
    return " (default: " + ", ".join(f"{v} with --task {t}" for t, v in values.items()) + ")"


def add_train_parser(sub):
    p = add_parser(sub, "train", help="train ordinary and/or interpretable small VGGs",
                   description="Train an ordinary and an interpretable small VGG (the paper's "
                               "two-stage protocol by default), then write their evaluation "
                               "and pictures into the run folder.")
    d = TrainConfig()
    p.add_argument("--data", default=d.data, metavar="DIR",
                   help="a folder in the CUB-200-2011 layout (python -m tinyinterp download-cub "
                        "gets CUB) (default: the bundled toy birds, data_samples/toy_birds)")
    p.add_argument("--classes", type=positive_int, nargs="*", metavar="ID",
                   help="CUB class ids to use (default: all)")
    p.add_argument("--images-per-class", type=positive_int, metavar="N",
                   help="use the first N images of each class (default: all)")
    p.add_argument("--size", type=positive_int, default=d.size, metavar="PX",
                   help=f"input side in pixels, a multiple of {input_step(d.widths)}")
    p.add_argument("--task", choices=["species", "bird"], default=d.task,
                   help="species: one class per species (softmax); bird: the paper's CUB "
                        "setting, every bird against non-bird images (one logistic output, "
                        "all filters in one category)")
    p.add_argument("--negatives", metavar="DIR",
                   help="bird task: a folder of non-bird images, used whole "
                        "(default: background crops from the birds' own photos)")
    p.add_argument("--crop", choices=["box", "whole"], default=d.crop,
                   help="input: the bird's box enlarged by 10%% (as the paper's CUB "
                        "protocol) or the whole image")
    p.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help="epochs from random weights (with --protocol finetune: of stage 1)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N",
                   help="images per training step")
    p.add_argument("--lr", type=nonnegative_float, default=d.lr,
                   help=f"peak learning rate from random weights: {d.warmup_epochs} warm-up "
                        f"epochs, then cosine decay to 0")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed,
                   help="seed of the weights, the data order and dropout")
    p.add_argument("--device", choices=["cpu", "gpu"], default=d.device,
                   help="where to train (gpu: through CuPy)")
    p.add_argument("--shift", type=nonnegative_int, default=d.shift, metavar="PIXELS",
                   help="augmentation: move each training image by up to this many pixels in x "
                        "and y, the uncovered side filled with its edge (0: flips only)")
    p.add_argument("--lr-schedule", choices=["cosine", "authors"], default=d.lr_schedule,
                   help="cosine: warm-up (stage 1) then cosine decay to 0; authors: log-linear "
                        "from the lr to a tenth of it over 10 epochs, then flat")
    p.add_argument("--padding-mode", choices=["zeros", "replicate", "reflect"], default=d.padding_mode,
                   help="every conv's padding, both nets and both stages alike: zeros (the paper's "
                        "nets) or the map's own edge pixels, repeated or mirrored")
    p.add_argument("--nets", choices=["both", "ordinary", "interpretable"], default="both",
                   help="which nets to train (and fine-tune)")
    p.add_argument("--out", default="runs/toy_birds", metavar="DIR",
                   help="the run folder; one that holds a trained net is not replaced "
                        "without --resume or --overwrite")
    p.add_argument("--resume", action="store_true",
                   help="continue the run folder's nets from their checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run folder's nets, evaluation and pictures")
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every, metavar="N",
                   help="the test pass after every N-th epoch and after the last")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip the evaluation table and the pictures after training")
    g = p.add_argument_group("recipe (the defaults depend on --task)")
    g.add_argument("--protocol", choices=["scratch", "finetune"],
                   help="scratch: both nets from random weights; finetune (paper): an ordinary "
                        "net first (OUT/pretrained), then the ordinary net (fair baseline) and "
                        "the interpretable net both fine-tuned from it" + _per_task("protocol"))
    g.add_argument("--pretrain-task", choices=["species", "bird"],
                   help="finetune: the task of stage 1 (with --task bird the net pretrained on "
                        "species is fine-tuned as bird vs. not with a fresh head) (default: species)")
    g.add_argument("--finetune-epochs", type=positive_int, metavar="N",
                   help="finetune: epochs of stage 2" + _per_task("finetune_epochs"))
    g.add_argument("--pretrained", metavar="CKPT",
                   help="finetune: start stage 2 from this checkpoint (default: stage 1 trains "
                        "one, OUT/pretrained)")
    g.add_argument("--finetune-lr", type=nonnegative_float, metavar="LR",
                   help="finetune: learning rate of stage 2 (cosine, no warm-up)"
                        + _per_task("finetune_lr"))
    g.add_argument("--mask", choices=["argmax", "centroid"],
                   help="mu_hat: the argmax (paper) or the rounded centroid (authors' code)"
                        + _per_task("mask"))
    g.add_argument("--filter-loss", choices=["exact", "paper", "authors"],
                   help="gradient of the filter loss: exact -MI, paper's Eq. 4, or the authors' "
                        "released-code rule" + _per_task("filter_loss"))
    g.add_argument("--scale-normalise", action=argparse.BooleanOptionalAction,
                   help="filter loss on maps divided by their batch scale"
                        + _per_task("scale_normalise", lambda v: "on" if v else "off"))
    g.add_argument("--lambda0", type=nonnegative_float,
                   help="lambda_t = lambda0 * mean max x / t (exact and paper gradients)"
                        + _per_task("lambda0"))
    g.add_argument("--lam", type=nonnegative_float,
                   help="a fixed lambda instead of the schedule (authors' rule: its multiplier)"
                        + _per_task("lam", lambda v: "the schedule" if v is None else v))
    g.add_argument("--mask-after-pool", action="store_true",
                   help="the new conv's mask after the pool that follows it, as the authors' code "
                        "places it (default: right after its ReLU)")
    g.add_argument("--learn-beta", action="store_true",
                   help="learn the mask's slope per filter as the authors' code does (starts at 2, "
                        "moves toward 3 / the spread of the filter's activation, within [1.5, 3])")
    p.set_defaults(func=cmd_train)


def apply_recipe(args):
    """Fill the recipe options the command line left unset with the task's defaults. A
    fixed ``lam`` belongs to its filter loss: it is taken from the recipe only when the
    filter loss is too (``--filter-loss exact`` alone gets the lambda_t schedule)."""
    recipe = dict(RECIPES[args.task])
    if getattr(args, "filter_loss", None) not in (None, recipe["filter_loss"]):
        recipe["lam"] = None
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if getattr(args, "pretrain_task", None) is None:
        args.pretrain_task = "species"
    return args


def recipe_mask_options(task="species"):
    """The InterpretableMask keywords of the command line's default recipe for ``task``,
    for library users: ``TrainConfig(task="bird", interpretable=True,
    mask_options=recipe_mask_options("bird"))`` trains what ``train --task bird`` does in
    stage 2. (TrainConfig's own default, {}, is InterpretableMask's defaults.)"""
    return mask_options_from(apply_recipe(argparse.Namespace(task=task)))


def mask_options_from(args):
    """The InterpretableMask keywords a command line asks for."""
    opts = {"mode": args.mask, "gradient": args.filter_loss, "scale_normalise": args.scale_normalise,
            "lambda0": args.lambda0}
    if args.lam is not None:
        opts["lam"] = args.lam
    if getattr(args, "learn_beta", False):  # only when asked: older configs stay as they were
        opts["learn_beta"] = True
    return opts


def check_train_args(args):
    """Refuse bad arguments (UsageError) and a run folder not to be replaced (UserError)
    before anything is loaded or made. Fills in the recipe's defaults."""
    apply_recipe(args)
    d = TrainConfig()
    if args.size % input_step(d.widths):
        raise UsageError(f"--size {args.size}: the small VGG takes multiples of "
                         f"{input_step(d.widths)} (it halves its input {len(d.widths) + 1} times)")
    for flag, value in (("--data", args.data), ("--negatives", args.negatives)):
        if value is not None and not Path(value).is_dir():
            raise UsageError(f"{flag} {value}: no such folder")
    if args.pretrained is not None and not Path(args.pretrained).is_file():
        raise UsageError(f"--pretrained {args.pretrained}: no such file")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run folder's nets and --overwrite replaces "
                         "them: give one")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file, not a folder")
    trained = list(net_dirs(out))
    if trained and not (args.resume or args.overwrite):
        raise UserError(f"{out} already holds a trained run ({', '.join(trained)}): continue it "
                        f"with --resume, or replace it and its report with --overwrite "
                        f"(or choose another --out)")
    device_module(args.device)  # a missing GPU fails here, before minutes of loading
    if args.pretrained is not None:
        load_checkpoint(args.pretrained)  # a corrupt one fails here, before anything is made


REPORT_FILES = ("evaluation.json", "evaluation.txt")


def clear_run(out, nets=False, keep=None):
    """Remove what ``report`` wrote into the run folder ``out`` (the evaluation and the
    pictures) and, with ``nets``, every net folder (a subfolder with a checkpoint.npz)
    but the one holding the file ``keep`` (a --pretrained checkpoint). Nothing else in
    ``out`` is touched."""
    from .visualize import PICTURE_PATTERNS

    out = Path(out)
    if nets:
        for folder in net_dirs(out).values():
            if keep is None or folder.resolve() != Path(keep).resolve().parent:
                shutil.rmtree(folder)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    pictures = out / "pictures"
    if pictures.is_dir():
        for pattern in PICTURE_PATTERNS:
            for path in pictures.glob(pattern):
                path.unlink()
        if not any(pictures.iterdir()):
            pictures.rmdir()


def _epochs(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def cmd_train(args):
    check_train_args(args)
    crop = args.crop
    base = TrainConfig(data=args.data, classes=args.classes, images_per_class=args.images_per_class,
                       size=args.size, crop=crop, task=args.task, negatives=args.negatives,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       eval_every=args.eval_every, seed=args.seed, device=args.device,
                       padding_mode=args.padding_mode, lr_schedule=args.lr_schedule,
                       mask_after_pool=args.mask_after_pool, shift=args.shift,
                       mask_options=mask_options_from(args))
    data = load_data(base)
    loaded = {data_key(base): data}  # the report reuses these instead of loading them again
    describe_data(args.data, base, data)
    kinds = ["ordinary", "interpretable"] if args.nets == "both" else [args.nets]
    out = Path(args.out)
    # the old report describes weights that are about to change
    clear_run(out, nets=args.overwrite, keep=args.pretrained)
    current = None  # the net folder being trained, for the Ctrl-C message
    try:
        if args.protocol == "finetune":
            pretrained = args.pretrained
            if not pretrained:
                stage1 = TrainConfig(**{**asdict(base), "task": args.pretrain_task})
                stage1_data = data if stage1.task == base.task else load_data(stage1)
                if stage1_data is not data:
                    describe_data(args.data, stage1, stage1_data)
                    loaded[data_key(stage1)] = stage1_data
                print(f"stage 1: the ordinary net, {stage1.task} task, {_epochs(args.epochs)} -> "
                      f"{out / 'pretrained'}")
                current = out / "pretrained"
                train_one(stage1, current, data=stage1_data, resume=args.resume)
                pretrained = str(out / "pretrained" / "checkpoint.npz")
            print(f"stage 2: fine-tune from {pretrained}, {_epochs(args.finetune_epochs)} at lr "
                  f"{args.finetune_lr}, ordinary (the fair baseline) and interpretable, "
                  f"{base.task} task")
            base = TrainConfig(**{**asdict(base), "epochs": args.finetune_epochs, "lr": args.finetune_lr,
                                  "warmup_epochs": 0, "init_from": pretrained})
        summary = {}
        for kind in kinds:
            cfg = TrainConfig(**{**asdict(base), "interpretable": kind == "interpretable"})
            current = out / kind
            summary[kind] = train_one(cfg, current, data=data, resume=args.resume)["final"]
        current = None
        print("\nsummary (test accuracy): " + ", ".join(
            f"{k} {_test_text(v)}" for k, v in summary.items()))
        if args.report:
            report(out, args.device, data=loaded)
    except TrainingDiverged as e:
        print(f"\nstopped: {e}")
        return 2
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(args, current)) from None
    print(f"run folder: {out}" + (f" (the table in {out / 'evaluation.txt'}, the pictures in "
                                   f"{out / 'pictures'})" if args.report else ""))
    return 0


def interrupted_message(args, folder):
    """What Ctrl-C kept, and the command that goes on from there."""
    argv = [a for a in getattr(args, "argv", []) if a != "--overwrite"]
    command = "python -m tinyinterp " + shlex.join(argv + ([] if "--resume" in argv else ["--resume"]))
    if folder is None:  # in the report: every net is trained
        return (f"interrupted while writing the report; every net is trained. "
                f"Write it with: python -m tinyinterp evaluate {shlex.quote(args.out)} && "
                f"python -m tinyinterp visualize {shlex.quote(args.out)}")
    ckpt = Path(folder) / "checkpoint.npz"
    if ckpt.is_file():
        epoch = load_checkpoint(ckpt)[1]["epoch"]
        kept = f"{folder.name}: its checkpoint after epoch {epoch} is kept ({ckpt})"
    else:
        kept = f"{folder.name}: no epoch finished yet, nothing of it is kept"
    return f"interrupted while training {kept}.\nResume with: {command}"


def describe_data(folder, cfg, data):
    """One paragraph on what was loaded (and, for the bird task, how the negatives came out)."""
    ds, train, test = data[:3]
    if cfg.task == "bird":
        r = ds.report
        print(f"data: {folder}: bird vs. not, {int(train.labels.sum())} birds + "
              f"{int((train.labels == 0).sum())} non-birds train / {int(test.labels.sum())} + "
              f"{int((test.labels == 0).sum())} test at {cfg.size} px")
        print(f"  {read_report(r)}; negatives: {negatives_report(r['negatives'])}")
    else:
        print(f"data: {folder}: {len(ds.class_ids)} classes, {len(train)} train / "
              f"{len(test)} test images at {cfg.size} px ({cfg.crop} crop); {read_report(ds.report)}")


def negatives_report(n):
    """load_bird_task's report on its negatives, in words."""
    text = f"{n['made']} from {n['source']}"
    if "skipped_too_full" in n:
        text += (f" ({n['skipped_too_full']} photos too full of bird for one), sides "
                 f"{n['side_px_mean']:.1f} px on average against the birds' "
                 f"{n['positive_side_px_mean']:.1f} (median ratio {n['side_to_positive_median']:.2f})")
    return text


def read_report(r):
    """load_cub's report in words: what was read, and only the counts that are not zero."""
    parts = [f"{r['images_read']} of {r['images_listed']} listed images read"]
    parts += [f"{n} skipped: {why}" for why, n in r.get("skipped", {}).items()]
    for key, words in (("boxes_clipped", "boxes clipped to their image"),
                       ("landmarks_invisible_by_crop", "landmarks outside their crop"),
                       ("part_rows_missing", "part rows missing"),
                       ("converted_to_rgb", "images converted to RGB")):
        if r.get(key):
            parts.append(f"{r[key]} {words}")
    if r.get("empty_classes"):
        parts.append(f"classes without images: {r['empty_classes']}")
    unknown = sum(r.get("rows_for_unknown_image_ids", {}).values())
    if unknown:
        parts.append(f"{unknown} annotation rows for unknown image ids")
    return ", ".join(parts)


def report(run_root, device="cpu", data=None):
    """What ``evaluate RUN`` and ``visualize RUN`` do, run after training. ``data``:
    {data_key(cfg): load_data(cfg)} already loaded (filled with what is loaded here)."""
    from .evaluate import evaluate_runs, format_table
    from .visualize import visualize_runs

    data = {} if data is None else data
    print("\n" + format_table(evaluate_runs(run_root, device=device, data=data)))
    paths = visualize_runs(run_root, device=device, data=data)
    print(f"\nwrote {Path(run_root) / 'evaluation.json'}, evaluation.txt and {len(paths)} "
          f"pictures in {Path(run_root) / 'pictures'}")
