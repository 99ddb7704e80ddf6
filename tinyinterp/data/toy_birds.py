"""Seeded generator of drawn birds, written in the CUB-200-2011 folder layout.

Each image is one bird drawn with Pillow's ImageDraw (body ellipse, head circle, beak
triangle, tail, wing, two legs, eye) over a cluttered background (colour gradient, blurred
blobs, branches, leaves, mild noise), at a random position and scale, facing left or right,
with a small body tilt. Species differ in shape (body aspect, head size, beak length, tail
length and shape), colour and pattern (wing bars, breast spots, head cap, eye stripe,
throat patch); colours are jittered per image, and some species share colours, so colour
alone does not separate them.

Ground truth comes from the drawing geometry: the bounding box is the bird's drawn extent
and all 15 CUB parts get a location. The bird's far-side eye and wing are marked invisible;
which side is far follows CUB's meaning of left/right: a bird facing right (towards +x)
shows its *right* side to the viewer. Coordinates follow the reader's convention
(continuous pixels: pixel (r, c) covers [c, c+1) x [r, r+1)).

Everything is deterministic from ``seed`` (each image has its own ``numpy`` generator seeded
from (seed, species, index); no global RNG). Regenerate the committed sample with::

    python -m tinyinterp.data.toy_birds --out data_samples/toy_birds --overwrite
"""
import argparse
import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .cub import PART_NAMES

SUPERSAMPLE = 3      # draw at 3x and box-reduce: smooth edges, exact pixel grid mapping
JPEG_QUALITY = 90
NOISE_SIGMA = 3.0    # mild sensor-like noise, in 0..255 units

# Species: shape numbers are in body half-lengths; colours are RGB. Shared colours
# (the finch and the thrush are both brown; the junco and the shrike are both grey) make
# shape and pattern necessary, not just hue.
SPECIES = (
    dict(name="Red_Capped_Finch", aspect=0.72, head=0.42, beak=0.28, beak_w=0.15,
         tail=0.55, tail_shape="square", back=(140, 100, 70), belly=(215, 190, 160),
         wing=(105, 75, 50), cap=(205, 40, 40), bars=0, spots=False),
    dict(name="Bar_Winged_Warbler", aspect=0.50, head=0.36, beak=0.36, beak_w=0.07,
         tail=0.85, tail_shape="point", back=(120, 130, 60), belly=(230, 210, 80),
         wing=(70, 70, 70), bars=2),
    dict(name="Spotted_Thrush", aspect=0.60, head=0.38, beak=0.40, beak_w=0.09,
         tail=0.75, tail_shape="square", back=(140, 100, 70), belly=(225, 210, 180),
         wing=(120, 85, 60), spots=True),
    dict(name="Fork_Tailed_Swallow", aspect=0.45, head=0.34, beak=0.18, beak_w=0.09,
         tail=1.30, tail_shape="fork", back=(40, 60, 120), belly=(230, 220, 200),
         wing=(30, 45, 95), throat=(180, 90, 50)),
    dict(name="Dagger_Billed_Kingfisher", aspect=0.62, head=0.46, beak=0.85, beak_w=0.12,
         tail=0.50, tail_shape="square", back=(60, 110, 190), belly=(220, 130, 50),
         wing=(45, 85, 160), throat=(235, 235, 225), stripe=(20, 30, 60)),
    dict(name="Slate_Junco", aspect=0.62, head=0.40, beak=0.25, beak_w=0.11,
         tail=0.80, tail_shape="fan", back=(90, 95, 105), belly=(235, 235, 235),
         wing=(75, 80, 90), beak_col=(230, 170, 170)),
    dict(name="Golden_Crested_Tit", aspect=0.65, head=0.42, beak=0.20, beak_w=0.08,
         tail=0.70, tail_shape="point", back=(110, 125, 100), belly=(225, 205, 165),
         wing=(85, 95, 80), cap=(240, 200, 30), stripe=(20, 20, 20)),
    dict(name="Masked_Shrike", aspect=0.55, head=0.40, beak=0.40, beak_w=0.11,
         tail=1.15, tail_shape="point", back=(150, 150, 150), belly=(240, 240, 240),
         wing=(30, 30, 30), bars=1, stripe=(15, 15, 15)),
)
_DEFAULTS = dict(cap=None, bars=0, spots=False, throat=None, stripe=None,
                 beak_col=(50, 45, 40), leg=(90, 70, 60))
MAX_SPECIES = len(SPECIES)
WING_BAR = (235, 235, 225)


# ----------------------------------------------------------------------------- geometry

