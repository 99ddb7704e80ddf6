#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CuPy and a CUDA device:
#   1. the tests marked `gpu` (the same checks as on the CPU, on CuPy arrays);
#   2. `bench.py --device gpu --quick` (CuPy against PyTorch CUDA, when installed);
#   3. the main command, `python -m tinyinterp train --device gpu`, timed end to end;
#   4. the same with `--task bird` (bird vs. not on the toy birds);
#   5. the training steps with GPU_CONCURRENT (12) workers of each library at once, beside
#      the single run (`bench.py --concurrent`; start CUDA's MPS daemon first to share the
#      GPU as the studies do: nvidia-cuda-mps-control -d).
# Each step has its own time limit, so a hang in one still leaves the others' output.
# Usage (from the repository root): bash benchmarks/gpu_check.sh [OUTDIR]
# OUTDIR (default gpu_check_out/) receives the logs and the benchmark's JSON; the runs go
# to GPU_TRAIN_OUT (default OUTDIR/runs), replacing an earlier check's (--overwrite).
# GPU_BENCH_ARGS="" runs the full benchmark.
set -u
out=${1:-gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi -L 2>&1 || true
  "$py" -c "import numpy, cupy; print('numpy', numpy.__version__, 'cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
} 2>&1 | tee "$out/host.txt"

echo "== 1. pytest -m gpu"
start=$(date +%s)
timeout "${GPU_TESTS_LIMIT:-240}" "$py" -m pytest -m gpu -q -p no:cacheprovider -rfE \
  --junitxml="$out/gpu_tests.xml" 2>&1 | tee "$out/gpu_tests.log" | tail -40
echo "tests took $(( $(date +%s) - start )) s"

echo "== 2. bench.py --device gpu ${GPU_BENCH_ARGS---quick}"
timeout "${GPU_BENCH_LIMIT:-150}" "$py" benchmarks/bench.py --device gpu ${GPU_BENCH_ARGS---quick} \
  --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.log" | tail -40

echo "== 3. python -m tinyinterp train --device gpu (the main command on a GPU)"
start=$(date +%s)
timeout "${GPU_TRAIN_LIMIT:-150}" "$py" -m tinyinterp train --device gpu --overwrite --out "${GPU_TRAIN_OUT:-$out/runs}" 2>&1 \
  | tee "$out/train_gpu.log" | tail -25
echo "train took $(( $(date +%s) - start )) s"

echo "== 4. python -m tinyinterp train --task bird --device gpu"
start=$(date +%s)
timeout "${GPU_TRAIN_LIMIT:-150}" "$py" -m tinyinterp train --task bird --device gpu --overwrite \
  --out "${GPU_TRAIN_OUT:-$out/runs}_bird" 2>&1 | tee "$out/train_bird_gpu.log" | tail -25
echo "train --task bird took $(( $(date +%s) - start )) s"

echo "== 5. bench.py --device gpu --only step --concurrent ${GPU_CONCURRENT:-12}"
timeout "${GPU_BENCH_LIMIT:-150}" "$py" benchmarks/bench.py --device gpu --only step \
  --concurrent "${GPU_CONCURRENT:-12}" --json "$out/bench_gpu_concurrent.json" 2>&1 \
  | tee "$out/bench_gpu_concurrent.log" | tail -40
