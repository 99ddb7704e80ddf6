"""Lesson 04: a small VGG, its shapes, and the receptive fields of its top units.

What you will learn:
- the network the later lessons train (``ti.small_vgg``): blocks of 3x3 convs and
  2x2 max-pools, then the paper's two interpretable layers: the *top conv* and the
  *new conv* added above it, each followed by a mask (paper Sec. 5);
- how a batch's shape changes layer by layer, and how to run backward through it all;
- receptive fields (``ti.receptive_field``): which input pixels a unit of the top conv
  can see, and where its centre lies. That centre is how a filter's "part position"
  in an 8x8 map becomes a position in the 64x64 image.

Picture: 04_receptive_field.png, the 8x8 grid of top-conv units over a 64x64 input, and
the receptive fields of a centre unit and a corner unit.

Run:  python lessons/04_small_vgg.py
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tinyinterp as ti

PICTURES = ["04_receptive_field.png"]
OUT = Path(os.environ.get("TINYINTERP_LESSON_OUT", "lesson_output"))
OUT.mkdir(parents=True, exist_ok=True)

model = ti.small_vgg(num_classes=5, input_size=64, interpretable=True, seed=0)
model.eval()  # eval mode: dropout off, masks apply but no filter loss is computed
x = np.random.default_rng(0).random((2, 3, 64, 64)).astype(np.float32)  # (N, C, H, W)

h = x
for i, layer in enumerate(model):
    h = layer(h)
    print(f"{i:2d} {str(h.shape):17} {layer!r}")
#  0 (2, 32, 64, 64)   Conv2d(3, 32, kernel_size=3, stride=1, padding=1)    padding 1 keeps 64x64
#  ...
#  4 (2, 32, 32, 32)   MaxPool2d(kernel_size=2, stride=2, padding=0)        each pool halves the side
#  ...
# 15 (2, 128, 8, 8)    Conv2d(128, 128, kernel_size=3, stride=1, padding=1) the top conv
# 16 (2, 128, 8, 8)    ReLU()
# 17 (2, 128, 8, 8)    InterpretableMask(128, 8, num_classes=5, ...)        mask 1
# 18 (2, 128, 8, 8)    Conv2d(128, 128, kernel_size=3, stride=1, padding=1) the new conv
# 19 (2, 128, 8, 8)    ReLU()
# 20 (2, 128, 8, 8)    InterpretableMask(128, 8, num_classes=5, ...)        mask 2
# 21 (2, 128, 4, 4)    MaxPool2d(kernel_size=2, stride=2, padding=0)
# 22 (2, 2048)         Flatten()                                            128 * 4 * 4
#  ...
# 26 (2, 5)            Linear(256, 5)                                       one logit per class
print(model.interpretable_indices)  # [16, 19]   the ReLUs whose maps are masked and measured
n_params = sum(p.size for p in model.params().values())
print(n_params)  # 1108005

# backward runs the layers in reverse; every parameter gets a gradient of its own shape
model.train()
logits = model(x)
dx = model.backward(np.ones_like(logits) / logits.size)
print(dx.shape)  # (2, 3, 64, 64)
print(model.grads()["0.W"].shape)  # (32, 3, 3, 3)

# ---- receptive fields ----
# unit i (along either axis) of layer `index` is centred at input coordinate
# start + i * jump and sees a size x size window (pixel p covers [p, p + 1)).
top, new = model.interpretable_indices
start, jump, size = ti.receptive_field(model, top)
print(start, jump, size)  # 4.0 8.0 52.0
# jump 8: three 2x2 pools, 2 * 2 * 2; size 52: each 3x3 conv adds 2 * jump, each pool 1 * jump
print(ti.receptive_field(model, new))  # (4.0, 8.0, 68.0)   the new conv's units see the whole image
for unit in (0, 3, 7):
    centre = start + unit * jump
    print(unit, centre, (centre - size / 2, centre + size / 2))
# 0 4.0 (-22.0, 30.0)    22 of its 52 pixels are zero padding
# 3 28.0 (2.0, 54.0)
# 7 60.0 (34.0, 86.0)


# ---- picture ----
S = 4  # screen pixels per input pixel
M = 26 * S  # margin, so windows reaching past the image still show
canvas = Image.new("RGB", (64 * S + 2 * M, 64 * S + 2 * M), "white")
draw = ImageDraw.Draw(canvas)
draw.rectangle([M, M, M + 64 * S, M + 64 * S], fill=(235, 235, 235), outline="black")
for i in range(8):  # unit centres of the 8x8 top-conv map
    for j in range(8):
        cx, cy = M + (start + j * jump) * S, M + (start + i * jump) * S
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill="gray")
for (i, j), colour in (((3, 4), "red"), ((0, 0), "blue")):
    cx, cy = start + j * jump, start + i * jump  # continuous input coordinates
    box = [M + (cx - size / 2) * S, M + (cy - size / 2) * S, M + (cx + size / 2) * S, M + (cy + size / 2) * S]
    draw.rectangle(box, outline=colour, width=3)
    draw.ellipse([M + cx * S - 6, M + cy * S - 6, M + cx * S + 6, M + cy * S + 6], fill=colour)
    draw.text((box[0] + 6, box[3] + 4), f"unit ({i}, {j})", fill=colour)
draw.text((8, M + 64 * S + 10), "grey: the 64x64 input; dots: centres of the 8x8 top-conv units\n"
          "squares: the 52x52 receptive fields of units (3, 4) and (0, 0)", fill="black")
canvas.save(OUT / "04_receptive_field.png")
print("saved", OUT / "04_receptive_field.png")
