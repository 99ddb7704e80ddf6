"""benchmarks/bench.py runs end to end and writes the JSON it promises (no timing checks).

The --tiny flag shrinks every case to a few milliseconds, so this is a smoke test of the
script (its workers, the PyTorch reference when torch is installed, the table and the
JSON), never of speed.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyinterp.backend import gpu_available

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
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
    assert "threads for element-wise passes, OPENBLAS_THREAD_TIMEOUT=" in proc.stdout
    if with_torch:
        assert "step b2 16x16: ratio in each round" in proc.stdout


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
    a, b = (float(v) for v in step[0].split()[1:3])
    assert a > 0 and b > 0


def test_ab_step_refuses_a_folder_without_tinyinterp(tmp_path):
    script = ROOT / "benchmarks" / "ab_step.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "no tinyinterp package" in proc.stderr
