"""Count the kernel launches and host syncs of a GPU training step, on the CPU.

    python benchmarks/launches.py [--batch 32] [--size 64] [--quiet]

A training step of the small VGG on a GPU is bound by the host issuing kernel launches
(each a few microseconds), and every device -> host transfer (a "sync") stalls the host
until the GPU has caught up. Both can be counted without a GPU: the step runs on NumPy,
under an array module posing as CuPy (``Device``), whose arrays (``DeviceArray``, a NumPy
subclass) count what CuPy would launch:

- one launch per element-wise operation (a ufunc, in place or not), per reduction
  (``sum``, ``max``, ``argmax``, ...), per copy (``astype`` to another dtype, ``copy``, a
  ``reshape`` or ``ravel`` that cannot be a view, an assignment into a slice, a gather
  by an index array), per array built with values (``zeros``, ``arange``, ``full``, ...;
  ``empty`` launches nothing), per upload of host data (``asarray`` of a NumPy array),
  per function of the module (``concatenate``, ``where``, ...);
- a matrix product: one launch, plus one copy for each 2-D operand that is neither C-
  nor F-contiguous (CuPy copies those before it calls cuBLAS);
- tinyinterp's own kernels (tinyinterp/cuda_kernels.py): one launch each; the stand-in
  runs their NumPy twins (``Device.run_twin``);
- views (slices, ``transpose``, ``reshape`` that can be a view) launch nothing.

A sync is any read of a device value by the host: ``float()``, ``int()``, ``bool()``
(an ``if`` on a device scalar), ``.item()``, ``.tolist()``, ``.get()``, ``asnumpy``,
formatting a device array.

The step is the training loop's own (``tinyinterp.train.train_step``): upload of the
batch, forward, task loss, backward, SGD, and the values the loop keeps for logging
(read only once per logging interval, ``train.LOG_EVERY`` steps, not counted here). A
first step runs untimed (the optimiser's velocities and the cached templates are made
then); the second is counted. The counts do not depend on the batch or image size (no
loop runs over pixels or chunks on a GPU) as long as the last maps are larger than 1x1
(1x1 maps flatten without a copy: one launch fewer), so tests/test_launches.py pins them
at batch 4, 32 px, which give the totals of batch 32, 64 px. The output ends with two
lines:

    plain step: N launches, M syncs
    interpretable step: N launches, M syncs
"""
import argparse
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tinyinterp import backend  # noqa: E402

NUM_CLASSES = 10


class Tally:
    """Launches and syncs, by the part of the step (``where``) that caused them."""

    def __init__(self):
        self.launches, self.syncs, self.kinds = Counter(), Counter(), Counter()
        self.where = "step"
        self.depth = 0  # > 0 inside a counted operation: what it does inside is not counted again
        self.on = False

    def launch(self, kind, n=1):
        if self.on and self.depth == 0 and n:
            self.launches[self.where] += n
            self.kinds[kind] += n

    def sync(self, kind):
        if self.on and self.depth == 0:
            self.syncs[self.where] += 1
            self.kinds["sync: " + kind] += 1


TALLY = Tally()


def _base(a):
    """DeviceArrays (also inside lists, tuples and dicts) as plain NumPy arrays."""
    if isinstance(a, DeviceArray):
        return a.view(np.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_base(v) for v in a)
    if isinstance(a, dict):
        return {k: _base(v) for k, v in a.items()}
    return a


def _wrap(r):
    """Results on the device: NumPy arrays and scalars as DeviceArrays (CuPy returns 0-d
    arrays where NumPy returns scalars)."""
    if isinstance(r, DeviceArray):
        return r
    if isinstance(r, np.ndarray):
        return r.view(DeviceArray)
    if isinstance(r, np.generic):
        return np.asarray(r).view(DeviceArray)
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _run(kind, n, fn, *args, **kwargs):
    """fn on the plain arrays, counted as ``n`` launches of ``kind``; result on the device."""
    TALLY.launch(kind, n)
    TALLY.depth += 1
    try:
        return _wrap(fn(*_base(args), **_base(kwargs)))
    finally:
        TALLY.depth -= 1


def _is_view(result, base):
    return isinstance(result, np.ndarray) and np.may_share_memory(result, base)


