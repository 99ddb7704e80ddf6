"""Evaluating trained nets: accuracy and location instability with its controls and
reference values, for one net (:func:`evaluate_model`) or every net of a run folder
(:func:`evaluate_runs`, ``python -m tinyinterp evaluate RUN``), and the table that prints
them. The metric itself, its controls and the landmark choices are in ``metrics.py``.

Use::

    res = evaluate_model(model, test, mean, std)      # one net
    results = evaluate_runs("runs/toy_birds")         # every net in a run folder
    print(format_table(results))
"""
import json
import math
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_text
from .metrics import (PROTOCOLS, authors_sample, border_share, centre_share, collect_maps,
                      landmark_groups, location_instability, part_offsets, reference_values,
                      shuffled_control, top_k_border_share, tracking_counts, unit_centres)
from .predictions import collect_predictions
from .runs import load_data_once, load_run, net_dirs, run_folder
from .vgg import LAYER_NAMES, receptive_field

# ----------------------------------------------------------------------------- one model

def _jsonable(obj):
    """Plain Python for json: arrays -> lists, NumPy scalars -> Python, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def evaluate_model(model, ds, mean, std, device="cpu", top_k=100, seed=0, batch_size=64,
                   protocol="ours"):
    """Accuracy and location instability (with controls) of ``model`` on ``ds``.

    ``protocol``: "ours" measures every image of ``ds`` on head, back and tail; "authors"
    the fixed sample :func:`authors_sample` of ``ds`` on back, forehead and tail (then
    "accuracy" and "images" are the sample's).
    ``model`` must already live on ``device``. Returns a JSON-able dict:
        accuracy, images, top_k, seed, diagonal, landmarks (names), visible_images
        (per landmark), layers: {"top": {...}, "new": {...}}, reference: {...}.
    Each layer holds: index, n, receptive_field, instability, control, ratio (to control),
    centre_share, border_share, tracking (below_0.8 / below_0.9 / compared / min_ratio),
    offset (:func:`part_offsets`: the tracking filters' distance to the part they follow
    and how many of them sit on the outer ring), dead_filters, dropped_filters, filters,
    per_landmark and control_per_landmark (by name), per_filter and per_filter_control
    (None for dropped filters), per_filter_border (:func:`top_k_border_share`).
    Undefined values (NaN) are None.
    """
    if protocol == "authors":
        ds = ds.subset(authors_sample(len(ds)))
    landmarks3, visible3, names = landmark_groups(ds, protocol)
    maps = collect_maps(model, ds, mean, std, device=device, batch_size=batch_size)
    h, w = ds.images.shape[1:3]
    diagonal = math.hypot(h, w)
    layers, grid = {}, None
    for j, index in enumerate(model.interpretable_indices):
        name = LAYER_NAMES[j] if j < len(LAYER_NAMES) else f"layer{index}"
        m = maps["layers"][index]
        start, jump, size = receptive_field(model, index)
        positions = unit_centres(m["units"], start, jump)
        inst = location_instability(positions, m["max"], landmarks3, visible3, None, diagonal, top_k)
        ctrl = shuffled_control(positions, m["max"], landmarks3, visible3, None, diagonal, top_k,
                                seed=seed)
        ratio = inst["value"] / ctrl["value"] if ctrl["value"] > 0 else float("nan")
        ring = top_k_border_share(m["units"], m["max"], m["n"], top_k)
        layers[name] = {
            "index": int(index), "n": m["n"],
            "receptive_field": {"start": start, "jump": jump, "size": size},
            "instability": inst["value"], "control": ctrl["value"], "ratio": ratio,
            "centre_share": centre_share(m["units"], m["n"], m["max"] > 0),
            "border_share": border_share(m["units"], m["n"], m["max"] > 0),
            "tracking": tracking_counts(inst["per_filter"], ctrl["per_filter"]),
            "offset": part_offsets(inst, ctrl, ring_share=ring),
            "dead_filters": inst["dead_filters"], "dropped_filters": inst["dropped_filters"],
            "filters": inst["filters"],
            "per_landmark": dict(zip(names, inst["per_landmark"])),
            "control_per_landmark": dict(zip(names, ctrl["per_landmark"])),
            "per_filter": inst["per_filter"], "per_filter_control": ctrl["per_filter"],
            "per_filter_border": ring,
        }
        if grid is None:
            grid = (m["n"], start, jump)
    reference = None
    if grid is not None:
        ref = reference_values(landmarks3, visible3, *grid, diagonal, top_k=top_k, seed=seed)
        for key in ("landmark_oracle", "landmark_oracle_own", "landmark_oracle_distance", "landmark_on_ring"):
            ref[key] = dict(zip(names, ref[key]))  # per landmark, by name
        ref["grid"] = {"n": grid[0], "start": grid[1], "jump": grid[2]}
        reference = ref
    n_img = len(ds)
    return _jsonable({
        "accuracy": float((maps["pred"] == maps["labels"]).mean()) if n_img else float("nan"),
        "correct": int((maps["pred"] == maps["labels"]).sum()), "images": n_img,
        "top_k": int(top_k), "seed": int(seed), "diagonal": diagonal, "protocol": protocol,
        "landmarks": list(names),
        "visible_images": dict(zip(names, visible3.sum(axis=0).tolist())),
        "layers": layers, "reference": reference,
    })


# --------------------------------------------------------------------------------- table

def _f(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def format_table(results_by_net):
    """Plain-text table: one row per (net, layer), then the reference values (printed once
    per distinct set; nets evaluated on the same images share them)."""
    head = ("net", "layer", "acc", "instab.", "control", "ratio", "centre", "border", "<0.8x ctl",
            "<0.9x ctl", "dist", "ring", "dropped")
    rows = []
    for net, res in results_by_net.items():
        for layer, r in res["layers"].items():
            t = r["tracking"]
            rows.append((net, layer, _f(res["accuracy"]), _f(r["instability"]), _f(r["control"]),
                         _f(r["ratio"]), _f(r["centre_share"], ".2f"),
                         _f(r.get("border_share"), ".2f"),
                         f"{t['below_0.8']}/{t['compared']}", f"{t['below_0.9']}/{t['compared']}",
                         _f((r.get("offset") or {}).get("mean_distance")),
                         _f((r.get("offset") or {}).get("on_ring"), "d"),
                         str(r["dropped_filters"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    out += ["",
            "instab.: location instability (std over each filter's top-K images of the "
            "landmark distance / diagonal;",
            "  mean over landmarks, then filters; dead and undefined filters dropped). "
            "control: the same with each",
            "  filter's positions shuffled among its own top-K images. ratio = instab. / "
            "control. centre: share of",
            "  argmaxes in the central quarter of the map; border: on its outer ring (the zero "
            "padding's reach).",
            "  <0.8x / <0.9x ctl: filters below that fraction of their",
            "  own control, of those compared; only < 0.8x counts as tracking a part. dist: "
            "mean distance / diagonal",
            "  from a tracking filter's inferred position to the landmark it follows best "
            "(near the landmark oracle's",
            "  distance: it sits on the part; far: it follows the part from an offset). ring: how many "
            "tracking filters",
            "  put at least half of their top-K argmaxes on the outer ring (a part's row or column "
            "at the padded edge)."]
    accuracy_notes = [f"  {net}: {res['accuracy_note']}" for net, res in results_by_net.items()
                      if res.get("accuracy_note")]
    if accuracy_notes:
        out += ["", "acc:"] + accuracy_notes
    groups = []  # [(reference, [nets], a result)] for each distinct set of reference values
    for net, res in results_by_net.items():
        ref = res.get("reference")
        if ref is None:
            continue
        for g in groups:
            if g[0] == ref:
                g[1].append(net)
                break
        else:
            groups.append((ref, [net], res))
    for ref, nets, res in groups:
        grid = ref["grid"]
        vis = ", ".join(f"{k} {v}" for k, v in res["visible_images"].items())
        names = "/".join(res["landmarks"])
        whose = f" (for {', '.join(nets)})" if len(groups) > 1 else ""
        rows = [("random argmax", _f(ref["random_argmax"])),
                (f"fixed unit: mean over units / best {tuple(ref['best_unit'])} / centre "
                 f"{tuple(ref['centre_unit'])}",
                 " / ".join(_f(ref[k]) for k in ("fixed_unit_mean", "fixed_unit_best",
                                                  "fixed_unit_centre"))),
                (f"landmark oracle ({names}), all landmarks",
                 " / ".join(_f(v) for v in ref["landmark_oracle"].values())),
                (f"landmark oracle ({names}), its own landmark",
                 " / ".join(_f(v) for v in ref["landmark_oracle_own"].values())),
                (f"landmark oracle ({names}), mean distance to its landmark",
                 " / ".join(_f(v) for v in (ref.get("landmark_oracle_distance") or {}).values())
                 or "-"),
                (f"landmark on the map's outer ring ({names}), share of images",
                 " / ".join(_f(v, ".2f") for v in (ref.get("landmark_on_ring") or {}).values())
                 or "-"),
                ("centre share of a uniform argmax", _f(ref["uniform_centre_share"], ".2f")),
                ("border share of a uniform argmax", _f(ref.get("uniform_border_share"), ".2f"))]
        width = max(len(r[0]) for r in rows)
        out += ["", f"reference values{whose}: no network; {res['images']} {res.get('split', '')}"
                f"{' ' if res.get('split') else ''}images, top-K "
                f"{res['top_k']}, {grid['n']}x{grid['n']} grid; visible: {vis}"]
        out += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- run folder

def evaluation_files(protocol="ours", shift=0):
    """The report's file names: evaluation.json / .txt, or evaluation-authors.json / .txt;
    with the test images moved (``shift`` > 0) "-shift<N>" before the suffix."""
    stem = "evaluation" if protocol == "ours" else f"evaluation-{protocol}"
    stem += f"-shift{shift}" if shift else ""
    return f"{stem}.json", f"{stem}.txt"


def evaluated_nets(root):
    """The net folders ``evaluate_runs`` measures in the run folder ``root``: each subfolder
    holding ``checkpoint.npz`` (ordinary first, then interpretable, then others by name),
    and ``root`` itself first when it holds one."""
    root = run_folder(root)
    dirs = list(net_dirs(root).values())
    if (root / "checkpoint.npz").is_file():
        dirs.insert(0, root)
    if not dirs:
        raise FileNotFoundError(f"{root}: no checkpoint.npz in it or in any subfolder")
    return dirs


def evaluate_runs(run_root, split="test", device="cpu", top_k=100, seed=0, data=None,
                  protocol="ours", shift=0):
    """Evaluate every net in ``run_root``: each subfolder holding ``checkpoint.npz``
    (ordinary first, then interpretable, then others by name; ``run_root`` itself when it
    holds one). Each net is evaluated on ``split`` of its own config's data, normalised with
    its training split's mean/std. Writes ``evaluation.json`` and ``evaluation.txt`` into
    ``run_root`` (atomically) and returns {net: evaluate_model result} (each with "split"
    and "run_dir" added).

    Bird vs. not (``task="bird"``): filters are measured on the split's birds only (the
    negatives have no parts); "accuracy" is over all of the split's images, and "recall"
    gives each class's ({"bird": .., "not a bird": ..}).

    ``data``: an optional dict {data_key(cfg): load_data(cfg)} of data already loaded; what
    is loaded here is added to it (``train`` hands the report its data this way).
    ``protocol="authors"`` (:func:`evaluate_model`) writes evaluation-authors.json / .txt.
    ``shift`` > 0 moves each image of the split (and its landmarks) by up to that many
    pixels (``CubDataset.moved``, drawn by ``seed``) and writes evaluation-shift<N>.json:
    a tracking filter that follows a part keeps tracking it; one that follows the crop's
    frame (the map's outer ring) does not."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(run_root)
    data_cache, results = ({} if data is None else data), {}
    for run_dir in evaluated_nets(root):
        model, cfg, _meta = load_run(run_dir, device)
        _ds, train, test, mean, std = load_data_once(cfg, data_cache)
        ds = train if split == "train" else test
        if shift:
            ds = ds.moved(shift, seed)
        if cfg.task == "bird":
            res = _evaluate_bird_task(model, ds, mean, std, device, top_k, seed, protocol)
        else:
            res = evaluate_model(model, ds, mean, std, device=device, top_k=top_k, seed=seed,
                                 protocol=protocol)
        res["split"], res["run_dir"], res["task"], res["shift"] = split, str(run_dir), cfg.task, shift
        results[run_dir.name] = res
    json_name, txt_name = evaluation_files(protocol, shift)
    atomic_write_text(root / json_name, json.dumps(results, indent=1, allow_nan=False))
    atomic_write_text(root / txt_name, format_table(results) + "\n")
    return results


def _evaluate_bird_task(model, ds, mean, std, device, top_k, seed, protocol="ours"):
    """evaluate_model on the birds of ``ds``, with the accuracy and each class's recall
    over all of ``ds`` (birds and non-birds)."""
    birds, others = ds.subset(ds.labels == 1), ds.subset(ds.labels == 0)
    res = evaluate_model(model, birds, mean, std, device=device, top_k=top_k, seed=seed,
                         protocol=protocol)
    # evaluate_model's accuracy on the birds alone is their recall (unless it measured a
    # sample of them); the non-birds still need a forward pass
    right_birds = res["correct"] if res["images"] == len(birds) else \
        int((collect_predictions(model, birds, mean, std, device) == 1).sum())
    right_others = int((collect_predictions(model, others, mean, std, device) == 0).sum())
    res["accuracy"] = (right_birds + right_others) / len(ds) if len(ds) else None
    res["correct"], res["accuracy_images"] = right_birds + right_others, len(ds)
    recall = {"not a bird": right_others / len(others) if len(others) else None,
              "bird": right_birds / len(birds) if len(birds) else None}
    res["recall"] = recall
    res["negatives"] = len(others)
    res["accuracy_note"] = (f"bird vs. not over {len(ds)} images (recall: birds "
                            f"{_f(recall.get('bird'))}, non-birds {_f(recall.get('not a bird'))}); "
                            f"filters measured on {res['images']} of the {len(birds)} birds")
    return res


# ---------------------------------------------------------------------------- command line

def add_evaluate_parser(sub):
    """Add ``evaluate RUN [--split] [--top-k] [--device] [--seed] [--protocol] [--shift]`` to ``sub``."""
    from .cli import add_parser, int_at_least, nonnegative_int

    p = add_parser(sub, "evaluate", help="accuracy and location instability (with controls) "
                                         "of every net in a run folder")
    p.add_argument("run", help="run folder (holding ordinary/, interpretable/, ...)")
    p.add_argument("--split", choices=["test", "train"], default="test", help="the images measured")
    p.add_argument("--top-k", type=int_at_least(2), default=100, metavar="K",
                   help="images per filter and landmark")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the nets run")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the controls and references")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="ours",
                   help="ours: every test image, head (forehead, else crown), back, tail -> "
                        "evaluation.json; authors: back, forehead, tail on a fixed sample of 2,000 "
                        "test images, as the authors' code -> evaluation-authors.json")
    p.add_argument("--shift", type=nonnegative_int, default=0, metavar="PIXELS",
                   help="move each image and its landmarks by up to PIXELS (drawn by --seed; the "
                        "uncovered side takes the edge pixels) -> evaluation-shift<PIXELS>.json: "
                        "does a tracking filter follow the part or the crop's frame?")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args):
    from .cli import UsageError

    for folder in evaluated_nets(args.run) if args.shift else []:
        size = load_run(folder)[1].size
        if args.shift >= size:  # before any image is loaded or moved
            raise UsageError(f"--shift {args.shift} must be below the input size: {folder} takes "
                             f"{size} px images")
    results = evaluate_runs(args.run, split=args.split, device=args.device,
                            top_k=args.top_k, seed=args.seed, protocol=args.protocol, shift=args.shift)
    print(format_table(results))
    json_name, txt_name = evaluation_files(args.protocol, args.shift)
    print(f"\nwrote {Path(args.run) / json_name} and {txt_name}")
    return 0
