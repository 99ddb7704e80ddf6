"""Reader for the CUB-200-2011 folder layout (real CUB, the shared subset, or toy birds).

Layout under ``root`` (all whitespace-separated text, one record per line)::

    images.txt               <image_id> <relpath>
    classes.txt              <class_id> <name>
    image_class_labels.txt   <image_id> <class_id>
    train_test_split.txt     <image_id> <is_train 1/0>
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>
    parts/parts.txt          <part_id> <name, may contain spaces>
    parts/part_locs.txt      <image_id> <part_id> <x> <y> <visible 1/0>
    images/<relpath>

Coordinate convention (it matters for receptive fields later)
-------------------------------------------------------------
Coordinates are *continuous* pixel coordinates: pixel (row r, col c) covers
[c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5) and an image of width W spans
[0, W]. Landmarks are stored as (x, y) float32. CUB's ``part_locs`` x, y and the bounding
box are read as continuous coordinates in the original image, unchanged (no 1-based shift:
CUB's clicks are not precise to half a pixel). A box is the region [x, x+w] x [y, y+h];
boxes that overshoot the image (CUB has some that end 1 px past the edge) are clipped to
[0, W] x [0, H] and counted in ``report["boxes_clipped"]``.

Cropping
--------
``crop="box"``: the box is enlarged by ``margin`` times its width on the left and right and
``margin`` times its height on top and bottom, clipped to the image, and this region is
resized (bilinear, Pillow's exact float-box resampling) to ``size x size``. Non-square crops
are *stretched*, not padded, so aspect ratio is not preserved. ``crop="whole"``: the whole
image is stretched to ``size x size`` the same way (no padding). A landmark at original
(x, y) lands at ``((x - x0) * size / (x1 - x0), (y - y0) * size / (y1 - y0))`` for the
crop region [x0, x1] x [y0, y1]. A visible landmark outside the crop region becomes
invisible and is counted in ``report["landmarks_invisible_by_crop"]``. Invisible landmarks
have coordinates (0, 0); they mean nothing.

Nothing is dropped silently: every image not returned, every clip and every visibility
change is counted in ``CubDataset.report``. Malformed input raises :class:`CubFormatError`
naming the file and line number. Everything returned is NumPy.
"""
import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..checkpoint import atomic_write
from .dataset import CubDataset

# CUB-200-2011's 15 parts, in CUB's part-id order (ids 1..15).
PART_NAMES = (
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
    "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat",
)

_CACHE_FORMAT = 1  # bump when the cached arrays or their meaning change
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class CubFormatError(ValueError):
    """A CUB folder is missing a file, has a malformed line, or a bad image."""


# ----------------------------------------------------------------------------- parsing

def _parse_token(tok, kind, rel, lineno, col):
    where = f"{rel}, line {lineno}, field {col}"
    if kind == "int":
        if not _INT_RE.fullmatch(tok):
            raise CubFormatError(f"{where}: expected an integer, got {tok!r}")
        return int(tok)
    if kind == "float":
        if not _FLOAT_RE.fullmatch(tok):
            raise CubFormatError(f"{where}: expected a number, got {tok!r}")
        return float(tok)
    if kind == "bit":
        if tok not in ("0", "1"):
            raise CubFormatError(f"{where}: expected 0 or 1, got {tok!r}")
        return tok == "1"
    return tok  # "str" or "rest"


def _read_table(root, rel, spec):
    """Yield (line number, parsed fields) for each non-blank line of ``root/rel``.

    ``spec`` lists field kinds: "int", "float", "bit", "str" (one word) or "rest" (last
    field only: the rest of the line, spaces allowed, e.g. "left eye").
    """
    path = Path(root) / rel
    if not path.is_file():
        raise CubFormatError(f"{rel}: metadata file missing (looked for {path})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CubFormatError(f"{rel}: cannot read as UTF-8 text: {exc}") from exc
    n = len(spec)
    # split("\n") (not splitlines) so line numbers match what editors and `sed -n` show
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing one) carry no record
        toks = line.split(None, n - 1) if spec[-1] == "rest" else line.split()
        if spec[-1] == "rest" and len(toks) == n:
            toks[-1] = toks[-1].strip()
        if len(toks) != n:
            raise CubFormatError(
                f"{rel}, line {lineno}: expected {n} fields, got {len(toks)}: {line!r}")
        yield lineno, [_parse_token(t, k, rel, lineno, i + 1)
                       for i, (t, k) in enumerate(zip(toks, spec))]


