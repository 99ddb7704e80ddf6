"""Input checks shared by layers and losses: clear errors instead of silent broadcasting."""
from .backend import device_of, get_array_module


def check_array(owner, x, ndim, what="input"):
    """Raise ValueError unless ``x`` is a floating array with ``ndim`` dimensions."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{owner}: {what} must be an array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(
            f"{owner}: expected a {ndim}-D {what}, got shape {tuple(x.shape)}"
        )
    if x.dtype.kind != "f":
        raise ValueError(
            f"{owner}: {what} must be float32 or float64, got dtype {x.dtype}"
        )


def check_channels(owner, x, channels, axis=1):
    if x.shape[axis] != channels:
        expected = list(x.shape)
        expected[axis] = channels
        raise ValueError(
            f"{owner}: expected {channels} channels, i.e. shape {tuple(expected)}, "
            f"got shape {tuple(x.shape)}"
        )


def check_finite(owner, x, what="input"):
    xp = get_array_module(x)
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{owner}: {what} contains NaN or inf (shape {tuple(x.shape)})")


def check_same_device(owner, x, state, what="input"):
    """Raise ValueError when ``x`` and ``state`` (a parameter or buffer) live on different
    devices: NumPy and CuPy arrays do not mix, and CuPy's own error names neither."""
    here, there = device_of(x), device_of(state)
    if here != there:
        raise ValueError(
            f"{owner}: got {what} on the {here}, but its weights/state are on the {there}; "
            f"move one of them (.to({here!r}) or ti.to_device)"
        )
