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
epoch e is drawn from seed (seed, e), and the dropout generators' states are saved
(``runs.save_training_state``).

This file is the training loop (:func:`train_one`, one net); the command line, with the
two-stage protocol and the report, is train_cli.py, and its recipes recipes.py.
"""
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .backend import get_array_module, to_device, to_numpy
from .checkpoint import atomic_write_text
from .cli import progress
from .losses import LogisticLoss, SoftmaxCrossEntropy
from .optim import SGD
from .predictions import class_recalls, collect_predictions, has_collapsed, predict
from .runs import (build_model, init_weights_from, load_data, load_training_state, num_outputs,
                   save_training_state)


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


def task_loss(cfg):
    """The classification loss of the task: softmax cross-entropy over species, or the
    paper's logistic loss on one output for bird vs. not."""
    return LogisticLoss() if cfg.task == "bird" else SoftmaxCrossEntropy()


def loss_targets(cfg, labels):
    """Labels as the task's loss wants them: (B,) class ids, or (B, 1) 0/1 targets."""
    return labels[:, None] if cfg.task == "bird" else labels


# ---- one step ----

LOG_EVERY = 20  # training steps between two reads of the logged values by the host


def train_step(model, criterion, opt, x, labels, lr, device="cpu", as_targets=None):
    """One training step on a host batch: the labels checked on the host, the batch
    uploaded, forward, task loss, backward (no gradient for the images), SGD at ``lr``,
    the learned mask slopes. ``as_targets`` turns the labels into the loss's targets.

    Nothing is read back by the host (no sync): returns the step's record on the device,
    (task loss, (filter loss of each mask layer, ...), correct predictions, logits all
    finite), 0-d arrays, for :func:`read_records`.
    """
    host_targets = labels if as_targets is None else as_targets(labels)
    same = host_targets is labels
    x, labels = to_device(x, device), to_device(labels, device)
    targets = labels if same else to_device(host_targets, device)
    masks = interpretable_layers(model)
    for layer in masks:
        layer.set_labels(labels)
    logits = model.forward(x)
    xp = get_array_module(logits)
    # the targets checked on the host copy: free, where on a device the check is a sync
    criterion.check_targets(logits.shape, host_targets)
    loss = criterion.forward(logits, targets, check=False)
    finite = xp.isfinite(logits).all()
    model.backward(criterion.backward(), input_grad=False)
    opt.lr = lr
    opt.step(model.grads())
    for layer in masks:
        layer.step_beta()  # learned mask slopes, if any (the authors' code)
    right = (predict(logits) == labels).sum()
    return loss, tuple(layer.last_filter_loss for layer in masks), right, finite


def read_records(records):
    """[(step, batch size, record of train_step)] -> [(step, batch size, (loss, filter
    losses, correct, finite))] as host numbers, read in one transfer (one sync)."""
    if not records:
        return []
    values = [v for _, _, (loss, filts, right, finite) in records for v in (loss, *filts, right, finite)]
    xp = get_array_module(*values)
    host = to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]))
    out, k = [], 0
    for step, size, (_, filts, _, _) in records:
        n = len(filts)
        row = host[k:k + n + 3]
        out.append((step, size, (float(row[0]), [float(v) for v in row[1:n + 1]], int(row[n + 1]),
                                 bool(row[n + 2]))))
        k += n + 3
    return out


def _diverged(cfg, kind, diverged, ckpt, epoch, i, loss, filt):
    """Write diverged.json and raise TrainingDiverged for step i (from 0) of ``epoch``."""
    kept = f"the last good checkpoint (epoch {epoch}) is kept at {ckpt}" if epoch \
        else "no checkpoint was written yet"
    message = (f"{kind}: the loss became {loss} (filter loss {filt}) at epoch {epoch + 1}, "
               f"step {i + 1}; {kept}. Try a smaller --lr"
               + (" or a weaker filter loss (--lambda0, --lam)." if cfg.interpretable else "."))
    atomic_write_text(diverged, json.dumps(
        {"epoch": epoch + 1, "step": i + 1, "loss": str(loss), "filter_loss": str(filt),
         "message": message}, indent=1))
    raise TrainingDiverged(message)


# ---- the loop ----

def format_test_result(row):
    """The test accuracy of a history row (and for bird vs. not each class's recall); "-"
    for an epoch without a test pass (``eval_every``)."""
    if "test_acc" not in row:
        return "-"
    rec = row.get("test_recall")
    if not rec:
        return f"{row['test_acc']:.3f}"
    text = f"{row['test_acc']:.3f} (birds {rec[1]:.3f}, not {rec[0]:.3f})"
    return text + (" COLLAPSED: it calls (almost) every image one class" if has_collapsed(rec) else "")


def train_one(cfg, out_dir, data=None, resume=False, log=print, log_every=None):
    """Train one net; returns the metrics dict (also written to ``out_dir/metrics.json``).

    The logged values (losses, correct predictions, the finite check) stay on the device
    and are read every ``log_every`` steps (default ``LOG_EVERY``) and at the end of each
    epoch, one host sync each time; a NaN or inf loss stops training at that read, naming
    the step where it first appeared, before the epoch's checkpoint is written."""
    log_every = LOG_EVERY if log_every is None else log_every
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
        records = []  # the steps' device values since the last read (LOG_EVERY)

        def read_logged():  # one host sync for every step since the last read
            nonlocal task_sum, filt_sum, n_seen, n_right
            for j, size, (loss, filts, right, finite) in read_records(records):
                filt = sum(filts)
                if not finite:
                    loss = float("nan")
                if not (math.isfinite(loss) and math.isfinite(filt)):
                    _diverged(cfg, kind, diverged, ckpt, epoch, j, loss, filt)
                n_right += right
                task_sum += loss * size
                filt_sum += filt * size
                n_seen += size
            records.clear()

        for i, batch in enumerate(batches):
            record = train_step(model, criterion, opt, batch["x"], batch["labels"],
                                learning_rate(cfg, epoch * steps + i, steps), cfg.device,
                                lambda labels: loss_targets(cfg, labels))
            records.append((i, len(batch["labels"]), record))
            if len(records) >= log_every or i + 1 == steps:
                read_logged()
            progress(i + 1, steps, extra=f"loss {task_sum / max(n_seen, 1):.3f}")
        read_logged()
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
            f"test {format_test_result(row)}  {row['seconds']:.1f}s")
    metrics = {"config": asdict(cfg), "history": history,
               "final": history[-1] if history else None}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics
