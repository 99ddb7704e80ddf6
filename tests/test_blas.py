"""tinyinterp/blas.py: the OpenBLAS under NumPy and its threads' spin, whatever the
import order. Each check runs in a fresh interpreter (the import order is the point).
Never reads or sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import tinyinterp.blas as blas

ROOT = Path(__file__).resolve().parents[1]

# NumPy first, a product, then tinyinterp: what a user's script does. blas.py is loaded
# alone first (it imports nothing of tinyinterp) to see OpenBLAS before tinyinterp.
SCRIPT = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("blas_alone", sys.argv[1])
alone = importlib.util.module_from_spec(spec); spec.loader.exec_module(alone)
a = np.arange(200 * 300, dtype=np.float64).reshape(200, 300) % 7
before_product = a @ a.T
before = alone.thread_timeouts()
import tinyinterp
after = alone.thread_timeouts()
same = bool((a @ a.T == before_product).all())
print(json.dumps({"before": before, "after": after, "same": same}))
"""


def run_fresh(env_extra):
    env = {k: v for k, v in os.environ.items() if k != blas.TIMEOUT_VARIABLE}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "tinyinterp" / "blas.py")],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_numpy_first_still_gets_the_short_spin():
    got = run_fresh({})
    if not got["before"]:
        pytest.skip("NumPy here does not run a pthreads OpenBLAS (another BLAS): nothing to change")
    assert set(got["before"].values()) == {0}  # NumPy came first: OpenBLAS read no timeout
    assert set(got["after"].values()) == {blas.SPIN_TIMEOUT}
    assert got["same"]  # the restarted threads multiply as before


def test_a_timeout_the_user_set_wins():
    got = run_fresh({blas.TIMEOUT_VARIABLE: "7"})
    if not got["before"]:
        pytest.skip("NumPy here does not run a pthreads OpenBLAS (another BLAS): nothing to change")
    assert set(got["before"].values()) == set(got["after"].values()) == {7}


def test_loaded_openblas_reads_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /site/numpy.libs/libscipy_openblas64_-ab12.so\n"
        "7f03-7f04 r--p 00001000 08:01 2 /site/numpy.libs/libscipy_openblas64_-ab12.so\n"
        "7f05-7f06 rw-p 00000000 00:00 0 \n")
    assert blas.loaded_openblas(maps) == ["/site/numpy.libs/libscipy_openblas64_-ab12.so"]
    assert blas.loaded_openblas(tmp_path / "missing") == []


def test_openblas_function_finds_each_builds_name():
    def fn():
        return 3
    plain = SimpleNamespace(openblas_get_parallel=fn)
    wheel = SimpleNamespace(scipy_openblas_get_parallel64_=fn)
    assert blas.openblas_function(plain, "get_parallel") is fn
    assert blas.openblas_function(wheel, "get_parallel") is fn
    assert blas.openblas_function(SimpleNamespace(), "get_parallel") is None


def _docstrings(tree):
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def test_no_library_module_names_a_blas_pin_in_its_code():
    # the pins may be explained in docstrings and comments, never used as a name in code
    for path in sorted((ROOT / "tinyinterp").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        used = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in docs and ("OPENBLAS_CORETYPE" in n.value or "OPENBLAS_L2_SIZE" in n.value)]
        assert not used, f"{path.name}: {used}"


def test_blas_threads_sets_the_count_within_the_block_and_restores_it():
    import threading

    import numpy as np  # noqa: F401  (its OpenBLAS must be loaded to be found)

    if not blas.can_set_threads():
        pytest.skip("NumPy's BLAS here is not a pthreads OpenBLAS")
    get, put = blas._thread_setters()[0]
    before = get()
    put(2)  # a count other than the block's, so that restoring it shows
    try:
        with blas.blas_threads(1):
            assert get() == 1
        assert get() == 2
        with pytest.raises(RuntimeError):  # restored on the way out of an error too
            with blas.blas_threads(1):
                raise RuntimeError
        assert get() == 2
        # two threads' blocks overlapping: A in, B in, A out, B out. The count comes back
        # when the last one ends (B must not restore the 1 that A had set)
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def block_a():
            with blas.blas_threads(1):
                a_in.set()
                b_in.wait(5)
            seen["after_a"] = get()
            a_out.set()

        def block_b():
            a_in.wait(5)
            with blas.blas_threads(1):
                b_in.set()
                a_out.wait(5)

        threads = [threading.Thread(target=block_a), threading.Thread(target=block_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen["after_a"] == 1 and get() == 2
    finally:
        put(before)


def test_a_child_forked_inside_a_block_gets_the_count_back():
    import numpy as np  # noqa: F401

    if not blas.can_set_threads() or not hasattr(os, "fork"):
        pytest.skip("needs a pthreads OpenBLAS and fork")
    get, put = blas._thread_setters()[0]
    before = get()
    put(2)
    try:
        with blas.blas_threads(1):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: the block it was forked in is not its own
                os.write(write, bytes([get(), blas._held["depth"]]))
                os._exit(0)
            os.waitpid(pid, 0)
            count, depth = os.read(read, 2)
            assert get() == 1  # the parent is still inside its block
        assert (count, depth) == (2, 0)
        assert get() == 2
    finally:
        put(before)
