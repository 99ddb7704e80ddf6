"""``python -m tinyinterp train``: the command line of training. It checks the arguments
before anything is loaded, fills the recipe's defaults (recipes.py), runs the paper's
two-stage protocol with ``train.train_one`` for each net, and writes the run's report
(evaluation and pictures). The command line never replaces a run folder that holds a
trained net unless asked (``--resume`` or ``--overwrite``), and removes a folder's old
evaluation and pictures before it trains: they described other weights. Ctrl-C prints
the command that resumes.
"""
import argparse
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

from .backend import device_module
from .checkpoint import load_checkpoint
from .cli import (Interrupted, UsageError, UserError, add_parser, nonnegative_float, nonnegative_int,
                  positive_float, positive_int)
from .evaluate import evaluate_runs, evaluation_files, format_table
from .filter_loss import AUTHORS_TEMPERATURE
from .metrics import PROTOCOLS
from .recipes import RECIPES, apply_recipe, mask_options_from
from .runs import TrainConfig, data_key, load_data, net_dirs
from .templates import BETA
from .train import TrainingDiverged, format_test_result, train_one
from .vgg import input_step
from .visualize import PICTURE_PATTERNS, visualize_runs


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
                   help=f"input side in pixels, a multiple of {input_step(d.widths)} with the default --widths")
    p.add_argument("--task", choices=["species", "bird"], default=d.task,
                   help="species: one class per species (softmax); bird: the paper's CUB "
                        "setting, every bird against non-bird images (one logistic output, "
                        "all filters in one category)")
    p.add_argument("--negatives", metavar="DIR",
                   help="bird task: a folder of non-bird images, used whole "
                        "(default: background crops from the birds' own photos)")
    p.add_argument("--crop", choices=["box", "whole"], default=d.crop,
                   help="input: the bird's box enlarged by --crop-margin (as the paper's CUB "
                        "protocol) or the whole image")
    p.add_argument("--crop-margin", type=nonnegative_float, default=d.crop_margin, metavar="F",
                   help="the box crop's margin on each side, a fraction of the box's width "
                        "(left, right) and height (top, bottom)")
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
    p.add_argument("--widths", type=positive_int, nargs="+", default=d.widths, metavar="C",
                   help="channels of the conv blocks, each two 3x3 convs and a 2x2 pool (default: "
                        f"{' '.join(map(str, d.widths))}); a fourth block ('32 64 128 128') makes the "
                        "net deeper and doubles what each top-conv unit sees (--size then a "
                        "multiple of 32). With --pretrained, give that net's widths")
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
                        "species is fine-tuned as bird vs. not with a fresh head)"
                        + _per_task("pretrain_task"))
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
    g.add_argument("--mask-beta", type=positive_float, metavar="BETA",
                   help="the templates' slope beta (argmax mask): the mask keeps the cells "
                        "within n / beta of mu_hat (L1, n the map's side); 2 keeps a diamond "
                        f"twice as wide (default: {BETA:g}, the paper's)")
    g.add_argument("--inner-parts", action="store_true",
                   help="the mask's part position is the argmax over the cells off the map's "
                        "outer ring (ours, not the paper's; argmax mask and the authors' rule)")
    g.add_argument("--authors-temperature", type=positive_float, metavar="A",
                   help="the authors' rule's temperature: it weighs the images by e^(strength / A); "
                        "a net whose maps are k times larger is pushed at k A as the original at A "
                        f"(default: {AUTHORS_TEMPERATURE:g}, the code's)")
    g.add_argument("--filter-decay", action=argparse.BooleanOptionalAction,
                   help="divide the filter loss's strength by the epoch t, as the paper's lambda_t "
                        "and the authors' rule do; --no-filter-decay holds it at its first epoch's "
                        "(ours; held, a strong rule can run away: docs/paper.md, the filter loss's decay)"
                        + _per_task("filter_decay", lambda v: "on" if v else "off"))
    p.set_defaults(func=cmd_train)


