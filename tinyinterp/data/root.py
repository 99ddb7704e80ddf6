"""Where real CUB data lives: one folder, named once, for tests, lessons and studies.

``TINYINTERP_DATA`` names a folder holding ``cub200_160/`` (all of CUB-200-2011 at 160
px, as ``python -m tinyinterp download-cub DIR --long-side 160`` writes it),
``cub_real_subset/`` (a 10-species subset the tests know by heart) and/or
``CUB_200_2011/`` (the official download, extracted). When it is unset, the folder
``shared/`` beside the repository's checkout is used, if there is one. Nothing here is
needed by ``train --data DIR``, which takes any folder in the CUB-200-2011 layout.
"""
import os
from pathlib import Path

VARIABLE = "TINYINTERP_DATA"
FULL_CUB = ("cub200_160", "CUB_200_2011")  # all of CUB, the fast copy first


def data_root():
    """The data folder: ``$TINYINTERP_DATA``, else ``shared/`` beside the checkout."""
    value = os.environ.get(VARIABLE)
    if value:
        return Path(value).expanduser()
    return Path(__file__).resolve().parents[3] / "shared"


def find_data(*names):
    """The first of the folders ``names`` under :func:`data_root` that holds an
    ``images.txt``, else None."""
    root = data_root()
    for name in names:
        if (root / name / "images.txt").is_file():
            return root / name
    return None


def missing(*names):
    """The message for a folder that is not there: what to set, never a machine path."""
    return f"set {VARIABLE} to a folder holding {' or '.join(n + '/' for n in names)}"
