"""Training curves of a run folder: task loss, filter loss and accuracy per epoch, one
line per net, read from each net's metrics.json (or, for an unfinished run, its
checkpoint). ``visualize`` writes the figure as curves.png.
"""
import json
from pathlib import Path

from PIL import Image, ImageDraw

from .checkpoint import load_checkpoint
from .drawing import BLACK, GREY, WHITE, font, hstack, plot, text_width, vstack
from .runs import net_dirs

NET_COLOURS = {"ordinary": (31, 119, 180), "interpretable": (230, 110, 10)}
OTHER_COLOURS = [(44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _history(net_dir):
    """(per-epoch rows, config) from metrics.json, else from the checkpoint (an unfinished run)."""
    metrics = Path(net_dir) / "metrics.json"
    if metrics.exists():
        saved = json.loads(metrics.read_text())
        return saved["history"], saved.get("config", {})
    meta = load_checkpoint(Path(net_dir) / "checkpoint.npz")[1]
    return meta.get("history", []), meta.get("config", {})


def _epoch_offset(config, histories):
    """A fine-tuned net's epochs continue those of the run it started from (init_from),
    when that run is a sibling folder (the two-stage protocol's ``pretrained/``)."""
    init = config.get("init_from")
    parent = Path(init).parent.name if init else None
    return len(histories[parent][0]) if parent in histories else 0


def _net_colour(name, k):
    return NET_COLOURS.get(name, OTHER_COLOURS[k % len(OTHER_COLOURS)])


def _net_width(k, count):
    """The first net's lines wide, the others' narrow: drawn first, the wide line shows
    around a narrow one that follows the same values (two nets fine-tuned alike)."""
    return 5 if k == 0 and count > 1 else 2


def curves_figure(run_root):
    """Training curves of every net under ``run_root``: task loss, filter loss (nets with
    interpretable layers only) and train (dashed) / test (solid) accuracy per epoch."""
    histories = {name: _history(d) for name, d in net_dirs(run_root).items()}
    if not histories:
        raise FileNotFoundError(f"curves_figure: no <net>/checkpoint.npz under {run_root}")
    task, filt, acc = [], [], []
    for k, (name, (hist, config)) in enumerate(histories.items()):
        c, w = _net_colour(name, k), _net_width(k, len(histories))
        offset = _epoch_offset(config, histories)
        xs = [row["epoch"] + offset for row in hist]
        task.append((xs, [row["task_loss"] for row in hist], c, False, w))
        if any(row.get("lambda") for row in hist):
            filt.append((xs, [row["filter_loss"] for row in hist], c, False, w))
        acc.append((xs, [row["train_acc"] for row in hist], c, True, w))
        tested = [row for row in hist if "test_acc" in row]  # see TrainConfig.eval_every
        acc.append(([row["epoch"] + offset for row in tested], [row["test_acc"] for row in tested], c,
                    False, w))
    plots = [plot(task, "task loss (cross-entropy)"),
             plot(filt, "filter loss (summed, before lambda)", empty="no interpretable net"),
             plot(acc, "accuracy: test solid, train dashed", ylim=(0, 1))]
    body = hstack(plots, pad=10)
    legend = Image.new("RGB", (body.width, 26), WHITE)
    draw = ImageDraw.Draw(legend)
    small = font()
    x = 12
    for k, name in enumerate(histories):
        c, w = _net_colour(name, k), _net_width(k, len(histories))
        r = 2 + w // 2  # as plot draws it
        draw.line((x, 13, x + 22, 13), fill=c, width=w)
        draw.ellipse((x + 11 - r, 13 - r, x + 11 + r, 13 + r), fill=c)
        label = f"{name} ({len(histories[name][0])} epochs)"
        draw.text((x + 28, 13), label, fill=BLACK, font=small, anchor="lm")
        x += 28 + text_width(label, small) + 24
    draw.text((body.width - 8, 13), Path(run_root).name, fill=GREY, font=small, anchor="rm")
    return vstack([legend, body], pad=0)