def check_train_args(args):
    """Refuse bad arguments (UsageError) and a run folder not to be replaced (UserError)
    before anything is loaded or made. Fills in the recipe's defaults."""
    apply_recipe(args)
    if getattr(args, "mask_beta", None) is not None and (args.mask != "argmax" or args.learn_beta):
        raise UsageError("--mask-beta sets the argmax mask's fixed slope: not with --mask centroid "
                         "or --learn-beta (they set their own)")
    if getattr(args, "inner_parts", False) and (args.mask != "argmax" or args.filter_loss != "authors"):
        raise UsageError("--inner-parts moves the argmax mask that the authors' rule reads: only with "
                         "--mask argmax and --filter-loss authors")
    if getattr(args, "authors_temperature", None) is not None and args.filter_loss != "authors":
        raise UsageError("--authors-temperature is the authors' rule's: only with --filter-loss authors")
    if args.filter_decay is False and args.filter_loss != "authors" and args.lam is not None:
        raise UsageError("--no-filter-decay: a fixed --lam with the exact or the paper's loss does not "
                         "decay; it stops the lambda_t schedule (leave --lam out) or the authors' rule's")
    if args.shift >= args.size:
        raise UsageError(f"--shift {args.shift} must be below --size {args.size}: each image moves by "
                         "up to --shift pixels inside its own frame")
    step = input_step(args.widths)
    if args.size % step:
        raise UsageError(f"--size {args.size}: the small VGG with {len(args.widths)} blocks takes "
                         f"multiples of {step} (it halves its input {len(args.widths) + 1} times)")
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
        _, meta = load_checkpoint(args.pretrained)  # a corrupt one fails here, before anything is made
        widths = meta.get("config", {}).get("widths")
        if widths is not None and list(widths) != list(args.widths):
            raise UsageError(f"--pretrained {args.pretrained} has conv blocks of {' '.join(map(str, widths))} "
                             f"channels, --widths asks for {' '.join(map(str, args.widths))}: give "
                             f"--widths {' '.join(map(str, widths))}")


# what evaluate writes, by either protocol, with the images in place or moved ("-shift*",
# as glob patterns): gone with the weights they describe
REPORT_FILES = tuple(name for protocol in PROTOCOLS for shift in (0, "*")
                     for name in evaluation_files(protocol, shift))


def clear_run(out, nets=False, keep=None):
    """Remove what ``report`` wrote into the run folder ``out`` (the evaluation and the
    pictures) and, with ``nets``, every net folder (a subfolder with a checkpoint.npz)
    but the one holding the file ``keep`` (a --pretrained checkpoint). Nothing else in
    ``out`` is touched."""
    out = Path(out)
    if nets:
        for folder in net_dirs(out).values():
            if keep is None or folder.resolve() != Path(keep).resolve().parent:
                shutil.rmtree(folder)
    for pattern in REPORT_FILES:
        for path in out.glob(pattern):
            path.unlink()
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
                       size=args.size, crop=crop, crop_margin=args.crop_margin, task=args.task,
                       negatives=args.negatives,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       eval_every=args.eval_every, seed=args.seed, device=args.device,
                       padding_mode=args.padding_mode, lr_schedule=args.lr_schedule,
                       mask_after_pool=args.mask_after_pool, shift=args.shift, widths=list(args.widths),
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
            f"{k} {format_test_result(v)}" for k, v in summary.items()))
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
              f"{int((test.labels == 0).sum())} test at {cfg.size} px ({crop_words(cfg)})")
        print(f"  {read_report(r)}; negatives: {negatives_report(r['negatives'])}")
    else:
        print(f"data: {folder}: {len(ds.class_ids)} classes, {len(train)} train / "
              f"{len(test)} test images at {cfg.size} px ({crop_words(cfg)}); {read_report(ds.report)}")


def crop_words(cfg):
    """The crop in words: "box crop, margin 10%" or "whole crop"."""
    return f"box crop, margin {cfg.crop_margin:.0%}" if cfg.crop == "box" else f"{cfg.crop} crop"


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
    data = {} if data is None else data
    print("\n" + format_table(evaluate_runs(run_root, device=device, data=data)))
    paths = visualize_runs(run_root, device=device, data=data)
    print(f"\nwrote {Path(run_root) / 'evaluation.json'}, evaluation.txt and {len(paths)} "
          f"pictures in {Path(run_root) / 'pictures'}")
