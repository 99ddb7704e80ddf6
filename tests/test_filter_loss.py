"""The filter loss -MI(X; T) (paper Eq. 1-7; docs/paper.md#decisions, 5-7 and 9)."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.backend import to_device, to_numpy
from tinyinterp.filter_loss import (
    AUTHORS_MAG,
    AUTHORS_STEP,
    FilterCategories,
    MutualInformationLoss,
    logsumexp,
    mi_score_gradient,
    positive_images,
    scores,
)
from tinyinterp.gradcheck import TOLERANCE, numerical_gradient, relative_error
from tinyinterp.gradcheck_paper import mi_case, peaked_maps
from tinyinterp.mask import TemplateMask
from tinyinterp.templates import template_priors, templates

# the xp fixture holds no state, so hypothesis may reuse it across examples
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def device(xp):
    return "cpu" if xp is np else "gpu"


shapes = st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(1, 4))  # B, F, n
offsets = st.sampled_from([0.0, 1.0, 100.0, 500.0])  # activations up to the hundreds


# ---- value: bounds, Eq. 5, posterior ----

@FIXTURE_OK
@given(shapes, offsets, st.floats(0.05, 5.0), st.integers(0, 2 ** 16))
def test_mi_between_zero_and_min_of_entropy_and_log_batch(xp, shape, offset, spread, seed):
    B, F, n = shape
    x = peaked_maps(B, F, n, seed, spread * n * n, offset, device(xp))
    terms = MutualInformationLoss(n).mi_terms(x)
    mi, h_t = to_numpy(terms["MI"]), to_numpy(terms["H_T"])
    assert np.isfinite(mi).all()
    assert (mi >= -1e-12).all()
    assert (mi <= np.minimum(h_t, math.log(B)) + 1e-12).all()
    assert h_t[0] == pytest.approx(math.log(n * n + 1))  # uniform priors


@FIXTURE_OK
@given(shapes, offsets, st.floats(0.05, 5.0), st.integers(0, 2 ** 16))
def test_eq5_decomposition_equals_eq1(xp, shape, offset, spread, seed):
    B, F, n = shape
    x = peaked_maps(B, F, n, seed, spread * n * n, offset, device(xp))
    loss = MutualInformationLoss(n)
    terms = loss.mi_terms(x)
    minus_mi = to_numpy(loss.forward(x))
    np.testing.assert_allclose(to_numpy(terms["minus_MI_eq5"]), minus_mi, rtol=0, atol=1e-10)
    np.testing.assert_allclose(-to_numpy(terms["MI"]), minus_mi, rtol=0, atol=1e-12)
    assert (to_numpy(terms["H_Tprime_given_X"]) >= -1e-12).all()  # both entropies >= 0
    assert (to_numpy(terms["spatial"]) >= -1e-12).all()
    np.testing.assert_allclose(to_numpy(terms["posterior"]).sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_allclose(to_numpy(terms["p_x"]).sum(axis=0), 1.0, atol=1e-12)


def test_spike_maps_give_a_posterior_peaked_on_their_template(xp):
    n = 4
    x = np.zeros((n * n, 1, n, n))
    for k in range(n * n):  # one image per position: a spike of 300 at mu = k
        x[k, 0, k // n, k % n] = 300.0
    post = to_numpy(MutualInformationLoss(n).mi_terms(to_device(x, device(xp)))["posterior"])[:, 0]
    assert (post[:, :-1].argmax(axis=1) == np.arange(n * n)).all()
    assert post[np.arange(n * n), np.arange(n * n)].min() > 0.9
    # the rest sits on T^-: every image has the same sum, so T^- cannot tell them apart
    np.testing.assert_allclose(post[:, -1], 1 / 17, rtol=1e-6)


def test_one_image_carries_no_information():
    x = peaked_maps(1, 2, 3, seed=0)
    loss = MutualInformationLoss(3)
    np.testing.assert_allclose(loss.forward(x), 0.0, atol=1e-15)
    np.testing.assert_allclose(loss.backward(), 0.0, atol=1e-15)


# ---- exact gradient vs finite differences ----

@settings(FIXTURE_OK, max_examples=25)
@given(shapes, offsets, st.floats(0.3, 3.0), st.integers(0, 2 ** 16))
def test_exact_gradient_matches_central_differences(xp, shape, offset, spread, seed):
    B, F, n = shape
    result = mi_case(B, F, n, seed, offset, spread * n * n, device(xp))
    assert result.max_rel_error < TOLERANCE, str(result)


@FIXTURE_OK
@given(shapes, st.sampled_from([0.01, 0.3, 1.0, 100.0, 500.0]), st.sampled_from(["frozen", "exact"]),
       st.integers(0, 2 ** 16))
def test_scale_normalised_gradient_matches_central_differences(xp, shape, scale, how, seed):
    # "frozen": differences of x -> -MI(x / c) at the c of the unperturbed batch (what
    # backward differentiates); "exact": of the full scale-free loss, c recomputed
    B, F, n = shape
    result = mi_case(B, F, n, seed, spread=scale, device=device(xp),
                     scale_normalise=True, scale_gradient=how)
    assert result.max_rel_error < TOLERANCE, str(result)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peak", [300.0, 3000.0, 3e5])
def test_finite_for_large_activations(xp, dtype, peak):
    x = (peaked_maps(4, 3, 4, seed=2, spread=peak)).astype(dtype)
    for kwargs in ({}, {"gradient": "paper"}, {"gradient": "authors"}, {"scale_normalise": True},
                   {"scale_normalise": True, "scale_gradient": "exact"}):
        loss = MutualInformationLoss(4, **kwargs)
        x_dev = to_device(x, device(xp))
        value = loss.forward(x_dev)
        dx = loss.backward()
        assert value.dtype == dx.dtype == dtype
        assert bool(xp.isfinite(value).all()) and bool(xp.isfinite(dx).all())
        assert bool((x_dev == to_device(x, device(xp))).all())  # input untouched


def test_exact_gradient_sums_to_zero_over_the_batch():
    # With Z over the batch, adding one map to every image leaves q and MI unchanged, so
    # the gradient has no component shared by all images
    x = peaked_maps(5, 2, 3, seed=3)
    loss = MutualInformationLoss(3)
    loss.forward(x)
    dx = loss.backward()
    assert np.abs(dx.sum(axis=0)).max() < 1e-12 * np.abs(dx).max() + 1e-18
    x_shift = x + 7.0 * peaked_maps(1, 2, 3, seed=4)
    np.testing.assert_allclose(loss.forward(x_shift), loss.forward(x), atol=1e-12)


# ---- the paper's Eq. 4 ("paper" mode) against the Z-fixed gradient ----

def mi_fixed_z(s, log_z, log_p):
    """MI (Eq. 1) of one filter's scores s (B, K) with log Z (K,) frozen: Eq. 4's setting."""
    log_q = s - log_z
    log_r = logsumexp(log_q + log_p, axis=1)
    return float((np.exp(log_p) * np.exp(log_q) * (log_q - log_r[:, None])).sum())


@pytest.mark.parametrize("labelled", [False, True])
def test_paper_gradient_is_the_target_template_term_of_the_z_fixed_gradient(labelled):
    n, B, F = 3, 5, 2
    x = peaked_maps(B, F, n, seed=5)
    T, p = templates(n, dtype=np.float64), template_priors(n, dtype=np.float64)
    labels, cats = (np.array([0, 1, 1, 0, 1]), np.array([1, 0])) if labelled else (None, None)
    paper = MutualInformationLoss(n, gradient="paper")
    paper.forward(x, labels, cats)
    got = paper.backward()
    positive = positive_images(labels, cats, B, F, np)
    K = n * n + 1
    z_fixed_full = np.zeros_like(x)
    for f in range(F):
        s = scores(x, T)[:, f]  # (B, K)
        log_z = logsumexp(s, axis=0)  # the batch's Z, then frozen
        s_var = s.copy()
        dmi_ds = numerical_gradient(lambda: mi_fixed_z(s_var, log_z, np.log(p)), s_var)  # (B, K)
        for b in range(B):
            k_hat = int(np.argmax(x[b, f])) if positive[b, f] else K - 1
            expected = -dmi_ds[b, k_hat] * T[k_hat]  # the minimised loss is -MI
            assert relative_error(got[b, f], expected)[0] < 1e-6
            z_fixed_full[b, f] = -np.tensordot(dmi_ds[b], T, axes=1)
    # the Z-fixed gradient in closed form (docs/paper.md#decision-6-the-papers-gradient)
    # is what the differences gave
    s = scores(x, T)
    log_q = s - logsumexp(s, axis=0, keepdims=True)
    log_r = logsumexp(log_q + np.log(p), axis=2)
    closed = -(mi_score_gradient(log_q, log_r, np.log(p), fixed_z=True) @ T.reshape(K, -1))
    assert relative_error(closed.reshape(x.shape), z_fixed_full)[0] < 1e-6
    # ... and keeping one template is an approximation of it, not equality
    assert relative_error(got, z_fixed_full)[0] > 1e-2


def test_where_the_z_fixed_gradient_departs_from_the_exact_one():
    # exact dMI/ds_bk = q_bk (g_bk - sum_b' q_b'k g_b'k); with Z fixed the centring term
    # goes, and it is q_bk p_k KL(p(X|T_k) || p(X)): as large as the term kept
    n = 3
    x = peaked_maps(4, 1, n, seed=6)
    T, log_p = templates(n, dtype=np.float64), np.log(template_priors(n, dtype=np.float64))
    s = scores(x, T)
    log_q = s - logsumexp(s, axis=0, keepdims=True)
    log_r = logsumexp(log_q + log_p, axis=2)
    exact = mi_score_gradient(log_q, log_r, log_p)
    fixed = mi_score_gradient(log_q, log_r, log_p, fixed_z=True)
    q = np.exp(log_q)
    kl = (q * (log_q - log_r[..., None])).sum(axis=0)  # (F, K)
    np.testing.assert_allclose(fixed - exact, q * np.exp(log_p) * kl, atol=1e-15)
    np.testing.assert_allclose(exact.sum(axis=0), 0.0, atol=1e-15)  # no shared push
    assert (fixed.sum(axis=0) >= 0).all() and fixed.sum() > 0.1 * np.abs(fixed).sum()
    # the exact gradient is that of -MI (finite differences), the paper's is not
    loss = MutualInformationLoss(n)
    loss.forward(x)
    paper = MutualInformationLoss(n, gradient="paper")
    paper.forward(x)
    assert relative_error(loss.backward(), paper.backward())[0] > 0.1
    assert mi_case(4, 1, n, seed=6).passed


def test_paper_gradient_uses_the_negative_template_for_other_categories():
    n = 4
    x = peaked_maps(4, 2, n, seed=7)
    loss = MutualInformationLoss(n, gradient="paper")
    loss.forward(x, labels=np.array([0, 0, 1, 1]), categories=np.array([0, 1]))
    dx = loss.backward()
    for b, f in [(2, 0), (3, 0), (0, 1), (1, 1)]:  # not the filter's category: T^- is flat
        assert np.ptp(dx[b, f]) < 1e-15
    for b, f in [(0, 0), (1, 0), (2, 1), (3, 1)]:  # T_mu_hat: extreme at mu_hat
        k = int(np.argmax(x[b, f]))
        assert np.abs(dx[b, f]).max() == pytest.approx(abs(dx[b, f].reshape(-1)[k]))


def test_running_log_z_starts_at_the_batch_value_then_averages():
    n = 3
    x1, x2 = peaked_maps(4, 2, n, seed=8), 3 * peaked_maps(4, 2, n, seed=9)
    plain = MutualInformationLoss(n, gradient="paper")
    running = MutualInformationLoss(n, gradient="paper", logz_momentum=0.9, num_filters=2)
    assert running.buffers["logz_running"].shape == (2, n * n + 1)
    plain.forward(x1)
    running.forward(x1)
    np.testing.assert_allclose(running.backward(), plain.backward(), rtol=1e-12)
    first = running.buffers["logz_running"].copy()
    running.forward(x2)
    s2 = scores(x2, templates(n, dtype=np.float64))
    expected = np.logaddexp(math.log(0.9) + first, math.log(0.1) + logsumexp(s2, axis=0) - math.log(4))
    np.testing.assert_allclose(running.buffers["logz_running"], expected, rtol=1e-6)
    plain.forward(x2)
    assert relative_error(running.backward(), plain.backward())[0] > 1e-3


# ---- the authors' rule: properties, not finite differences ----

def authors_setup(scale=1.0, epoch=1, repeat=1):
    n, B, F = 4, 6, 3
    x = scale * peaked_maps(B, F, n, seed=10)
    labels, cats = np.array([0, 1, 0, 1, 1, 0]), np.array([0, 1, 1])
    x, labels = np.concatenate([x] * repeat), np.concatenate([labels] * repeat)
    m = TemplateMask()
    m.forward(x)
    loss = MutualInformationLoss(n, gradient="authors")
    loss.epoch = epoch
    loss.forward(x, labels, cats, mask=m.signed_mask)
    return loss.backward(), m.signed_mask, positive_images(labels, cats, len(labels), F, np)


def test_authors_rule_positives_follow_the_mask_negatives_are_flat():
    dx, m, positive = authors_setup()
    mag = 1 / AUTHORS_MAG
    kappa = -(dx * m).sum(axis=(2, 3)) / (m * m).sum(axis=(2, 3))  # least squares: dx = -kappa m
    for b, f in zip(*np.nonzero(positive)):  # dL/dx = -kappa * m: raise inside, lower outside
        np.testing.assert_allclose(dx[b, f], -kappa[b, f] * m[b, f], atol=1e-20)
        assert kappa[b, f] > 0
        assert (dx[b, f][m[b, f] > 0] < 0).all() and (dx[b, f][m[b, f] < 0] > 0).all()
    for f in range(3):  # the batch-mean normalisation fixes the average size
        assert kappa[positive[:, f], f].mean() == pytest.approx(AUTHORS_STEP / mag)
        neg = dx[~positive[:, f], f]
        assert np.ptp(neg, axis=(1, 2)).max() == 0  # uniform over the map
        assert neg[:, 0, 0].mean() == pytest.approx(AUTHORS_STEP / mag)  # pushed down on average


def test_authors_rule_size_ignores_activation_scale_and_batch_duplication_but_not_epoch():
    dx1, m, positive = authors_setup()
    for scale in (0.1, 30.0):  # normalised by the batch mean: same average size
        dxs = authors_setup(scale=scale)[0]
        for f in range(3):
            neg = dxs[~positive[:, f], f, 0, 0]
            assert neg.mean() == pytest.approx(dx1[~positive[:, f], f, 0, 0].mean())
    dx2 = authors_setup(repeat=2)[0]  # the same batch twice: the same per-image rule
    np.testing.assert_allclose(dx2[:6], dx1, rtol=1e-10)
    np.testing.assert_allclose(authors_setup(epoch=2)[0], dx1 / 2, rtol=1e-12)  # 1 / epoch


# ---- scale normalisation (docs/calibration.md#the-scale-normalised-loss) ----

def test_scale_normalised_loss_ignores_a_common_scale_and_exact_gradient_is_radial_free():
    x = peaked_maps(3, 2, 4, seed=11, spread=5.0)
    loss = MutualInformationLoss(4, scale_normalise=True, scale_gradient="exact")
    value = loss.forward(x)
    np.testing.assert_allclose(loss.forward(40.0 * x), value, rtol=1e-12)
    loss.forward(x)
    dx = loss.backward()
    # Euler: a loss of degree 0 in x has sum x . dLoss/dx = 0, per filter
    assert np.abs((dx * x).sum(axis=(0, 2, 3))).max() < 1e-12 * np.abs(dx).max() * np.abs(x).sum()
    frozen = MutualInformationLoss(4, scale_normalise=True)
    frozen.forward(x)
    assert relative_error(frozen.backward(), dx)[0] > 1e-3  # c held constant differs


def test_unnormalised_loss_rewards_growing_activations():
    # why the scale-normalised variant exists: -MI falls as all activations grow
    x = peaked_maps(4, 2, 4, seed=12, spread=1.0)
    loss = MutualInformationLoss(4)
    values = [float(loss.forward(k * x).sum()) for k in (1, 4, 16)]
    assert values[0] > values[1] > values[2]


# ---- filter categories (docs/paper.md#decision-9-filter-categories) ----

def test_filter_categories_on_a_constructed_case(xp):
    # filter 0 fires on class 2, filter 1 on class 0, filter 2 on class 1
    B, n = 6, 3
    labels = np.array([0, 1, 2, 0, 1, 2])
    x = np.full((B, 3, n, n), 0.1)
    x[labels == 2, 0] = 1.0
    x[labels == 0, 1] = 2.0
    x[labels == 1, 2] = 0.5
    cats = FilterCategories(3, 3).to(device(xp))
    assert to_numpy(cats.categories).tolist() == [0, 0, 0]  # before any update
    cats.update(to_device(x, device(xp)), to_device(labels, device(xp)))
    assert to_numpy(cats.categories).tolist() == [2, 0, 1]
    # an EMA: one contrary batch does not flip a filter
    y = x.copy()
    y[labels == 0, 0] = 1.5
    cats.update(to_device(y, device(xp)), to_device(labels, device(xp)))
    assert to_numpy(cats.categories).tolist() == [2, 0, 1]
    ema = to_numpy(cats.buffers["category_ema"])
    assert ema[0, 0] == pytest.approx(0.9 * 0.9 + 0.1 * 13.5)  # spatial sum 9 * 0.1, then 9 * 1.5
    assert cats.buffers["category_ema"].dtype == np.float32


def test_filter_categories_label_forms():
    cats = FilterCategories(2, 3)
    x = np.zeros((2, 2, 2, 2))
    x[1, 1] = 1.0
    cats.update(x, np.array([[1, 0, 0], [0, 0, 1]]))  # (B, C) targets
    assert cats.categories.tolist() == [0, 2]
    assert cats.buffers["category_seen"].tolist() == [1, 0, 1]  # class 1 never seen
    single = FilterCategories(2, 1)
    single.update(x, np.array([0, 1]))  # one class: binary targets
    assert single.categories.tolist() == [0, 0]
    assert single.label_matrix(np.array([-1, 1]), np).tolist() == [[False], [True]]
    with pytest.raises(ValueError):
        cats.update(x, np.zeros((2, 4)))


@pytest.mark.gpu
def test_maps_on_another_device_than_the_state_are_a_clear_error(cupy):
    cats = FilterCategories(3, 2)  # its state left on the CPU
    x = cupy.ones((2, 3, 4, 4), dtype=cupy.float32)
    with pytest.raises(ValueError, match=r"FilterCategories: got maps on the gpu, .*\.to\('gpu'\)"):
        cats.update(x, cupy.asarray([0, 1]))
    loss = MutualInformationLoss(4, gradient="paper", logz_momentum=0.9, num_filters=3)  # running log Z: state
    with pytest.raises(ValueError, match=r"MutualInformationLoss: got maps on the gpu"):
        loss.forward(x, cupy.asarray([0, 1]), cupy.zeros(3, dtype=cupy.int64))
