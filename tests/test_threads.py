"""tinyinterp's threads for element-wise work (threads.in_parallel).

On the CPU, max-pooling, the convs' padded grids and the bias gradients split their
channels over threads. Every element is computed by the same operations whatever the
split, so results must be identical bit for bit with 1 thread and with several; the
cases here are drawn small, so the size floor (PARALLEL_MIN_SIZE) is lowered to 0 to
make the small arrays take the threaded path too.
"""
import os
import select
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import XP_SETTINGS, seeds

from tinyinterp import blas, conv_engine
from tinyinterp import threads as ti_threads
from tinyinterp.padded_grid import PaddedGrid, chunk_columns
from tinyinterp.layers import conv2d_backward, conv2d_forward
from tinyinterp.pooling import maxpool2d_backward, maxpool2d_forward


@pytest.fixture
def threads(monkeypatch):
    """set(n): n threads, and no size floor; restored after the test."""
    before = ti_threads.get_num_threads()
    monkeypatch.setattr(ti_threads, "PARALLEL_MIN_SIZE", 0)

    def set_threads(n):
        ti_threads.set_num_threads(n)

    yield set_threads
    ti_threads.set_num_threads(before)


def slices_seen(n, xp=np, size=None, together=1):
    """The (lo, hi, thread) of each call; with ``together`` > 1, the calls also wait for
    each other (a barrier), which only returns if that many run at the same time."""
    seen, lock = [], threading.Lock()
    barrier = threading.Barrier(together, timeout=20)

    def fn(lo, hi):
        with lock:
            seen.append((lo, hi, threading.get_ident()))
        if together > 1:
            barrier.wait()

    ti_threads.in_parallel(fn, n, xp, size)
    return seen


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_in_parallel_covers_the_range_once(threads, n_threads, n):
    threads(n_threads)
    parts = min(n_threads, n)
    seen = slices_seen(n, together=parts)  # all parts at the same time, or a BrokenBarrierError
    assert len(seen) == parts
    covered = sorted(i for lo, hi, _ in seen for i in range(lo, hi))
    assert covered == list(range(n))
    assert all(hi > lo for lo, hi, _ in seen)
    assert len({ident for *_, ident in seen}) == parts  # each slice in its own thread


def test_in_parallel_one_call_for_small_work_and_off_the_cpu(monkeypatch):
    ti_threads.set_num_threads(4)
    monkeypatch.setattr(ti_threads, "PARALLEL_MIN_SIZE", 100)
    assert [s[:2] for s in slices_seen(8, size=99)] == [(0, 8)]
    assert len(slices_seen(8, size=100)) == 4

    class FakeCupy:  # any array module that is not NumPy: the GPU runs it in one call
        __name__ = "cupy"

    assert [s[:2] for s in slices_seen(8, FakeCupy, size=10**9)] == [(0, 8)]


def test_in_parallel_passes_errors_on(threads):
    threads(3)
    done = []

    def fails_elsewhere(lo, hi):
        if lo > 0:
            raise ValueError(f"slice {lo}")
        done.append(lo)

    with pytest.raises(ValueError, match="slice"):
        ti_threads.in_parallel(fails_elsewhere, 6, np)
    assert done == [0]

    def fails_here(lo, hi):
        if lo == 0:
            raise KeyError("first slice")
        done.append(lo)

    with pytest.raises(KeyError):
        ti_threads.in_parallel(fails_here, 6, np)
    assert sorted(done) == [0, 2, 4]  # the other slices ran to the end before the raise


def test_set_num_threads_and_its_default(monkeypatch):
    with pytest.raises(ValueError, match="at least 1"):
        ti_threads.set_num_threads(0)
    monkeypatch.setenv("TINYINTERP_NUM_THREADS", "3")
    assert ti_threads._default_num_threads() == 3
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("TINYINTERP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="TINYINTERP_NUM_THREADS"):
            ti_threads._default_num_threads()
    monkeypatch.delenv("TINYINTERP_NUM_THREADS")
    assert ti_threads._default_num_threads() >= 1


def test_more_threads_later_get_a_bigger_pool(threads):
    threads(2)
    assert len(slices_seen(6, together=2)) == 2
    threads(4)  # needs 3 workers where the pool had 1
    assert len(slices_seen(6, together=4)) == 4
    threads(2)  # the bigger pool serves fewer slices too
    assert len(slices_seen(6, together=2)) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
# Python 3.12+ warns on any fork of a process with threads; forking one is the point here
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_forked_child_gets_its_own_threads(threads):
    threads(2)
    assert len(slices_seen(4)) == 2  # the parent's pool exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's worker threads do not exist here
        ok = False
        try:
            ok = len(slices_seen(4, together=2)) == 2
        except BaseException:  # noqa: BLE001, S110 - any failure is a "0" for the parent
            pass
        finally:  # never return into pytest from the child
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 60)
    if not ready:  # the child hangs (a pool without threads): end it, and fail
        os.kill(pid, signal.SIGKILL)
    answer = os.read(read, 1) if ready else b"hung"
    os.waitpid(pid, 0)
    assert answer == b"1"


@XP_SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 5), OC=st.sampled_from([1, 2, 4, 13]),
       H=st.integers(1, 9), W=st.integers(1, 9), relu=st.booleans(), seed=seeds,
       chunk=st.sampled_from([None, 1, 5, 16]))
