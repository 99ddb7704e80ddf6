"""Drawing with Pillow: the colour map and heat maps, tiles in grids and labelled tables,
captions, dots and crosses, and line plots. Every function returns a PIL Image (or, for
``heatmap_overlay`` and ``colormap``, a uint8 array) and knows nothing of nets or runs;
``visualize.py`` draws a run's figures with them.
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .backend import to_numpy

WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (70, 70, 70), (225, 225, 225)
CROSS_COLOUR = (255, 235, 0)
FONT_SIZE, TITLE_SIZE, CAPTION_SIZE = 12, 15, 13
LABEL_H = 16  # height of the text band under each tile of grid()
TITLE_H = 24  # height of the title band of grid() and of tile tables

# An "inferno-like" ramp: 8 anchors sampled from matplotlib's inferno (black -> purple ->
# orange -> pale yellow); its luminance rises monotonically, so brighter = stronger.
_ANCHORS = np.array([
    (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99),
    (212, 72, 66), (245, 125, 21), (250, 193, 39), (252, 255, 164)], dtype=np.float64)


def font(size=FONT_SIZE):
    """Pillow's default font at ``size`` px (a scalable one on Pillow >= 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow: one fixed-size bitmap font
        return ImageFont.load_default()


def text_width(text, fnt):
    """The width in pixels of ``text`` in the font ``fnt``."""
    left, _, right, _ = fnt.getbbox(text)
    return right - left


def colormap(values):
    """Map values in [0, 1] (clipped; NaN -> 0) to uint8 RGB, shape values.shape + (3,),
    by linear interpolation between the anchor colours."""
    v = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0))
    pos = v * (len(_ANCHORS) - 1)
    lo = np.minimum(np.floor(pos).astype(int), len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _ANCHORS[lo] * (1.0 - frac) + _ANCHORS[lo + 1] * frac
    return np.round(rgb).astype(np.uint8)


def _as_array(image):
    return np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)


def heatmap_overlay(image, fmap, alpha=0.6, vmax=None, size=None):
    """Blend a feature map over an image.

    Args:
        image: uint8 (S, S, 3) (or a PIL image). fmap: (n, n) non-negative map.
        alpha: weight of the heat map (0: the image only, 1: the heat map only).
        vmax: the value drawn at full brightness (default: the map's own max; a map that
            is all zero stays dark). Pass a shared vmax to compare maps.
        size: draw at ``size`` x ``size`` pixels instead of S (the image is resized
            bicubically).
    Returns:
        uint8 (size or S, same, 3): (1 - alpha) * image + alpha * colormap(fmap / vmax),
        the map upsampled by Pillow's bilinear resize.
    """
    img = _as_array(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"heatmap_overlay: image must be (S, S, 3), got {img.shape}")
    fmap = np.asarray(to_numpy(fmap), dtype=np.float32)
    if fmap.ndim != 2:
        raise ValueError(f"heatmap_overlay: fmap must be (n, n), got {fmap.shape}")
    h, w = img.shape[:2] if size is None else (size, size)
    if (h, w) != img.shape[:2]:
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((w, h), Image.BICUBIC))
    peak = float(fmap.max()) if vmax is None else float(vmax)
    norm = fmap / peak if peak > 0 else np.zeros_like(fmap)
    up = np.asarray(Image.fromarray(norm.astype(np.float32)).resize((w, h), Image.BILINEAR))
    out = (1.0 - alpha) * img.astype(np.float64) + alpha * colormap(up).astype(np.float64)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_image(tile):
    return tile.convert("RGB") if isinstance(tile, Image.Image) else Image.fromarray(
        np.asarray(tile, dtype=np.uint8))


def _fit(text, width, fnt):
    """``text``, shortened with '..' until it is at most ``width`` px wide."""
    if text_width(text, fnt) <= width:
        return text
    while len(text) > 1 and text_width(text + "..", fnt) > width:
        text = text[:-1]
    return text + ".."


def _wrap(text, width, fnt, lines=None):
    """``text`` broken at spaces into lines at most ``width`` px wide (a word wider than
    that is shortened with '..'); with ``lines``, at most that many (the last shortened)."""
    out = []
    for word in text.split():
        if out and text_width(out[-1] + " " + word, fnt) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    if lines is not None and len(out) > lines:
        out = out[:lines - 1] + [" ".join(out[lines - 1:])]
    return [_fit(line, width, fnt) for line in out]


