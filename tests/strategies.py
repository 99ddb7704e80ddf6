"""Hypothesis strategies and input builders shared by the engine tests.

Every strategy draws *shapes* and an integer ``seed``; the values themselves come from
``numpy.random.default_rng(seed)``, so a failing example shrinks to a readable shape
and still reproduces bit for bit. Inputs are always built in NumPy (float64) and moved
to the backend under test with ``xp.asarray`` by the test.

Keep shapes small: a gradient check runs two forwards per input element.
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tinyinterp.im2col import conv_out_size

# The `xp` fixture is function-scoped but only hands back a module, so reusing it across
# hypothesis examples is harmless. Listing health checks here replaces the profile's
# list, hence too_slow again (the "ci" profile in conftest.py suppresses it too).
XP_SETTINGS = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


# ---- value builders (NumPy, float64) ----

def normal(rng, shape):
    return rng.standard_normal(shape)


def away_from_zero(rng, shape, low=0.1, high=1.0):
    """Values with low <= |x| <= high and a random sign.

    For ReLU: the central-difference step (1e-5) can never carry an input across the
    kink at 0 when every |x| >= 0.1, so the function is smooth around every sample.
    """
    magnitude = rng.uniform(low, high, size=shape)
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return sign * magnitude


def distinct_values(rng, shape, spacing=0.01):
    """A random permutation of distinct values ``spacing`` apart, centred on zero.

    For max-pooling: any two inputs differ by at least 0.01, far more than twice the
    central-difference step (2e-5), so perturbing one element never changes which
    element is the max of any window (no ties, no switching argmax), and the pooled
    function is smooth around every sample.
    """
    n = int(np.prod(shape))
    values = (rng.permutation(n) - (n - 1) / 2.0) * spacing
    return values.reshape(shape)


# ---- convolution cases ----

@dataclass(frozen=True)
class ConvCase:
    N: int
    C: int
    OC: int
    H: int
    W: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    seed: int

    @property
    def kernel(self):
        return (self.KH, self.KW)

    @property
    def stride(self):
        return (self.SH, self.SW)

    @property
    def pad(self):
        return (self.PH, self.PW)

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.OC, self.C, self.KH, self.KW)

    @property
    def out_hw(self):
        return (conv_out_size(self.H, self.KH, self.SH, self.PH),
                conv_out_size(self.W, self.KW, self.SW, self.PW))

    @property
    def y_shape(self):
        return (self.N, self.OC, *self.out_hw)

    def arrays(self):
        """(x, weight, bias, dout) in float64 NumPy, from ``seed``."""
        rng = np.random.default_rng(self.seed)
        x = normal(rng, self.x_shape)
        w = normal(rng, self.w_shape)
        b = normal(rng, (self.OC,))
        dout = normal(rng, self.y_shape)
        return x, w, b, dout


def _side(draw, kernel, pad, max_extra):
    """An input side length for which the output has at least one position."""
    smallest = max(1, kernel - 2 * pad)
    return draw(st.integers(smallest, smallest + max_extra))


@st.composite
def conv_cases(draw, max_extra=3):
    """N, C, OC in [1, 3]; KH, KW in [1, 4]; stride in [1, 3]; pad in [0, 2]; H, W
    large enough that the output is at least 1x1 (and at most ``max_extra`` more)."""
    N, C, OC = (draw(st.integers(1, 3)) for _ in range(3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = _side(draw, KH, PH, max_extra)
    W = _side(draw, KW, PW, max_extra)
    return ConvCase(N, C, OC, H, W, KH, KW, SH, SW, PH, PW, draw(seeds))


@st.composite
def pool_cases(draw, max_extra=3):
    """Like :func:`conv_cases` (OC = C), with the engine's max-pool rule on padding:
    pad in [0, min(2, kernel // 2)], so no window is made of padding only."""
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH = draw(st.integers(0, min(2, KH // 2)))
    PW = draw(st.integers(0, min(2, KW // 2)))
    H = _side(draw, KH, PH, max_extra)
    W = _side(draw, KW, PW, max_extra)
    return ConvCase(N, C, C, H, W, KH, KW, SH, SW, PH, PW, draw(seeds))


@st.composite
def window_cases(draw):
    """Arguments of im2col: a 4-D shape (A, B, H, W) and KH, KW, SH, SW, PH, PW with at
    least one output position (no max-pool restriction on padding)."""
    A, B = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = _side(draw, KH, PH, 4)
    W = _side(draw, KW, PW, 4)
    return (A, B, H, W), (KH, KW, SH, SW, PH, PW), draw(seeds)


# ---- generic shapes ----

def shapes(min_dims=1, max_dims=4, max_side=3):
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def linear_cases(draw):
    """(N, in_features, out_features, seed), each size in [1, 5] (N in [1, 3])."""
    return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
            draw(seeds))


# Logit scale for the loss strategies. Gradient checks use the default 1.0: with large
# logits the loss saturates, every gradient entry becomes small next to the loss value,
# and the round-off of the central difference (~1e-16 * |L| / 1e-5) is no longer small
# against the checker's floor (1e-3 * largest entry). Measured over 3000 random cases of
# SoftmaxCrossEntropy: worst max rel error 5e-9 at scale 1, 1.4e-7 at 2, 9.5e-7 at 3
# (tolerance 1e-6). That is the checker's resolution, not a wrong gradient; the value
# and PyTorch tests use scale 3.0 to reach saturated logits too.
GRADCHECK_LOGIT_SCALE = 1.0


@st.composite
def softmax_cases(draw, scale=GRADCHECK_LOGIT_SCALE):
    """(logits (N, K) float64, integer labels (N,)) with N in [1, 4], K in [1, 5]."""
    N, K = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(seeds))
    logits = scale * normal(rng, (N, K))
    labels = rng.integers(0, K, size=N)
    return logits, labels


@st.composite
def logistic_cases(draw, scale=GRADCHECK_LOGIT_SCALE, ndim=None, plus_minus=None):
    """(logits float64 of shape (N,) or (N, K), targets of the same shape, in {0, 1} or in
    {-1, +1}). ``ndim`` (1 or 2) and ``plus_minus`` fix the layout / encoding; left as
    None they are drawn too."""
    N = draw(st.integers(1, 4))
    if ndim is None:
        ndim = draw(st.sampled_from([1, 2]))
    shape = (N,) if ndim == 1 else (N, draw(st.integers(1, 4)))
    if plus_minus is None:
        plus_minus = draw(st.booleans())
    rng = np.random.default_rng(draw(seeds))
    logits = scale * normal(rng, shape)
    t01 = rng.integers(0, 2, size=shape)
    targets = 2 * t01 - 1 if plus_minus else t01
    return logits, targets
