"""The GPU step's kernel launches and host syncs, counted on the CPU (benchmarks/launches.py).

The counts are pinned: a change that adds launches to a training step, or a host sync,
fails here and says by how much, so it is seen (and the pins moved on purpose, with
benchmarks/README.md). The limits are what the GPU step must stay under. The counts do
not depend on the batch or the image size once the last maps are larger than 1x1 (no
loop on a GPU runs over pixels or chunks): `python benchmarks/launches.py` at batch 32,
64 px prints the same totals as this test's batch 4, 32 px.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import launches  # noqa: E402
from tinyinterp import backend  # noqa: E402

PINNED = {"plain": (126, 0), "interpretable": (273, 0)}  # (launches, syncs) per step
LIMITS = {"plain": 200, "interpretable": 300}
MAX_SYNCS = 1


@pytest.mark.parametrize("name", ["plain", "interpretable"])
def test_step_launches_and_syncs_are_pinned(name):
    tally, model = launches.count_step(name == "interpretable", batch=4, size=32)
    n_launches, n_syncs = launches.totals(tally)
    assert n_launches <= LIMITS[name] and n_syncs <= MAX_SYNCS
    assert (n_launches, n_syncs) == PINNED[name], "\n".join(
        [f"{name} step: {n_launches} launches, {n_syncs} syncs (pinned {PINNED[name]})"]
        + [f"  {where}: {count}" for where, count in sorted(tally.launches.items())])
    # the step ran on the stand-in: every layer's gradient lives there, and the stand-in is gone again
    assert all(isinstance(g, launches.DeviceArray) for g in model.grads().values())
    assert backend.get_array_module(np.zeros(1)) is np and not backend.is_gpu_array(np.zeros(1))


def test_the_counter_sees_launches_and_syncs():
    # what the counter counts, on a few operations whose CuPy costs are known
    tally = launches.Tally()
    launches.TALLY = tally
    with launches.installed():
        xp = backend.device_module("gpu")
        tally.on = True
        a = xp.asarray(np.arange(12.0).reshape(3, 4))  # an upload: 1
        b = a.T  # a view: 0
        assert (a.T @ a).shape == (4, 4)  # an F-contiguous operand needs no copy: 1
        c = (a * 2).sum(axis=0)  # 2
        m = a[:, ::2] @ b[::2]  # a product of two operands neither C- nor F-contiguous: 1 + 2 copies
        assert float(c[0]) == 24.0  # a sync
        if m[0, 0] > 0:  # a sync (and the comparison: 1)
            pass
    assert launches.totals(tally) == (8, 2)