def grid(images, cols, pad=4, labels=None, title=None, bg=WHITE):
    """Tiles (PIL images or uint8 arrays, all the same size w x h) in rows of ``cols``.

    Each tile gets a LABEL_H band below it for its label when ``labels`` is given, and
    the picture a TITLE_H band on top per line of ``title`` (lines split at "\n"). Size:
        width  = pad + cols * (w + pad)
        height = lines * TITLE_H + pad + rows * (h + [LABEL_H] + pad),
    with rows = ceil(len(images) / cols) and cols capped at len(images).
    """
    tiles = [_to_image(t) for t in images]
    if not tiles:
        raise ValueError("grid: no images")
    w, h = tiles[0].size
    if any(t.size != (w, h) for t in tiles):
        raise ValueError("grid: all tiles must have the same size")
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    lab = LABEL_H if labels is not None else 0
    lines = title.split("\n") if title else []
    top = TITLE_H * len(lines)
    out = Image.new("RGB", (pad + cols * (w + pad), top + pad + rows * (h + lab + pad)), bg)
    draw = ImageDraw.Draw(out)
    small = font()
    for k, line in enumerate(lines):
        draw.text((pad, TITLE_H * k + TITLE_H // 2), line, fill=BLACK if k == 0 else GREY,
                  font=font(TITLE_SIZE if k == 0 else FONT_SIZE), anchor="lm")
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        x, y = pad + c * (w + pad), top + pad + r * (h + lab + pad)
        out.paste(tile, (x, y))
        if labels is not None:
            text = _fit(str(labels[k]), w + pad, small)
            draw.text((x + w / 2, y + h + lab / 2), text, fill=BLACK, font=small, anchor="mm")
    return out


def hstack(images, pad=16, bg=WHITE):
    """Pictures side by side, top-aligned."""
    width = sum(im.width for im in images) + pad * (len(images) - 1)
    out = Image.new("RGB", (width, max(im.height for im in images)), bg)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + pad
    return out


def vstack(images, pad=8, bg=WHITE):
    """Pictures one above the other, left-aligned."""
    height = sum(im.height for im in images) + pad * (len(images) - 1)
    out = Image.new("RGB", (max(im.width for im in images), height), bg)
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + pad
    return out


def tile_table(rows, title, row_labels, col_labels, pad=3):
    """A table of equal-sized tiles: a title, column labels on top and (multi-line)
    row labels on the left."""
    small = font()
    rows = [[_to_image(t) for t in row] for row in rows]
    w, h = rows[0][0].size
    ncols = max(len(r) for r in rows)
    label_w = max(max((text_width(line, small) for line in str(t).split("\n")), default=0)
                  for t in row_labels) + 10
    top = TITLE_H + 2 * LABEL_H  # column labels on up to two lines
    out = Image.new("RGB", (label_w + ncols * (w + pad) + pad, top + len(rows) * (h + pad) + pad),
                    WHITE)
    draw = ImageDraw.Draw(out)
    draw.text((4, TITLE_H // 2), title, fill=BLACK, font=font(TITLE_SIZE), anchor="lm")
    for c, text in enumerate(col_labels[:ncols]):
        x = label_w + c * (w + pad) + w / 2
        draw.multiline_text((x, top - 2), "\n".join(_wrap(str(text), w, small, lines=2)), fill=GREY,
                            font=small, anchor="md", align="center", spacing=1)
    for r, (row, text) in enumerate(zip(rows, row_labels)):
        y = top + r * (h + pad)
        draw.multiline_text((label_w - 6, y + h / 2), str(text), fill=BLACK, font=small,
                            anchor="rm", align="right", spacing=2)
        for c, tile in enumerate(row):
            out.paste(tile, (label_w + c * (w + pad), y))
    return out


def caption(lines, width):
    """Lines of explanation under a figure, each wrapped to its width."""
    fnt = font(CAPTION_SIZE)
    wrapped = [part for line in lines for part in _wrap(line, width - 8, fnt)]
    step = CAPTION_SIZE + 5
    im = Image.new("RGB", (width, step * len(wrapped) + 6), WHITE)
    draw = ImageDraw.Draw(im)
    for k, line in enumerate(wrapped):
        draw.text((4, 3 + step * k + step / 2), line, fill=BLACK, font=fnt, anchor="lm")
    return im


def draw_dot(draw, xy, colour, radius=4):
    """A filled circle with a black rim at ``xy`` (a landmark)."""
    x, y = xy
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=BLACK)


def fit_cross(x, y, arm, side):
    """(x, y, arm) of an X that stays whole inside a ``side`` x ``side`` tile (its 5 px
    stroke included): the arm shortened near the edge (to 4 px at least), the centre moved
    inward only when it is under 6 px from the edge."""
    x, y = min(max(x, 6), side - 6), min(max(y, 6), side - 6)
    return x, y, max(4, min(arm, x - 2, side - 2 - x, y - 2, side - 2 - y))


def draw_cross(draw, xy, colour=CROSS_COLOUR, arm=7, side=None):
    """An X at ``xy``; with ``side``, inside a tile of that side (:func:`fit_cross`)."""
    x, y = xy
    if side is not None:
        x, y, arm = fit_cross(x, y, arm, side)
    for width, fill in ((5, BLACK), (3, colour)):
        draw.line((x - arm, y - arm, x + arm, y + arm), fill=fill, width=width)
        draw.line((x - arm, y + arm, x + arm, y - arm), fill=fill, width=width)


def nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi]: (ticks, step)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        d = abs(lo) * 0.1 or 1.0
        lo, hi = lo - d, hi + d
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)], step


