"""Lesson 12: the fast path for stride-1 "same" convs: im2col from shifted rows of a padded grid.

What you will learn:
- the padded grid: each channel becomes one flat row (images one after another, a zero
  after each image row, zero rows after each image, an all-zero image at both ends), so
  the pixel at kernel offset (i, j) is a *constant* flat distance away from any position,
  and the zero padding comes for free;
- the im2col matrix is then just the grid shifted by those distances (contiguous
  slices); one matrix product gives the conv, as ``ti.conv2d_naive`` does by loops;
- the newer layout: one kernel row's offsets in the matrix, all kernel rows multiplied at
  once, the KH blocks of the product added with a shift (fewer copied rows, some adds);
- the library's grid has no zero column: the im2col entries that wrap around the side of
  an image are zeroed instead, so no work goes to the zero columns;
- the backward without col2im: dx is the same kind of conv, of dout with the transposed,
  flipped weights;
- how much faster ``ti.conv2d_forward`` is than a plain im2col and one matrix product
  (timed on your machine);
- fusion: the ReLU after a conv done inside the conv (``relu=True``), which is what
  ``ti.Sequential`` does for every Conv2d that a ReLU follows;
- threads: element-wise passes split over channels, and the conv's chunks over threads,
  one share per core (timed on your machine), with bit for bit the same numbers.

Picture: 12_padded_grid.png, the grid of a tiny batch (pixels, gaps, margins) and the 9
cells a 3x3 kernel reads around one pixel, in 2-D and along the flat row.

Run:  python lessons/12_fast_conv.py
"""
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["12_padded_grid.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def embed(x, PH, PW):
    """(N, C, H, W) -> the (C, (N+2) * (H+PH) * (W+PW)) padded grid, one flat row per channel."""
    N, C, H, W = x.shape
    grid = np.zeros((C, N + 2, H + PH, W + PW), dtype=x.dtype)  # N images + a margin at each end
    grid[:, 1:N + 1, :H, :W] = x.transpose(1, 0, 2, 3)  # the pixels; zeros after each row and image
    return grid.reshape(C, -1)


# ---- 1. the padded grid, by hand: 2 images of 3x4, 1 channel, a 3x3 kernel ----
N, C, H, W, KH, KW = 2, 1, 3, 4, 3, 3
PH, PW = KH // 2, KW // 2  # "same" padding: the output is H x W
x = np.arange(1.0, N * H * W + 1).reshape(N, C, H, W)  # pixels 1..12 (image 0), 13..24 (image 1)
grid = embed(x, PH, PW)
row = W + PW  # one image row and its trailing zero
block = (H + PH) * row  # one image and its zero row; the margins are one block each
start, length = block, N * block  # where the images' grid positions begin, and how many
print(row, block, grid.shape)  # 5 20 (1, 80)
# Written in lines of `row` cells (16 lines of 5): margin, image 0, image 1, margin
names = ["margin"] * 4 + ["image 0"] * 3 + ["gap row"] + ["image 1"] * 3 + ["gap row"] + ["margin"] * 4
for k, line in enumerate(grid[0].reshape(-1, row).astype(int)):
    print(f"  flat {k * row:2d}-{k * row + row - 1:2d}:", " ".join(f"{v:2d}" for v in line), f"  {names[k]}")

# Seen from any position p, the pixel at kernel offset (i, j) is at p + (i - PH) * row + (j - PW)
offsets = [(i - PH) * row + (j - PW) for i in range(KH) for j in range(KW)]
print(offsets)  # [-6, -5, -4, -1, 0, 1, 4, 5, 6]
p = start + 1 * block + 0 * row + 0  # pixel (image 1, row 0, column 0), value 13
print(grid[0, [p + d for d in offsets]].reshape(KH, KW).astype(int).tolist())  # [[0, 0, 0], [0, 13, 14], [0, 17, 18]]
# The padding comes for free: its left neighbours are the zeros after the previous lines
# (the flat row wraps), the row above is image 0's zero row. The same holds at every pixel:
xpad = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
same = all(np.array_equal(grid[0, [start + n * block + h * row + w + d for d in offsets]].reshape(KH, KW),
                          xpad[n, 0, h:h + KH, w:w + KW])
           for n in range(N) for h in range(H) for w in range(W))
print(same)  # True   every 3x3 window of the zero-padded images, read at fixed offsets

# ---- 2. the im2col matrix from shifted slices ----
# Row (i, j, c) of the im2col matrix is channel c of the grid shifted by offset (i, j):
# col[(i, j, c), q] = grid[c, start + q + off_ij] for every grid position q of the images.
# One contiguous slice per row, and the margins keep every slice inside the grid.
C, OC = 3, 4
x = rng.standard_normal((N, C, H, W))
w = rng.standard_normal((OC, C, KH, KW))
b = rng.standard_normal(OC)
grid = embed(x, PH, PW)  # (3, 80)
col = np.concatenate([grid[:, start + d:start + d + length] for d in offsets])  # rows (i, j, c)
print(col.shape)  # (27, 40)   KH*KW*C rows, one column per grid position (pixels and gaps)
wmat = w.transpose(0, 2, 3, 1).reshape(OC, KH * KW * C)  # columns in the same (i, j, c) order
out = wmat @ col + b[:, None]  # (OC, 40): the conv at every grid position
# read off the pixels, skip the gap positions (their values are computed, never used)
y = out.reshape(OC, N, H + PH, W + PW)[:, :, :H, :W].transpose(1, 0, 2, 3)
print(y.shape, f"{np.abs(y - ti.conv2d_naive(x, w, b, stride=1, pad=1)).max():.0e}")  # (2, 4, 3, 4) ~3e-15
print(f"{length / (N * H * W) - 1:.0%}")  # 67%   extra work on the gaps here; 3% at 64x64

# ---- 3. one kernel row in the matrix, the kernel rows summed after the product ----
# Only the KW offsets of one kernel row (j - PW) go into the matrix, over the positions
# plus PH image rows above and below them (the halo). Kernel row i reads the same
# pixels i image rows (i * row flat positions) further on, so one product with all
# kernel rows' weights, W[(i, o), (j, c)], gives KH blocks to add with those shifts.
halo = PH * row
col1 = np.concatenate([grid[:, start - halo + j - PW:start - halo + j - PW + length + 2 * halo]
                       for j in range(KW)])  # rows (j, c)
print(col1.shape)  # (9, 50)   KW*C rows, the 40 positions plus 5 halo columns each side
w_rows = w.transpose(2, 0, 3, 1).reshape(KH * OC, KW * C)  # [(i, o), (j, c)]
P = w_rows @ col1  # (KH*OC, 50)
out1 = sum(P[i * OC:(i + 1) * OC, i * row:i * row + length] for i in range(KH)) + b[:, None]
y1 = out1.reshape(OC, N, H + PH, W + PW)[:, :, :H, :W].transpose(1, 0, 2, 3)
print(f"{np.abs(y1 - ti.conv2d_naive(x, w, b, stride=1, pad=1)).max():.0e}")  # ~3e-15

# Which is cheaper? Per position, stacking copies KH*KW*C rows into the matrix; summing
# copies KW*C rows and adds (KH-1)*OC rows of P. A 32 -> 32 channel 3x3 conv:
C32 = OC32 = 32
print(KH * KW * C32, "copied rows stacked;", KW * C32, "copied +", (KH - 1) * OC32, "added rows summed")
# 288 copied rows stacked; 96 copied + 64 added rows summed
# Summing saves (KH-1)*KW*C copies for (KH-1)*OC additions: it pays when OC < KW*C. That
# is the library's rule; the first conv of the small VGG (3 -> 32) stacks (27 rows).
for c_in, c_out in [(3, 32), (32, 32), (32, 64), (128, 128)]:
    print(f"{c_in:3d} -> {c_out:3d}:", "summed" if c_out < KW * c_in else "stacked")
# 3 -> 32: stacked, 32 -> 32: summed, 32 -> 64: summed, 128 -> 128: summed

# ---- 3b. the library's grid: no zero column, the wrapped entries zeroed instead ----
# The zero after each image row is a grid position like any other, so the conv is
# computed there for nothing: 1.5% of the positions at 64x64, 11% at 8x8, 20% here. The
# library's grid leaves it out (row = W). The zero rows still give the vertical padding,
# but the left neighbour of column 0 is now the previous row's last pixel, so in the
# im2col matrix the entries whose offset crosses the side of the image (column
# w + j - PW outside [0, W)) are set to zero: every W-th entry of the rows of j = 0 and
# j = KW - 1, cheap writes into a matrix that is in the cache anyway.
block2 = (H + PH) * W  # one image and its zero row, no zero column
grid2 = np.zeros((C, N + 2, H + PH, W))  # one blank image of margin at each end
grid2[:, 1:N + 1, :H] = x.transpose(1, 0, 2, 3)
grid2 = grid2.reshape(C, -1)
column = np.arange(N * block2) % W  # the image column w of every grid position
parts = []
for i in range(KH):
    for j in range(KW):
        first = block2 + (i - PH) * W + (j - PW)
        part = grid2[:, first:first + N * block2].copy()
        part[:, (column + j - PW < 0) | (column + j - PW >= W)] = 0  # crossed the side
        parts.append(part)
col2 = np.concatenate(parts)  # rows (i, j, c), as in part 2
y2 = (wmat @ col2 + b[:, None]).reshape(OC, N, H + PH, W)[:, :, :H].transpose(1, 0, 2, 3)
print(col2.shape, f"{np.abs(y2 - ti.conv2d_naive(x, w, b, stride=1, pad=1)).max():.0e}")  # (27, 32) ~3e-15

# ---- 4. the backward without col2im ----
# dx[c, t] collects dout[o, t - off_ij] * w[o, c, i, j]: the outputs whose windows cover t.
# Negating the offset is flipping the kernel (-off_ij = off at (KH-1-i, KW-1-j)), so dx is
# the same kind of conv, of dout with wf[c, o, i, j] = w[o, c, KH-1-i, KW-1-j].
x = rng.standard_normal((2, 3, 5, 6))
w = rng.standard_normal((4, 3, 3, 3))
y, cache = ti.conv2d_forward(x, w, rng.standard_normal(4), stride=1, pad=1)
dout = rng.standard_normal(y.shape)
dx, dw, db = ti.conv2d_backward(dout, cache)
wf = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]  # (C, OC, KH, KW): transposed and flipped
dx_conv, _ = ti.conv2d_forward(dout, wf, np.zeros(3), stride=1, pad=1)
print(dx.shape, f"{np.abs(dx - dx_conv).max():.0e}")  # (2, 3, 5, 6) 0e+00   the library computes dx this way
print(f"{np.abs(dx - ti.conv2d_naive(dout, wf, np.zeros(3), 1, 1)).max():.0e}")  # ~4e-15   the loops agree
# (the library also takes dW from the same im2col matrix of dout, so it builds it once)

