"""Every core for element-wise work: tinyinterp's pool of threads on the CPU.

NumPy's matrix products use every core (through BLAS), but each element-wise operation
(a copy, a maximum, a comparison) runs on one. NumPy releases the GIL inside those
loops, though, so Python threads that each take a slice of the channels do run at the
same time, one per core. ``in_parallel`` does that for the big element-wise passes of
a training step (max-pool, the conv's padded grids, bias gradients). Each element is
computed by exactly the same operations as without threads: the results are identical
bit for bit, whatever the number of threads. Measured on a 2-core EPYC
(benchmarks/README.md): 1.7-2x faster passes over a 32x32x64x64 batch. On a GPU
``in_parallel`` makes one plain call.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

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
