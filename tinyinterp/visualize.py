"""Pictures of a run: feature maps, inference positions, templates, training curves.

``python -m tinyinterp visualize RUN`` (or :func:`visualize_runs`) loads every net under
the run folder ``RUN`` (``RUN/ordinary``, ``RUN/interpretable``) and writes PNGs into
``RUN/pictures/``:

    filters_<layer>.png     paper Fig. 1 style: rows = filters, columns = birds, each cell
                            the bird with the filter's feature map as a heat map over it;
                            the ordinary net left, the interpretable net right
    positions_<layer>.png   each filter's inference position (its argmax unit's
                            receptive-field centre, a cross) with the head, back and tail
                            landmarks as coloured dots
    templates.png           the n^2 + 1 part templates of the n x n maps (paper Fig. 3)
    curves.png              task loss, filter loss and train/test accuracy per epoch (curves.py)

where <layer> is ``top`` (the top conv) and ``new`` (the new conv above it), the layers
listed in ``model.interpretable_indices``. The maps drawn are the ReLU outputs before the
mask (those the paper's evaluation reads), for the test images unless told otherwise.

Every figure is a PIL Image drawn with ``drawing.py``'s helpers; only
:func:`visualize_runs` writes files.

Heat-map alignment: ``heatmap_overlay`` stretches an n x n map to S x S with Pillow's
bilinear resize, which puts unit i's value at pixel coordinate (i + 1/2) * S / n. That
is exactly the unit's receptive-field centre ``start + i * jump`` (vgg.receptive_field)
whenever start = jump / 2 and n * jump = S, as for small_vgg (3x3 convs with padding 1
and 2x2 pools); tests/test_visualize.py checks it.
"""
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .backend import device_of, to_device, to_numpy
from .curves import curves_figure
from .drawing import (BLACK, LABEL_H, WHITE, caption, draw_cross, draw_dot, font, grid,
                      heatmap_overlay, hstack, text_width, tile_table, vstack)
from .runs import data_key, load_data_once, load_run, net_dirs, run_folder
from .vgg import LAYER_NAMES, receptive_field

# ----------------------------------------------------------------------------- style

PART_COLOURS = {"head": (235, 30, 30), "back": (30, 200, 60), "tail": (40, 110, 255)}
CELL = 96  # side of a bird cell in pixels (toy birds are 64 px: drawn 1.5x)
# the files visualize_runs writes (train --overwrite removes them with the run's nets)
PICTURE_PATTERNS = ("filters_*.png", "positions_*.png", "templates.png", "curves.png")


# ------------------------------------------------------------------------ feature maps

def layer_maps(model, x, index):
    """The output of layer ``index`` of a Sequential for inputs ``x`` (B, 3, S, S), with
    the model in eval mode (its previous mode is restored). Returns NumPy (B, F, n, n)."""
    if not 0 <= index < len(model.layers):
        raise IndexError(f"layer_maps: index {index} outside 0..{len(model.layers) - 1}")
    params = list(model.params().values())
    if params:
        x = to_device(x, device_of(params[0]))
    was_training = model.training
    model.eval()
    try:
        return to_numpy(model.forward_keep(x, [index], to_end=False)[1][index])
    finally:
        model.train(was_training)


def pick_images(ds, images):
    """Indices into ``ds``: an int picks that many spread evenly over the set (which is
    ordered by image id, so several classes), a sequence is taken as is."""
    if isinstance(images, (int, np.integer)):
        count = min(int(images), len(ds))
        return np.unique(np.round(np.linspace(0, len(ds) - 1, count)).astype(int))
    return np.asarray(images, dtype=int)


def _layer_index(model, index_name):
    names = LAYER_NAMES[:len(model.interpretable_indices)]
    if index_name not in names:
        raise ValueError(f"index_name must be one of {list(names)}, got {index_name!r}")
    return model.interpretable_indices[names.index(index_name)]


def image_maps(model, ds, idx, mean, std, index, batch_size=32):
    """Maps (len(idx), F, n, n) of layer ``index`` for the images ``idx`` of ``ds``."""
    part = ds.subset(np.asarray(idx))
    out = [layer_maps(model, b["x"], index)
           for b in part.batches(batch_size, shuffle=False, flip=False, mean=mean, std=std)]
    return np.concatenate(out, axis=0)