def _ellipse(cx, cy, rx, ry, angle=0.0, t0=0.0, t1=2 * math.pi, n=48):
    """Polygon points of an ellipse (or of the arc t0..t1, closed by its chord)."""
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _band(p, q, width):
    """A quad of ``width`` along the segment p -> q (a thick line as a polygon)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-12) * width / 2
    return np.stack([p + n, q + n, q - n, p - n])


def _jitter(spec, rng):
    """Per-image shape and colour variation around a species' template."""
    p = {**_DEFAULTS, **spec}
    for key in ("aspect", "head", "beak", "tail"):
        p[key] = spec[key] * rng.uniform(0.9, 1.1)
    gain = rng.uniform(0.8, 1.15)
    for key in ("back", "belly", "wing", "cap", "throat", "stripe", "beak_col", "leg"):
        if p[key] is not None:
            col = np.asarray(p[key], float) * gain + rng.normal(0, 10, 3)
            p[key] = tuple(int(v) for v in np.clip(col, 0, 255))
    p["tail_tilt"] = math.radians(rng.uniform(5, 25))
    p["leg_len"] = rng.uniform(0.4, 0.6)
    return p


def _tail_polygon(p, root):
    """Tail polygon pointing backwards and up from ``root``; returns (points, landmark)."""
    a, length, t = p["aspect"], p["tail"], p["tail_tilt"]
    shapes = {  # (u along the tail, v across it) outlines, u in [0, length]
        "square": [(0, -.30 * a), (length, -.25 * a), (length, .25 * a), (0, .30 * a)],
        "fan": [(0, -.25 * a), (length, -.45 * a), (length, .45 * a), (0, .25 * a)],
        "point": [(0, -.25 * a), (.7 * length, -.16 * a), (length, 0),
                  (.7 * length, .16 * a), (0, .25 * a)],
        "fork": [(0, -.22 * a), (length, -.36 * a), (.62 * length, 0),
                 (length, .36 * a), (0, .22 * a)],
    }
    d = np.array([-math.cos(t), -math.sin(t)])  # back and up (y points down)
    n = np.array([-d[1], d[0]])
    uv = np.array(shapes[p["tail_shape"]], float)
    pts = root + uv[:, :1] * d + uv[:, 1:] * n
    return pts, root + 0.6 * length * d


def _head_shapes(p, head):
    """Head, cap, throat patch, eye stripe, beak and eye; returns (shapes, landmarks)."""
    hr, phi = p["head"], 0.15  # beak points slightly down
    d, n = np.array([math.cos(phi), math.sin(phi)]), np.array([-math.sin(phi), math.cos(phi)])
    base = head + 0.85 * hr * d
    eye = head + hr * np.array([0.38, -0.18])
    shapes = [(_ellipse(*head, hr, hr), p["back"])]
    if p["cap"] is not None:
        shapes.append((_ellipse(*head, hr, hr, t0=math.pi + 0.45, t1=2 * math.pi - 0.45),
                       p["cap"]))
    if p["throat"] is not None:
        shapes.append((_ellipse(*head, hr, hr, t0=0.2, t1=1.9), p["throat"]))
    if p["stripe"] is not None:
        shapes.append((_band(base, head + hr * np.array([-0.85, -0.05]), 0.3 * hr),
                       p["stripe"]))
    tip = head + (0.85 * hr + p["beak"]) * d
    shapes.append((np.stack([base + p["beak_w"] * n, tip, base - p["beak_w"] * n]),
                   p["beak_col"]))
    shapes.append((_ellipse(*eye, 0.14 * hr, 0.14 * hr, n=16), (10, 10, 10)))
    shapes.append((_ellipse(*(eye + 0.045 * hr * np.array([1, -1])), 0.05 * hr, 0.05 * hr,
                            n=8), (240, 240, 240)))
    marks = {"beak": head + (0.85 * hr + 0.45 * p["beak"]) * d, "right eye": eye,
             "crown": head + hr * np.array([-0.05, -0.82]),
             "forehead": head + hr * np.array([0.62, -0.58]),
             "nape": head + hr * np.array([-0.72, 0.30]),
             "throat": head + hr * np.array([0.40, 0.78])}
    return shapes, marks


def _wing_shapes(p):
    """Near-side wing with optional light bars; returns (shapes, wing centre)."""
    a, angle = p["aspect"], 0.12  # wing tip raised a little towards the tail
    centre, rx, ry = np.array([-0.12, -0.12 * a]), 0.68, 0.40 * a
    shapes = [(_ellipse(*centre, rx, ry, angle), p["wing"])]
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for u0 in (0.05 * rx, -0.30 * rx)[:p["bars"]]:
        shapes.append((_wing_bar(np.array([u0, u0 + 0.14 * rx]), rx, ry, rot, centre),
                       WING_BAR))
    return shapes, centre


