"""Ground truth: predicted loss changes against real leave-one-out retraining."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from tests.conftest import loo_pairs

TIGHT = dict(tol=1e-12, max_iter=10_000)


def _per_sample_test_loss(model, X_test, y_test):
    if hasattr(model, "predict_proba"):
        P = model.predict_proba(X_test)
        return -np.log(P[np.arange(len(y_test)), np.searchsorted(model.classes_, y_test)])
    return (model.predict(X_test) - y_test) ** 2


def _check_loo(ex, model, X, y, X_test, y_test, sample_weight=None, X_test_model=None):
    """``X``/``X_test_model`` are what ``model`` sees, ``X_test`` what the explainer sees."""
    X_test_model = X_test if X_test_model is None else X_test_model

    def refit(mask):
        m = clone(model)
        kw = {} if sample_weight is None else {"sample_weight": sample_weight[mask]}
        m.fit(X[mask], y[mask], **kw)
        return _per_sample_test_loss(m, X_test_model, y_test)

    pred, actual = loo_pairs(ex, refit, X_test, y_test)
    r = pearsonr(pred, actual).statistic
    slope = np.polyfit(pred, actual, 1)[0]
    assert r >= 0.99, r
    assert abs(slope - 1) < 0.1, slope
    return r, slope


@pytest.mark.parametrize(
    "params",
    [
        dict(C=1.0),
        dict(C=0.3, fit_intercept=False),
        dict(C=1.0, solver="newton-cholesky"),
    ],
    ids=["intercept", "no-intercept", "newton-cholesky"],
)
def test_binary_logistic_matches_leave_one_out(binary_data, params):
    X, y = binary_data
    X_train, y_train, X_test, y_test = X[:300], y[:300], X[300:303], y[300:303]
    model = LogisticRegression(**params, **TIGHT)
    ex = InfluenceExplainer(model).fit(X_train, y_train)
    _check_loo(ex, model, X_train, y_train, X_test, y_test)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_multinomial_logistic_matches_leave_one_out(multiclass_data, fit_intercept):
    X, y = multiclass_data
    X_train, y_train, X_test, y_test = X[:350], y[:350], X[350:353], y[350:353]
    model = LogisticRegression(C=1.0, fit_intercept=fit_intercept, **TIGHT)
    ex = InfluenceExplainer(model).fit(X_train, y_train)
    _check_loo(ex, model, X_train, y_train, X_test, y_test)


def test_multinomial_without_penalty_matches_leave_one_out(multiclass_data):
    # C=inf: every class-shift direction is flat; the solve must stay exact.
    X, y = multiclass_data
    X_train, y_train, X_test, y_test = X[:350], y[:350], X[350:353], y[350:353]
    model = LogisticRegression(C=np.inf, **TIGHT)
    ex = InfluenceExplainer(model).fit(X_train, y_train)
    assert ex.n_params_ == 3 * 6
    _check_loo(ex, model, X_train, y_train, X_test, y_test)


def test_sample_weights_match_leave_one_out(binary_data):
    X, y = binary_data
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 3.0, size=300)
    X_train, y_train, X_test, y_test = X[:300], y[:300], X[300:303], y[300:303]
    model = LogisticRegression(C=1.0, **TIGHT)
    ex = InfluenceExplainer(model).fit(X_train, y_train, sample_weight=w)
    assert np.allclose(ex.removal_weights_, w / w.sum())
    _check_loo(ex, model, X_train, y_train, X_test, y_test, sample_weight=w)


def test_pipeline_matches_leave_one_out_of_last_step(multiclass_data):
    X, y = multiclass_data
    X = X * [1, 10, 100, 0.1, 1] + 3  # scaling matters
    X_train, y_train, X_test, y_test = X[:350], y[:350], X[350:353], y[350:353]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, **TIGHT))
    ex = InfluenceExplainer(pipe).fit(X_train, y_train)
    scaler = ex.estimator_[0]
    # earlier steps are fixed feature maps: retrain only the last step
    _check_loo(
        ex,
        LogisticRegression(C=1.0, **TIGHT),
        scaler.transform(X_train),
        y_train,
        X_test,
        y_test,
        X_test_model=scaler.transform(X_test),
    )


@pytest.mark.parametrize("model", [Ridge(alpha=3.0), LinearRegression()], ids=["ridge", "ols"])
def test_regression_matches_leave_one_out(regression_data, model):
    X, y = regression_data
    X_train, y_train, X_test, y_test = X[:250], y[:250], X[250:253], y[250:253]
    ex = InfluenceExplainer(model).fit(X_train, y_train)
    _check_loo(ex, model, X_train, y_train, X_test, y_test)


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky", "sag", "saga"])
@pytest.mark.parametrize("data", ["binary", "multinomial"])
def test_every_l2_solver_reaches_the_objective_we_differentiate(
    solver, data, binary_data, multiclass_data
):
    X, y = binary_data if data == "binary" else multiclass_data
    X = StandardScaler().fit_transform(X)  # sag/saga converge on scaled data
    ref = InfluenceExplainer(LogisticRegression(C=0.5, **TIGHT)).fit(X[:300], y[:300])
    ex = InfluenceExplainer(
        LogisticRegression(C=0.5, solver=solver, tol=1e-10, max_iter=100_000, random_state=0)
    ).fit(X[:300], y[:300])
    assert ex.stationarity_ < 1e-5
    np.testing.assert_allclose(
        ex.influence(X[300:303], y[300:303]),
        ref.influence(X[300:303], y[300:303]),
        rtol=1e-3,
        atol=1e-6,
    )


def test_validate_reports_agreement_with_refits(multiclass_data):
    X, y = multiclass_data
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, **TIGHT))
    ex = InfluenceExplainer(pipe).fit(X[:350], y[:350])
    res = ex.validate(X[350:353], y[350:353], n_points=8)
    assert res.predicted.shape == res.actual.shape == res.train_indices.shape == (3, 8)
    I = ex.influence(X[350:353], y[350:353])
    np.testing.assert_array_equal(res.train_indices, np.argsort(-np.abs(I), axis=1)[:, :8])
    assert res.pearson > 0.99 and res.spearman > 0.95
