"""The one place that knows NumPy from CuPy.

Every array operation in tinyinterp asks the data which module to use::

    xp = get_array_module(x)     # numpy for numpy arrays, cupy for cupy arrays
    y = xp.maximum(x, 0)

so one code path runs on the CPU and on a GPU. CuPy is optional: it is imported here,
inside ``try``, and nowhere else.

dtype rule: float32 is the default; float64 is kept where the input is float64
(gradient checks run in float64). Nothing silently widens float32 to float64.

Also here: the host random numbers, and ``in_parallel``, the threads that split the big
element-wise passes over the CPU's cores (one plain call on a GPU).
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

try:  # CuPy is the optional GPU extra; any import failure means "no GPU backend".
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None

DEFAULT_DTYPE = np.float32


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def is_gpu_array(a):
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def to_numpy(a):
    """A NumPy copy (or view) of ``a``, wherever ``a`` lives. Scalars pass through numpy."""
    if is_gpu_array(a):
        return _cupy.asnumpy(a)
    return np.asarray(a)


class GpuUnavailable(RuntimeError):
    """The GPU was asked for, but CuPy or a CUDA device is missing."""


def device_module(device):
    """The array module for ``device`` ("cpu" or "gpu"); GpuUnavailable when "gpu" is
    asked for and there is none."""
    if device == "cpu":
        return np
    if device == "gpu":
        if not gpu_available():
            raise GpuUnavailable(
                "the GPU was asked for, but CuPy or a CUDA device is missing: install CuPy "
                "with pip install -e '.[gpu]' (CUDA 12.x) or '.[gpu-cuda13]' (CUDA 13.x) "
                "(tinyinterp/README.md, \"CPU and GPU\"), or run on the CPU"
            )
        return _cupy
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_device(a, device):
    """Move ``a`` to ``device`` ("cpu" or "gpu"); a no-op when it is already there."""
    xp = device_module(device)
    if xp is np:
        return to_numpy(a)
    return _cupy.asarray(a)


def device_of(a):
    """"gpu" for a CuPy array, else "cpu"."""
    return "gpu" if is_gpu_array(a) else "cpu"


# ---- host random numbers ----
# Initial weights and dropout masks are drawn on the host from a seeded NumPy Generator
# and then moved to the data's device. That makes a run reproducible bit for bit across
# CPU and GPU, and the generator's state is a plain dict that a checkpoint can hold.

def host_rng(seed_or_rng=0):
    """A NumPy Generator: ``seed_or_rng`` is an int seed or an existing Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def he_normal(rng, shape, fan_in, dtype=DEFAULT_DTYPE):
    """He (Kaiming) initialisation: N(0, 2 / fan_in), suited to ReLU nets (NumPy array)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def host_zeros(shape, dtype=DEFAULT_DTYPE):
    """Zeros on the host (initial biases)."""
    return np.zeros(shape, dtype=dtype)


def random_uniform_like(rng, like):
    """U[0, 1) of ``like``'s shape and dtype, drawn on the host, on ``like``'s device."""
    u = rng.random(like.shape).astype(like.dtype)
    return to_device(u, device_of(like))


# ---- every core for element-wise work ----
# NumPy's matrix products use every core (through BLAS), but each element-wise operation
# (a copy, a maximum, a comparison) runs on one. NumPy releases the GIL inside those
# loops, though, so Python threads that each take a slice of the channels do run at the
# same time, one per core. ``in_parallel`` does that for the big element-wise passes of
# a training step (max-pool, the conv's padded grids, bias gradients). Each element is
# computed by exactly the same operations as without threads: the results are identical
# bit for bit, whatever the number of threads. Measured on a 2-core EPYC
# (benchmarks/README.md): 1.7-2x faster passes over a 32x32x64x64 batch.

_threads = {"n": None, "executor": None, "workers": 0, "pid": None, "lock": threading.Lock()}

# below this many elements a pass is too short to be worth the hand-off to another
# thread (40 microseconds on an idle core, more right after a matrix product): max-pool
# on a 2-core EPYC right after a product, 1 vs 2 threads, was 0.53 vs 0.57-0.76 ms
# forward at 131k elements, about even at 262k, 3.7 vs 2.1-2.5 ms at 1M
PARALLEL_MIN_SIZE = 1 << 18


def _default_num_threads():
    env = os.environ.get("TINYINTERP_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TINYINTERP_NUM_THREADS must be a whole number >= 1, got {env!r}")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Threads for tinyinterp's element-wise passes and its convs' chunk loops on the CPU
    (1 = none). The default is the environment variable TINYINTERP_NUM_THREADS, else the
    number of usable cores. BLAS has its own setting (e.g. OPENBLAS_NUM_THREADS) for the
    other products; inside a conv, NumPy's OpenBLAS runs on one thread per tinyinterp
    thread (conv_engine._over_chunks)."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    with _threads["lock"]:
        _threads["n"] = int(n)


def get_num_threads():
    """The number of threads ``in_parallel`` splits work into on the CPU."""
    if _threads["n"] is None:
        _threads["n"] = _default_num_threads()
    return _threads["n"]


def _executor(workers):
    """The shared pool of worker threads (made again in a forked child, which has none)."""
    with _threads["lock"]:
        ex = _threads["executor"]
        if ex is None or _threads["pid"] != os.getpid() or _threads["workers"] < workers:
            if ex is not None and _threads["pid"] == os.getpid():
                ex.shutdown(wait=False)  # too few threads: its idle ones end, a bigger pool follows
            ex = ThreadPoolExecutor(workers, thread_name_prefix="tinyinterp")
            _threads.update(executor=ex, workers=workers, pid=os.getpid())
        return ex


def in_parallel(fn, n, xp, size=None):
    """Call ``fn(lo, hi)`` on slices [lo, hi) that together cover range(n), each in its
    own thread on the CPU, and wait for all. ``fn`` must only write to its own slice.

    One slice (a plain call) on a GPU, whose kernels are parallel already, with one
    thread, or when ``size`` (elements touched) is under PARALLEL_MIN_SIZE.
    """
    parts = 1 if xp.__name__ != "numpy" else min(get_num_threads(), n)
    if size is not None and size < PARALLEL_MIN_SIZE:
        parts = 1
    if parts <= 1:
        fn(0, n)
        return
    bounds = [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]
    executor = _executor(parts - 1)
    futures = [executor.submit(fn, lo, hi) for lo, hi in bounds[1:]]
    try:
        fn(*bounds[0])  # this thread takes the first slice
    finally:
        wait(futures)  # every slice has ended, even if one failed
    for f in futures:
        f.result()  # raises a slice's error here
