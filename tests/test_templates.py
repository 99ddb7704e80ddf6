"""Templates T_mu, T^- and their priors (paper Sec. 3, Fig. 3; docs/paper.md#decisions, 1-3)."""
import numpy as np
import pytest

from tinyinterp.backend import to_numpy
from tinyinterp.templates import default_alpha, default_tau, template_priors, templates


def naive_templates(n, tau, beta):
    """The formula, one entry at a time: t+_ij = tau max(1 - beta ||[i,j] - mu||_1 / n, -1)."""
    T = np.empty((n * n + 1, n, n))
    for mi in range(n):
        for mj in range(n):
            for i in range(n):
                for j in range(n):
                    l1 = abs(i - mi) + abs(j - mj)
                    T[mi * n + mj, i, j] = tau * max(1 - beta * l1 / n, -1)
    T[-1] = -tau
    return T


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_shape_dtype_and_module(xp, n):
    like = xp.zeros((2, 2), dtype=np.float64)
    T = templates(n, like=like)
    assert T.shape == (n * n + 1, n, n)
    assert T.dtype == np.float64 and type(T) is type(like)
    assert templates(n, like=xp.zeros(1, dtype=np.float32)).dtype == np.float32
    assert templates(n).dtype == np.float32  # default dtype, NumPy
    assert templates(n, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("beta", [4.0, 2.5])
def test_matches_the_formula_entry_by_entry(xp, n, beta):
    T = to_numpy(templates(n, beta=beta, like=xp.zeros(1, dtype=np.float64)))
    np.testing.assert_allclose(T, naive_templates(n, default_tau(n), beta), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_centre_is_tau_far_corner_is_minus_tau(n):
    tau = default_tau(n)
    assert tau == pytest.approx(0.5 / n ** 2)
    T = templates(n, dtype=np.float64)
    for mi in range(n):
        for mj in range(n):
            k = mi * n + mj
            assert T[k, mi, mj] == pytest.approx(tau)  # the peak sits at mu
            assert T[k].max() == pytest.approx(tau)
            far = (n - 1 if mi < n / 2 else 0, n - 1 if mj < n / 2 else 0)
            assert T[k][far] == pytest.approx(-tau)  # clipped at -1 * tau


def test_l1_diamond_by_hand():
    # n = 8, beta = 4: t / tau = max(1 - L1 / 2, -1): 1 at mu, 0.5 at L1 = 1, 0 at L1 = 2
    T = templates(8, tau=1.0, dtype=np.float64)
    k = 3 * 8 + 4
    assert T[k, 3, 4] == 1.0
    assert T[k, 2, 4] == T[k, 4, 4] == T[k, 3, 3] == T[k, 3, 5] == 0.5
    assert T[k, 2, 3] == T[k, 5, 4] == 0.0  # L1 = 2: on the diamond's edge
    assert T[k, 1, 3] == -0.5  # L1 = 3
    assert T[k, 7, 0] == -1.0  # L1 = 8: clipped
    # the level sets are L1 diamonds, not L2 circles: (1, 1) and (2, 0) offsets agree
    assert T[k, 4, 5] == T[k, 5, 4] == T[k, 3, 6]


def test_negative_template(xp):
    T = templates(5, like=xp.zeros(1, dtype=np.float64))
    assert bool((T[-1] == -default_tau(5)).all())


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_priors_sum_to_one_and_are_uniform_by_default(xp, n):
    p = template_priors(n, like=xp.zeros(1, dtype=np.float64))
    assert p.shape == (n * n + 1,)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(to_numpy(p), 1.0 / (1 + n * n), rtol=1e-14)
    assert default_alpha(n) == pytest.approx(n * n / (1 + n * n))


def test_priors_with_alpha():
    p = template_priors(3, alpha=0.9, dtype=np.float64)
    np.testing.assert_allclose(p[:-1], 0.1, rtol=1e-14)  # alpha / n^2
    assert p[-1] == pytest.approx(0.1)  # 1 - alpha
    assert p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        template_priors(3, alpha=1.0)
