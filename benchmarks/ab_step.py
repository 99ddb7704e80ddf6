"""Two versions of tinyinterp, one training step against the other, in one process.

    git worktree add ../old f1b782f           # any two checkouts
    python benchmarks/ab_step.py ../old .      # A = ../old, B = this checkout

bench.py compares tinyinterp with PyTorch; this compares tinyinterp with itself, to
measure an engine change. Separate processes on a shared 2-core VM differ by 10-20%
from one run to the next (memory placement, the host's load), more than most changes
gain, so both versions are imported into one process (under the names ti_a and ti_b)
and their steps alternate, A B B A A B ..., each step and each layer timed. Printed:
the median time of every layer's forward and backward (rows over 1 ms) and of the
whole step for A and B, and B/A.

The step is the one of bench.py: the plain small VGG (dropout on), softmax
cross-entropy, backward (without the input gradient where the version has that
option), SGD with momentum, at batch 32 / 64x64 and batch 16 / 112x112.

As in bench.py, the header names the CPU, the BLAS and the kernel it runs (hostinfo.py),
and the timing runs in a child process without the BLAS pins ``OPENBLAS_CORETYPE`` /
``OPENBLAS_L2_SIZE``; ``--keep-blas-env`` keeps them.
"""
import argparse
import importlib.util
import inspect
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import hostinfo  # beside this script (sys.path[0] when it runs); imports no NumPy

# what tinyinterp's __init__.py sets when it is imported before NumPy (here NumPy comes
# first, to load two versions): OpenBLAS's idle threads sleep soon, for both versions
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

NUM_CLASSES = 10


def load(tree, name):
    """Import ``tree``/tinyinterp as the package ``name`` (its imports are relative)."""
    package = Path(tree).resolve() / "tinyinterp"
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"ab_step: no tinyinterp package in {tree}")
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Net:
    """One version's net, optimiser and loss, with a step that times each layer.

    The step is the version's own ``model.forward`` and ``model.backward``, so whatever
    its Sequential does (e.g. fusing a ReLU into the conv before it) is what is timed.
    Each layer's forward, backward and backward_params are wrapped with a timer; a layer
    whose work the Sequential moved into another one shows no time.
    """

    def __init__(self, ti, N, S):
        self.model = ti.small_vgg(NUM_CLASSES, S, new_conv=False)
        self.opt = ti.SGD(self.model.params(), lr=0.01, momentum=0.9)
        self.loss = ti.SoftmaxCrossEntropy()
        self.params_only = "input_grad" in inspect.signature(ti.Sequential.backward).parameters
        self.times = defaultdict(list)
        for i, layer in enumerate(self.model.layers):
            for method, kind in (("forward", "fwd"), ("backward", "bwd"), ("backward_params", "bwd")):
                # the base class's backward_params calls backward: timed there already
                if method in vars(type(layer)) or method == "forward":
                    setattr(layer, method, self.timed(getattr(layer, method), (i, kind)))

    def timed(self, method, key):
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = method(*args, **kwargs)
            self.times[key].append(time.perf_counter() - t)
            return out
        return run

    def step(self, x, labels):
        t_step = time.perf_counter()
        h = self.model.forward(x)
        self.loss.forward(h, labels)
        d = self.loss.backward()
        if self.params_only:
            self.model.backward(d, input_grad=False)
        else:
            self.model.backward(d)
        self.opt.step(self.model.grads())
        self.times["step"].append(time.perf_counter() - t_step)


def median_ms(samples, skip):
    return statistics.median(samples[skip:]) * 1e3


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", help="checkout A (the folder holding tinyinterp/)")
    parser.add_argument("b", help="checkout B")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per version and size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sizes", default="32x64,16x112",
                        help="batch x image size, comma-separated (default: %(default)s)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when timing (default: lifted)")
    parser.add_argument("--timed-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.timed_process:
        # the pins are read by OpenBLAS when it loads, so the timing runs in a child
        # started without them (this process's environment stays as it is)
        pins = hostinfo.pins_report(os.environ, args.keep_blas_env)
        for line in hostinfo.describe(hostinfo.cpu_info(), None, pins):
            print(line, flush=True)
        env = hostinfo.worker_env(os.environ, args.keep_blas_env)
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv, "--timed-process"],
                               env=env)
    time_two_versions(args)
    return 0


def time_two_versions(args):
    """The child's work: import both versions, alternate their steps, print the table."""
    import numpy as np

    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    versions = [load(args.a, "ti_a"), load(args.b, "ti_b")]
    for line in hostinfo.describe(None, hostinfo.blas_info(), None):
        print(line)
    print(f"A = {args.a}\nB = {args.b}")
    for N, S in sizes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, 3, S, S), dtype=np.float32)
        labels = rng.integers(0, NUM_CLASSES, N)
        nets = [Net(ti, N, S) for ti in versions]
        for r in range(args.warmup + args.steps):
            for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                nets[which].step(x, labels)
        print(f"\nbatch {N}, {S}x{S}: median ms          A        B     B/A")
        names = [repr(layer) for layer in nets[0].model.layers]
        keys = sorted(k for net in nets for k in net.times if k != "step")
        for key in sorted(set(keys)):
            a, b = (median_ms(net.times[key], args.warmup) if net.times.get(key) else 0.0
                    for net in nets)
            if max(a, b) >= 1.0:
                ratio = f"{b / a:5.2f}" if a and b else "    -"
                print(f"  {key[0]:2d} {names[key[0]][:22]:22s} {key[1]}  {a:7.1f}  {b:7.1f}  {ratio}")
        a, b = (median_ms(net.times["step"], args.warmup) for net in nets)
        ratios = [tb / ta for ta, tb in zip(nets[0].times["step"][args.warmup:],
                                            nets[1].times["step"][args.warmup:])]
        print(f"  step                            {a:7.1f}  {b:7.1f}  {b / a:5.2f}"
              f"  (B/A of paired steps: median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    sys.exit(main())
