"""The table printed by ``python -m tinyinterp gradcheck``: every layer and loss, checked
against central differences in float64 at a few small shapes."""
import numpy as np

from .backend import host_rng
from .gradcheck import check_layer, check_loss
from .layers import Conv2d, Dropout, Flatten, Linear, ReLU
from .pooling import MaxPool2d
from .losses import LogisticLoss, SoftmaxCrossEntropy


def away_from_kinks(rng, shape, margin=0.1):
    """Normal values pushed at least ``margin`` away from 0, so ReLU's kink is never
    within the finite-difference step."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (np.abs(x) + margin)


def distinct_values(rng, shape, spacing=0.01):
    """A random permutation of values ``spacing`` apart: max-pool has no ties."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing).reshape(shape) - n * spacing / 2


def engine_cases(seed=0):
    rng = host_rng(seed)
    rows = [
        check_layer(Conv2d(3, 4, 3, stride=1, padding=1, rng=1), rng.standard_normal((2, 3, 6, 5))),
        check_layer(Conv2d(2, 3, (2, 3), stride=2, padding=(0, 1), rng=2), rng.standard_normal((2, 2, 7, 6))),
        check_layer(MaxPool2d(2), distinct_values(rng, (2, 3, 6, 6))),
        check_layer(MaxPool2d(3, stride=2, padding=1), distinct_values(rng, (2, 2, 7, 5))),
        check_layer(ReLU(), away_from_kinks(rng, (2, 3, 4, 4))),
        check_layer(Linear(6, 4, rng=3), rng.standard_normal((3, 6))),
        check_layer(Flatten(), rng.standard_normal((2, 3, 2, 2))),
    ]
    dropout = Dropout(0.5)
    rows.append(check_layer(dropout, rng.standard_normal((4, 5)),
                            before_forward=lambda: setattr(dropout, "rng", host_rng(7))))
    rows.append(check_loss(SoftmaxCrossEntropy(), rng.standard_normal((5, 4)), rng.integers(0, 4, 5)))
    rows.append(check_loss(LogisticLoss(), rng.standard_normal((5, 3)), rng.integers(0, 2, (5, 3)),
                           name="LogisticLoss (0/1, multi-output)"))
    rows.append(check_loss(LogisticLoss(), 5 * rng.standard_normal(6), rng.choice([-1, 1], 6),
                           name="LogisticLoss (+-1, single output)"))
    # the frame filled from the image: the fast engine's geometry and a strided one
    # (a generator of their own, so the rows above draw what they always drew)
    pad_rng = host_rng(seed + 1)
    for mode in ("replicate", "reflect"):
        rows.append(check_layer(Conv2d(3, 4, 3, padding=1, rng=4, padding_mode=mode),
                                pad_rng.standard_normal((2, 3, 6, 5))))
        rows.append(check_layer(Conv2d(2, 3, (3, 2), stride=2, padding=(2, 1), rng=5, padding_mode=mode),
                                pad_rng.standard_normal((2, 2, 7, 6))))
    return rows


def all_cases(seed=0):
    from .gradcheck_paper import paper_cases

    return engine_cases(seed) + paper_cases(seed)


def format_table(rows):
    name_w = max(len(r.name) for r in rows)
    shape_w = max(len(r.shapes) for r in rows)
    lines = [f"{'name':<{name_w}}  {'shapes':<{shape_w}}  {'max rel err':>11}  result",
             "-" * (name_w + shape_w + 24)]
    for r in rows:
        lines.append(f"{r.name:<{name_w}}  {r.shapes:<{shape_w}}  {r.max_rel_error:>11.2e}  "
                     f"{'pass' if r.passed else 'FAIL at ' + r.worst}")
    return "\n".join(lines)