def top_filters(maps, count):
    """The ``count`` filters with the largest mean (over images) max activation."""
    score = maps.reshape(maps.shape[0], maps.shape[1], -1).max(axis=2).mean(axis=0)
    return [int(f) for f in np.argsort(-score, kind="stable")[:count]]


def _choose_filters(filters, name, maps):
    if filters is None:
        return top_filters(maps, 6)
    if isinstance(filters, dict):
        filters = filters[name]
    if isinstance(filters, (int, np.integer)):
        return top_filters(maps, int(filters))
    return [int(f) for f in filters]


def mask_categories(model, index):
    """Each filter's category, read from the InterpretableMask after ``index`` (right after
    it, or after a pool between them); None without one, or when there is one category
    only (bird vs. not: every filter's)."""
    if getattr(model, "num_classes", None) == 1:
        return None
    for layer in model.layers[index + 1:]:
        cats = getattr(layer, "categories", None)
        if cats is not None:
            return to_numpy(cats)
        if layer.params:
            return None
    return None


def _conv_title(model, index, index_name):
    """'new conv (conv 8)': the layer by its place among the convs, the same in an
    ordinary net and in an interpretable one (whose masks shift the layer indices)."""
    from .layers import Conv2d

    number = sum(isinstance(layer, Conv2d) for layer in model.layers[:index + 1])
    return f"{index_name} conv (conv {number})"


def _label_notes(ds, cats_shown, notes_shown):
    """The caption's lines for the labels under "filter F" that are drawn: "cat k" with
    the classes it names, the ratio to the control and "on ring" (with an example drawn)."""
    lines = []
    if cats_shown:
        names = ", ".join(f"{k} = {_short_class(ds.class_names[k])}" for k in sorted(cats_shown))
        lines.append(f"cat k: the class the interpretable net assigned the filter to "
                     f"(the filter loss fits its templates on images of that class): {names}")
    ratios = [note.split(",")[0] for note in notes_shown]
    if ratios:
        lines.append(f"{ratios[0]}: the filter's location instability over its shuffled "
                     f"control's (below 0.8x it tracks a part)"
                     + ("; on ring: most of its top images' argmaxes sit on the map's outer ring "
                        "(the padded edge)" if any("on ring" in note for note in notes_shown) else ""))
    return lines


def _short_class(name):
    """'001.Red_Capped_Finch' -> 'Red Capped Finch'."""
    return name.split(".", 1)[-1].replace("_", " ")


def _row_label(f, maps_f, cats, notes=None):
    text = f"filter {f}\nmax {float(maps_f.max()):.3g}"
    if cats is not None:
        text += f"\ncat {int(cats[f])}"
    if notes and notes.get(f):
        text += f"\n{notes[f]}"
    return text


def _map_side(model, index, size):
    _, jump, _ = receptive_field(model, index)
    return int(round(size / jump))