def _wing_bar(u, rx, ry, rot, centre):
    """A light bar across an ellipse wing (half-axes rx, ry, rotation ``rot``, ``centre``)
    from u[0] to u[1] along its long axis; its ends stay inside the wing."""
    v = 0.92 * ry * np.sqrt(1 - (u / rx) ** 2)
    quad = np.array([[u[0], -v[0]], [u[1], -v[1]], [u[1], v[1]], [u[0], v[0]]])
    return quad @ rot.T + centre


def _leg_shapes(p, hip_x, colour):
    """One leg with two toes; returns (shapes, leg landmark)."""
    a = p["aspect"]
    hip = np.array([hip_x, 0.85 * a])
    foot = hip + np.array([0.04, p["leg_len"]])
    shapes = [(_band(hip, foot, 0.06), colour),
              (_band(foot, foot + np.array([0.18, 0.0]), 0.05), colour),
              (_band(foot, foot + np.array([-0.08, 0.0]), 0.05), colour)]
    return shapes, hip + 0.6 * (foot - hip)


def _bird_shapes(p, rng):
    """All polygons of one bird facing right (local frame, body half-length 1, y down),
    in drawing order, and its landmarks {part name: (x, y)} (near side = right)."""
    a = p["aspect"]
    far_leg, far_mark = _leg_shapes(p, -0.10, tuple(int(0.7 * c) for c in p["leg"]))
    near_leg, near_mark = _leg_shapes(p, 0.08, p["leg"])
    tail, tail_mark = _tail_polygon(p, np.array([-0.85, -0.10 * a]))
    shapes = far_leg + near_leg + [(tail, p["wing"]), (_ellipse(0, 0, 1, a), p["back"]),
                                   (_ellipse(0, 0, 1, a, t0=-0.35, t1=math.pi + 0.15),
                                    p["belly"])]
    if p["spots"]:
        for x, y in rng.uniform([-0.3, 0.1 * a], [0.85, 0.85 * a], size=(16, 2)):
            if x * x + (y / a) ** 2 < 0.8:
                shapes.append((_ellipse(x, y, 0.055, 0.055, n=10), (70, 50, 35)))
    wing, wing_mark = _wing_shapes(p)
    head = np.array([0.72 + 0.2 * p["head"], -0.62 * a - 0.35 * p["head"]])
    head_shapes, marks = _head_shapes(p, head)
    marks.update({"back": (-0.2, -0.82 * a), "breast": (0.62, 0.42 * a),
                  "belly": (-0.05, 0.78 * a), "tail": tail_mark, "right wing": wing_mark,
                  "right leg": near_mark, "left leg": far_mark})
    return shapes + wing + head_shapes, marks


# ---------------------------------------------------------------------------- rendering

_PALETTE = np.array([(150, 190, 230), (70, 120, 60), (190, 170, 110), (110, 85, 60),
                     (90, 140, 160), (220, 220, 205), (200, 150, 120), (60, 80, 50)], float)


def _palette_colour(rng, spread=20.0):
    return _near(_PALETTE[rng.integers(len(_PALETTE))], rng, spread)


def _near(colour, rng, spread):
    """``colour`` plus Gaussian noise of ``spread`` per channel, as an RGB tuple."""
    return tuple(int(v) for v in np.clip(colour + rng.normal(0, spread, 3), 0, 255))


def _background(rng, n):
    """An n x n cluttered scene: gradient, blurred blobs, then sharp branches and leaves."""
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:n, 0:n] / n
    t = (xx * math.cos(angle) + yy * math.sin(angle))
    t = (t - t.min()) / (t.max() - t.min())
    c1, c2 = (np.array(_palette_colour(rng, 30), float) for _ in range(2))
    canvas = Image.fromarray((c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(4, 10)):
        cx, cy = rng.uniform(0, n, 2)
        rx, ry = rng.uniform(0.05, 0.3, 2) * n
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_palette_colour(rng, 30))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 4.0) * SUPERSAMPLE))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 4)):  # branches crossing the scene
        p, q = rng.uniform(-0.1, 1.1, (2, 2)) * n
        col = _near(_PALETTE[3], rng, 25)
        draw.polygon([tuple(v) for v in _band(p, q, rng.uniform(0.015, 0.045) * n)], fill=col)
    for _ in range(rng.integers(0, 13)):  # leaves; some in arbitrary colours as distractors
        cx, cy = rng.uniform(0, n, 2)
        col = (_palette_colour(rng, 30) if rng.random() < 0.7
               else tuple(int(v) for v in rng.integers(0, 256, 3)))
        leaf = _ellipse(cx, cy, *(rng.uniform(0.02, 0.06, 2) * n), rng.uniform(0, math.pi),
                        n=16)
        draw.polygon([tuple(v) for v in leaf], fill=col)
    return canvas


