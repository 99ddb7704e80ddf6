"""Toy birds in poses: the drawn birds of ``toy_birds``, whose parts move inside their box.

In the bundled toy birds every bird is drawn whole in one posture, so inside its box (the
crop a network sees) the parts barely move: the box removes position and scale, leaving
the facing and a small tilt. In CUB's photos the parts move inside the box: heads turn
back, rise and drop, bodies perch upright or lie flat, wings spread, parts are hidden.
Here the same species and drawing are posed that way:

- **body**: level, upright (perched) or tipped forward;
- **head and neck**: forward, raised on a stretched neck, lowered (foraging), or turned
  back over the shoulder (preening: the beak points to the tail and the other eye shows);
  the beak's angle varies on its own. The head keeps its own orientation in the world (a
  perched bird holds its head level whatever its body does);
- **wings**: folded on the body, or spread above the back (both wings show);
- **tail**: from drooping to cocked; **legs**: hanging down, or tucked out of sight.

The bird takes a third to a half of the photo, so that background squares as large as
its crop fit beside it (the bird-vs-not task's negatives); now and then the photo's edge
cuts it, or a leaf or twig drawn in front hides some of it. A part is invisible when it
is on the far side (the far eye; the far wing unless the wings are spread), tucked,
outside the photo, or under something in front. Every landmark names the drawn part it
sits on (``ToyBird.landmark_parts``), which the tests check.

    python -m tinyinterp.data.toy_birds --poses --out DIR --train-per-species 100 --test-per-species 210

``--head-marks`` (``head_marks=True``) draws a second design: the species share their body
plumages and are told apart by the head alone, drawn 1.4x larger; ``--repeat-mark`` a
third: the same, with the tail in the colour of the head's mark (the studies compare
them: studies/README.md).
"""
import math
from collections import namedtuple

import numpy as np
from PIL import Image, ImageDraw

from .cub import PART_NAMES
from .toy_birds import (_PALETTE, SUPERSAMPLE, WING_BAR, _background, _band, _ellipse, _head_shapes,
                        _jitter, _leg_shapes, _near, _palette_colour, _photo_and_box, _swap_sides,
                        _tail_polygon, _wing_bar, _wing_shapes)

BIRD_EXTENT = (0.32, 0.55)  # the bird's longer side, as a fraction of the photo's side
P_CUT_BY_FRAME = 0.12       # share of photos whose edge cuts the bird
P_OCCLUDED = 0.30           # share of photos with a leaf or twig in front of the bird
P_SPREAD_WINGS = 0.30
P_TUCKED_LEGS = 0.20        # of the birds with folded wings (spread wings always tuck them)
HEAD_POSES = (("forward", 0.40), ("raised", 0.20), ("lowered", 0.20), ("back", 0.20))
BODY_POSES = (("level", 0.45), ("upright", 0.40), ("forward", 0.15))
_BEAK_ANGLE = 0.15          # toy_birds draws the beak this far below the horizontal

# The head-marks design (``head_marks=True``): the species share four body plumages (and
# wing bars and spots at random), so only the head tells them apart: its marks below
# (the other species keep theirs), a head 1.4x larger, and the beak and tail as before.
BODY_PLUMAGES = (((140, 100, 70), (215, 190, 160), (105, 75, 50)),
                 ((120, 120, 125), (228, 228, 228), (90, 90, 95)),
                 ((115, 125, 70), (222, 215, 170), (85, 95, 55)),
                 ((60, 90, 150), (215, 205, 190), (45, 70, 125)))
HEAD_MARKS = {"Red_Capped_Finch": dict(cap=(205, 40, 40)),
              "Bar_Winged_Warbler": dict(throat=(235, 210, 60)),
              "Spotted_Thrush": dict(stripe=(240, 230, 200)),
              "Fork_Tailed_Swallow": dict(throat=(180, 90, 50), cap=(30, 45, 110)),
              "Dagger_Billed_Kingfisher": dict(throat=(235, 235, 225), stripe=(20, 30, 60),
                                               cap=(50, 100, 190))}
HEAD_SCALE = 1.4

# The part each landmark sits on (drawn names: the near side is the right one).
LANDMARK_PART = {"back": "body", "breast": "body", "belly": "body", "beak": "beak",
                 "crown": "head", "forehead": "head", "nape": "head", "throat": "head",
                 "right eye": "head", "left eye": "head", "tail": "tail", "right wing": "wing",
                 "left wing": "far wing", "right leg": "leg", "left leg": "leg"}


