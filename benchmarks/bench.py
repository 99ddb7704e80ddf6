"""Time tinyinterp against PyTorch on the same machine, in the same run.

    python benchmarks/bench.py [--quick | --tiny] [--device cpu|gpu] [--json out.json] [--keep-blas-env]
                               [--concurrent K]

What is timed (float32; CPU by default, CuPy / PyTorch CUDA with --device gpu):

- matmul: one large square sgemm, the ceiling every conv is measured against;
- step: one training step of the plain small VGG (``small_vgg(new_conv=False)``: forward,
  softmax cross-entropy, backward without the images' gradient (as training and PyTorch's
  autograd do it), SGD with momentum; dropout on in both nets) at batch
  32 / 64x64 and batch 16 / 112x112;
- each conv layer of that net (batch 32, 64x64): forward, and backward (dx, dW, db);
- each max-pool and the largest ReLU, forward and backward;
- tinyinterp only: the filter loss + mask (InterpretableMask on the top conv's maps,
  batch 32, 128 filters 8x8, training mode with labels) and its share of a training
  step of the interpretable net ``small_vgg(interpretable=True)``.

How: tinyinterp and PyTorch each run in their own worker process (so neither library's
threads disturb the other, and tinyinterp never shares a process with torch). The
parent sends each case to the two workers in turn, alternating which goes first; every
turn starts with an untimed warm-up call, then timed repetitions. That is repeated for
several rounds, each round going through all the cases, so a slow spell of the machine
is spread over every row. A number in the table is the median of all repetitions. PyTorch uses as many threads as
there are cores (so does OpenBLAS under NumPy). The machine's load average, and the CPU
time other processes took during the run, are printed and saved, because a busy
machine makes every number here unreliable.

The header says what ran (hostinfo.py): the CPU and its vector extensions, the BLAS
NumPy uses and the kernel it picked, read inside the tinyinterp worker, and the BLAS
pins. The workers run without ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (set in every
shell on some machines, they pin OpenBLAS to a slower kernel than a user would get);
``--keep-blas-env`` keeps them.

On a GPU, PyTorch runs with TF32 off (cuDNN and cuBLAS), so both libraries compute in
float32. ``--concurrent K`` also times the training steps with K worker processes of each
library at once on the one device (or the cores), and lists each worker's step time
beside the single run's: what several training runs sharing a GPU get.

--quick: fewer rounds (under a minute). --tiny: tiny sizes, one repetition (a smoke test
of this script, used by tests/test_bench.py; its numbers mean nothing).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import hostinfo  # beside this script (sys.path[0] when it runs); imports no NumPy

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# the plain small VGG at its default widths: (in, out) channels of each 3x3 conv and the
# number of 2x2 pools before it; the fully connected layers follow
CONVS = [(3, 32, 0), (32, 32, 0), (32, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 128, 3)]
POOLS = [(32, 0), (64, 1), (128, 2), (128, 3)]  # (channels, pools before it)
FC_WIDTH, NUM_CLASSES = 256, 10


def sizes(mode):
    """Shapes and repetition counts for each mode."""
    if mode == "tiny":
        return dict(steps=[(2, 16), (2, 32)], layer=(2, 16), matmul=128, interp=(2, 16),
                    rounds=1, reps=1, warmup=1, min_time=0.0)
    common = dict(steps=[(32, 64), (16, 112)], layer=(32, 64), interp=(32, 64))
    if mode == "quick":
        return dict(common, matmul=2048, rounds=3, reps=1, warmup=1, min_time=0.05)
    return dict(common, matmul=2048, rounds=5, reps=2, warmup=1, min_time=0.25)


# ---------------------------------------------------------------- cases and FLOPs

def conv_flops(N, C, OC, H, W, k=3):
    return 2.0 * N * H * W * OC * C * k * k


def step_flops(N, S):
    """Forward FLOPs x 3 (forward, input gradient, weight gradient): the usual count."""
    fwd = sum(conv_flops(N, c, oc, S >> p, S >> p) for c, oc, p in CONVS)
    side = S >> 4
    fwd += 2.0 * N * (128 * side * side * FC_WIDTH + FC_WIDTH * NUM_CLASSES)
    return 3 * fwd


def build_cases(cfg):
    """The list of cases: each a dict the workers understand, plus its name and FLOPs."""
    cases = [dict(kind="matmul", n=cfg["matmul"], name=f"matmul sgemm {cfg['matmul']}",
                  flops=2.0 * cfg["matmul"] ** 3)]
    for N, S in cfg["steps"]:
        cases.append(dict(kind="step", N=N, S=S, name=f"step b{N} {S}x{S}", flops=step_flops(N, S)))
    N, S = cfg["layer"]
    for i, (c, oc, p) in enumerate(CONVS, 1):
        H = S >> p
        for kind, mult in (("conv_fwd", 1), ("conv_bwd", 2)):
            cases.append(dict(kind=kind, N=N, C=c, OC=oc, H=H,
                              name=f"conv{i} {c}->{oc} {H}x{H} {kind[5:]}",
                              flops=mult * conv_flops(N, c, oc, H, H)))
    for i, (c, p) in enumerate(POOLS, 1):
        H = S >> p
        for kind in ("pool_fwd", "pool_bwd"):
            cases.append(dict(kind=kind, N=N, C=c, H=H, name=f"pool{i} {c}ch {H}x{H} {kind[5:]}"))
    for kind in ("relu_fwd", "relu_bwd"):
        cases.append(dict(kind=kind, N=N, C=32, H=S, name=f"relu 32ch {S}x{S} {kind[5:]}"))
    N, S = cfg["interp"]
    cases.append(dict(kind="mask", N=N, F=128, n=S >> 3, only="tinyinterp",
                      name=f"filter loss+mask b{N} 128x{S >> 3}x{S >> 3}"))
    cases.append(dict(kind="interp_step", N=N, S=S, only="tinyinterp",
                      name=f"interpretable step b{N} {S}x{S}"))
    return cases


# ---------------------------------------------------------------- workers

def _core_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class TinyinterpCases:
    """Builds a callable per case, on NumPy or CuPy."""

    name = "tinyinterp"

    def __init__(self, device, numpy_first=False):
        sys.path.insert(0, str(REPO))
        self.import_order = "numpy first" if numpy_first else "tinyinterp first"
        if numpy_first:  # as a user's script: NumPy loaded, and a product run, before tinyinterp
            import numpy as np

            np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)
        # tinyinterp first: imported before NumPy, it sets OpenBLAS's thread timeout (its
        # __init__.py), as it does for `python -m tinyinterp`; after NumPy, it has OpenBLAS
        # read it again (tinyinterp/blas.py)
        import tinyinterp as ti
        from tinyinterp import backend

        import numpy as np

        self.np, self.ti = np, ti
        if device == "gpu" and not backend.gpu_available():
            raise RuntimeError("no GPU: CuPy or a CUDA device is missing")
        self.xp = backend.device_module(device)
        self.device = device
        self.rng = np.random.default_rng(0)

    def info(self):
        np = self.np
        # torch_imported: tinyinterp must never import torch (checked by tests/test_bench.py)
        info = {"numpy": np.__version__, "threads": _core_count(), "torch_imported": "torch" in sys.modules,
                "tinyinterp_threads": self.ti.get_num_threads(),
                "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                "import_order": self.import_order,
                # what each loaded OpenBLAS really read (0: none), through ctypes
                "openblas_thread_timeout_read": list(self.ti.blas.thread_timeouts().values()),
                # read here, in the process whose NumPy does the timed work
                "blas": hostinfo.blas_info(), "blas_pins_seen": hostinfo.blas_pins(os.environ)}
        if self.device == "gpu":
            import cupy

            info["cupy"] = cupy.__version__
            info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return info

    def sync(self):
        if self.device == "gpu":
            self.xp.cuda.Stream.null.synchronize()

    def randn(self, *shape):
        return self.xp.asarray(self.rng.standard_normal(shape, dtype=self.np.float32))

    def setup(self, case):
        ti, xp, kind = self.ti, self.xp, case["kind"]
        if kind == "matmul":
            a, b = self.randn(case["n"], case["n"]), self.randn(case["n"], case["n"])
            return lambda: a @ b
        if kind in ("step", "interp_step"):
            N, S = case["N"], case["S"]
            interp = kind == "interp_step"
            model = ti.small_vgg(NUM_CLASSES, S, new_conv=interp, interpretable=interp).to(self.device)
            opt = ti.SGD(model.params(), lr=0.01, momentum=0.9)
            loss = ti.SoftmaxCrossEntropy()
            x = self.randn(N, 3, S, S)
            labels = xp.asarray(self.rng.integers(0, NUM_CLASSES, N))
            masks = [layer for layer in model.layers if isinstance(layer, ti.InterpretableMask)]
            for m in masks:
                m.set_labels(labels)
            if not interp:
                def step():
                    loss.forward(model.forward(x), labels, check=False)  # as train_step: no host sync
                    model.backward(loss.backward(), input_grad=False)
                    opt.step(model.grads())
                return step

            # the step of Sequential.forward/backward, with the time spent inside the
            # mask layers added up (synchronised on a GPU): their methods get a timer
            in_masks = [0.0]

            def timed(method):
                def run(h):
                    self.sync()
                    t = time.perf_counter()
                    h = method(h)
                    self.sync()
                    in_masks[0] += time.perf_counter() - t
                    return h
                return run

            for m in masks:
                m.forward, m.backward = timed(m.forward), timed(m.backward)

            def timed_step():
                in_masks[0] = 0.0
                loss.forward(model.forward(x), labels, check=False)  # as train_step: no host sync
                model.backward(loss.backward(), input_grad=False)
                opt.step(model.grads())
                return {"masks": in_masks[0]}
            return timed_step
        if kind == "mask":
            layer = ti.InterpretableMask(case["F"], case["n"], num_classes=NUM_CLASSES)
            if self.device == "gpu":
                layer.to("gpu")
            x = xp.maximum(self.randn(case["N"], case["F"], case["n"], case["n"]), 0)
            dout = self.randn(*x.shape)
            layer.set_labels(xp.asarray(self.rng.integers(0, NUM_CLASSES, case["N"])))

            def mask_step():
                layer.forward(x)
                layer.backward(dout)
            return mask_step
        N, H = case["N"], case["H"]
        if kind.startswith("conv"):
            C, OC = case["C"], case["OC"]
            x = self.randn(N, C, H, H)
            w = self.randn(OC, C, 3, 3) * self.np.float32((2.0 / (9 * C)) ** 0.5)
            b = self.randn(OC)
            if kind == "conv_fwd":
                return lambda: ti.conv2d_forward(x, w, b, 1, 1)
            _, cache = ti.conv2d_forward(x, w, b, 1, 1)
            dout = self.randn(N, OC, H, H)
            return lambda: ti.conv2d_backward(dout, cache)
        x = self.randn(N, case["C"], H, H)
        if kind.startswith("pool"):
            if kind == "pool_fwd":
                return lambda: ti.maxpool2d_forward(x, 2)
            y, cache = ti.maxpool2d_forward(x, 2)
            dout = self.randn(*y.shape)
            return lambda: ti.maxpool2d_backward(dout, cache)
        if kind.startswith("relu"):
            layer = ti.ReLU()
            if kind == "relu_fwd":
                return lambda: layer.forward(x)
            layer.forward(x)
            dout = self.randn(*x.shape)
            return lambda: layer.backward(dout)
        raise ValueError(f"unknown case {kind}")


class TorchCases:
    """The same cases in PyTorch (benchmarks/torch_reference.py)."""

    name = "torch"

    def __init__(self, device):
        sys.path.insert(0, str(HERE))
        import torch

        import torch_reference as ref

        self.torch, self.ref = torch, ref
        self.threads = ref.set_threads()
        if device == "gpu" and not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA device")
        if device == "gpu":  # like with like: float32 products and convs, as CuPy's (no TF32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.dev = torch.device("cuda" if device == "gpu" else "cpu")
        self.device = device
        self.gen = torch.Generator().manual_seed(0)

    def info(self):
        info = {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}
        if self.device == "gpu":
            info["gpu"] = self.torch.cuda.get_device_name(0)
            info["tf32"] = {"cudnn": self.torch.backends.cudnn.allow_tf32,
                            "matmul": self.torch.backends.cuda.matmul.allow_tf32}
        return info

    def sync(self):
        if self.device == "gpu":
            self.torch.cuda.synchronize()

    def randn(self, *shape):
        return self.torch.randn(*shape, generator=self.gen).to(self.dev)

    def setup(self, case):
        torch, ref, kind = self.torch, self.ref, case["kind"]
        if kind == "matmul":
            a, b = self.randn(case["n"], case["n"]), self.randn(case["n"], case["n"])
            return lambda: a @ b
        if kind == "step":
            N, S = case["N"], case["S"]
            model = ref.small_vgg(NUM_CLASSES, S).to(self.dev).train()
            step = ref.make_train_step(model)
            x = self.randn(N, 3, S, S)
            labels = torch.randint(0, NUM_CLASSES, (N,), generator=self.gen).to(self.dev)
            return lambda: step(x, labels)
        N, H = case["N"], case["H"]
        if kind.startswith("conv"):
            C, OC = case["C"], case["OC"]
            x = self.randn(N, C, H, H)
            w = self.randn(OC, C, 3, 3) * (2.0 / (9 * C)) ** 0.5
            b = self.randn(OC)
            if kind == "conv_fwd":
                return lambda: ref.conv_forward(x, w, b, 1)
            dout = self.randn(N, OC, H, H)
            return lambda: ref.conv_backward(dout, x, w, 1)
        x = self.randn(N, case["C"], H, H)
        if kind.startswith("pool"):
            if kind == "pool_fwd":
                return lambda: ref.maxpool_forward(x)
            y, idx = ref.maxpool_forward(x)
            dout = self.randn(*y.shape)
            return lambda: ref.maxpool_backward(dout, x, idx)
        if kind.startswith("relu"):
            if kind == "relu_fwd":
                return lambda: ref.relu_forward(x)
            y = ref.relu_forward(x)
            dout = self.randn(*x.shape)
            return lambda: ref.relu_backward(dout, y)
        raise ValueError(f"unknown case {kind}")


def worker_main(lib, device, numpy_first=False):
    """Serve cases read as JSON lines on stdin; answer each with one JSON line."""
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        lib_cases = TinyinterpCases(device, numpy_first) if lib == "tinyinterp" else TorchCases(device)
    except Exception as exc:  # reported to the parent, which goes on without this library
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return
    reply({"ready": True, "info": lib_cases.info(), "pid": os.getpid()})
    built = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        if cmd.get("op") == "info":  # asked again at the end: e.g. whether torch got imported
            reply({"info": lib_cases.info()})
            continue
        case = cmd["case"]
        try:
            key = case["name"]
            if key not in built:
                built[key] = lib_cases.setup(case)
            fn = built[key]
            t_end = time.perf_counter() + cmd["min_time"] / 4
            for i in range(max(cmd["warmup"], 1)):
                fn()
                lib_cases.sync()
                if time.perf_counter() > t_end and i + 1 >= cmd["warmup"]:
                    break
            samples, t_end = [], time.perf_counter() + cmd["min_time"]
            while len(samples) < cmd["reps"] or (time.perf_counter() < t_end and len(samples) < 50):
                t = time.perf_counter()
                extra = fn()
                lib_cases.sync()
                sample = {"t": time.perf_counter() - t}
                if isinstance(extra, dict):
                    sample.update(extra)
                samples.append(sample)
            reply({"samples": samples})
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})


class Worker:
    """A worker process for one library, started with the same Python as this script,
    in the environment ``env`` (None: this process's)."""

    def __init__(self, lib, device, env=None, numpy_first=False):
        self.lib = lib
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", lib, "--device", device]
            + (["--numpy-first"] if numpy_first else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        hello = self._read()
        self.error = hello.get("error")
        self.info = hello.get("info", {})
        self.pid = hello.get("pid")

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"{self.lib} worker exited (status {self.proc.wait()})"}
        return json.loads(line)

    def run(self, case, reps, warmup, min_time):
        self.send(case, reps, warmup, min_time)
        return self._read()

    def send(self, case, reps, warmup, min_time):
        """Ask for a case without waiting for the answer (``_read`` gets it)."""
        self.proc.stdin.write(json.dumps(dict(case=case, reps=reps, warmup=warmup, min_time=min_time)) + "\n")
        self.proc.stdin.flush()

    def refresh_info(self):
        self.proc.stdin.write(json.dumps({"op": "info"}) + "\n")
        self.proc.stdin.flush()
        self.info = self._read().get("info", self.info)

    def cpu_seconds(self):
        return _process_cpu_seconds(self.pid)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
            except OSError:
                pass
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------- machine load

def _busy_seconds():
    """CPU seconds all processes spent busy since boot (Linux /proc/stat), else None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def load_report(busy0, busy1, own_cpu, wall):
    """Load averages now and the cores' worth of CPU other processes used during the run."""
    report = {"loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
              "cores": _core_count()}
    if busy0 is not None and busy1 is not None and own_cpu is not None and wall > 0:
        report["other_processes_cores"] = max(0.0, (busy1 - busy0 - own_cpu) / wall)
    return report


# ---------------------------------------------------------------- driver

def median_ms(samples, key="t"):
    return 1e3 * statistics.median(s[key] for s in samples) if samples else None


def spread(samples):
    """Interquartile range / median of the times: how noisy the row is."""
    t = sorted(s["t"] for s in samples)
    if len(t) < 4:
        return None
    q1, q3 = t[len(t) // 4], t[(3 * len(t)) // 4]
    return (q3 - q1) / statistics.median(t)


def run_cases(cases, workers, cfg, log):
    """Every round visits every case, each library in turn (who goes first alternates).

    Rounds go over all the cases rather than repeating one case back to back, so that a
    slow spell of the machine (another process, a busy host) is spread over all the rows
    instead of spoiling one of them.
    """
    samples = [{w.lib: [] for w in workers if case.get("only", w.lib) == w.lib} for case in cases]
    errors = [{} for _ in cases]
    for r in range(cfg["rounds"]):
        for i, case in enumerate(cases):
            libs = [w for w in workers if w.lib in samples[i]]
            for w in (libs if (r + i) % 2 == 0 else libs[::-1]):
                if w.lib in errors[i]:
                    continue
                answer = w.run(case, cfg["reps"], cfg["warmup"], cfg["min_time"])
                if "error" in answer:
                    errors[i][w.lib] = answer["error"]
                else:
                    samples[i][w.lib].extend(dict(sample, round=r) for sample in answer["samples"])
        log(f"  round {r + 1}/{cfg['rounds']} done")
    results = []
    for case, got, err in zip(cases, samples, errors):
        row = {k: case[k] for k in case if k != "only"}
        for lib in ("tinyinterp", "torch"):
            row[f"{lib}_ms"] = median_ms(got.get(lib, []))
            row[f"{lib}_spread"] = spread(got[lib]) if got.get(lib) else None
            row[f"{lib}_samples_ms"] = [1e3 * s["t"] for s in got.get(lib, [])]
        if err:
            row["errors"] = err
            log(f"  {case['name']}: errors {err}")
        if case["kind"] == "interp_step" and got.get("tinyinterp"):
            row["masks_ms"] = median_ms(got["tinyinterp"], "masks")
        t, p = row["tinyinterp_ms"], row["torch_ms"]
        row["ratio"] = t / p if t and p else None
        if row["ratio"] is not None:  # round by round: shows a slow spell of the machine
            by_round = [[median_ms([s for s in got[lib] if s["round"] == r]) for lib in ("tinyinterp", "torch")]
                        for r in range(cfg["rounds"])]
            row["round_ratios"] = [a / b if a and b else None for a, b in by_round]
        results.append(row)
    return results


def run_concurrent(cases, libs, k, device, env, cfg, log):
    """The training steps with ``k`` workers of each library at once, sharing the machine
    (the GPU): every worker is asked for the same case, then all answers are read. Returns
    {case name: {lib: [each worker's median step, ms]}}."""
    out = {}
    for lib in libs:
        workers = [Worker(lib, device, env) for _ in range(k)]
        try:
            if any(w.error for w in workers):
                log(f"  {lib}: {k} concurrent workers failed: {[w.error for w in workers if w.error][0]}")
                continue
            for case in cases:
                for w in workers:
                    w.send(case, cfg["reps"] * cfg["rounds"], cfg["warmup"], cfg["min_time"])
                answers = [w._read() for w in workers]
                out.setdefault(case["name"], {})[lib] = [
                    median_ms(a["samples"]) if "samples" in a else None for a in answers]
        finally:
            for w in workers:
                w.close()
        log(f"  {k} concurrent {lib} workers done")
    return out


def print_concurrent(results, concurrent, k, out=print):
    out("")
    out(f"{k} runs at once on one device (each worker's median step, ms) beside the single run:")
    for r in results:
        if r["name"] not in concurrent:
            continue
        for lib in ("tinyinterp", "torch"):
            times = concurrent[r["name"]].get(lib)
            if times:
                each = " ".join(fmt(t, ".2f", 0) for t in times)
                out(f"  {r['name']:<24}{lib:<11} single {fmt(r[f'{lib}_ms'], '.2f', 0)}  concurrent {each}")


def add_rates(results):
    """GFLOP/s of each row, and as a fraction of the same library's sgemm rate."""
    peak = {}
    for row in results:
        if row["kind"] == "matmul":
            for lib in ("tinyinterp", "torch"):
                if row[f"{lib}_ms"]:
                    peak[lib] = row["flops"] / row[f"{lib}_ms"] / 1e6
    for row in results:
        for lib in ("tinyinterp", "torch"):
            ms = row[f"{lib}_ms"]
            if row.get("flops") and ms:
                row[f"{lib}_gflops"] = row["flops"] / ms / 1e6
                if lib in peak:
                    row[f"{lib}_frac_peak"] = row[f"{lib}_gflops"] / peak[lib]
    return peak


def mask_share(results):
    """The filter loss + mask against the interpretable net's training step."""
    rows = {r["kind"]: r for r in results}
    mask, step = rows.get("mask"), rows.get("interp_step")
    if not mask or not step or not step.get("tinyinterp_ms"):
        return None
    share = {"mask_ms": mask["tinyinterp_ms"], "interp_step_ms": step["tinyinterp_ms"],
             "masks_in_step_ms": step.get("masks_ms"), "target": 0.05}
    if share["mask_ms"]:
        share["one_mask_share"] = share["mask_ms"] / share["interp_step_ms"]
    if share["masks_in_step_ms"] is not None:
        share["masks_in_step_share"] = share["masks_in_step_ms"] / share["interp_step_ms"]
    return share


def fmt(v, spec, width):
    return format(v, spec).rjust(width) if v is not None else "-".rjust(width)


def host_lines(meta):
    """The header's lines on the machine: CPU, the tinyinterp worker's BLAS, the pins."""
    libs = meta["libraries"]
    blas = libs.get("tinyinterp", {}).get("blas")
    lines = hostinfo.describe(meta["host"]["cpu"], blas, meta["host"]["blas_pins"])
    if meta["device"] == "gpu":  # on a GPU the timed work runs there, not in the BLAS
        ti, torch = libs.get("tinyinterp", {}), libs.get("torch", {})
        lines = [f"GPU: {ti.get('gpu', '?')}, CuPy {ti.get('cupy', '?')}"
                 + (f"; PyTorch {torch['torch']}" if "torch" in torch else "")] + list(lines)
    return lines


def print_table(results, peak, share, meta, out=print):
    out("")
    out(f"tinyinterp vs PyTorch, {meta['device']}, {meta['cores']} cores; ratio = tinyinterp / torch "
        "(lower is better); %pk = GFLOP/s / the same library's sgemm GFLOP/s")
    for line in host_lines(meta):
        out(line)
    head = (f"{'case':<36}{'tiny ms':>10}{'torch ms':>10}{'ratio':>7}{'tiny GF/s':>10}{'%pk':>6}"
            f"{'torch GF/s':>11}{'%pk':>6}{'iqr':>6}")
    out(head)
    out("-" * len(head))
    for r in results:
        fp = r.get("tinyinterp_frac_peak")
        tp = r.get("torch_frac_peak")
        out(f"{r['name']:<36}{fmt(r['tinyinterp_ms'], '.2f', 10)}{fmt(r['torch_ms'], '.2f', 10)}"
            f"{fmt(r['ratio'], '.2f', 7)}{fmt(r.get('tinyinterp_gflops'), '.1f', 10)}"
            f"{fmt(None if fp is None else 100 * fp, '.0f', 6)}"
            f"{fmt(r.get('torch_gflops'), '.1f', 11)}{fmt(None if tp is None else 100 * tp, '.0f', 6)}"
            f"{fmt(None if r['tinyinterp_spread'] is None else 100 * r['tinyinterp_spread'], '.0f', 5)}%")
    if share:
        out("")
        out(f"filter loss + mask: {share['mask_ms']:.2f} ms per forward+backward = "
            f"{100 * share.get('one_mask_share', float('nan')):.1f}% of an interpretable-net step "
            f"({share['interp_step_ms']:.1f} ms); its two mask layers inside that step: "
            f"{fmt(share.get('masks_in_step_ms'), '.2f', 0)} ms = "
            f"{fmt(None if share.get('masks_in_step_share') is None else 100 * share['masks_in_step_share'], '.1f', 0)}%"
            f" (target <= 5% per mask)")
    for r in results:
        if r["kind"] == "step" and r.get("round_ratios"):
            out(f"{r['name']}: ratio in each round " + " ".join(fmt(v, ".2f", 0) for v in r["round_ratios"]))
    tiny = meta.get("libraries", {}).get("tinyinterp", {})
    if "tinyinterp_threads" in tiny:
        out(f"tinyinterp: {tiny['tinyinterp_threads']} threads (element-wise passes, the convs' chunk loops), "
            f"OPENBLAS_THREAD_TIMEOUT={tiny.get('openblas_thread_timeout')} (as OpenBLAS read it: "
            f"{', '.join(map(str, tiny.get('openblas_thread_timeout_read') or [])) or 'no pthreads OpenBLAS'}), "
            f"imported {tiny.get('import_order', 'tinyinterp first')}")
    load = meta["load"]
    other = load.get("other_processes_cores")
    out(f"machine load: load average at the end {', '.join(f'{v:.2f}' for v in load['loadavg_end'] or [])}"
        + (f"; other processes used {other:.2f} of {load['cores']} cores during the run" if other is not None else ""))
    if other is not None and other > 0.2:
        out("WARNING: other processes were busy during the run; ratios are less reliable. Re-run on an idle machine.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one repetition (smoke test)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--no-torch", action="store_true", help="time tinyinterp only")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: 5, --quick 3)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the workers (default: lifted)")
    parser.add_argument("--numpy-first", action="store_true",
                        help="the tinyinterp worker imports NumPy (and multiplies) before tinyinterp, "
                             "as a user's script may")
    parser.add_argument("--concurrent", type=int, default=0, metavar="K",
                        help="also time the training steps with K workers of each library at once "
                             "(sharing the GPU or the cores), each one's step beside the single run")
    parser.add_argument("--worker", choices=["tinyinterp", "torch"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.device, args.numpy_first)
        return 0

    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = sizes(mode)
    if args.rounds:
        cfg["rounds"] = args.rounds
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t0, busy0 = time.perf_counter(), _busy_seconds()
    self_cpu0 = time.process_time()
    # the workers time what a user gets: no BLAS pins unless --keep-blas-env (this
    # process's own environment stays as it is)
    env = hostinfo.worker_env(os.environ, args.keep_blas_env)
    host = {"cpu": hostinfo.cpu_info(), "blas_pins": hostinfo.pins_report(os.environ, args.keep_blas_env)}
    workers = []
    ti = Worker("tinyinterp", args.device, env, numpy_first=args.numpy_first)
    if ti.error:
        ti.close()
        if args.device == "gpu":
            log(f"skipping the GPU benchmark: {ti.error}")
            if args.json:
                Path(args.json).write_text(json.dumps({"skipped": ti.error, "device": "gpu"}, indent=1))
            return 0
        log(f"tinyinterp worker failed: {ti.error}")
        return 1
    workers.append(ti)
    if args.no_torch:
        log("PyTorch: off (--no-torch)")
    elif find_spec("torch") is None:
        log("PyTorch is not installed: timing tinyinterp only")
    else:
        tw = Worker("torch", args.device, env)
        if tw.error:
            log(f"PyTorch reference unavailable ({tw.error}): timing tinyinterp only")
            tw.close()
        else:
            workers.append(tw)
    cases = build_cases(cfg)
    if args.only:
        cases = [c for c in cases if args.only in c["name"] or c["kind"] == "matmul"]
    log(f"{mode} run on {args.device}: {len(cases)} cases, {cfg['rounds']} interleaved rounds")
    for line in hostinfo.describe(host["cpu"], ti.info.get("blas"), host["blas_pins"]):
        log(line)
    try:
        results = run_cases(cases, workers, cfg, log)
        own = [w.cpu_seconds() for w in workers]
        for w in workers:
            w.refresh_info()
    finally:
        for w in workers:
            w.close()
    concurrent = None
    if args.concurrent > 1:
        steps = [c for c in cases if c["kind"] == "step"]
        concurrent = run_concurrent(steps, [w.lib for w in workers], args.concurrent, args.device, env, cfg, log)
    wall = time.perf_counter() - t0
    own_cpu = None if None in own else sum(own) + time.process_time() - self_cpu0
    peak = add_rates(results)
    share = mask_share(results)
    meta = {"mode": mode, "device": args.device, "cores": _core_count(), "wall_s": wall,
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor(), "host": host,
            "libraries": {w.lib: w.info for w in workers},
            "load": load_report(busy0, _busy_seconds(), own_cpu, wall),
            "repetitions": {k: cfg[k] for k in ("rounds", "reps", "warmup", "min_time")}}
    print_table(results, peak, share, meta, out=log)
    if concurrent:
        print_concurrent(results, concurrent, args.concurrent, out=log)
    log(f"({wall:.0f} s)")
    if args.json:
        doc = {"meta": meta, "matmul_peak_gflops": peak, "mask_share": share, "results": results,
               "concurrent": concurrent and {"workers": args.concurrent, "step_ms": concurrent}}
        Path(args.json).write_text(json.dumps(doc, indent=1))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
