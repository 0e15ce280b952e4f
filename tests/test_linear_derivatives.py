"""Gradients and Hessian of the linear adapter against finite differences of
scikit-learn's own objective, and stationarity at the fitted parameters."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss

from skinfluence.models.linear import LinearAdapter
from tests.conftest import lr_objective, set_theta

CASES = {
    "binary": dict(n_classes=2, params=dict(C=0.7)),
    "binary-no-intercept": dict(n_classes=2, params=dict(C=0.7, fit_intercept=False)),
    "binary-liblinear": dict(
        n_classes=2, params=dict(C=0.7, solver="liblinear", intercept_scaling=2.0)
    ),
    "multinomial": dict(n_classes=3, params=dict(C=0.7)),
    "multinomial-balanced": dict(n_classes=3, params=dict(C=0.7, class_weight="balanced")),
    "multinomial-C-inf": dict(n_classes=3, params=dict(C=np.inf)),
}


def _data(n_classes, n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, n_classes))
    y = np.argmax(X @ W + rng.gumbel(size=(n, n_classes)) * 1.5, axis=1)
    return X, y


def _fitted(case, sample_weight=None):
    spec = CASES[case]
    X, y = _data(spec["n_classes"])
    est = LogisticRegression(**spec["params"], tol=1e-12, max_iter=10_000)
    est.fit(X, y, sample_weight=sample_weight)
    return est, X, y


def _objective_at(est, theta, X, y, sw, c):
    e = set_theta(copy.deepcopy(est), theta, c)
    s = np.ones(len(y)) if sw is None else sw
    if est.class_weight is not None:
        from sklearn.utils.class_weight import compute_class_weight

        cw = compute_class_weight(est.class_weight, classes=est.classes_, y=y, sample_weight=sw)
        s = s * cw[np.searchsorted(est.classes_, y)]
    value = lr_objective(e, X, y, s)
    if est.solver == "liblinear" and est.fit_intercept:  # its intercept is penalised
        value += (np.ravel(e.intercept_) / c) @ (np.ravel(e.intercept_) / c) / (2 * est.C * s.sum())
    return value


@pytest.mark.parametrize("case", list(CASES))
def test_objective_gradient_matches_finite_differences(case):
    sw = np.random.default_rng(1).uniform(0.5, 2.0, 120)
    est, X, y = _fitted(case, sample_weight=sw)
    ad = LinearAdapter(est, X, y, sw)
    # stationary at the fit ...
    assert np.linalg.norm(ad.objective_gradient()) < 1e-6
    # ... and away from it the analytic gradient is sklearn's objective's gradient
    theta = ad.theta + np.random.default_rng(2).normal(scale=0.3, size=ad.n_params)
    moved = set_theta(copy.deepcopy(est), theta, ad.c)
    ad_moved = LinearAdapter(moved, X, y, sw)
    eps = 1e-6
    fd = np.array(
        [
            (
                _objective_at(est, theta + eps * e, X, y, sw, ad.c)
                - _objective_at(est, theta - eps * e, X, y, sw, ad.c)
            )
            / (2 * eps)
            for e in np.eye(ad.n_params)
        ]
    )
    np.testing.assert_allclose(ad_moved.objective_gradient(), fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("case", list(CASES))
def test_hessian_and_hvp_match_finite_differences_of_gradient(case):
    est, X, y = _fitted(case)
    ad = LinearAdapter(est, X, y)
    H = ad.hessian()
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    eps = 1e-6
    cols = []
    for e in np.eye(ad.n_params):
        plus = LinearAdapter(set_theta(copy.deepcopy(est), ad.theta + eps * e, ad.c), X, y)
        minus = LinearAdapter(set_theta(copy.deepcopy(est), ad.theta - eps * e, ad.c), X, y)
        cols.append((plus.objective_gradient() - minus.objective_gradient()) / (2 * eps))
    np.testing.assert_allclose(H, np.array(cols).T, rtol=1e-5, atol=1e-8)
    V = np.random.default_rng(0).normal(size=(ad.n_params, 3))
    np.testing.assert_allclose(ad.hvp(V), H @ V, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["binary", "multinomial", "binary-liblinear"])
def test_per_sample_gradients_match_finite_differences_of_log_loss(case):
    est, X, y = _fitted(case)
    ad = LinearAdapter(est, X, y)
    data = ad.take(ad.train_data, slice(0, 5))
    G = ad.per_sample_gradients(data)
    losses = ad.per_sample_losses(data)
    np.testing.assert_allclose(
        losses,
        [
            log_loss(y[i : i + 1], est.predict_proba(X[i : i + 1]), labels=est.classes_)
            for i in range(5)
        ],
        rtol=1e-10,
    )
    eps = 1e-6
    for j, e in enumerate(np.eye(ad.n_params)):
        lp = LinearAdapter(set_theta(copy.deepcopy(est), ad.theta + eps * e, ad.c), X, y)
        lm = LinearAdapter(set_theta(copy.deepcopy(est), ad.theta - eps * e, ad.c), X, y)
        fd = (lp.per_sample_losses(data) - lm.per_sample_losses(data)) / (2 * eps)
        np.testing.assert_allclose(G[:, j], fd, rtol=1e-5, atol=1e-8)


def test_ridge_gradient_and_hessian_closed_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=80)
    sw = rng.uniform(0.5, 2, 80)
    est = Ridge(alpha=2.0).fit(X, y, sample_weight=sw)
    ad = LinearAdapter(est, X, y, sw)
    assert np.linalg.norm(ad.objective_gradient()) < 1e-8
    Xt = np.hstack([X, np.ones((80, 1))])
    S = sw.sum()
    H = 2 * Xt.T @ (Xt * sw[:, None]) / S + np.diag([2 * 2.0 / S] * 3 + [0.0])
    np.testing.assert_allclose(ad.hessian(), H, rtol=1e-12)
    G = ad.per_sample_gradients(ad.train_data)
    np.testing.assert_allclose(G, 2 * (est.predict(X) - y)[:, None] * Xt, rtol=1e-10)


@pytest.mark.parametrize("case", ["binary", "multinomial"])
def test_sparse_input_gives_the_dense_results(case):
    est, X, y = _fitted(case)
    X[np.abs(X) < 0.7] = 0.0
    est.fit(X, y)
    dense = LinearAdapter(est, X, y)
    sparse = LinearAdapter(est, sp.csr_matrix(X), y)
    assert sp.issparse(sparse.train_data.X)
    np.testing.assert_allclose(sparse.hessian(), dense.hessian(), rtol=1e-12)
    Gs = sparse.per_sample_gradients(sparse.train_data)
    assert sp.issparse(Gs)
    np.testing.assert_allclose(
        Gs.toarray(), dense.per_sample_gradients(dense.train_data), rtol=1e-12
    )
    V = np.random.default_rng(0).normal(size=(dense.n_params, 2))
    np.testing.assert_allclose(sparse.hvp(V), dense.hvp(V), rtol=1e-10)