def _placement(points, rng, size, facing_left, tilt):
    """Linear map M and shift t (final-image pixels) putting the bird fully inside."""
    c, s = math.cos(tilt), math.sin(tilt)
    base = np.diag([-1.0 if facing_left else 1.0, 1.0]) @ np.array([[c, -s], [s, c]])
    unit = points @ base.T
    lo, hi = unit.min(0), unit.max(0)
    margin = 2.0
    scale = rng.uniform(0.13, 0.24) * size
    scale = min(scale, (size - 2 * margin) / (hi - lo).max())  # never leave the frame
    shift = rng.uniform(margin - lo * scale, size - margin - hi * scale)
    return scale * base, shift


def _swap_sides(name):
    for a, b in (("left ", "right "), ("right ", "left ")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


def _render(spec, rng, size):
    """One image: (PIL RGB image, box (x, y, w, h), landmarks (15, 2), visible (15,))."""
    p = _jitter(spec, rng)
    shapes, marks = _bird_shapes(p, rng)
    facing_left = bool(rng.random() < 0.5)
    tilt = math.radians(rng.uniform(-15, 15))
    matrix, shift = _placement(np.concatenate([s for s, _ in shapes]), rng, size,
                               facing_left, tilt)
    canvas = _background(rng, size * SUPERSAMPLE)
    draw = ImageDraw.Draw(canvas)
    drawn = []
    for pts, colour in shapes:
        xy = pts @ matrix.T + shift
        drawn.append(xy)
        # Pillow puts integer coordinates at pixel centres: continuous X -> X*SS - 0.5.
        draw.polygon([tuple(v) for v in xy * SUPERSAMPLE - 0.5], fill=colour)
    image, box = _photo_and_box(canvas, drawn, rng, size)
    landmarks = np.zeros((len(PART_NAMES), 2))
    visible = np.zeros(len(PART_NAMES), bool)
    for name, xy in marks.items():  # the near side is the right one when facing right
        j = PART_NAMES.index(_swap_sides(name) if facing_left else name)
        landmarks[j] = np.asarray(xy) @ matrix.T + shift
        visible[j] = True
    return image, box, landmarks, visible


def _photo_and_box(canvas, drawn, rng, size):
    """The supersampled ``canvas`` reduced to the photo, with noise, and the box (x, y, w,
    h) of the ``drawn`` polygons' points (photo pixels), rounded out, inside the photo."""
    pixels = np.asarray(canvas.reduce(SUPERSAMPLE), float)
    pixels = np.clip(np.rint(pixels + rng.normal(0, NOISE_SIGMA, pixels.shape)), 0, 255)
    drawn = np.concatenate(drawn)
    x0, y0 = np.floor(np.clip(drawn.min(0), 0, size))
    x1, y1 = np.ceil(np.clip(drawn.max(0), 0, size))
    return Image.fromarray(pixels.astype(np.uint8)), (x0, y0, x1 - x0, y1 - y0)


# ------------------------------------------------------------------------------ writing

_METADATA = ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
             "bounding_boxes.txt", "parts", "images", "MANIFEST.sha256")


