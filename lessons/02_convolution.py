"""Lesson 02: a convolution by loops, by im2col, and its backward pass by hand.

What you will learn:
- what a conv layer computes, written as four loops (``ti.conv2d_naive``);
- im2col: copy every window into a column, then the whole conv is one matrix
  product (``ti.im2col``, ``ti.conv2d_forward``); both give the same numbers;
- the backward pass (``ti.conv2d_backward``): dx, dW, db and their shapes, and one
  entry of dW recomputed by hand from its definition.

Picture: 02_conv.png, an input, an edge-detecting kernel and the map it produces.

Run:  python lessons/02_convolution.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["02_conv.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# ---- forward: loops vs im2col ----
x = rng.standard_normal((2, 3, 7, 7))  # (N, C, H, W)
W = rng.standard_normal((8, 3, 3, 3))  # (OC, C, KH, KW)
b = rng.standard_normal(8)  # (OC,)

y_loops = ti.conv2d_naive(x, W, b, stride=1, pad=0)
print(y_loops.shape)  # (2, 8, 5, 5)   OH = (7 + 2*0 - 3) // 1 + 1 = 5
print(ti.conv_out_size(7, 3, 1, 0), ti.conv_out_size(7, 3, 2, 1))  # 5 4

# im2col lays the windows out as (KH, KW, C, N, OH, OW); conv transposes x to (C, N, H, W)
# first so that the windows reshape into one matrix with a column per output pixel.
col = ti.im2col(x.transpose(1, 0, 2, 3), 3, 3, 1, 1, 0, 0)
print(col.shape)  # (3, 3, 3, 2, 5, 5)
print(col.reshape(3 * 3 * 3, 2 * 5 * 5).shape)  # (27, 50)   27 = KH*KW*C rows, 50 = N*OH*OW columns
# entry [i, j, c, n, oh, ow] is the pixel that kernel offset (i, j) sees at (oh, ow):
print(col[1, 2, 0, 1, 3, 4] == x[1, 0, 3 + 1, 4 + 2])  # True

y, cache = ti.conv2d_forward(x, W, b, stride=1, pad=0)  # (8, 27) @ (27, 50), then reshape
print(y.shape)  # (2, 8, 5, 5)
print(f"{np.abs(y - y_loops).max():.1e}")  # ~7e-15   float64 round-off: the same conv

# stride and padding change only the windows, not the idea
y2, _ = ti.conv2d_forward(x, W, b, stride=2, pad=1)
print(y2.shape, f"{np.abs(y2 - ti.conv2d_naive(x, W, b, 2, 1)).max():.1e}")  # (2, 8, 4, 4) ~4e-15

# ---- backward: given dL/dy, return dL/dx, dL/dW, dL/db ----
dout = rng.standard_normal(y.shape)  # dL/dy for some scalar loss L
dx, dW, db = ti.conv2d_backward(dout, cache)
print(dx.shape, dW.shape, db.shape)  # (2, 3, 7, 7) (8, 3, 3, 3) (8,)   each like its input

# db[o] = sum of dout over batch and positions (the bias is added everywhere)
print(f"{np.abs(db - dout.sum(axis=(0, 2, 3))).max():.1e}")  # ~2e-15
# dW[o, c, i, j] = sum_{n, oh, ow} dout[n, o, oh, ow] * x[n, c, oh + i, ow + j]
o, c, i, j = 5, 2, 0, 1
by_hand = sum(dout[n, o, oh, ow] * x[n, c, oh + i, ow + j]
              for n in range(2) for oh in range(5) for ow in range(5))
print(f"{dW[o, c, i, j]:.6f} {by_hand:.6f}")  # -14.557136 -14.557136
# dx[n, c, h, w] collects dout from every output whose window covers (h, w): the corner
# pixel (0, 0) lies in one window only, the centre (3, 3) in 3 * 3 = 9 of them.
print(f"{dx[0, 0, 0, 0]:.6f} {(dout[0, :, 0, 0] * W[:, 0, 0, 0]).sum():.6f}")  # 4.954973 4.954973

# ---- picture: an edge detector on a bright square ----
# (deep-learning "convolution" slides the kernel without flipping it: a cross-correlation)
img = np.zeros((1, 1, 12, 12))
img[0, 0, 3:9, 4:10] = 1.0  # a bright square
sobel = np.array([[[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]]])  # (1, 1, 3, 3)
edges, _ = ti.conv2d_forward(img, sobel, np.zeros(1), stride=1, pad=1)
print(edges[0, 0, 5].astype(int))  # [ 0  0  0  4  4  0  0  0  0 -4 -4  0]
# positive where dark turns bright going right (the left edge), negative at the right edge


def to_image(a, scale):
    """2-D array -> RGB picture: red > 0, white = 0, blue < 0, nearest-neighbour upscaled."""
    v = a / (np.abs(a).max() or 1.0)
    rgb = np.stack([1 - np.clip(-v, 0, 1), 1 - np.abs(v), 1 - np.clip(v, 0, 1)], axis=-1)
    pic = Image.fromarray((rgb * 255).astype(np.uint8))
    return pic.resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)


panels = [("input 12x12", to_image(img[0, 0], 16)), ("kernel 3x3", to_image(sobel[0, 0], 32)),
          ("output 12x12 (pad 1)", to_image(edges[0, 0], 16))]
canvas = Image.new("RGB", (3 * 192 + 4 * 16, 192 + 40), "white")
draw = ImageDraw.Draw(canvas)
for k, (title, pic) in enumerate(panels):
    left = 16 + k * (192 + 16) + (192 - pic.width) // 2
    top = 30 + (192 - pic.height) // 2
    canvas.paste(pic, (left, top))
    draw.rectangle([left - 1, top - 1, left + pic.width, top + pic.height], outline="gray")
    draw.text((16 + k * (192 + 16), 8), title, fill="black")
canvas.save(OUT / "02_conv.png")
print("saved", OUT / "02_conv.png")
