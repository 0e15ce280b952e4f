import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import log_loss


@pytest.fixture
def binary_data():
    X, y = make_classification(
        n_samples=400, n_features=5, n_informative=4, n_redundant=0, flip_y=0.05, random_state=0
    )
    return X, y


@pytest.fixture
def multiclass_data():
    X, y = make_classification(
        n_samples=450,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        flip_y=0.05,
        random_state=1,
    )
    return X, y


@pytest.fixture
def regression_data():
    X, y = make_regression(n_samples=300, n_features=4, noise=5.0, random_state=0)
    return X, y


def set_theta(est, theta, c=1.0):
    """Write a flat parameter vector (skinfluence layout) into a linear model."""
    coef = np.atleast_2d(est.coef_)
    K, d = coef.shape
    B = np.asarray(theta).reshape(K, -1)
    new_coef = B[:, :d].reshape(np.shape(est.coef_))
    est.coef_ = new_coef.copy()
    if B.shape[1] > d:
        icpt = c * B[:, d]
        est.intercept_ = icpt if np.ndim(est.intercept_) else float(icpt[0])
    return est


def lr_objective(est, X, y, sample_weight=None):
    """LogisticRegression's documented objective, evaluated with sklearn's log_loss."""
    s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    P = est.predict_proba(X)
    data = log_loss(y, P, sample_weight=s, labels=est.classes_)
    coef = np.atleast_2d(est.coef_)
    pen = 0.0 if np.isinf(est.C) else (coef**2).sum() / (2 * est.C * s.sum())
    return data + pen


def loo_pairs(explainer, refit, X_test, y_test, n_top=15, n_random=5, seed=0):
    """Predicted vs actual change of test loss when removing training points.

    ``refit(mask)`` fits the model on the training points where ``mask`` is True
    and returns per-sample test losses (one per test point).
    """
    rng = np.random.default_rng(seed)
    I = explainer.influence(X_test, y_test)
    n = explainer.n_train_
    base = refit(np.ones(n, bool))
    pred, actual = [], []
    for t in range(len(I)):
        top = np.argsort(-np.abs(I[t]))[:n_top]
        rand = rng.choice(np.setdiff1d(np.arange(n), top), n_random, replace=False)
        for i in np.concatenate([top, rand]):
            mask = np.ones(n, bool)
            mask[i] = False
            actual.append(refit(mask)[t] - base[t])
            pred.append(-explainer.removal_weights_[i] * I[t, i])
    return np.array(pred), np.array(actual)


def pytest_terminal_summary(terminalreporter):
    """Name the notebook figures kept for review (CI sets SKINFLUENCE_FIGURES_DIR)."""
    import os
    from pathlib import Path

    folder = os.environ.get("SKINFLUENCE_FIGURES_DIR")
    if not folder:
        return
    figures = sorted(Path(folder).glob("*.png"))
    terminalreporter.write_sep("-", f"{len(figures)} notebook figures kept in {folder}")
    for path in figures:
        terminalreporter.write_line(str(path))


@pytest.fixture(scope="module")
def client():
    """A dask LocalCluster of 2 worker processes, one thread each (one per test module)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c