def _prepare_out_dir(out_dir, overwrite):
    """Create ``out_dir``; an existing non-empty one is replaced only if it is ours."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty (pass overwrite=True / --overwrite)")
        if not (out_dir / "MANIFEST.sha256").is_file():
            raise FileExistsError(f"{out_dir} has no MANIFEST.sha256; refusing to overwrite "
                                  "a folder this generator did not write")
        for name in _METADATA:  # only the names this generator writes
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)


def _write_metadata(out_dir, folders, records):
    """records: (image id, class id, relpath, is_train, box, landmarks, visible) tuples."""
    _write_lines(out_dir / "classes.txt", [f"{k + 1} {f}" for k, f in enumerate(folders)])
    _write_lines(out_dir / "images.txt", [f"{r[0]} {r[2]}" for r in records])
    _write_lines(out_dir / "image_class_labels.txt", [f"{r[0]} {r[1]}" for r in records])
    _write_lines(out_dir / "train_test_split.txt", [f"{r[0]} {int(r[3])}" for r in records])
    _write_lines(out_dir / "bounding_boxes.txt",
                 [f"{r[0]} " + " ".join(f"{v:.1f}" for v in r[4]) for r in records])
    _write_lines(out_dir / "parts" / "parts.txt",
                 [f"{j + 1} {name}" for j, name in enumerate(PART_NAMES)])
    locs = []
    for img_id, _, _, _, _, pts, vis in records:
        for j in range(len(PART_NAMES)):
            x, y = pts[j] if vis[j] else (0.0, 0.0)  # CUB writes hidden parts as 0 0 0
            locs.append(f"{img_id} {j + 1} {x:.1f} {y:.1f} {int(vis[j])}")
    _write_lines(out_dir / "parts" / "part_locs.txt", locs)


def _write_manifest(out_dir):
    """MANIFEST.sha256 in ``sha256sum -c`` format, every file but itself, sorted."""
    lines = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(out_dir).as_posix()
        if rel != "MANIFEST.sha256":
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}")
    _write_lines(out_dir / "MANIFEST.sha256", lines)


def generate_toy_birds(out_dir, n_species=5, train_per_species=40, test_per_species=60,
                       image_size=128, seed=0, overwrite=False, poses=False, head_marks=False,
                       repeat_mark=False):
    """Write a drawn-bird dataset in the CUB-200-2011 layout to ``out_dir``; return its Path.

    Species i (1-based) is ``SPECIES[i-1]``; image ids run species by species. Within a
    species the train/test flags are shuffled (seeded), as in CUB. Images are JPEG.
    ``poses=True`` draws the birds of ``posed_birds`` (parts that move inside the box),
    ``head_marks=True`` too its design where only the head tells the species apart, and
    ``repeat_mark=True`` with it the tail in the colour of the head's mark.
    """
    if not 1 <= n_species <= MAX_SPECIES:
        raise ValueError(f"n_species must be in 1..{MAX_SPECIES}, got {n_species}")
    if min(train_per_species, test_per_species) < 0 or train_per_species + test_per_species < 1:
        raise ValueError("need non-negative per-species counts with at least one image")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if head_marks and not poses:
        raise ValueError("head_marks=True draws posed birds: pass poses=True too")
    if repeat_mark and not head_marks:
        raise ValueError("repeat_mark=True repeats a head mark: pass head_marks=True too")
    if poses:
        from .posed_birds import render_bird  # posed_birds builds on this module

        def render(spec, rng, size):
            return render_bird(spec, rng, size, head_marks=head_marks, repeat_mark=repeat_mark)
    else:
        render = _render
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    per_species = train_per_species + test_per_species
    folders, records = [], []
    for k, spec in enumerate(SPECIES[:n_species]):
        folder = f"{k + 1:03d}.{spec['name']}"
        folders.append(folder)
        (out_dir / "images" / folder).mkdir(parents=True, exist_ok=True)
        flags = np.arange(per_species) < train_per_species
        flags = np.random.default_rng([seed, k, 1 << 30]).permutation(flags)
        for i in range(per_species):
            image, box, pts, vis = render(spec, np.random.default_rng([seed, k, i]),
                                          image_size)[:4]
            rel = f"{folder}/{spec['name']}_{i + 1:04d}.jpg"
            image.save(out_dir / "images" / rel, "JPEG", quality=JPEG_QUALITY)
            records.append((len(records) + 1, k + 1, rel, flags[i], box, pts, vis))
    _write_metadata(out_dir, folders, records)
    _write_manifest(out_dir)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the toy-birds CUB-layout dataset.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-species", type=int, default=5)
    parser.add_argument("--train-per-species", type=int, default=40)
    parser.add_argument("--test-per-species", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poses", action="store_true",
                        help="birds in poses whose parts move inside their box (posed_birds)")
    parser.add_argument("--head-marks", action="store_true",
                        help="with --poses: species told apart by the head alone (shared body plumages)")
    parser.add_argument("--repeat-mark", action="store_true",
                        help="with --head-marks: the tail in the colour of the head's mark")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing folder written by this generator")
    args = parser.parse_args(argv)
    out = generate_toy_birds(args.out, args.n_species, args.train_per_species,
                             args.test_per_species, args.image_size, args.seed,
                             overwrite=args.overwrite, poses=args.poses,
                             head_marks=args.head_marks, repeat_mark=args.repeat_mark)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
