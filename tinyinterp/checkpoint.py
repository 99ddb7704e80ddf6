"""Checkpoints: plain .npz files, written atomically, read without pickle.

A checkpoint is a flat dict of named arrays plus a JSON-able ``meta`` dict (config,
epoch, RNG states...). ``meta`` is stored as a unicode string array, which NumPy reads
back with ``allow_pickle=False``.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from .backend import to_numpy

META_KEY = "__meta__"
ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of every .npz (a zip archive's local file header)


class CheckpointError(ValueError):
    """A checkpoint is truncated, corrupt, not a tinyinterp checkpoint, or does not fit
    the net it is loaded into."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Create ``path`` atomically: ``write(f)`` fills a temporary file (binary) in the same
    folder, which is flushed to disk and then renamed over ``path``. A crash leaves either
    the old file or the new one, never half of one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(path, arrays, meta=None):
    """Write ``arrays`` (name -> array) and ``meta`` to ``path`` (see :func:`atomic_write`)."""
    if META_KEY in arrays:
        raise ValueError(f"save_checkpoint: {META_KEY!r} is a reserved name")
    payload = {k: to_numpy(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(meta or {}))
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` -> (arrays, meta).

    Raises CheckpointError (a ValueError), naming the file, if it is truncated, corrupt or
    not a checkpoint.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:  # np.load would call it pickled data and suggest unpickling it
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: not an .npz archive "
                              "(another kind of file?)")
    try:
        data = np.load(path, allow_pickle=False)
        with data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {e}") from None
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {META_KEY!r} entry: not a tinyinterp checkpoint")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path} has unreadable metadata: {e}") from None
    return arrays, meta