def _operand_copies(operands):
    """Copies CuPy makes before cuBLAS: 2-D operands neither C- nor F-contiguous."""
    return sum(1 for a in operands if isinstance(a, np.ndarray) and a.ndim == 2
               and not (a.flags.c_contiguous or a.flags.f_contiguous))


class DeviceArray(np.ndarray):
    """A NumPy array that counts, as a CuPy array would cost, what is done with it."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = _base(inputs)
        extra = _operand_copies(inputs) if ufunc is np.matmul else 0
        if out is not None:
            kwargs["out"] = _base(out)
        TALLY.launch(f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__, 1)
        TALLY.launch("operand copy for cuBLAS", extra)
        TALLY.depth += 1
        try:
            result = getattr(ufunc, method)(*inputs, **kwargs)
        finally:
            TALLY.depth -= 1
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _run(f"np.{func.__name__}", 1, func, *args, **kwargs)

    # -- reductions and copies: one kernel each --

    def _one(name):
        def method(self, *args, **kwargs):
            return _run(name, 1, getattr(np.ndarray, name), self, *args, **kwargs)
        method.__name__ = name
        return method

    for _name in ("sum", "mean", "max", "min", "argmax", "argmin", "all", "any", "prod", "cumsum",
                  "clip", "copy", "take", "repeat", "sort", "argsort", "dot", "flatten", "round", "std", "var"):
        locals()[_name] = _one(_name)
    del _one, _name

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return _run("astype", 1, np.ndarray.astype, self, dtype, order, casting, True, copy)

    def reshape(self, *shape, **kwargs):
        base = self.view(np.ndarray)
        result = base.reshape(*shape, **kwargs)
        if not _is_view(result, base):
            TALLY.launch("reshape copy")
        return result.view(DeviceArray)

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def __getitem__(self, key):
        base = self.view(np.ndarray)
        TALLY.depth += 1
        try:
            result = base[_base(key)]
        finally:
            TALLY.depth -= 1
        if isinstance(result, np.ndarray) and not _is_view(result, base):
            TALLY.launch("gather")
        return _wrap(result)

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
            TALLY.launch("upload")
        TALLY.launch("setitem")
        TALLY.depth += 1
        try:
            self.view(np.ndarray)[_base(key)] = _base(value)
        finally:
            TALLY.depth -= 1

    def fill(self, value):
        TALLY.launch("fill")
        self.view(np.ndarray).fill(value)

    # -- reads by the host: syncs --

    def _read(name):
        def method(self, *args, **kwargs):
            TALLY.sync(name)
            return getattr(self.view(np.ndarray), name)(*args, **kwargs)
        method.__name__ = name
        return method

    for _name in ("__float__", "__int__", "__bool__", "__index__", "__complex__", "item", "tolist",
                  "__format__", "__repr__", "__str__", "tobytes"):
        locals()[_name] = _read(_name)
    del _read, _name

    def get(self):
        """CuPy's copy to the host."""
        TALLY.sync("get")
        return self.view(np.ndarray).copy()


# NumPy functions that compute nothing on the device: metadata, dtypes, allocation
_FREE = {"result_type", "dtype", "can_cast", "promote_types", "ndim", "shape", "size", "iinfo",
         "finfo", "isscalar", "broadcast_shapes", "may_share_memory", "shares_memory",
         "empty", "empty_like", "broadcast_to", "expand_dims", "squeeze", "transpose", "moveaxis",
         "swapaxes", "atleast_1d", "atleast_2d", "atleast_3d"}


