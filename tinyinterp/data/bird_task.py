"""The paper's CUB task: bird vs. not (a single category; paper Sec. 5, Table 5).

Every selected CUB image gives one *positive*: its box crop (+10%, as
:func:`~tinyinterp.data.load_cub` with ``crop="box"``), label 1, with its landmarks.
The *negatives*, label 0, come from one of two sources:

- **background crops** (default): from each photo, the largest square that does not touch
  the bird's box enlarged by ``neg_margin`` (5%) on every side, but no larger than the
  positive crop (the geometric mean of its width and height), so that scale or blur
  cannot tell the classes apart. A square that misses a rectangle lies wholly to its
  left, right, top or bottom (two axis-aligned rectangles are disjoint exactly when one
  axis separates them), so the largest such square is the largest of the four strips'
  squares. It is centred in its strip. Photos whose square would be smaller than
  ``min_fraction`` of the photo's longer side give no negative (they are counted);
- **a folder of images** (``negatives=DIR``, as the authors' code used 1000 fixed
  non-bird images): every image under DIR, whole, stretched to size x size, split into
  train / test by a hash of its path (deterministic, about half each).

A background negative keeps its photo's official split, so no test photo's pixels are
seen in training. Negatives have no landmarks (all invisible); evaluation of filters
uses the positives only.

``report["negatives"]`` counts what was made and skipped and compares the crops' sides
(in the photos' own pixels) with the positives'.
"""
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from .cub import CubFormatError, build_dataset, decode_rgb, load_args
from .dataset import CubDataset

CLASS_NAMES = ("not a bird", "bird")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def background_square(box, width, height, neg_margin=0.05, max_side=None):
    """The largest axis-aligned square inside the [0, width] x [0, height] photo that does
    not touch ``box`` = (x, y, w, h) enlarged by ``neg_margin`` times its width (left and
    right) and height (top and bottom). Returns (x0, y0, x1, y1) or None when no square
    fits. ``max_side`` caps the side; the square is centred in its strip."""
    x, y, w, h = box
    bx0, by0 = x - neg_margin * w, y - neg_margin * h
    bx1, by1 = x + w + neg_margin * w, y + h + neg_margin * h
    W, H = float(width), float(height)
    # each strip beside the (enlarged) box: (x0, y0, x1, y1), clipped to the photo
    strips = [(0.0, 0.0, min(bx0, W), H), (max(bx1, 0.0), 0.0, W, H),
              (0.0, 0.0, W, min(by0, H)), (0.0, max(by1, 0.0), W, H)]
    best, best_side = None, 0.0
    for sx0, sy0, sx1, sy1 in strips:
        side = min(sx1 - sx0, sy1 - sy0)
        if max_side is not None:
            side = min(side, float(max_side))
        if side > best_side:
            cx, cy = (sx0 + sx1) / 2, (sy0 + sy1) / 2
            best = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            best_side = side
    return best if best_side > 0 else None


class _BackgroundCrops:
    """The background negatives, collected through ``build_dataset``'s ``on_photo`` as each
    photo is decoded for its positive (so every photo is decoded once, not twice)."""

    def __init__(self, size, neg_margin, min_fraction):
        self.size, self.neg_margin, self.min_fraction = size, neg_margin, min_fraction
        self.images, self.ids, self.train, self.sides, self.pos_sides = [], [], [], [], []
        self.skipped = 0

    def __call__(self, meta, img_id, im, region):
        pos_side = float(np.sqrt((region[2] - region[0]) * (region[3] - region[1])))
        box = meta["boxes"][img_id][1]
        square = background_square(box, im.width, im.height, self.neg_margin, max_side=pos_side)
        if square is None or square[2] - square[0] < self.min_fraction * max(im.width, im.height):
            self.skipped += 1
            return
        self.images.append(np.asarray(im.resize((self.size, self.size), Image.BILINEAR, box=square)))
        self.ids.append(img_id)
        self.train.append(meta["split"][img_id][1][0])
        self.sides.append(square[2] - square[0])
        self.pos_sides.append(pos_side)

    def report(self):
        sides, pos_sides = np.array(self.sides), np.array(self.pos_sides)
        report = {"source": "background crops", "made": len(self.ids),
                  "skipped_too_full": self.skipped, "neg_margin": self.neg_margin,
                  "min_fraction": self.min_fraction}
        if len(self.ids):
            report.update(side_px_mean=round(float(sides.mean()), 1),
                          positive_side_px_mean=round(float(pos_sides.mean()), 1),
                          side_to_positive_median=round(float(np.median(sides / pos_sides)), 3),
                          as_large_as_positive=int((sides >= pos_sides - 1e-6).sum()))
        return report


def _folder_negatives(folder, size):
    """(images, pseudo ids, is_train, report) of every image file under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CubFormatError(f"{folder}: negatives folder does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CubFormatError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    images, train = [], []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        im, _ = decode_rgb(path, rel, "negatives folder")
        images.append(np.asarray(im.resize((size, size), Image.BILINEAR)))
        train.append(hashlib.sha256(rel.encode()).digest()[0] < 128)  # stable, about half
    report = {"source": str(folder), "made": len(files), "train": int(sum(train)),
              "test": len(files) - int(sum(train))}
    return images, [-(k + 1) for k in range(len(files))], train, report


def load_bird_task(root, classes=None, images_per_class=None, size=64, margin=0.1,
                   negatives=None, neg_margin=0.05, min_fraction=0.25):
    """Bird vs. not from a CUB-layout folder, as a :class:`CubDataset` with labels 1 (bird)
    and 0 (not a bird); ``class_names`` = ("not a bird", "bird"), ``class_ids`` = (0, 1).

    classes, images_per_class, size, margin: which birds and how they are cropped, as in
    :func:`load_cub`. negatives: None (background crops of the same photos) or a folder
    of non-bird images. neg_margin, min_fraction: see the module docstring. Negatives'
    ``image_ids`` are their photo's id (background) or -1, -2, ... (folder); their
    landmarks are invisible. ``report`` is the positives' report plus "negatives"."""
    root, args = load_args(root, classes, images_per_class, size, "box", margin)
    if negatives is None:
        crops = _BackgroundCrops(size, neg_margin, min_fraction)
        pos = build_dataset(root, **args, on_photo=crops)
        imgs, ids, train, neg_report = crops.images, crops.ids, crops.train, crops.report()
    else:
        pos = build_dataset(root, **args)
        imgs, ids, train, neg_report = _folder_negatives(negatives, size)
    n_pos, n_neg = len(pos), len(ids)
    P = len(pos.part_names)
    neg_images = np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)
    report = dict(pos.report, cache="off", task="bird", positives=n_pos, negatives=neg_report)
    return CubDataset(
        images=np.concatenate([pos.images, neg_images]),
        labels=np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)]),
        class_ids=np.array([0, 1], np.int64), class_names=list(CLASS_NAMES),
        is_train=np.concatenate([pos.is_train, np.array(train, bool)]),
        landmarks=np.concatenate([pos.landmarks, np.zeros((n_neg, P, 2), np.float32)]),
        visible=np.concatenate([pos.visible, np.zeros((n_neg, P), bool)]),
        image_ids=np.concatenate([pos.image_ids, np.array(ids, np.int64)]),
        part_names=pos.part_names, report=report)
