"""tinyinterp: Interpretable CNNs (Zhang, Wu, Zhu, CVPR 2018) in NumPy/CuPy, from scratch."""
from .backend import (
    get_array_module,
    gpu_available,
    to_device,
    to_numpy,
)

__version__ = "0.1.0"