# ---- 5. timing: the library's conv vs a plain im2col and one matrix product ----
# These numbers depend on your machine (CPU, BLAS, threads, load); nothing is asserted.
N, C, OC, H, W = 8, 32, 32, 32, 32
x = rng.standard_normal((N, C, H, W)).astype(np.float32)
w = (rng.standard_normal((OC, C, 3, 3)) * 0.1).astype(np.float32)
b = np.zeros(OC, dtype=np.float32)


def plain_conv(x, w, b):
    """Lesson 02's conv: im2col (9x the input) and one matrix product."""
    col = ti.im2col(x.transpose(1, 0, 2, 3), 3, 3, 1, 1, 1, 1).reshape(9 * C, N * H * W)
    y = w.transpose(0, 2, 3, 1).reshape(OC, 9 * C) @ col + b[:, None]
    return y.reshape(OC, N, H, W).transpose(1, 0, 2, 3)


def seconds_per_call(f, repeats=15):
    """Median time of one call over `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x, w, b)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


print(f"{np.abs(ti.conv2d_forward(x, w, b, 1, 1)[0] - plain_conv(x, w, b)).max():.0e}")  # ~5e-06   float32 round-off
plain_conv(x, w, b), ti.conv2d_forward(x, w, b, 1, 1)  # warm up
t_plain = seconds_per_call(plain_conv)
t_fast = seconds_per_call(lambda x, w, b: ti.conv2d_forward(x, w, b, 1, 1))
print(f"batch 8, 32 -> 32 channels, 32x32, float32 (your machine): plain im2col {t_plain * 1e3:.1f} ms, "
      f"ti.conv2d_forward {t_fast * 1e3:.1f} ms, ratio {t_plain / max(t_fast, 1e-9):.1f}x")
# e.g. a 2-core VM: plain im2col ~4 ms, ti.conv2d_forward ~2 ms, ratio ~2x

# ---- 6. fusing the ReLU into the conv ----
# A ReLU after a conv is one more pass over the conv's whole output, and its backward one
# more over dout. relu=True does it inside the conv: each chunk of the output is
# rectified while it is still in the CPU cache, and the backward multiplies dout by the
# ReLU's mask while it copies dout onto the grid, a copy it makes anyway.
y_plain, cache_plain = ti.conv2d_forward(x, w, b, 1, 1)
y_fused, cache_fused = ti.conv2d_forward(x, w, b, 1, 1, relu=True)
print(bool((y_fused == np.maximum(y_plain, 0)).all()))  # True   the same numbers, bit for bit
dout = rng.standard_normal(y_plain.shape).astype(np.float32)
dx_apart, dw_apart, _ = ti.conv2d_backward(dout * (y_plain > 0), cache_plain)  # ReLU's backward first
dx_fused, dw_fused, _ = ti.conv2d_backward(dout, cache_fused)  # dout is dL/d(ReLU output)
print(bool((dx_fused == dx_apart).all() and (dw_fused == dw_apart).all()))  # True
# Sequential fuses each Conv2d with the ReLU right after it; the ReLU stays in the list
# (same indices, same checkpoint keys) but its own forward never runs:
net = ti.Sequential(ti.Conv2d(32, 32, 3, padding=1), ti.ReLU())
net.forward(x)
print(net[1].mask, net.fuse)  # None True   (fuse=False runs the layers apart)

# ---- 7. every core for the element-wise passes and the conv's chunks ----
# A matrix product can use every core (BLAS has its own threads); a NumPy element-wise
# operation (a copy, a maximum, a comparison) uses one. NumPy lets go of Python's GIL
# inside such a loop, so threads that each take some of the channels run at the same
# time. The library does this for max-pool, the copies onto the padded grid and the bias
# gradients (``ti.set_num_threads(n)``; default: every core). Each element is computed by
# the same operations either way, so the numbers do not change:
maps = rng.standard_normal((32, 32, 64, 64)).astype(np.float32)  # batch 32, 32 channels
cores = ti.get_num_threads()
results, times = [], []
for n in (1, cores):
    ti.set_num_threads(n)
    results.append(ti.maxpool2d_forward(maps, 2)[0])
    times.append(seconds_per_call(lambda *_: ti.maxpool2d_forward(maps, 2)))
ti.set_num_threads(cores)
print(bool((results[0] == results[1]).all()))  # True   bit for bit
print(f"max-pool of 32x32x64x64 (your machine): 1 thread {times[0] * 1e3:.1f} ms, "
      f"{cores} threads {times[1] * 1e3:.1f} ms")
# e.g. a 2-core VM: 1 thread ~12 ms, 2 threads ~6-8 ms.
# The conv's chunk loop is split the same way: each thread builds and multiplies its own
# share of the chunks, every product on one BLAS thread (conv_engine.py, _over_chunks),
# so the copies, block sums and ReLU between the products use every core too. A chunk is
# computed by the same operations whatever the split, so the numbers do not change here
# either (OpenBLAS on several threads of its own could sum a product in another order):
x = rng.standard_normal((16, 32, 64, 64)).astype(np.float32)  # batch 16, 32 channels
results, times = [], []
for n in (1, cores):
    ti.set_num_threads(n)
    results.append(ti.conv2d_forward(x, w, b, 1, 1, relu=True)[0])
    times.append(seconds_per_call(lambda *a: ti.conv2d_forward(*a, 1, 1, relu=True), repeats=5))
ti.set_num_threads(cores)
print(bool((results[0] == results[1]).all()))  # True   bit for bit
print(f"conv 32 -> 32 channels + ReLU, 16x64x64 (your machine): 1 thread {times[0] * 1e3:.1f} ms, "
      f"{cores} threads {times[1] * 1e3:.1f} ms")
# e.g. the 2-core Intel VM: 1 thread ~17 ms, 2 threads ~9 ms. In a training step this needs
# BLAS's idle threads to sleep soon after a product instead of spinning on the other
# core; tinyinterp sets OPENBLAS_THREAD_TIMEOUT for that, and has OpenBLAS read it again
# when NumPy was imported first (tinyinterp/blas.py), as here.

# ---- picture: the grid of part 1 and the 9 cells read around pixel 13 ----
N, H, W = 2, 3, 4
values = embed(np.arange(1.0, N * H * W + 1).reshape(N, 1, H, W), PH, PW)[0].astype(int)
lines = values.size // row
p = start + 1 * block  # pixel 13: image 1, row 0, column 0
read = {p + d for d in offsets}


def kind(q):
    """'margin', 'gap' or 'pixel' for flat position q."""
    if q < start or q >= start + length:
        return "margin"
    return "pixel" if (q % block) // row < H and q % row < W else "gap"


colours = {"pixel": (190, 215, 245), "gap": (225, 225, 225), "margin": (160, 160, 160)}
S, s = 28, 10  # cell size in the 2-D layout and in the flat strip
left, top = 70, 40
canvas = Image.new("RGB", (20 + values.size * s, top + lines * S + 110), "white")
draw = ImageDraw.Draw(canvas)
draw.text((10, 10), "padded grid, 2 images of 3x4, lines of row = 5 cells", fill="black")
for q in range(values.size):
    x0, y0 = left + (q % row) * S, top + (q // row) * S
    draw.rectangle([x0, y0, x0 + S, y0 + S], fill=colours[kind(q)], outline="white")
    if values[q]:
        draw.text((x0 + 7, y0 + 8), str(values[q]), fill="black")
for q in sorted(read):  # the 9 cells the kernel reads: the wrap puts the left column one line up
    x0, y0 = left + (q % row) * S, top + (q // row) * S
    draw.rectangle([x0 + 1, y0 + 1, x0 + S - 1, y0 + S - 1], outline=(230, 90, 0), width=3 if q == p else 2)
for k in range(lines):
    draw.text((10, top + k * S + 8), f"{k * row:2d}", fill="gray")
for k, label in [(0, "margin"), (4, "image 0"), (7, "gap row"), (8, "image 1"), (11, "gap row"), (12, "margin")]:
    draw.text((left + row * S + 10, top + k * S + 8), label, fill="black")
tx = left + row * S + 110
for k, (name, text) in enumerate([("pixel", "pixel"), ("gap", "gap (a zero after each row / image)"),
                                  ("margin", "margin (an all-zero image)")]):
    draw.rectangle([tx, top + k * 24, tx + 16, top + k * 24 + 16], fill=colours[name])
    draw.text((tx + 24, top + k * 24 + 3), text, fill="black")
draw.rectangle([tx, top + 80, tx + 16, top + 96], outline=(230, 90, 0), width=2)
draw.text((tx + 24, top + 83), "read by a 3x3 kernel at 13", fill="black")
draw.text((tx, top + 110), "offsets -6 -5 -4 / -1 0 1 / 4 5 6", fill="black")
draw.text((tx, top + 126), "from every position alike", fill="black")
draw.text((tx, top + 150), "13's left neighbours wrap to the line above:", fill="black")
draw.text((tx, top + 166), "the zero after the previous row is its padding", fill="black")
sy = top + lines * S + 45  # the same grid as one flat row: 3 runs of 3 cells, 5 apart
draw.text((10, sy - 25), "the same channel as one flat row (80 cells)", fill="black")
for q in range(values.size):
    x0 = 10 + q * s
    draw.rectangle([x0, sy, x0 + s, sy + 2 * s], fill=colours[kind(q)], outline="white")
    if q in read:
        draw.rectangle([x0, sy - 4, x0 + s, sy + 2 * s + 4], outline=(230, 90, 0), width=2)
canvas.save(OUT / "12_padded_grid.png")
print("saved", OUT / "12_padded_grid.png")