def filter_figure(models, ds, mean, std, index_name="new", filters=None, images=8, cell=CELL,
                  notes=None):
    """Paper Fig. 1 style: for each net a panel, rows = filters, columns = birds, each cell
    the bird with the filter's map (after ReLU, before the mask) as a heat map over it.

    Args:
        models: dict name -> model (e.g. {"ordinary": m1, "interpretable": m2}); the
            panels are drawn left to right in this order.
        ds, mean, std: the images (a CubDataset) and the training set's normalisation.
        index_name: "top" (the top conv) or "new" (the new conv above it).
        filters: None (the 6 filters with the largest mean max activation on these
            images, per net), an int (that many such filters), a list of filter ids (the
            same for every net) or a dict name -> list.
        images: an int (spread over ``ds``) or a list of indices into ``ds``.
        notes: None or a dict name -> {filter id: one more line for its label}, e.g.
            :func:`filter_notes` (its ratio to its shuffled control, "on ring").
    Each row is scaled by its filter's largest value over the row ("max" in its label), so
    a filter that fires weakly on a bird looks dark there. "cat" is the category (class)
    the interpretable net assigned the filter to; the caption names the classes shown.
    """
    idx = pick_images(ds, images)
    col_labels = [_short_class(ds.class_names[int(ds.labels[i])]) for i in idx]
    panels, cats_shown, notes_shown = [], set(), []
    for name, model in models.items():
        index = _layer_index(model, index_name)
        maps = image_maps(model, ds, idx, mean, std, index)
        chosen = _choose_filters(filters, name, maps)
        cats = mask_categories(model, index)
        net_notes = (notes or {}).get(name) or {}
        rows, labels = [], []
        for f in chosen:
            vmax = float(maps[:, f].max())
            rows.append([heatmap_overlay(ds.images[i], maps[k, f], vmax=vmax, size=cell)
                         for k, i in enumerate(idx)])
            labels.append(_row_label(f, maps[:, f], cats, net_notes))
            if cats is not None:
                cats_shown.add(int(cats[f]))
            if net_notes.get(f):
                notes_shown.append(net_notes[f])
        n = maps.shape[-1]
        title = f"{name}: {_conv_title(model, index, index_name)}, {n}x{n} maps"
        panels.append(tile_table(rows, title, labels, col_labels))
    figure = hstack(panels, pad=24)
    lines = ["heat map: the filter's feature map (ReLU output, before any mask) over the bird, "
             "scaled per row to its largest value (max); bright = strong"]
    lines += _label_notes(ds, cats_shown, notes_shown)
    return vstack([figure, caption(lines, figure.width)], pad=2)


# -------------------------------------------------------------------- positions figure

def head_back_tail(ds, i):
    """{"head"|"back"|"tail": (x, y) or None} for image i: head = forehead, else crown."""
    where = {p: k for k, p in enumerate(ds.part_names)}
    out = {}
    for name, parts in (("head", ("forehead", "crown")), ("back", ("back",)),
                        ("tail", ("tail",))):
        out[name] = None
        for p in parts:
            k = where.get(p)
            if k is not None and ds.visible[i, k]:
                out[name] = tuple(float(v) for v in ds.landmarks[i, k])
                break
    return out


def inference_position(fmap, start, jump):
    """(x, y) in input pixels of the argmax unit's receptive-field centre, or None if the
    map is all zero (the filter does not fire)."""
    fmap = np.asarray(fmap)
    if not fmap.max() > 0:
        return None
    r, c = np.unravel_index(int(np.argmax(fmap)), fmap.shape)
    return start + c * jump, start + r * jump


def _positions_legend(width, notes=()):
    """The landmarks' and the cross's key, and ``notes`` (more lines of explanation)."""
    im = Image.new("RGB", (width, LABEL_H + 6), WHITE)
    draw = ImageDraw.Draw(im)
    small = font()
    x, y = 10, LABEL_H // 2 + 3
    for name, colour in PART_COLOURS.items():
        draw_dot(draw, (x, y), colour)
        label = "head (forehead, else crown)" if name == "head" else name
        draw.text((x + 9, y), label, fill=BLACK, font=small, anchor="lm")
        x += 9 + text_width(label, small) + 18
    draw_cross(draw, (x, y), arm=5)
    draw.text((x + 10, y), "filter's inference position", fill=BLACK, font=small, anchor="lm")
    lines = ["cross: the centre of the receptive field of the filter's strongest unit; "
             "no cross: the filter does not fire", *notes]
    return vstack([im, caption(lines, width)], pad=0)