def test_threaded_conv_is_identical(threads, monkeypatch, N, C, OC, H, W, relu, seed, chunk):
    # chunk: positions per im2col chunk, small so that these small maps have several
    # chunks to split over the threads (None: the engine's own size, one chunk here)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C, 3, 3)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    dout = rng.standard_normal((N, OC, H, W)).astype(np.float32)
    results, spans = [], []
    real_columns = conv_engine.grid_columns

    def columns(*args, span=None, **kw):  # records the share of the chunks each call builds
        spans.append(span)
        return real_columns(*args, span=span, **kw)

    with monkeypatch.context() as m:  # undone after the loop; the fixture's floor stays 0
        m.setattr(conv_engine, "grid_columns", columns)
        if chunk is not None:
            m.setattr(conv_engine, "chunk_columns", lambda *a, **k: chunk)
        for n in (1, 3):
            threads(n)
            y, cache = conv2d_forward(x, w, b, 1, 1, relu=relu)
            dx, dw, db = conv2d_backward(dout, cache)
            _, dw0, db0 = conv2d_backward(dout, cache, input_grad=False)
            results.append([y, dx, dw, db, dw0, db0])
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)
    if chunk == 1 and blas.can_set_threads():  # several chunks: 3 threads did split them
        assert any(lo > 0 for lo, _ in spans)


@pytest.mark.parametrize("rows", [28, 97, 385, 1153])
@pytest.mark.parametrize("length", [1, 300, 1023, 1024, 2560, 9216, 135168, 204288])
def test_chunks_are_even_and_cache_sized_whatever_the_threads(rows, length):
    chunk = chunk_columns(rows, 4, np, length)  # no thread count in the arguments at all
    chunks = -(-length // chunk)
    assert chunk >= 1 and (chunks - 1) * chunk < length  # no empty chunk
    target = max(256, 2 * 2**20 // (rows * 4))
    if length >= 4 * 256:  # enough chunks for 4 threads, none wider than the cache asks
        assert chunks >= 4 and chunk <= target
        for parts in (2, 4):  # in_parallel's shares of the chunks: none much above 1/parts
            bounds = [k * chunks // parts for k in range(parts + 1)]
            widest = max(min(hi * chunk, length) - lo * chunk for lo, hi in zip(bounds, bounds[1:]))
            assert widest <= 1.1 * length / parts
    else:
        assert chunks == -(-length // target)


def test_threaded_conv_leaves_the_blas_thread_count_as_it_was(threads):
    if not blas.can_set_threads():
        pytest.skip("NumPy's BLAS here is not a pthreads OpenBLAS: the chunks are not split")
    get, put = blas._thread_setters()[0]
    threads(2)
    before, seen = get(), []
    put(2)  # not 1 already (the study's workers run with OPENBLAS_NUM_THREADS=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 64, 64)).astype(np.float32)  # several chunks
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    real = conv_engine._matmul_into

    def spy(a, b, out):
        seen.append(get())
        real(a, b, out)

    conv_engine._matmul_into = spy
    try:
        conv2d_forward(x, w, np.zeros(16, np.float32), 1, 1)
    finally:
        conv_engine._matmul_into = real
    try:
        assert len(seen) > 2 and set(seen) == {1}  # each thread's products on one BLAS thread
        assert get() == 2
    finally:
        put(before)


@XP_SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 6), H=st.integers(2, 9), W=st.integers(2, 9),
       seed=seeds, channel_major=st.booleans())
def test_threaded_maxpool_is_identical(threads, N, C, H, W, seed, channel_major):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (N, C, H, W)).astype(np.float32)  # ties too
    if channel_major:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    dout = rng.standard_normal((N, C, H // 2, W // 2)).astype(np.float32)
    results = []
    for n in (1, 4):
        threads(n)
        y, cache = maxpool2d_forward(x, 2)
        results.append([y, maxpool2d_backward(dout, cache)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
        assert a.strides == b.strides  # same memory layout too


def test_threaded_grid_is_identical(threads):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 2, 4, 3)).astype(np.float32)
    mask = rng.random(a.shape) > 0.5
    g = PaddedGrid(2, 4, 3, 1, 1)
    grids = []
    for n in (1, 3):
        threads(n)
        grids.append((g.embed(a), g.embed(a, mask)))
    for one, many in zip(*grids):
        np.testing.assert_array_equal(one, many)


IMPORT_CHECK = "import os, {first}; import {second}; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


@pytest.mark.parametrize("first, second, env, expected", [
    ("tinyinterp", "numpy", None, "20"),    # imported first: it sets the timeout
    ("numpy", "tinyinterp", None, "20"),    # after NumPy too (OpenBLAS reads it again: test_blas.py)
    ("tinyinterp", "numpy", "7", "7"),      # the user's own value wins
    ("numpy", "tinyinterp", "7", "7"),
])
def test_import_sets_openblas_thread_timeout_whatever_the_order(first, second, env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if env is not None:
        environ["OPENBLAS_THREAD_TIMEOUT"] = env
    out = subprocess.run([sys.executable, "-c", IMPORT_CHECK.format(first=first, second=second)],
                         env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
