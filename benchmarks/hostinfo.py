"""What a benchmark ran on: the CPU, its vector extensions, the BLAS and the kernel it runs.

Used by bench.py and ab_step.py, which print it above their tables (and bench.py saves it
in its JSON), because a time means little without the machine behind it.

The BLAS pins. On some machines ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are set
in every shell. The first makes OpenBLAS use the kernel it names instead of the one it
would pick for this CPU (``Haswell``, the AVX2 kernel, is much slower at sgemm than the
AVX-512 ``SkylakeX`` kernel on a CPU that has AVX-512), the second overrides the cache
size it blocks for. A user's machine has neither, so the benchmarks time their workers
without them (``worker_env``) unless asked to keep them. Which kernel really ran is read
inside the process that did the work (``blas_info``): the name OpenBLAS reports at run
time, not the build's target (NumPy's wheels say "Haswell" in their build configuration
whatever kernel they pick at run time).

Nothing here raises because something is missing: an unknown field reads "unknown".
"""
import ctypes
import glob
import importlib.util
import platform
import re
from pathlib import Path


def _load_blas_module():
    """tinyinterp/blas.py on its own (it imports neither NumPy nor the rest of tinyinterp),
    from this checkout, whichever tinyinterp a worker imports."""
    path = Path(__file__).resolve().parents[1] / "tinyinterp" / "blas.py"
    spec = importlib.util.spec_from_file_location("_tinyinterp_blas", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_blas = _load_blas_module()

BLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# CPU flags that decide which sgemm kernel a BLAS can use (x86, then Arm), in the order
# printed; /proc/cpuinfo's spelling
SGEMM_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve", "sve2", "sme")

UNKNOWN = "unknown"


# ---------------------------------------------------------------- the pins

def blas_pins(env):
    """The pins set in ``env`` (a mapping such as os.environ): {name: value}."""
    return {name: env[name] for name in BLAS_PINS if name in env}


def worker_env(parent_env, keep_blas_env=False):
    """The environment for a benchmark's worker: a copy of ``parent_env`` without the
    BLAS pins, or with them if ``keep_blas_env``. ``parent_env`` itself is not changed."""
    env = dict(parent_env)
    if not keep_blas_env:
        for name in BLAS_PINS:
            env.pop(name, None)
    return env


def pins_report(parent_env, keep_blas_env):
    """What happened to the pins, for the JSON: set in the parent, kept or lifted."""
    found = blas_pins(parent_env)
    return {"set_in_parent": found, "keep_blas_env": bool(keep_blas_env),
            "lifted": bool(found) and not keep_blas_env}


# ---------------------------------------------------------------- the CPU

def cpu_info(cpuinfo_path="/proc/cpuinfo"):
    """{"model", "flags", "machine"}: the CPU's name and the ``SGEMM_FLAGS`` it has.

    Read from /proc/cpuinfo (Linux); elsewhere the model is platform.processor() and the
    flags are unknown (an empty list would claim there are none).
    """
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        text = ""
    fields = {}
    for line in text.splitlines():  # the first processor's entries are enough
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or platform.processor() or UNKNOWN
    have = fields.get("flags", fields.get("features"))  # x86 / Arm
    flags = UNKNOWN if have is None else [f for f in SGEMM_FLAGS if f in have.split()]
    return {"model": model, "flags": flags, "machine": platform.machine() or UNKNOWN}


# ---------------------------------------------------------------- the BLAS

def blas_info():
    """The BLAS that this process's NumPy runs, and its kernel, read at run time.

    Call it where NumPy does the timed work (a benchmark's worker), after NumPy is
    imported. threadpoolctl when it is installed (it is not a dependency), else the
    OpenBLAS library that NumPy loaded, asked through ctypes. Returns a dict with
    "source" (threadpoolctl, ctypes or unknown), "library", "version", "kernel",
    "threads", and where known "config" and "path".
    """
    errors = []
    for find in (_from_threadpoolctl, _from_openblas):
        try:
            found = find()
        except Exception as exc:  # a probe that fails must not stop a benchmark: try the next
            errors.append(f"{find.__name__}: {type(exc).__name__}: {exc}")
            continue
        if found:
            return found
    nothing = {"source": UNKNOWN, "library": UNKNOWN, "version": UNKNOWN, "kernel": UNKNOWN,
               "threads": UNKNOWN}
    if errors:
        nothing["errors"] = errors
    return nothing


def _from_threadpoolctl():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    if not blas:
        return None
    lib = blas[0]  # in a worker that imported only NumPy, NumPy's
    found = {"source": "threadpoolctl", "library": lib.get("internal_api", UNKNOWN),
             "version": lib.get("version") or UNKNOWN, "kernel": lib.get("architecture") or UNKNOWN,
             "threads": lib.get("num_threads", UNKNOWN), "path": lib.get("filepath", UNKNOWN)}
    if len(blas) > 1:
        found["others"] = [other.get("filepath", UNKNOWN) for other in blas[1:]]
    return found


def _from_openblas():
    for path in openblas_paths():
        found = openblas_query(path)
        if found:
            return found
    return None


def openblas_paths(maps_path="/proc/self/maps"):
    """Files of the OpenBLAS libraries this process has loaded (Linux: its memory map),
    else those NumPy's wheel ships (numpy.libs/, numpy/.dylibs/). Never raises."""
    paths = _blas.loaded_openblas(maps_path)
    if not paths:
        try:
            import numpy
            root = Path(numpy.__file__).parent
            for folder in (root.parent / "numpy.libs", root / ".dylibs"):
                paths += sorted(glob.glob(str(folder / "*openblas*")))
        except ImportError:
            pass
    return paths


def openblas_query(path):
    """Ask the OpenBLAS at ``path`` (already loaded: the same copy) for its kernel, build
    configuration and threads. None if it is not a library that answers."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    corename = _call(lib, "get_corename", ctypes.c_char_p)
    if corename is None:
        return None
    config = _call(lib, "get_config", ctypes.c_char_p)
    threads = _call(lib, "get_num_threads", ctypes.c_int)
    config = config.decode(errors="replace") if config else UNKNOWN
    version = re.search(r"OpenBLAS\s+(\S+)", config)
    return {"source": "ctypes", "library": "openblas", "version": version.group(1) if version else UNKNOWN,
            "kernel": corename.decode(errors="replace"), "threads": UNKNOWN if threads is None else threads,
            "config": config, "path": path}


def _call(lib, what, restype):
    """openblas_<what>() under whichever name this build exports (None if none)."""
    fn = _blas.openblas_function(lib, what, restype)
    return None if fn is None else fn()


# ---------------------------------------------------------------- printing

def describe(cpu, blas, pins):
    """Lines for a benchmark's header: the CPU, the BLAS and its kernel, the pins (the
    results of ``cpu_info``, ``blas_info``, ``pins_report``; a None is left out)."""
    lines = []
    if cpu:
        flags = cpu["flags"]  # a list, or "unknown"
        if isinstance(flags, list):
            flags = " ".join(flags) if flags else "none"
        lines.append(f"CPU: {cpu['model']} ({cpu['machine']}); sgemm-relevant flags: {flags}")
    if blas:
        lines.append(f"BLAS: {blas.get('library', UNKNOWN)} {blas.get('version', UNKNOWN)}, kernel "
                     f"{blas.get('kernel', UNKNOWN)}, {blas.get('threads', UNKNOWN)} threads "
                     f"(read at run time where NumPy did the timed work, via "
                     f"{blas.get('source', UNKNOWN)})")
    if pins:
        found = pins["set_in_parent"]
        if not found:
            lines.append(f"BLAS pins ({', '.join(BLAS_PINS)}): none set")
        elif pins["keep_blas_env"]:
            lines.append(f"BLAS pins: {_assignments(found)} set here, kept in the workers "
                         "(--keep-blas-env): the pinned kernel was timed")
        else:
            lines.append(f"BLAS pins: {_assignments(found)} set here, lifted in the workers "
                         "(--keep-blas-env keeps them)")
    return lines


def _assignments(found):
    return " ".join(f"{name}={value}" for name, value in found.items())