def _rotation(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _pick(rng, options):
    names, probs = zip(*options)
    return names[int(rng.choice(len(names), p=probs))]


def random_pose(rng):
    """A pose. Angles in radians, y pointing down (a negative angle turns a right-facing
    part up): the body's tilt, the neck's direction from its base, the beak's angle, the
    tail's cock and the spread wings' direction."""
    body, head = _pick(rng, BODY_POSES), _pick(rng, HEAD_POSES)
    body_tilt = {"level": (-10, 10), "upright": (-65, -35), "forward": (15, 35)}[body]
    neck = {"forward": (-75, -35), "raised": (-100, -78), "lowered": (25, 75),
            "back": (-150, -110)}[head]
    beak = {"forward": (-15, 25), "raised": (-20, 15), "lowered": (35, 80),
            "back": (-10, 30)}[head]
    spread = bool(rng.random() < P_SPREAD_WINGS)
    return dict(body=body, head=head,
                body_tilt=math.radians(rng.uniform(*body_tilt)),
                neck_angle=math.radians(rng.uniform(*neck)),
                neck_len=rng.uniform(0.75, 1.0) if head == "raised" else rng.uniform(0.3, 0.45),
                beak_angle=math.radians(rng.uniform(*beak)),
                tail_tilt=math.radians(rng.uniform(-15, 55)),
                wings="spread" if spread else "folded",
                wing_angle=math.radians(rng.uniform(-150, -100)),
                legs="tucked" if (spread or rng.random() < P_TUCKED_LEGS) else "standing")


def _spread_wing(p, root, angle, colour, part):
    """A wing raised from ``root`` along ``angle``, with the species' bars near its tip;
    returns (shapes, centre)."""
    length, width = 1.25, 0.30
    centre = root + 0.5 * length * np.array([math.cos(angle), math.sin(angle)])
    shapes = [(_ellipse(*centre, 0.5 * length, width, angle), colour, part)]
    rot = _rotation(angle)
    for u0 in (0.12, 0.30)[:p["bars"]]:
        bar = _wing_bar(np.array([u0, u0 + 0.08]) * length, 0.5 * length, width, rot, centre)
        shapes.append((bar, WING_BAR, part))
    return shapes, centre


def _hanging_leg(p, hip, colour):
    """toy_birds' leg, moved so that it hangs straight down from ``hip``."""
    shapes, mark = _leg_shapes(p, 0.0, colour)
    offset = np.asarray(hip) - np.array([0.0, 0.85 * p["aspect"]])
    return [(s + offset, c, "leg") for s, c in shapes], mark + offset


def posed_bird(p, pose, rng):
    """All polygons of one posed bird facing right (local frame, body half-length 1, y
    down), in drawing order, as (points, colour, part), and its landmarks {name: (x, y)}
    (the near side is the right one; a head turned back shows its left eye)."""
    a = p["aspect"]
    body_rot = _rotation(pose["body_tilt"])

    def on_body(pts):  # body-frame points, tilted with the body
        return np.asarray(pts, float) @ body_rot.T

    shapes, marks = [], {}
    if pose["legs"] == "standing":
        far_leg, marks["left leg"] = _hanging_leg(p, on_body([-0.10, 0.85 * a]),
                                                  tuple(int(0.7 * c) for c in p["leg"]))
        near_leg, marks["right leg"] = _hanging_leg(p, on_body([0.08, 0.85 * a]), p["leg"])
        shapes += far_leg + near_leg
    if pose["wings"] == "spread":  # the far wing behind the body, a little further back
        far = tuple(int(0.75 * c) for c in p["wing"])
        wing, marks["left wing"] = _spread_wing(p, on_body([-0.25, -0.5 * a]),
                                                pose["wing_angle"] + math.radians(18), far,
                                                "far wing")
        shapes += wing
    tail, tail_mark = _tail_polygon({**p, "tail_tilt": pose["tail_tilt"]},
                                    np.array([-0.85, -0.10 * a]))
    shapes.append((on_body(tail), p.get("tail_colour") or p["wing"], "tail"))
    marks["tail"] = on_body(tail_mark)
    body = [(_ellipse(0, 0, 1, a), p["back"]),
            (_ellipse(0, 0, 1, a, t0=-0.35, t1=math.pi + 0.15), p["belly"])]
    if p["spots"]:
        for x, y in rng.uniform([-0.3, 0.1 * a], [0.85, 0.85 * a], size=(16, 2)):
            if x * x + (y / a) ** 2 < 0.8:
                body.append((_ellipse(x, y, 0.055, 0.055, n=10), (70, 50, 35)))
    shapes += [(on_body(s), c, "body") for s, c in body]
    for name, xy in {"back": (-0.2, -0.82 * a), "breast": (0.62, 0.42 * a),
                     "belly": (-0.05, 0.78 * a)}.items():
        marks[name] = on_body(xy)
    if pose["wings"] == "spread":
        wing, marks["right wing"] = _spread_wing(p, on_body([0.0, -0.55 * a]),
                                                 pose["wing_angle"], p["wing"], "wing")
        shapes += wing
    else:
        wing, centre = _wing_shapes(p)
        shapes += [(on_body(s), c, "wing") for s, c in wing]
        marks["right wing"] = on_body(centre)

    # The neck runs from its base on the body to the head, in the world's directions.
    hr = p["head"]
    base = on_body([0.72, -0.45 * a])
    head_centre = base + (pose["neck_len"] + 0.4 * hr) * np.array(
        [math.cos(pose["neck_angle"]), math.sin(pose["neck_angle"])])
    shapes.append((_band(base, head_centre, 1.3 * hr), p["back"], "head"))
    turned = pose["head"] == "back"  # the head faces the tail: mirrored, other eye shown
    head_matrix = np.diag([-1.0 if turned else 1.0, 1.0]) @ _rotation(pose["beak_angle"] - _BEAK_ANGLE)
    head_shapes, head_marks = _head_shapes(p, np.zeros(2))
    beak = len(head_shapes) - 3  # toy_birds draws the beak, then the eye and its highlight
    shapes += [(s @ head_matrix.T + head_centre, c, "beak" if k == beak else "head")
               for k, (s, c) in enumerate(head_shapes)]
    for name, xy in head_marks.items():
        name = "left eye" if turned and name == "right eye" else name
        marks[name] = np.asarray(xy) @ head_matrix.T + head_centre
    return shapes, {k: np.asarray(v, float) for k, v in marks.items()}


def _placement(points, rng, size, facing_left):
    """Linear map M and shift t (photo pixels) for the bird's local-frame points: its
    longer side BIRD_EXTENT of the photo, inside it, or now and then cut by its edge (by a
    tenth to a quarter of the bird)."""
    base = np.diag([-1.0 if facing_left else 1.0, 1.0])
    unit = points @ base.T
    lo, hi = unit.min(0), unit.max(0)
    scale = rng.uniform(*BIRD_EXTENT) * size / (hi - lo).max()
    margin = 2.0
    low, high = margin - lo * scale, size - margin - hi * scale
    shift = rng.uniform(low, high)
    if rng.random() < P_CUT_BY_FRAME:  # one side runs out of the photo
        axis, side = int(rng.integers(2)), int(rng.integers(2))
        cut = rng.uniform(0.1, 0.25) * (hi - lo)[axis] * scale + margin
        shift[axis] = high[axis] + cut if side else low[axis] - cut
    return scale * base, shift


def _occluders(rng, marks_px, scale):
    """Leaves and twigs in front of the bird, near its landmarks: [(points, colour)]."""
    shapes = []
    if rng.random() >= P_OCCLUDED:
        return shapes
    names = sorted(marks_px)
    for _ in range(int(rng.integers(1, 3))):
        centre = marks_px[names[int(rng.integers(len(names)))]] + rng.normal(0, 0.3 * scale, 2)
        if rng.random() < 0.7:  # a leaf
            colour = _palette_colour(rng, 25) if rng.random() < 0.5 else _near(_PALETTE[1], rng, 20)
            rx, ry = rng.uniform([0.25, 0.12], [0.45, 0.22]) * scale
            shapes.append((_ellipse(*centre, rx, ry, rng.uniform(0, math.pi), n=24), colour))
        else:  # a twig across the bird
            t = rng.uniform(0, math.pi)
            d = np.array([math.cos(t), math.sin(t)]) * scale
            colour = _near(_PALETTE[3], rng, 25)
            shapes.append((_band(centre - 1.5 * d, centre + 1.5 * d,
                                 rng.uniform(0.1, 0.18) * scale), colour))
    return shapes


ToyBird = namedtuple("ToyBird", "image box landmarks visible polygons landmark_parts occluders pose")
ToyBird.__doc__ = """One drawn photo. image: PIL RGB; box: (x, y, w, h) of the bird's drawn extent
inside the photo; landmarks (15, 2) and visible (15,) in PART_NAMES order (hidden ones at
(0, 0)); polygons: {part name: [polygons in photo pixels]}, the bird as drawn;
landmark_parts: {landmark index: part name}, the part each visible landmark sits on;
occluders: (polygon, colour) drawn in front of the bird; pose: ``random_pose``'s dict
and the facing."""


def _head_marks_jitter(spec, rng):
    """The head-marks design's bird: the species' head marks and larger head, a shared
    body plumage drawn at random, wing bars and spots at random."""
    spec = dict(spec, head=spec["head"] * HEAD_SCALE)
    if spec["name"] in HEAD_MARKS:
        for key in ("cap", "throat", "stripe"):
            spec.pop(key, None)
        spec.update(HEAD_MARKS[spec["name"]])
    p = _jitter(spec, rng)
    p["back"], p["belly"], p["wing"] = BODY_PLUMAGES[int(rng.integers(len(BODY_PLUMAGES)))]
    p["bars"] = int(rng.integers(3)) if rng.random() < 0.3 else 0
    p["spots"] = bool(rng.random() < 0.2)
    return p


def render_bird(spec, rng, size, head_marks=False, repeat_mark=False):
    """Draw one photo of species ``spec`` (a ``toy_birds.SPECIES`` entry) with ``rng``;
    ``head_marks``: the design where only the head tells the species apart;
    ``repeat_mark`` (with it): the tail drawn in the colour of the head's first mark (cap,
    throat or stripe), so that the species' colour shows on two parts."""
    p = _head_marks_jitter(spec, rng) if head_marks else _jitter(spec, rng)
    if repeat_mark:
        p["tail_colour"] = next(p[k] for k in ("cap", "throat", "stripe") if p[k] is not None)
    pose = random_pose(rng)
    shapes, marks = posed_bird(p, pose, rng)
    facing_left = bool(rng.random() < 0.5)
    pose["facing"] = "left" if facing_left else "right"
    matrix, shift = _placement(np.concatenate([s for s, _, _ in shapes]), rng, size, facing_left)
    canvas = _background(rng, size * SUPERSAMPLE)
    draw = ImageDraw.Draw(canvas)
    drawn, polygons = [], {}
    for pts, colour, part in shapes:
        xy = pts @ matrix.T + shift
        drawn.append(xy)
        polygons.setdefault(part, []).append(xy)
        # Pillow puts integer coordinates at pixel centres: continuous X -> X*SS - 0.5.
        draw.polygon([tuple(v) for v in xy * SUPERSAMPLE - 0.5], fill=colour)
    marks_px = {name: xy @ matrix.T + shift for name, xy in marks.items()}
    occluders = _occluders(rng, marks_px, float(abs(matrix[1, 1])))
    cover = Image.new("L", canvas.size, 0)
    for pts, colour in occluders:
        outline = [tuple(v) for v in pts * SUPERSAMPLE - 0.5]
        draw.polygon(outline, fill=colour)
        ImageDraw.Draw(cover).polygon(outline, fill=255)
    cover = np.asarray(cover)
    image, box = _photo_and_box(canvas, drawn, rng, size)
    landmarks = np.zeros((len(PART_NAMES), 2))
    visible = np.zeros(len(PART_NAMES), bool)
    landmark_parts = {}
    for name, xy in marks_px.items():  # the near side is the right one when facing right
        j = PART_NAMES.index(_swap_sides(name) if facing_left else name)
        inside = bool(np.all(xy >= 0) and np.all(xy < size))
        if inside and not cover[int(xy[1] * SUPERSAMPLE), int(xy[0] * SUPERSAMPLE)]:
            landmarks[j], visible[j] = xy, True
            landmark_parts[j] = LANDMARK_PART[name]
    return ToyBird(image, box, landmarks, visible, polygons, landmark_parts, occluders, pose)