def read_keyed(root, rel, spec, nkey=1):
    """Read one of the layout's tables (``rel`` under ``root``; field kinds ``spec`` as for
    ``_read_table``) into {key: (line number, values)}, the first ``nkey`` fields the key;
    duplicate keys are a CubFormatError naming both lines."""
    table = {}
    for lineno, fields in _read_table(root, rel, spec):
        key = fields[0] if nkey == 1 else tuple(fields[:nkey])
        if key in table:
            raise CubFormatError(
                f"{rel}, line {lineno}: duplicate id {key} (first on line {table[key][0]})")
        table[key] = (lineno, fields[nkey:])
    return table


def _read_metadata(root):
    """Parse and cross-check every metadata file. Returns a dict of tables and counts."""
    meta = {
        "images": read_keyed(root, "images.txt", ["int", "str"]),
        "classes": read_keyed(root, "classes.txt", ["int", "str"]),
        "labels": read_keyed(root, "image_class_labels.txt", ["int", "int"]),
        "split": read_keyed(root, "train_test_split.txt", ["int", "bit"]),
        "boxes": read_keyed(root, "bounding_boxes.txt", ["int"] + ["float"] * 4),
        "parts": read_keyed(root, "parts/parts.txt", ["int", "rest"]),
        "locs": read_keyed(root, "parts/part_locs.txt",
                            ["int", "int", "float", "float", "bit"], nkey=2),
    }
    for cid_line, (cid,) in meta["labels"].values():
        if cid not in meta["classes"]:
            raise CubFormatError(f"image_class_labels.txt, line {cid_line}: class id {cid} "
                                 "is not in classes.txt")
    for key, (lineno, (x, y, w, h)) in meta["boxes"].items():
        if w <= 0 or h <= 0:
            raise CubFormatError(f"bounding_boxes.txt, line {lineno}: box of image {key} "
                                 f"has non-positive size {w} x {h}")
    for (img, pid), (lineno, _) in meta["locs"].items():
        if pid not in meta["parts"]:
            raise CubFormatError(f"parts/part_locs.txt, line {lineno}: part id {pid} "
                                 "is not in parts/parts.txt")
    for img_id, (lineno, _) in meta["images"].items():
        for key, rel in (("labels", "image_class_labels.txt"),
                         ("split", "train_test_split.txt"), ("boxes", "bounding_boxes.txt")):
            if img_id not in meta[key]:
                raise CubFormatError(f"images.txt, line {lineno}: image id {img_id} has no "
                                     f"entry in {rel}")
    meta["unknown_rows"] = _count_unknown_rows(meta)
    return meta


def _count_unknown_rows(meta):
    """Rows whose image id is not in images.txt: ignored, but counted per file."""
    ids = meta["images"]
    counts = {
        "image_class_labels.txt": sum(k not in ids for k in meta["labels"]),
        "train_test_split.txt": sum(k not in ids for k in meta["split"]),
        "bounding_boxes.txt": sum(k not in ids for k in meta["boxes"]),
        "parts/part_locs.txt": sum(k[0] not in ids for k in meta["locs"]),
    }
    return {k: v for k, v in counts.items() if v}


# --------------------------------------------------------------------------- selection

def _select_classes(classes, available):
    """The requested class ids, in label order (sorted for None / int, as given for a list)."""
    ids = sorted(available)
    if classes is None:
        chosen = ids
    elif isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if not 1 <= classes <= len(ids):
            raise CubFormatError(f"classes.txt: asked for the first {classes} classes, "
                                 f"but it lists {len(ids)}")
        chosen = ids[:classes]
    else:
        chosen = [int(c) for c in classes]
        missing = [c for c in chosen if c not in available]
        if missing:
            raise CubFormatError(f"classes.txt: requested class ids {missing} do not exist "
                                 f"(available: {ids[:10]}{'...' if len(ids) > 10 else ''})")
        if len(set(chosen)) != len(chosen):
            raise CubFormatError(f"requested class ids contain duplicates: {chosen}")
    if not chosen:
        raise CubFormatError("empty selection: no class ids requested")
    return chosen


def _select_images(meta, class_ids, images_per_class):
    """Image ids to load (sorted by id), capped per class, plus skip counts."""
    if images_per_class is not None and images_per_class < 1:
        raise CubFormatError(f"empty selection: images_per_class={images_per_class}")
    wanted = set(class_ids)
    taken = {c: 0 for c in class_ids}
    chosen, other_class, over_cap = [], 0, 0
    for img_id in sorted(meta["images"]):
        cid = meta["labels"][img_id][1][0]
        if cid not in wanted:
            other_class += 1
        elif images_per_class is not None and taken[cid] >= images_per_class:
            over_cap += 1
        else:
            taken[cid] += 1
            chosen.append(img_id)
    if not chosen:
        raise CubFormatError(f"empty selection: no images of class ids {class_ids} in "
                             "image_class_labels.txt")
    skipped = {}
    if other_class:
        skipped["not in the selected classes"] = other_class
    if over_cap:
        skipped["over the images_per_class cap"] = over_cap
    empty = [c for c in class_ids if taken[c] == 0]
    return chosen, skipped, empty


