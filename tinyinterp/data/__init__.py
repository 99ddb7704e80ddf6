"""Data: the CUB-200-2011 layout reader and a seeded toy-bird generator in that layout.

Everything returned is NumPy; callers move batches to the GPU themselves.
"""
from .bird_task import background_square, load_bird_task
from .cub import PART_NAMES, CubFormatError, load_cub
from .dataset import CubDataset
from .root import data_root, find_data

__all__ = ["load_cub", "load_bird_task", "background_square", "CubDataset", "generate_toy_birds", "PART_NAMES", "CubFormatError",
           "data_root", "find_data"]


def __getattr__(name):
    # Imported lazily so `python -m tinyinterp.data.toy_birds` does not find its own module
    # half-imported through this package (runpy warns about that).
    if name == "generate_toy_birds":
        from .toy_birds import generate_toy_birds

        return generate_toy_birds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