class Device(types.ModuleType):
    """The array module posing as CuPy (``__name__ == "cupy"``), so every branch that
    tinyinterp takes on a GPU is taken here. Everything else is NumPy's, counted."""

    ndarray = DeviceArray

    def __init__(self):
        super().__init__("cupy")

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, (type, np.ufunc)) or not callable(attr):
            return attr  # dtypes, constants; ufuncs count through DeviceArray.__array_ufunc__
        if name in _FREE:
            return lambda *args, **kwargs: _wrap(attr(*_base(args), **_base(kwargs)))
        return lambda *args, **kwargs: _run(name, 1, attr, *args, **kwargs)

    @staticmethod
    def asarray(a, dtype=None, order=None):
        if isinstance(a, DeviceArray):
            if (dtype is None or np.dtype(dtype) == a.dtype) and order in (None, "K", "A"):
                return a
            return _run("asarray", 1, np.asarray, a, dtype, order)
        return _run("upload", 1, np.array, a, dtype, order=order or "K")

    array = asarray

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        if isinstance(a, DeviceArray) and a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return _run("ascontiguousarray", 1, np.ascontiguousarray, a, dtype)

    @staticmethod
    def asnumpy(a):
        if isinstance(a, DeviceArray):
            TALLY.sync("asnumpy")
            return a.view(np.ndarray).copy()
        return np.asarray(a)

    @staticmethod
    def get_array_module(*arrays):
        return backend.get_array_module(*arrays)

    @staticmethod
    def run_twin(twin, *args, **kwargs):
        """One of tinyinterp's GPU kernels, run as its NumPy twin: one launch."""
        return _run(f"kernel {twin.__name__}", 1, twin, *args, **kwargs)


DEVICE = Device()


class installed:
    """``with installed():`` the stand-in is tinyinterp's GPU (``device="gpu"``)."""

    def __enter__(self):
        backend.instrument(DeviceArray, DEVICE)
        return TALLY

    def __exit__(self, *exc):
        backend.instrument(None, None)
        TALLY.on = False


# ---------------------------------------------------------------- the counted step

def _label(obj, method, where):
    """Make ``obj.method`` count under ``where`` (restored after the call)."""
    inner = getattr(obj, method)

    def labelled(*args, **kwargs):
        before, TALLY.where = TALLY.where, where
        try:
            return inner(*args, **kwargs)
        finally:
            TALLY.where = before

    setattr(obj, method, labelled)


def _short(layer):
    text = repr(layer)
    return text if len(text) <= 34 else text[:31] + "..."


def count_step(interpretable, batch=32, size=64, seed=0):
    """(tally, model) of the second training step of the small VGG on the stand-in GPU:
    the plain net of benchmarks/bench.py (no new conv) or the interpretable one."""
    import tinyinterp as ti
    from tinyinterp.train import train_step

    global TALLY
    TALLY = Tally()
    with installed():
        model = ti.small_vgg(NUM_CLASSES, size, new_conv=interpretable, interpretable=interpretable,
                             seed=seed).to("gpu")
        opt = ti.SGD(model.params(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        criterion = ti.SoftmaxCrossEntropy()
        for i, layer in enumerate(model.layers):
            for method, part in (("forward", "fwd"), ("backward", "bwd"), ("backward_params", "bwd"),
                                 ("step_beta", "bwd")):
                if hasattr(layer, method):
                    _label(layer, method, f"{i:2d} {_short(layer)} {part}")
        _label(criterion, "forward", "loss fwd")
        _label(criterion, "backward", "loss bwd")
        _label(opt, "step", "sgd")
        rng = np.random.default_rng(seed)
        for step in range(2):
            x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
            labels = rng.integers(0, NUM_CLASSES, batch)
            TALLY.on = step == 1
            train_step(model, criterion, opt, x, labels, lr=0.01, device="gpu")
        TALLY.on = False
    return TALLY, model


def report(name, tally, out=print):
    out(f"{name} step, by part (launches / syncs):")
    for where in sorted(set(tally.launches) | set(tally.syncs), key=_order):
        out(f"  {where:<48}{tally.launches[where]:>6}{tally.syncs[where]:>5}")
    kinds = ", ".join(f"{k} {v}" for k, v in tally.kinds.most_common(12))
    out(f"  most frequent: {kinds}")


def _order(where):
    head = where.split()[0]
    return (0, int(head), where) if head.isdigit() else (1 if where.startswith("loss") else 2, 0, where)


def totals(tally):
    return sum(tally.launches.values()), sum(tally.syncs.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--quiet", action="store_true", help="only the two total lines")
    args = parser.parse_args(argv)
    lines = []
    for name, interpretable in (("plain", False), ("interpretable", True)):
        tally, _ = count_step(interpretable, args.batch, args.size)
        if not args.quiet:
            report(name, tally)
            print()
        lines.append(f"{name} step: {totals(tally)[0]} launches, {totals(tally)[1]} syncs")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