def positions_figure(model, ds, mean, std, index_name="new", filters=6, images=8, cell=CELL,
                     title=None, notes=None):
    """Birds with each chosen filter's inference position and the head, back and tail.

    Rows = filters, columns = birds. In each cell the cross is the receptive-field centre
    (vgg.receptive_field) of the filter's argmax unit on that bird; the dots are the
    landmarks head (forehead, else crown), back and tail where visible.
    ``filters``: an int (the filters with the largest mean max activation) or ids;
    ``notes``: None or {filter id: one more line for its label} (:func:`filter_notes`).
    """
    index = _layer_index(model, index_name)
    idx = pick_images(ds, images)
    maps = image_maps(model, ds, idx, mean, std, index)
    chosen = _choose_filters(filters, None, maps)
    start, jump, _ = receptive_field(model, index)
    scale = cell / ds.size
    cats = mask_categories(model, index)
    birds = [Image.fromarray(ds.images[i]).resize((cell, cell), Image.BICUBIC) for i in idx]
    rows, labels = [], []
    for f in chosen:
        row = []
        for k, i in enumerate(idx):
            tile = birds[k].copy()
            draw = ImageDraw.Draw(tile)
            for name, xy in head_back_tail(ds, i).items():
                if xy is not None:
                    draw_dot(draw, (xy[0] * scale, xy[1] * scale), PART_COLOURS[name])
            pos = inference_position(maps[k, f], start, jump)
            if pos is not None:
                draw_cross(draw, (pos[0] * scale, pos[1] * scale), side=cell)
            row.append(tile)
        rows.append(row)
        labels.append(_row_label(f, maps[:, f], cats, notes))
    n = maps.shape[-1]
    title = title or f"{_conv_title(model, index, index_name)}, {n}x{n} maps"
    col_labels = [_short_class(ds.class_names[int(ds.labels[i])]) for i in idx]
    panel = tile_table(rows, title, labels, col_labels)
    explained = _label_notes(ds, set() if cats is None else {int(cats[f]) for f in chosen},
                             [notes[f] for f in chosen if notes and notes.get(f)])
    return vstack([panel, _positions_legend(panel.width, explained)], pad=2)


# ---------------------------------------------------------------------- templates figure

def templates_figure(n=8, tile=None, pad=4):
    """All n^2 + 1 templates (paper Fig. 3) as grey tiles, n per row, T^- last.

    White is +tau, mid-grey 0, black -tau. A tile is ``tile`` px (default n * ceil(48 / n),
    nearest-neighbour so each map cell stays a square); size as grid() computes it.
    """
    from .templates import default_tau, templates

    tile = tile or n * math.ceil(48 / n)
    tau = default_tau(n)
    t = np.asarray(templates(n), dtype=np.float64)
    grey = np.round((np.clip(t / tau, -1, 1) + 1) * 127.5).astype(np.uint8)
    tiles = [Image.fromarray(g).resize((tile, tile), Image.NEAREST).convert("RGB")
             for g in grey]
    labels = [f"({k // n},{k % n})" for k in range(n * n)] + ["T-"]
    title = (f"part templates of a {n}x{n} map\nT_mu at mu = (row, col), then T-\n"
             "white +tau, mid-grey 0, black -tau")
    return grid(tiles, cols=n, pad=pad, labels=labels, title=title)


# --------------------------------------------------------------------------- top level

def _evaluated_layer(run_root, net, layer):
    """``net``'s ``layer`` ("top"/"new") from ``run_root``'s evaluation.json, or None."""
    path = Path(run_root) / "evaluation.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(net, {}).get("layers", {}).get(layer) or None


def _ratios(entry):
    """[(instability / control, filter)] of the filters an evaluation compared."""
    return [(a / c, f) for f, (a, c) in enumerate(zip(entry["per_filter"], entry["per_filter_control"]))
            if a is not None and c]


def filters_below_control(run_root, net, layer, count):
    """The ``count`` filters of ``net``'s ``layer`` ("top"/"new") furthest below their own
    shuffled control (lowest instability / control), read from ``run_root``'s
    evaluation.json; None when it is not there or holds no such layer."""
    entry = _evaluated_layer(run_root, net, layer)
    if not entry:
        return None
    return [f for _, f in sorted(_ratios(entry))[:count]] or None


def filter_notes(run_root, net, layer):
    """{filter: "0.62x ctl"} for every filter ``evaluate`` compared with its control, with
    ", on ring" where at least half of its top-K images have their argmax on the map's
    outer ring (it follows a part's row or column at the padded edge, not the part);
    {} without an evaluation."""
    entry = _evaluated_layer(run_root, net, layer)
    if not entry:
        return {}
    ring = entry.get("per_filter_border") or [None] * len(entry["per_filter"])
    return {f: f"{r:.2f}x ctl" + (", on ring" if ring[f] is not None and ring[f] >= 0.5 else "")
            for r, f in _ratios(entry)}