# ---------------------------------------------------------------------------- decoding

def _open_rgb(root, relpath, lineno):
    """Decode ``images/<relpath>`` fully as RGB; bad files raise CubFormatError naming them."""
    return decode_rgb(Path(root) / "images" / relpath, f"images/{relpath}",
                       f"listed in images.txt, line {lineno}")


def decode_rgb(path, rel, where):
    """Decode the image at ``path`` fully as RGB -> (image, whether it was converted).
    A missing or broken file raises CubFormatError naming ``rel`` and ``where``."""
    if not Path(path).is_file():
        raise CubFormatError(f"{rel}: image file missing ({where})")
    try:
        with Image.open(path) as im:
            im.load()  # force the full decode here, so truncation is caught here
            converted = im.mode != "RGB"
            return im.convert("RGB"), converted
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # Pillow signals broken files with any of these (SyntaxError: bad PNG chunks)
        raise CubFormatError(f"{rel}: cannot decode image ({where}): {exc}") from exc


def _crop_region(box, width, height, crop, margin):
    """The crop region (x0, y0, x1, y1) and whether the raw box had to be clipped."""
    x, y, w, h = box
    bx0, by0 = max(x, 0.0), max(y, 0.0)
    bx1, by1 = min(x + w, float(width)), min(y + h, float(height))
    clipped = (bx0, by0, bx1, by1) != (x, y, x + w, y + h)
    if crop == "whole":
        return (0.0, 0.0, float(width), float(height)), clipped
    if bx1 <= bx0 or by1 <= by0:
        return None, clipped  # the box lies entirely outside the image
    mx, my = margin * (bx1 - bx0), margin * (by1 - by0)
    region = (max(bx0 - mx, 0.0), max(by0 - my, 0.0),
              min(bx1 + mx, float(width)), min(by1 + my, float(height)))
    return region, clipped


def _map_landmarks(meta, img_id, part_ids, region, size):
    """Landmarks (P, 2) in output pixels, visibility (P,), and counts of what changed."""
    x0, y0, x1, y1 = region
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    pts = np.zeros((len(part_ids), 2), np.float32)
    vis = np.zeros(len(part_ids), bool)
    missing = lost = 0
    for j, pid in enumerate(part_ids):
        row = meta["locs"].get((img_id, pid))
        if row is None:
            missing += 1
            continue
        x, y, visible = row[1]
        if not visible:
            continue
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            lost += 1
            continue
        pts[j] = ((x - x0) * sx, (y - y0) * sy)
        vis[j] = True
    return pts, vis, missing, lost


def _decode_all(root, meta, image_ids, part_ids, size, crop, margin, on_photo=None):
    """Decode, crop, resize every selected image; returns arrays and counters.

    ``on_photo(meta, img_id, photo, region)``, when given, sees every decoded photo and
    its crop region, so that a second crop is taken without decoding the photo again
    (bird vs. not's background negatives)."""
    n, p = len(image_ids), len(part_ids)
    images = np.zeros((n, size, size, 3), np.uint8)
    landmarks = np.zeros((n, p, 2), np.float32)
    visible = np.zeros((n, p), bool)
    counts = dict(boxes_clipped=0, landmarks_invisible_by_crop=0, part_rows_missing=0,
                  converted_to_rgb=0)
    for i, img_id in enumerate(image_ids):
        lineno, (relpath,) = meta["images"][img_id]
        im, converted = _open_rgb(root, relpath, lineno)
        box_line, box = meta["boxes"][img_id]
        region, clipped = _crop_region(box, im.width, im.height, crop, margin)
        if region is None:
            raise CubFormatError(f"bounding_boxes.txt, line {box_line}: box of image {img_id} "
                                 f"lies outside its {im.width} x {im.height} image")
        images[i] = np.asarray(im.resize((size, size), Image.BILINEAR, box=region))
        if on_photo is not None:
            on_photo(meta, img_id, im, region)
        landmarks[i], visible[i], missing, lost = _map_landmarks(
            meta, img_id, part_ids, region, size)
        counts["boxes_clipped"] += clipped
        counts["converted_to_rgb"] += converted
        counts["part_rows_missing"] += missing
        counts["landmarks_invisible_by_crop"] += lost
    return images, landmarks, visible, counts


# ------------------------------------------------------------------------------- cache

_ARRAY_FIELDS = ("images", "labels", "class_ids", "is_train", "landmarks", "visible",
                 "image_ids")


