"""Shared test set-up: hypothesis profiles and the backend fixture.

Profiles: "ci" (no deadline, modest example counts; the default) and "dev" (more
examples). Choose with HYPOTHESIS_PROFILE=dev.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinyinterp.backend import gpu_available

settings.register_profile(
    "ci", deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _cupy_or_skip():
    if not gpu_available():
        pytest.skip("CuPy or a CUDA device is not available")
    import cupy

    return cupy


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy always, cupy only with a GPU (marked `gpu`)."""
    if request.param == "numpy":
        return np
    return _cupy_or_skip()


@pytest.fixture
def cupy():
    """CuPy, for the GPU-only tests (mark them `gpu`); skips without CuPy or a GPU."""
    return _cupy_or_skip()