def visualize_runs(run_root, out=None, split="test", device="cpu", images=8, filters=6, data=None):
    """Draw every picture of a run folder and write PNGs; returns the list of paths.

    Writes into ``out`` (default ``run_root/pictures``): filters_<layer>.png and
    positions_<layer>.png for each interpretable layer (top, new), templates.png (for the
    maps' side n) and curves.png. The birds are ``images`` images of ``split``, spread
    over its classes (for bird vs. not: its birds only). ``filters`` filters per net: the
    ones furthest below their shuffled control where ``run_root/evaluation.json`` exists
    (``evaluate`` writes it), each labelled with that ratio and, where it follows a part at
    the padded edge, "on ring" (:func:`filter_notes`); else those with the largest mean
    max activation. ``data``:
    as for ``evaluate.evaluate_runs``, {data_key(cfg): load_data(cfg)} already loaded.
    """
    run_root = run_folder(run_root)
    # not the stage-1 net (pretrained/): beside the fine-tuned nets its maps only repeat the ordinary's
    nets = net_dirs(run_root, pretrained=False)
    if not nets:
        raise FileNotFoundError(f"visualize_runs: no <net>/checkpoint.npz under {run_root}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out = Path(out) if out is not None else run_root / "pictures"
    out.mkdir(parents=True, exist_ok=True)
    loaded, shown = {}, {}
    data = {} if data is None else data
    for name, d in nets.items():
        model, cfg, _ = load_run(d, device)
        key = data_key(cfg)
        if key not in shown:
            _, train, test, mean, std = load_data_once(cfg, data)
            ds = train if split == "train" else test
            if cfg.task == "bird":
                ds = ds.subset(ds.labels == 1)  # the parts are on the birds
            shown[key] = (ds, mean, std)
        loaded[name] = (model, key)
    paths = []

    def save(image, filename):
        path = out / filename
        image.save(path, format="PNG")
        paths.append(path)

    groups = {}
    for name, (model, key) in loaded.items():
        groups.setdefault(key, {})[name] = model
    for g, (key, models) in enumerate(groups.items()):
        ds, mean, std = shown[key]
        suffix = "" if len(groups) == 1 else f"_data{g}"
        depth = min(len(m.interpretable_indices) for m in models.values())
        for index_name in LAYER_NAMES[:depth]:
            chosen = {name: filters_below_control(run_root, name, index_name, filters) or filters
                      for name in models}
            notes = {name: filter_notes(run_root, name, index_name) for name in models}
            save(filter_figure(models, ds, mean, std, index_name, filters=chosen, images=images,
                               notes=notes if any(notes.values()) else None),
                 f"filters_{index_name}{suffix}.png")
            panels = [positions_figure(m, ds, mean, std, index_name, filters=chosen[name],
                                       images=images, notes=notes[name], title=f"{name}: "
                                       f"{_conv_title(m, _layer_index(m, index_name), index_name)}")
                      for name, m in models.items()]
            save(hstack(panels, pad=24), f"positions_{index_name}{suffix}.png")
    model = next(iter(loaded.values()))[0]
    size = shown[next(iter(loaded.values()))[1]][0].size
    save(templates_figure(_map_side(model, model.interpretable_indices[0], size)),
         "templates.png")
    save(curves_figure(run_root), "curves.png")
    return paths


def add_visualize_parser(sub):
    """Add ``visualize RUN [--out DIR] [--images 8] [--filters 6] [--split test]
    [--device cpu]`` to an argparse subparsers object."""
    from .cli import add_parser, positive_int

    p = add_parser(sub, "visualize", help="draw feature maps, positions, templates and curves "
                   "of a run folder as PNGs")
    p.add_argument("run", help="run folder (holds ordinary/ and interpretable/)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/pictures)")
    p.add_argument("--images", type=positive_int, default=8, metavar="N", help="birds per figure")
    p.add_argument("--filters", type=positive_int, default=6, metavar="N", help="filters per net")
    p.add_argument("--split", choices=["train", "test"], default="test", help="the birds drawn")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the nets run")
    p.set_defaults(func=cmd_visualize)
    return p


def cmd_visualize(args):
    paths = visualize_runs(args.run, out=args.out, split=args.split, device=args.device,
                           images=args.images, filters=args.filters)
    for path in paths:
        print(path)
    return 0
