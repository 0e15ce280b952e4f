"""Bad input gets a clear exception that names the problem."""

import warnings

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer, SingularHessianError


@pytest.fixture
def fitted(binary_data):
    X, y = binary_data
    return InfluenceExplainer(LogisticRegression()).fit(X, y), X, y


def test_unsupported_estimator(binary_data):
    X, y = binary_data
    with pytest.raises(TypeError, match="cannot differentiate RandomForestClassifier"):
        InfluenceExplainer(RandomForestClassifier()).fit(X, y)
    with pytest.raises(TypeError, match="cannot differentiate RandomForestClassifier"):
        InfluenceExplainer(make_pipeline(StandardScaler(), RandomForestClassifier())).fit(X, y)


def test_unfitted_frozen_estimator(binary_data):
    X, y = binary_data
    with pytest.raises(NotFittedError, match="inside FrozenEstimator is not fitted"):
        InfluenceExplainer(FrozenEstimator(LogisticRegression())).fit(X, y)


def test_queries_before_fit(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression())
    for call in (
        lambda: ex.influence(X, y),
        lambda: ex.self_influence(),
        lambda: ex.most_influential(X, y),
        lambda: ex.influence_params(),
    ):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize(
    "params", [dict(l1_ratio=1.0, solver="saga"), dict(l1_ratio=0.5, solver="saga")]
)
def test_l1_and_elastic_net_are_refused(binary_data, params):
    X, y = binary_data
    with pytest.raises(ValueError, match=r"penalty .* not supported"):
        InfluenceExplainer(LogisticRegression(**params, max_iter=2000)).fit(X, y)


def test_positive_regression_is_refused(regression_data):
    X, y = regression_data
    with pytest.raises(ValueError, match="positive=True"):
        InfluenceExplainer(Ridge(positive=True)).fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf(fitted, bad):
    ex, X, y = fitted
    Xb = X[:5].copy()
    Xb[2, 1] = bad
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        ex.influence(Xb, y[:5])
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        InfluenceExplainer(LogisticRegression()).fit(np.vstack([X, Xb]), np.r_[y, y[:5]])


def test_nan_after_pipeline_transform_is_named(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(make_pipeline(StandardScaler(), LogisticRegression())).fit(X, y)
    Xb = X[:3].copy()
    Xb[0, 0] = np.nan
    with pytest.raises(ValueError, match="X after the Pipeline's steps contains NaN"):
        ex.influence(Xb, y[:3])


def test_wrong_number_of_features(fitted):
    ex, X, y = fitted
    with pytest.raises(ValueError, match="X has 4 features, but InfluenceExplainer is expecting 5"):
        ex.influence(X[:3, :4], y[:3])


def test_unseen_labels(fitted):
    ex, X, y = fitted
    with pytest.raises(ValueError, match=r"labels not seen during fit: \[7\]"):
        ex.influence(X[:3], np.array([0, 1, 7]))


def test_mismatched_lengths(fitted):
    ex, X, y = fitted
    with pytest.raises(ValueError, match="inconsistent numbers of samples: 5 and 4"):
        ex.influence(X[:5], y[:4])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        InfluenceExplainer(LogisticRegression()).fit(X, y[:-1])


def test_missing_y(fitted):
    ex, X, y = fitted
    with pytest.raises(ValueError, match="y is required"):
        ex.influence(X[:3], None)
    with pytest.raises(ValueError, match="requires y"):
        InfluenceExplainer(LogisticRegression()).fit(X, None)


def test_singular_hessian_without_damping_and_fixed_by_damping():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X = np.hstack([X, X[:, :1]])  # duplicated column: X^T X is singular
    y = X[:, 0] + rng.normal(size=50)
    with pytest.raises(SingularHessianError, match=r"singular.*Pass damping="):
        InfluenceExplainer(LinearRegression()).fit(X, y)
    ex = InfluenceExplainer(LinearRegression(), damping=1e-3).fit(X, y)
    assert np.all(np.isfinite(ex.influence(X[:2], y[:2])))


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(damping=-1.0), "'damping' parameter of InfluenceExplainer must be"),
        (dict(damping=np.nan), "'damping' parameter of InfluenceExplainer must be"),
        (dict(solver="magic"), "'solver' parameter of InfluenceExplainer must be"),
        (dict(batch_size=0), "'batch_size' parameter of InfluenceExplainer must be"),
        (dict(working_memory=-5), "'working_memory' parameter of InfluenceExplainer must be"),
    ],
)
def test_bad_parameters(binary_data, params, match):
    X, y = binary_data
    with pytest.raises(ValueError, match=match):
        InfluenceExplainer(LogisticRegression(), **params).fit(X, y)


def test_bad_sample_weight(binary_data):
    X, y = binary_data
    with pytest.raises(ValueError, match="sample_weight has shape"):
        InfluenceExplainer(LogisticRegression()).fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="negative"):
        InfluenceExplainer(LogisticRegression()).fit(X, y, sample_weight=-np.ones(len(y)))


def test_bad_k_and_indices(fitted):
    ex, X, y = fitted
    with pytest.raises(
        ValueError, match=r"'k' parameter of most_influential must be an int in \[1, 400\]; got 0"
    ):
        ex.most_influential(X[:2], y[:2], k=0)
    with pytest.raises(ValueError, match=r"'k' parameter .* in \[1, 400\]; got 10000"):
        ex.most_influential(X[:2], y[:2], k=10_000)
    with pytest.raises(IndexError, match="out of range"):
        ex.influence_params([0, 10_000])


def test_non_stationary_fit_warns(binary_data):
    X, y = binary_data
    with pytest.warns(RuntimeWarning, match="not a stationary point"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # sklearn's own
            InfluenceExplainer(LogisticRegression(max_iter=1, tol=1e-12)).fit(X, y)


def test_cg_non_convergence_warns(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(
        LogisticRegression(), solver="cg", solver_params={"max_iter": 1, "tol": 1e-14}
    ).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iterations"):
        ex.influence(X[:2], y[:2])