def _cache_key(root, args, cache_dir):
    """sha256 of the folder listing (path, size, mtime) and the load arguments.

    Files under ``cache_dir`` are left out, so a cache kept inside ``root`` does not
    change the key it is stored under."""
    h = hashlib.sha256(json.dumps([_CACHE_FORMAT, args], sort_keys=True).encode())
    root, cache_dir = Path(root), Path(cache_dir).resolve()
    for path in sorted(root.rglob("*")):
        if path.is_file() and cache_dir not in path.resolve().parents:
            st = path.stat()
            h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _save_cache(path, ds):
    """Write ``ds`` as one .npz atomically (temp file in the same folder, then os.replace)."""
    atomic_write(path, lambda f: np.savez(
        f, **{k: getattr(ds, k) for k in _ARRAY_FIELDS},
        class_names=np.array(ds.class_names, dtype=str),
        part_names=np.array(ds.part_names, dtype=str),
        report=np.array(json.dumps(ds.report))))


def _load_cache(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in _ARRAY_FIELDS}
        return CubDataset(class_names=[str(s) for s in z["class_names"]],
                          part_names=[str(s) for s in z["part_names"]],
                          report=json.loads(str(z["report"])), **arrays)


# -------------------------------------------------------------------------------- load

def build_dataset(root, classes, images_per_class, size, crop, margin, on_photo=None):
    """Read and decode a CUB-layout folder into a CubDataset, with no cache (``load_cub``
    adds the cache; ``load_args`` checks the arguments). on_photo: None, or a callable
    that sees each decoded photo as well (the bird task collects its negatives there)."""
    meta = _read_metadata(root)
    class_ids = _select_classes(classes, meta["classes"])
    image_ids, skipped, empty = _select_images(meta, class_ids, images_per_class)
    part_ids = sorted(meta["parts"])
    images, landmarks, visible, counts = _decode_all(
        root, meta, image_ids, part_ids, size, crop, margin, on_photo)
    label_of = {c: k for k, c in enumerate(class_ids)}
    report = {"images_listed": len(meta["images"]), "images_read": len(image_ids),
              **counts, "skipped": skipped, "empty_classes": empty,
              "rows_for_unknown_image_ids": meta["unknown_rows"]}
    return CubDataset(
        images=images,
        labels=np.array([label_of[meta["labels"][i][1][0]] for i in image_ids], np.int64),
        class_ids=np.array(class_ids, np.int64),
        class_names=[meta["classes"][c][1][0] for c in class_ids],
        is_train=np.array([meta["split"][i][1][0] for i in image_ids], bool),
        landmarks=landmarks, visible=visible,
        image_ids=np.array(image_ids, np.int64),
        part_names=[meta["parts"][p][1][0] for p in part_ids], report=report)


def load_args(root, classes, images_per_class, size, crop, margin):
    """load_cub's arguments checked and normalised -> (root as a Path, the dict of
    build_dataset's arguments that also keys the cache)."""
    root = Path(root)
    if crop not in ("box", "whole"):
        raise ValueError(f"crop must be 'box' or 'whole', got {crop!r}")
    if int(size) < 1 or margin < 0:
        raise ValueError(f"need size >= 1 and margin >= 0, got size={size}, margin={margin}")
    if not root.is_dir():
        raise CubFormatError(f"{root}: CUB folder does not exist")
    if isinstance(classes, bool):
        raise TypeError("classes must be None, an int or a list of class ids, not a bool")
    if isinstance(classes, (list, tuple, np.ndarray)):
        classes = [int(c) for c in classes]
    elif classes is not None:
        classes = int(classes)
    args = dict(classes=classes, images_per_class=images_per_class, size=int(size),
                crop=crop, margin=float(margin))
    return root, args


def load_cub(root, classes=None, images_per_class=None, size=64, crop="box", margin=0.1,
             cache_dir=None):
    """Load a CUB-layout folder into a :class:`CubDataset` (see the module docstring).

    classes: None (all), an int k (the first k class ids, sorted) or a list of class ids
    (labels follow the list's order). images_per_class: None or a cap per class (the
    lowest image ids; each keeps its official split flag). size: output side in pixels.
    crop: "box" (bird box + ``margin``) or "whole" (whole image); both stretch to square.
    cache_dir: when given, decoded arrays are cached there as one .npz per
    (folder listing, arguments).
    """
    root, args = load_args(root, classes, images_per_class, size, crop, margin)
    if cache_dir is None:
        ds = build_dataset(root, **args)
        ds.report["cache"] = "off"
        return ds
    path = Path(cache_dir) / f"cub_{_cache_key(root, args, cache_dir)[:24]}.npz"
    state = "written"
    if path.exists():
        try:
            ds = _load_cache(path)
            ds.report["cache"] = "hit"
            return ds
        except Exception as exc:  # any unreadable cache is rebuilt, never trusted
            warnings.warn(f"CUB cache {path} is unreadable ({exc}); rebuilding it")
            state = "rebuilt"
    ds = build_dataset(root, **args)
    ds.report["cache"] = state
    _save_cache(path, ds)
    return ds
