"""The blocked products of compute.py against dense constructions, under any blocking."""

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceExplainer, compute
from skinfluence.exceptions import NonFiniteError
from skinfluence.models import LinearAdapter
from skinfluence.solvers import CGSolver, DirectSolver


@pytest.fixture(scope="module")
def setup():
    X, y = make_classification(
        n_samples=120, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    model = LogisticRegression(tol=1e-12, max_iter=10000).fit(X, y)
    ad = LinearAdapter(model, X, y)
    solver = DirectSolver().fit(ad)
    test = ad.prepare(X[:7], y[:7])
    G_train = ad.per_sample_gradients(ad.train_data)
    G_test = ad.per_sample_gradients(test)
    N = ad.null_space()
    Pc = np.eye(ad.n_params) - N @ N.T
    Hinv = Pc @ np.linalg.pinv(Pc @ ad.hessian() @ Pc, hermitian=True) @ Pc
    return (
        ad,
        solver,
        test,
        -G_test @ Hinv @ G_train.T,
        np.einsum("ij,jk,ik->i", G_train, Hinv, G_train),
    )


POLICIES = [
    compute.Blocking(1024),
    compute.Blocking(1e-4),  # a few rows per block
    compute.Blocking(1024, batch_size=1),
    compute.Blocking(1024, batch_size=37),  # blocks that do not divide n
]


def test_blocking_rows():
    b = compute.Blocking(working_memory=1, batch_size=None)
    rows = b.rows(10_000, 2**10)  # 1 MiB / 1 KiB = 1024 rows
    assert rows[0] == slice(0, 1024) and rows[-1] == slice(9216, 10_000)
    assert compute.Blocking(1, batch_size=3).rows(7, 10) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert len(compute.Blocking(1, batch_size=3).rows(7, 10, use_batch_size=False)) == 1
    assert compute.Blocking(1e-9).rows(3, 10**6) == [slice(0, 1), slice(1, 2), slice(2, 3)]


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_influence_self_influence_top_k_are_blocking_invariant(setup, policy):
    ad, solver, test, I_dense, s_dense = setup
    I = compute.influence_matrix(ad, solver, test, policy=policy)
    np.testing.assert_allclose(I, I_dense, rtol=1e-8, atol=1e-10)
    blocks = list(compute.iter_influence_blocks(ad, solver, test, policy=policy))
    np.testing.assert_allclose(np.hstack([b for _, b in blocks]), I_dense, rtol=1e-8, atol=1e-10)
    s = compute.self_influence(ad, solver, ad.train_data, policy=policy)
    np.testing.assert_allclose(s, s_dense, rtol=1e-8)
    h_idx, h_val, b_idx, b_val = compute.top_k_influence(ad, solver, test, 5, policy=policy)
    np.testing.assert_array_equal(h_idx, np.argsort(I_dense, axis=1, kind="stable")[:, :5])
    np.testing.assert_array_equal(b_idx, np.argsort(-I_dense, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(b_val, np.take_along_axis(I_dense, b_idx, 1), rtol=1e-8)
    losses = compute.losses(ad, ad.train_data, policy=policy)
    np.testing.assert_allclose(losses, ad.per_sample_losses(ad.train_data), rtol=1e-12)


def test_self_influence_without_a_whitener_solves_each_block(setup):
    ad, _, _, _, s_dense = setup
    cg = CGSolver(tol=1e-12).fit(ad)
    assert cg.whitener() is None
    s = compute.self_influence(ad, cg, ad.train_data, policy=compute.Blocking(1e-3))
    np.testing.assert_allclose(s, s_dense, rtol=1e-6)


def test_perturbation_influence_is_blocking_invariant(setup):
    ad, solver, test, _, _ = setup
    train = ad.take(ad.train_data, slice(0, 20))
    ref = compute.perturbation_influence(ad, solver, test, train, policy=POLICIES[0])
    for policy in POLICIES[1:]:
        got = compute.perturbation_influence(ad, solver, test, train, policy=policy)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert ref.shape == (7, 20, 4)


class _Counting:
    """Wraps an adapter, recording the rows of each block that gradients are formed for."""

    def __init__(self, inner, itemsize):
        self.inner, self.itemsize, self.sizes = inner, itemsize, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def gradients_dot(self, data, M, out=None):
        self.sizes.append(self.inner.n_samples(data))
        return self.inner.gradients_dot(data, M, out=out)


def test_budget_is_counted_in_the_adapters_itemsize(setup):
    ad, solver, test, _, _ = setup
    # room for the 7 solved test directions at once (3 float64 rows of n_params each)
    policy = compute.Blocking(working_memory=3e-3)
    f64, f32 = _Counting(ad, 8), _Counting(ad, 4)
    compute.influence_matrix(f64, solver, test, policy=policy)
    compute.influence_matrix(f32, solver, test, policy=policy)
    # float32 gradient rows are half as wide: more rows per block under the same budget
    # a gradient row in the adapter's itemsize, an output row of 7 float64 results
    assert f64.sizes[0] == int(3e-3 * 2**20 // (8 * ad.n_params + 8 * 7))
    assert f32.sizes[0] == int(3e-3 * 2**20 // (4 * ad.n_params + 8 * 7))
    assert f32.sizes[0] > 1.5 * f64.sizes[0]


def test_adapter_sweeps_follow_the_policy(setup):
    ad, _, _, _, _ = setup
    X, y = make_classification(
        n_samples=120, n_features=4, n_classes=3, n_informative=3, n_redundant=0, random_state=0
    )
    small = LinearAdapter(ad.model, X, y, blocking=compute.Blocking(1e-4))
    assert len(small._row_slices(small.n_train, 8 * 50)) > 1
    np.testing.assert_allclose(small.hessian(), ad.hessian(), rtol=1e-12, atol=1e-15)
    V = np.random.default_rng(0).normal(size=(ad.n_params, 3))
    np.testing.assert_allclose(small.hvp(V), ad.hvp(V), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        small.objective_gradient(), ad.objective_gradient(), rtol=1e-10, atol=1e-15
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_overflow_is_an_error_at_fit_not_a_zero_stationarity():
    X, y = make_regression(n_samples=100, n_features=3, noise=1, random_state=0)
    with pytest.raises(NonFiniteError, match=r"overflowed .* standardise"):
        InfluenceExplainer(Ridge()).fit(X, y * 1e200)
    Xc, yc = make_classification(n_samples=100, n_features=3, n_redundant=0, random_state=0)
    with pytest.raises(NonFiniteError, match="overflowed"):
        InfluenceExplainer(LogisticRegression()).fit(Xc * 1e160, yc)
    # large but representable: correct, finite results
    ex = InfluenceExplainer(Ridge()).fit(X, y * 1e100)
    assert np.isfinite(ex.loss()).all() and ex.stationarity_ < 1e-6


def test_check_finite_names_what_overflowed():
    with pytest.raises(NonFiniteError, match="The influence matrix overflowed"):
        compute.check_finite(np.array([1.0, np.inf]), "The influence matrix")
    assert compute.check_finite(np.ones(2), "x") is not None


def test_output_scan_is_skipped_only_when_a_bound_proves_it_finite(setup):
    ad, solver, test, I_dense, _ = setup
    A = np.ones((2, 3))
    assert compute._needs_output_check(A, None)
    assert compute._needs_output_check(A, 1e301)
    assert not compute._needs_output_check(A, 1e3)
    assert compute._needs_output_check(A, 1e31, itemsize=4)  # float32 products overflow sooner
    assert not compute._needs_output_check(A, 1e25, itemsize=4)

    class Overflowing(_Counting):
        def gradients_dot(self, data, M, out=None):
            res = self.inner.gradients_dot(data, M, out=out)
            res[0, 0] = np.inf
            return res

    bad = Overflowing(ad, 8)
    with pytest.raises(NonFiniteError, match="The influence matrix overflowed"):
        compute.influence_matrix(bad, solver, test, policy=POLICIES[0])
    with pytest.raises(NonFiniteError, match="The influence values overflowed"):
        compute.top_k_influence(bad, solver, test, 3, policy=POLICIES[0], train_norm_max=1e305)
    # with the true bound, the clean matrix is returned unscanned and unchanged
    norm_max = float(compute.gradient_norms(ad, ad.train_data, policy=POLICIES[0]).max())
    got = compute.influence_matrix(ad, solver, test, policy=POLICIES[1], train_norm_max=norm_max)
    np.testing.assert_allclose(got, I_dense, rtol=1e-8, atol=1e-10)


def test_influence_in_test_chunks_equals_one_chunk():
    # a budget too small for all the solved test directions at once: chunks of tests
    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=2000).fit(X, y)
    whole = InfluenceExplainer(lr).fit(X, y).influence(X[:40], y[:40])
    P = 15  # 3 classes x (4 features + intercept)
    budget = 3 * 8 * P * 7 / 2**20  # 7 test points per chunk
    chunked = InfluenceExplainer(lr, working_memory=budget).fit(X, y)
    rows = compute.Blocking(budget).rows(40, 3 * 8 * P, use_batch_size=False)
    assert len(rows) == 6  # the chunking this test is about
    # equal up to rounding (the smaller budget also changes the GEMMs' shapes)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(chunked.influence(X[:40], y[:40]), whole, atol=1e-10 * scale)


def test_top_k_in_test_chunks_equals_one_chunk():
    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=2000).fit(X, y)
    whole = InfluenceExplainer(lr).fit(X, y).most_influential(X[:40], y[:40], k=5)
    budget = 3 * 8 * 15 * 7 / 2**20  # 7 test points per chunk, as above
    chunked = InfluenceExplainer(lr, working_memory=budget).fit(X, y)
    got = chunked.most_influential(X[:40], y[:40], k=5)
    for key in whole:
        np.testing.assert_allclose(
            np.asarray(got[key], dtype=float), np.asarray(whole[key], dtype=float),
            atol=1e-10 * np.abs(np.asarray(whole[key], dtype=float)).max(),
        )  # fmt: skip


@pytest.mark.parametrize("policy", POLICIES)
def test_gradient_products_are_the_dense_product_under_any_blocking(setup, policy):
    ad = setup[0]
    M = np.random.default_rng(0).normal(size=(ad.n_params, 5))
    dense = ad.per_sample_gradients(ad.train_data) @ M
    out = compute.gradient_products(ad, ad.train_data, ad.asarray(M), policy=policy)
    assert out.dtype == np.float64 and out.shape == (ad.n_train, 5)
    np.testing.assert_allclose(out, dense, rtol=1e-12, atol=1e-12 * np.abs(dense).max())


def test_stationarity_ratio_by_hand():
    g = np.array([3e-3, 4e-3])  # ||g|| = 5e-3
    calls = []

    def curvature():
        calls.append(1)
        return np.array([0.0, 2.0])

    # below STATIONARITY_WARN the curvature is not asked for
    assert compute.stationarity_ratio(g * 1e-3, 4.0, curvature) == pytest.approx(2.5e-6)
    assert calls == []
    # above it, the scale is at least sqrt(eps) ||H theta||: here the RMS norm (2) wins
    assert compute.stationarity_ratio(g, 4.0, curvature) == pytest.approx(2.5e-3)
    # an exact fit with gradients at rounding level: the curvature's scale decides
    floor = np.sqrt(np.finfo(float).eps) * 2.0
    assert compute.stationarity_ratio(g, 1e-30, curvature) == pytest.approx(5e-3 / floor)
    with pytest.raises(NonFiniteError, match="overflowed"):
        compute.stationarity_ratio(np.array([np.inf]), 1.0, curvature)
