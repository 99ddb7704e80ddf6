"""The one place that knows NumPy from CuPy.

Every array operation in tinyinterp asks the data which module to use::

    xp = get_array_module(x)     # numpy for numpy arrays, cupy for cupy arrays
    y = xp.maximum(x, 0)

so one code path runs on the CPU and on a GPU. CuPy is optional: it is imported here,
inside ``try``, and nowhere else.

dtype rule: float32 is the default; float64 is kept where the input is float64
(gradient checks run in float64). Nothing silently widens float32 to float64.

Also here: the host random numbers. The threads that split the big element-wise passes
over the CPU's cores are in threads.py.
"""
import numpy as np

try:  # CuPy is the optional GPU extra; any import failure means "no GPU backend".
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None

DEFAULT_DTYPE = np.float32

# An instrumented array type and its module, posing as CuPy (benchmarks/launches.py counts
# a training step's kernel launches and host syncs with it): (array type, module) or None.
_instrumented = None


def instrument(array_type, module):
    """Treat arrays of ``array_type`` (a NumPy subclass) as device arrays of ``module`` (a
    stand-in for CuPy), or stop with ``instrument(None, None)``. Only the launch counter
    calls this; it changes nothing for NumPy or CuPy arrays."""
    global _instrumented
    _instrumented = None if array_type is None else (array_type, module)


def _instrumented_module(arrays):
    if _instrumented is not None and any(isinstance(a, _instrumented[0]) for a in arrays):
        return _instrumented[1]
    return None


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device (or the launch counter's
    stand-in is installed)."""
    if _instrumented is not None:
        return True
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    module = _instrumented_module(arrays)
    if module is not None:
        return module
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def is_gpu_array(a):
    return (_cupy is not None and isinstance(a, _cupy.ndarray)) or _instrumented_module((a,)) is not None


def to_numpy(a):
    """A NumPy copy (or view) of ``a``, wherever ``a`` lives. Scalars pass through numpy."""
    if is_gpu_array(a):
        return gpu_module().asnumpy(a)
    return np.asarray(a)


class GpuUnavailable(RuntimeError):
    """The GPU was asked for, but CuPy or a CUDA device is missing."""


def device_module(device):
    """The array module for ``device`` ("cpu" or "gpu"); GpuUnavailable when "gpu" is
    asked for and there is none."""
    if device == "cpu":
        return np
    if device == "gpu":
        if not gpu_available():
            raise GpuUnavailable(
                "the GPU was asked for, but CuPy or a CUDA device is missing: install CuPy "
                "with pip install -e '.[gpu]' (CUDA 12.x) or '.[gpu-cuda13]' (CUDA 13.x) "
                "(tinyinterp/README.md, \"CPU and GPU\"), or run on the CPU"
            )
        return gpu_module()
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def gpu_module():
    """CuPy, or the launch counter's stand-in while it is installed."""
    return _cupy if _instrumented is None else _instrumented[1]


def uses_cuda_kernels(xp):
    """True where ``xp`` runs tinyinterp's own GPU kernels (cuda_kernels.py): CuPy, or the
    launch counter's stand-in, which runs their NumPy twins. The one test of the device
    that layers make, to pick a kernel."""
    return xp.__name__ != "numpy"


def to_device(a, device):
    """Move ``a`` to ``device`` ("cpu" or "gpu"); a no-op when it is already there."""
    xp = device_module(device)
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


def device_of(a):
    """"gpu" for a CuPy array, else "cpu"."""
    return "gpu" if is_gpu_array(a) else "cpu"


# ---- host random numbers ----
# Initial weights and dropout masks are drawn on the host from a seeded NumPy Generator
# and then moved to the data's device. That makes a run reproducible bit for bit across
# CPU and GPU, and the generator's state is a plain dict that a checkpoint can hold.

def host_rng(seed_or_rng=0):
    """A NumPy Generator: ``seed_or_rng`` is an int seed or an existing Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def he_normal(rng, shape, fan_in, dtype=DEFAULT_DTYPE):
    """He (Kaiming) initialisation: N(0, 2 / fan_in), suited to ReLU nets (NumPy array)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def host_zeros(shape, dtype=DEFAULT_DTYPE):
    """Zeros on the host (initial biases)."""
    return np.zeros(shape, dtype=dtype)


def random_uniform_like(rng, like):
    """U[0, 1) of ``like``'s shape and dtype, drawn on the host, on ``like``'s device."""
    u = rng.random(like.shape).astype(like.dtype)
    return to_device(u, device_of(like))
