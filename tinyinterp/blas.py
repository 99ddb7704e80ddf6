"""The OpenBLAS under NumPy, seen through ctypes: which library it is, and how long its
idle threads spin.

Why tinyinterp cares. NumPy's matrix products run on OpenBLAS's threads; tinyinterp's
element-wise passes run on its own (``threads.in_parallel``), right after a product.
After each product, OpenBLAS's idle threads keep spinning, by default for 2**28 cycles
(about 0.1 s), before they sleep: on a 2-core machine they hold the second core while
tinyinterp's threads want it. The environment variable OPENBLAS_THREAD_TIMEOUT=20
shortens that to 2**20 cycles (about 0.4 ms), but OpenBLAS reads it only when it starts,
that is when NumPy is imported. ``tinyinterp/__init__.py`` sets it when it is imported
before NumPy; ``shorten_thread_spin`` gives the same result when NumPy came first, so
that a script's speed does not depend on its import order. It asks OpenBLAS to read its
environment again and stops its threads; the next product starts them again, with the
short spin. (It is what OpenBLAS itself does around a fork.)

Best effort: where NumPy uses another BLAS (MKL, Accelerate), an OpenMP or single-thread
OpenBLAS build, or a system without /proc/self/maps, nothing is changed. This file uses
no NumPy and nothing else of tinyinterp, so ``benchmarks/hostinfo.py`` loads it alone.
It never reads or sets OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE.
"""
import ctypes
import functools
import os
import threading
from contextlib import contextmanager
from pathlib import Path

SPIN_TIMEOUT = 20  # OPENBLAS_THREAD_TIMEOUT: idle threads spin 2**20 cycles, not 2**28
TIMEOUT_VARIABLE = "OPENBLAS_THREAD_TIMEOUT"


def loaded_openblas(maps_path="/proc/self/maps"):
    """Files of the OpenBLAS libraries this process has loaded (Linux: from its memory
    map; [] where there is none). Never raises."""
    paths = []
    try:
        lines = Path(maps_path).read_text(errors="replace").splitlines()
    except OSError:
        return paths
    for line in lines:
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
        path = fields[5] if len(fields) == 6 else ""
        if "openblas" in Path(path).name.lower() and path not in paths:
            paths.append(path)
    return paths


def openblas_function(lib, what, restype=ctypes.c_int):
    """The function ``openblas_<what>()`` of ``lib`` under whichever name its build exports
    (plain, or with the prefix and 64-bit-integer suffix of the scipy-openblas wheels that
    NumPy ships), with no arguments and ``restype``; None if it exports none."""
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            fn = getattr(lib, f"{prefix}openblas_{what}{suffix}", None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, []
                return fn
    return None


def _server_controls(lib):
    """(read_env, thread_timeout, shutdown) of a pthreads OpenBLAS build, else None."""
    parallel = openblas_function(lib, "get_parallel")
    if parallel is None or parallel() != 1:  # 0: single-thread build, 2: OpenMP
        return None
    names = ("openblas_read_env", "openblas_thread_timeout", "blas_thread_shutdown_")
    fns = [getattr(lib, name, None) for name in names]
    if None in fns:
        return None
    for fn in fns:
        fn.restype, fn.argtypes = ctypes.c_int, []
    return tuple(fns)


def _pthreads_openblas():
    """(path, (read_env, thread_timeout, shutdown)) of each loaded pthreads OpenBLAS."""
    for path in loaded_openblas():
        try:
            controls = _server_controls(ctypes.CDLL(path))  # already loaded: the same copy
        except OSError:
            continue
        if controls is not None:
            yield path, controls


def thread_timeouts():
    """{path: the OPENBLAS_THREAD_TIMEOUT each loaded pthreads OpenBLAS has read (0: none)}."""
    return {path: controls[1]() for path, controls in _pthreads_openblas()}


def shorten_thread_spin(timeout=SPIN_TIMEOUT):
    """Make the idle threads of every loaded pthreads OpenBLAS spin about 2**timeout
    cycles after a product instead of its default 2**28, as OPENBLAS_THREAD_TIMEOUT does
    when it is set before NumPy loads. A value already in the environment (the user's)
    wins over ``timeout``. Call it while no other thread is inside a BLAS call.

    Returns {path: "already" (it read that value when it started), "restarted" (its
    threads were stopped; the next product starts them with the short spin)}.
    """
    os.environ.setdefault(TIMEOUT_VARIABLE, str(int(timeout)))
    try:
        wanted = int(os.environ[TIMEOUT_VARIABLE])
    except ValueError:  # not a number: leave it to OpenBLAS, which ignores it
        return {}
    done = {}
    for path, (read_env, current, shutdown) in _pthreads_openblas():
        if current() == wanted:
            done[path] = "already"
            continue
        read_env()  # the timeout (and OpenBLAS's other variables, used only at start)
        shutdown()  # its threads end; the next product starts them with the new timeout
        done[path] = "restarted"
    return done


@functools.lru_cache(maxsize=1)
def _thread_setters():
    """((get_num_threads, set_num_threads), ...) of every loaded pthreads OpenBLAS. Looked
    up once per process, at the first conv: NumPy (and its OpenBLAS) is loaded by then."""
    setters = []
    for path, _controls in _pthreads_openblas():
        lib = ctypes.CDLL(path)
        get = openblas_function(lib, "get_num_threads")
        put = openblas_function(lib, "set_num_threads", restype=None)
        if get is not None and put is not None:
            put.argtypes = [ctypes.c_int]
            setters.append((get, put))
    return tuple(setters)


def can_set_threads():
    """Whether :func:`blas_threads` can change the BLAS's thread count here (a pthreads
    OpenBLAS, as NumPy's wheels ship; not MKL, Accelerate or an OpenMP build)."""
    return bool(_thread_setters())


_held = {"depth": 0, "before": None, "lock": threading.Lock()}


def _after_fork_in_child():
    """A child forked while another thread was inside a block: that thread is gone, so
    the count it would have restored comes back here, and the lock is new."""
    if _held["depth"] and _held["before"] is not None:
        for (_, put), count in zip(_thread_setters(), _held["before"]):
            put(count)
    _held.update(depth=0, before=None, lock=threading.Lock())


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def blas_threads(n):
    """Within the block, every loaded pthreads OpenBLAS multiplies on ``n`` threads; the
    count it had comes back when the last such block ends (blocks may overlap, in one
    thread or several: the first one in saves the count, the last one out restores it).
    The conv engine uses ``blas_threads(1)`` while its own threads each run a share of
    the chunks (conv_engine.py). Does nothing where :func:`can_set_threads` is False."""
    setters = _thread_setters()
    with _held["lock"]:
        if _held["depth"] == 0:
            _held["before"] = [get() for get, _ in setters]
        _held["depth"] += 1
        for _, put in setters:
            put(n)
    try:
        yield
    finally:
        with _held["lock"]:
            if _held["depth"] > 0:  # 0 in a forked child that inherited this block (reset)
                _held["depth"] -= 1
                if _held["depth"] == 0:
                    for (_, put), count in zip(setters, _held["before"]):
                        put(count)