def _tick_text(v, step):
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if step * 10 ** decimals % 1:  # e.g. 0.25
        decimals += 1
    if abs(v) >= 1e4 or (v and abs(v) < 1e-3):
        return f"{v:.2g}"
    return f"{v:.{decimals}f}"


def _dashed(draw, points, fill, width, dash=6, gap=4):
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        s = 0.0
        while s < length:
            e = min(s + dash, length)
            draw.line((x0 + (x1 - x0) * s / length, y0 + (y1 - y0) * s / length,
                       x0 + (x1 - x0) * e / length, y0 + (y1 - y0) * e / length),
                      fill=fill, width=width)
            s = e + gap


def epoch_axis(series):
    """(first, last, ticks) of the epoch axis of ``series`` [(xs, ...)]: from the first
    epoch drawn (a fine-tuned net's start at 13 after 12 pretraining epochs), at most 9
    integer ticks."""
    x0 = min(min(s[0]) for s in series)
    x1 = max(x0 + 1, max(max(s[0]) for s in series))
    step = max(1, math.ceil((x1 - x0) / 8))
    return x0, x1, list(range(x0, x1 + 1, step))


def plot(series, title, size=(330, 250), xlabel="epoch", empty="no data", ylim=None):
    """A line plot: series = [(xs, ys, colour, dashed)] or [(xs, ys, colour, dashed,
    width)] (line width, default 2; a wide series drawn first stays visible around a
    narrow one on top of it), x in epochs (integer ticks, from the data's first epoch);
    ``ylim`` = (lo, hi) widens the y range to at least that (default: the data's)."""
    im = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(im)
    small = font()
    draw.text((size[0] / 2, 10), title, fill=BLACK, font=font(TITLE_SIZE - 1), anchor="mm")
    series = [(list(xs), [float(y) for y in ys], c, d, w) for xs, ys, c, d, w in
              (tuple(s) + (2,) * (5 - len(s)) for s in series)
              if len(xs) and all(math.isfinite(float(y)) for y in ys)]
    if not series:
        draw.text((size[0] / 2, size[1] / 2), empty, fill=GREY, font=small, anchor="mm")
        return im
    ys_all = [y for s in series for y in s[1]]
    lo, hi = min(ys_all), max(ys_all)
    if ylim is not None:
        lo, hi = min(lo, ylim[0]), max(hi, ylim[1])
    yticks, ystep = nice_ticks(lo, hi)
    y0, y1 = yticks[0], yticks[-1]
    x0, x1, xticks = epoch_axis(series)
    left = 8 + max(text_width(_tick_text(v, ystep), small) for v in yticks)
    box = (left, 24, size[0] - 12, size[1] - 34)  # plot area

    def px(x):
        return box[0] + (x - x0) / (x1 - x0) * (box[2] - box[0])

    def py(y):
        return box[3] - (y - y0) / (y1 - y0) * (box[3] - box[1])

    for v in yticks:
        draw.line((box[0], py(v), box[2], py(v)), fill=LIGHT)
        draw.line((box[0] - 4, py(v), box[0], py(v)), fill=BLACK)
        draw.text((box[0] - 6, py(v)), _tick_text(v, ystep), fill=BLACK, font=small, anchor="rm")
    for v in xticks:
        draw.line((px(v), box[3], px(v), box[3] + 4), fill=BLACK)
        draw.text((px(v), box[3] + 6), str(v), fill=BLACK, font=small, anchor="mt")
    draw.text(((box[0] + box[2]) / 2, size[1] - 4), xlabel, fill=BLACK, font=small, anchor="mb")
    draw.rectangle(box, outline=BLACK)
    for xs, ys, colour, dashed, width in series:
        pts = [(px(x), py(y)) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            if dashed:
                _dashed(draw, pts, colour, width)
            else:
                draw.line(pts, fill=colour, width=width, joint="curve")
        r = 2 + width // 2  # markers grow with the line
        for x, y in pts:
            if dashed:
                draw.rectangle((x - r + 0.5, y - r + 0.5, x + r - 0.5, y + r - 0.5), fill=WHITE,
                               outline=colour, width=max(1, width // 2))
            else:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return im
