"""Lesson 01: arrays on the CPU and the GPU, with one code path.

What you will learn:
- the array-module idea: a function asks its data which module to use,
  ``xp = ti.get_array_module(x)``, and then writes ``xp.exp``, ``xp.zeros_like``, ...
  With NumPy arrays xp is numpy, with CuPy arrays it is cupy: the same code runs on both;
- how tinyinterp moves data: ``ti.to_device(a, "gpu")``, ``ti.to_numpy(a)``,
  ``ti.device_of(a)``; conversions happen only at the edges, never inside an op;
- why an op must create its arrays with xp (``xp.arange``, ``xp.zeros``), not np: a NumPy
  array next to a CuPy array is an error (CuPy never copies to or from the host silently).

No GPU is needed: the GPU half runs only where CuPy sees a CUDA device.

Run:  python lessons/01_arrays_cpu_gpu.py
"""
import numpy as np

import tinyinterp as ti

PICTURES = []  # this lesson only prints


def spatial_softmax(x):
    """softmax over the n*n positions of each map: (B, F, n, n) -> (B, F, n, n).

    Written once, for NumPy and CuPy alike: every array call goes through xp.
    """
    xp = ti.get_array_module(x)
    B, F, n, _ = x.shape
    z = x.reshape(B, F, n * n)
    z = z - z.max(axis=2, keepdims=True)  # shift by the max: exp never overflows
    e = xp.exp(z)
    return (e / e.sum(axis=2, keepdims=True)).reshape(B, F, n, n)


def peak_mask(x):
    """1 at each map's maximum, 0 elsewhere. Creates arrays with xp, on the data's device."""
    xp = ti.get_array_module(x)
    B, F, n, _ = x.shape
    k = x.reshape(B, F, n * n).argmax(axis=2)  # (B, F) flat index i*n + j
    positions = xp.arange(n * n)  # np.arange would put this on the CPU: mixing fails on a GPU
    return (positions == k[..., None]).astype(x.dtype).reshape(B, F, n, n)


# ---- on the CPU ----
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)  # (B, F, n, n)
print(ti.get_array_module(x).__name__)  # numpy
print(ti.device_of(x))  # cpu

p = spatial_softmax(x)
print(p.shape, p.dtype)  # (2, 3, 4, 4) float32   (float32 in, float32 out)
print(round(float(p[0, 0].sum()), 6))  # 1.0   (each map sums to one)
print(int(peak_mask(x).sum()))  # 6   (one peak per map, 2 * 3 maps)

# softmax with the max shift survives activations that would overflow exp():
big = 1000.0 * x
print(bool(np.isfinite(spatial_softmax(big)).all()))  # True
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum(axis=(2, 3), keepdims=True)
print(bool(np.isfinite(naive).all()))  # False   (exp(1000) is inf in float32)

# ---- on the GPU, if there is one ----
print(ti.gpu_available())  # False on a machine without CuPy or a CUDA device
if ti.gpu_available():
    x_gpu = ti.to_device(x, "gpu")  # host -> device copy
    print(ti.get_array_module(x_gpu).__name__)  # cupy
    print(ti.device_of(x_gpu))  # gpu
    p_gpu = spatial_softmax(x_gpu)  # the very same function, now running on the GPU
    print(ti.device_of(p_gpu), p_gpu.dtype)  # gpu float32
    back = ti.to_numpy(p_gpu)  # device -> host copy, a plain NumPy array
    print(type(back).__name__)  # ndarray
    print(float(np.abs(back - p).max()) < 1e-6)  # True   (CPU and GPU agree to round-off)
    print(bool((ti.to_numpy(peak_mask(x_gpu)) == peak_mask(x)).all()))  # True
else:
    try:
        ti.to_device(x, "gpu")
    except RuntimeError as err:  # a clear message rather than a failure deep inside an op
        print("to_device(x, 'gpu'):", err)  # ... CuPy or a CUDA device is missing ...

# to_numpy and to_device are no-ops where the data already is:
print(ti.to_numpy(x) is x, ti.to_device(x, "cpu") is x)  # True True

# A tinyinterp layer follows its input the same way: a CuPy batch gives a CuPy output.
relu = ti.ReLU()
print(ti.device_of(relu(x)))  # cpu
