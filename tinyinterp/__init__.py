"""tinyinterp: Interpretable CNNs (Zhang, Wu, Zhu, CVPR 2018) in NumPy/CuPy, from scratch.

Lessons and users import everything from here: ``import tinyinterp as ti``.
"""
import os as _os
import sys as _sys

from . import blas

if "numpy" not in _sys.modules:
    # Before NumPy loads OpenBLAS: let OpenBLAS's idle threads sleep about 0.4 ms
    # (2**20 cycles) after a matrix product instead of spinning for 0.1 s, so that
    # tinyinterp's own threads get the cores between products (threads.in_parallel).
    _os.environ.setdefault(blas.TIMEOUT_VARIABLE, str(blas.SPIN_TIMEOUT))

from .backend import device_of, get_array_module, gpu_available, host_rng, to_device, to_numpy
from .threads import get_num_threads, set_num_threads
from .checkpoint import load_checkpoint, save_checkpoint
from .gradcheck import GradcheckResult, check_layer, check_loss, numerical_gradient, relative_error
from .im2col import col2im, conv_out_size, im2col
from .layers import (
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    ReLU,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    linear_backward,
    linear_forward,
)
from .pooling import MaxPool2d, maxpool2d_backward, maxpool2d_forward, maxpool2d_naive
from .losses import LogisticLoss, SoftmaxCrossEntropy, log_softmax
from .model import Sequential
from .optim import SGD
from .templates import default_alpha, default_tau, template_priors, templates
from .mask import TemplateMask
from .filter_loss import FilterCategories, MutualInformationLoss
from .interpretable import InterpretableMask
from .vgg import receptive_field, small_vgg
from .runs import TrainConfig, load_run
from .train import TrainingDiverged, train_one
from . import curves, data, drawing, evaluate, metrics, predictions, recipes, runs, visualize
from .evaluate import evaluate_model, evaluate_runs
from .metrics import location_instability

# Imported after NumPy, the variable above came too late for OpenBLAS: have it read it
# again (blas.py), so that a script's speed does not depend on its import order.
blas.shorten_thread_spin()

__version__ = "0.1.0"
