"""benchmarks/bench.py runs end to end and writes the JSON it promises (no timing checks).

The --tiny flag shrinks every case to a few milliseconds, so this is a smoke test of the
script (its workers, the PyTorch reference when torch is installed, the table and the
JSON), never of speed. Also the host report (benchmarks/hostinfo.py) and the BLAS pins
the workers run without: tested on dicts, never through this process's environment.
"""
import json
import math
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tinyinterp.backend import gpu_available

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
sys.path.insert(0, str(BENCH.parent))  # bench.py and hostinfo.py import as modules

import bench  # noqa: E402
import hostinfo  # noqa: E402

PINS = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}  # as some shells set them
KINDS = {"matmul", "step", "conv_fwd", "conv_bwd", "pool_fwd", "pool_bwd", "relu_fwd", "relu_bwd",
         "mask", "interp_step"}


def run_bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--json", str(out), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


def is_time(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_bench_tiny_cpu_writes_results(tmp_path):
    proc, doc = run_bench(tmp_path, "--device", "cpu")
    assert {"meta", "results", "matmul_peak_gflops", "mask_share"} <= set(doc)
    meta = doc["meta"]
    assert meta["device"] == "cpu" and meta["mode"] == "tiny"
    assert meta["cores"] >= 1 and "load" in meta and "tinyinterp" in meta["libraries"]
    assert meta["libraries"]["tinyinterp"]["torch_imported"] is False  # tinyinterp's own process
    # the worker imports tinyinterp before NumPy, so OpenBLAS's thread timeout is set
    # (to tinyinterp's value unless the environment had one)
    assert meta["libraries"]["tinyinterp"]["openblas_thread_timeout"] == \
        os.environ.get("OPENBLAS_THREAD_TIMEOUT", "20")
    assert meta["libraries"]["tinyinterp"]["tinyinterp_threads"] >= 1
    with_torch = "torch" in meta["libraries"]

    rows = doc["results"]
    assert {r["kind"] for r in rows} == KINDS
    for r in rows:
        assert {"name", "kind", "tinyinterp_ms", "torch_ms", "ratio"} <= set(r), r["name"]
        assert is_time(r["tinyinterp_ms"]), r["name"]
        assert "errors" not in r, r
        if with_torch and r["kind"] not in ("mask", "interp_step"):
            assert is_time(r["torch_ms"]) and is_time(r["ratio"]), r["name"]
            assert len(r["round_ratios"]) == meta["repetitions"]["rounds"], r["name"]
            assert all(is_time(v) for v in r["round_ratios"]), r["name"]
        if r.get("flops"):
            assert is_time(r["tinyinterp_gflops"]), r["name"]
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == 2
    assert is_time(doc["matmul_peak_gflops"]["tinyinterp"])

    share = doc["mask_share"]
    assert is_time(share["mask_ms"]) and is_time(share["interp_step_ms"])
    assert 0 < share["one_mask_share"] and 0 < share["masks_in_step_share"] < 1
    # the table is printed too
    assert "ratio" in proc.stdout and "filter loss + mask" in proc.stdout
    assert "threads (element-wise passes, the convs' chunk loops), OPENBLAS_THREAD_TIMEOUT=" in proc.stdout
    if with_torch:
        assert "step b2 16x16: ratio in each round" in proc.stdout

    # the host: CPU, the pins, and the BLAS read inside the tinyinterp worker
    cpu, pins = meta["host"]["cpu"], meta["host"]["blas_pins"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert cpu["flags"] == "unknown" or set(cpu["flags"]) <= set(hostinfo.SGEMM_FLAGS)
    assert set(pins["set_in_parent"]) <= set(hostinfo.BLAS_PINS) and pins["keep_blas_env"] is False
    assert pins["lifted"] == bool(pins["set_in_parent"])
    tiny = meta["libraries"]["tinyinterp"]
    assert tiny["blas_pins_seen"] == {}  # lifted by default, whatever this shell has
    blas = tiny["blas"]
    assert {"source", "library", "version", "kernel", "threads"} <= set(blas)
    if numpy_uses_openblas():
        assert blas["library"] == "openblas" and blas["kernel"] not in ("", "unknown"), blas
    for text in ("CPU: ", "sgemm-relevant flags", f"kernel {blas['kernel']}", "BLAS pins"):
        assert text in proc.stdout, text


def numpy_uses_openblas():
    """What NumPy's build says it links (NumPy >= 1.26 keeps it in np.__config__.CONFIG)."""
    config = getattr(np.__config__, "CONFIG", {})
    return "openblas" in str(config.get("Build Dependencies", {}).get("blas", {}).get("name", ""))


def test_workers_run_without_the_blas_pins_unless_kept():
    parent = dict(PINS, PATH="/usr/bin", OPENBLAS_NUM_THREADS="1")
    before = dict(parent)
    env = hostinfo.worker_env(parent, bench.parse_args([]).keep_blas_env)
    assert not set(PINS) & set(env)
    assert env == {"PATH": "/usr/bin", "OPENBLAS_NUM_THREADS": "1"}  # everything else stays
    kept = hostinfo.worker_env(parent, bench.parse_args(["--keep-blas-env"]).keep_blas_env)
    assert kept == parent and kept is not parent
    assert parent == before  # the parent's environment is never changed
    assert hostinfo.pins_report(parent, False) == {"set_in_parent": PINS, "keep_blas_env": False,
                                                   "lifted": True}
    assert hostinfo.pins_report(parent, True)["lifted"] is False
    assert hostinfo.pins_report({"PATH": "/usr/bin"}, False)["lifted"] is False
    lifted, kept = (hostinfo.describe(None, None, hostinfo.pins_report(parent, keep))[0]
                    for keep in (False, True))
    assert "Haswell" in lifted and "lifted" in lifted and "kept" in kept


def test_hostinfo_reads_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 fma avx2 avx512f\n\n"
                       "processor\t: 1\nmodel name\t: another\nflags\t\t: amx_tile\n")
    cpu = hostinfo.cpu_info(cpuinfo)
    assert cpu["model"] == "Test CPU 9000" and cpu["flags"] == ["avx2", "fma", "avx512f"]  # first CPU's
    assert "avx2 fma avx512f" in hostinfo.describe(cpu, None, None)[0]


def test_hostinfo_never_raises_when_nothing_is_found(tmp_path, monkeypatch):
    cpu = hostinfo.cpu_info(tmp_path / "no-cpuinfo")
    assert cpu["flags"] == "unknown" and isinstance(cpu["model"], str) and cpu["model"]
    not_a_library = tmp_path / "libopenblas.so"
    not_a_library.write_text("not a shared library")
    assert hostinfo.openblas_query(str(not_a_library)) is None
    assert hostinfo.openblas_query(str(tmp_path / "missing-openblas.so")) is None
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f01 r-xp 00000000 08:01 42 {not_a_library}\n7f01-7f02 rw-p 00000000 00:00 0\n")
    assert hostinfo.openblas_paths(maps) == [str(not_a_library)]

    # no threadpoolctl, no OpenBLAS that answers: every field unknown
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl now fails
    monkeypatch.setattr(hostinfo, "openblas_paths", lambda: [str(not_a_library)])
    blas = hostinfo.blas_info()
    assert blas["source"] == blas["library"] == blas["kernel"] == "unknown"

    def broken():
        raise RuntimeError("probe broke")

    monkeypatch.setattr(hostinfo, "_from_openblas", broken)  # a probe that raises: still unknown
    blas = hostinfo.blas_info()
    assert blas["kernel"] == "unknown" and "probe broke" in blas["errors"][0]
    lines = hostinfo.describe(cpu, blas, hostinfo.pins_report({}, False))
    assert "flags: unknown" in lines[0] and "kernel unknown" in lines[1] and "none set" in lines[2]


def test_hostinfo_reads_the_kernel_through_ctypes():
    # the fallback when threadpoolctl is missing: NumPy's own OpenBLAS, asked through ctypes
    if not numpy_uses_openblas():
        pytest.skip("NumPy does not use OpenBLAS here")
    found = hostinfo._from_openblas()
    assert found and found["source"] == "ctypes" and found["kernel"] not in ("", "unknown"), found
    assert found["config"].startswith("OpenBLAS") and found["threads"] >= 1
    if find_spec("threadpoolctl") is not None:  # the two ways agree
        assert hostinfo._from_threadpoolctl()["kernel"] == found["kernel"]


def test_bench_runs_without_torch(tmp_path):
    # --no-torch: the run still works when PyTorch is absent or switched off
    _, doc = run_bench(tmp_path, "--no-torch")
    assert "torch" not in doc["meta"]["libraries"]
    assert all(r["torch_ms"] is None and r["ratio"] is None for r in doc["results"])


@pytest.mark.skipif(gpu_available(), reason="a GPU is present: the GPU run is not a skip here")
def test_bench_gpu_skips_cleanly_without_a_gpu(tmp_path):
    proc, doc = run_bench(tmp_path, "--device", "gpu")
    assert "skipping the GPU benchmark" in proc.stdout
    assert doc["device"] == "gpu" and doc["skipped"]


def test_ab_step_times_two_checkouts_in_one_process(tmp_path):
    # the same checkout as A and B, tiny sizes: a smoke test of the script, not of speed
    script = ROOT / "benchmarks" / "ab_step.py"
    proc = subprocess.run([sys.executable, str(script), str(ROOT), str(ROOT), "--steps", "2",
                           "--warmup", "0", "--sizes", "2x16"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    step = [line for line in proc.stdout.splitlines() if line.strip().startswith("step")]
    assert len(step) == 1
    # the header: the CPU and the pins from the parent, the BLAS from the timing process
    for text in ("CPU: ", "BLAS pins", "BLAS: ", "read at run time"):
        assert text in proc.stdout, text
    a, b = (float(v) for v in step[0].split()[1:3])
    assert a > 0 and b > 0


def test_ab_step_refuses_a_folder_without_tinyinterp(tmp_path):
    script = ROOT / "benchmarks" / "ab_step.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "no tinyinterp package" in proc.stderr


def test_bench_numpy_first_worker_still_has_openblas_read_the_timeout(tmp_path):
    # a user's script that imports NumPy before tinyinterp (tinyinterp/blas.py)
    proc, doc = run_bench(tmp_path, "--numpy-first", "--no-torch", "--only", "step")
    tiny = doc["meta"]["libraries"]["tinyinterp"]
    assert tiny["import_order"] == "numpy first" and "imported numpy first" in proc.stdout
    if numpy_uses_openblas():
        wanted = int(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "20"))
        assert tiny["openblas_thread_timeout_read"] == [wanted]
