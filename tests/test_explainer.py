"""The explainer's queries agree with each other and with direct computations."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence.mislabel import AUTO

TIGHT = dict(tol=1e-12, max_iter=10_000)


@pytest.fixture(params=["binary", "multinomial", "ridge"])
def fitted(request, binary_data, multiclass_data, regression_data):
    if request.param == "binary":
        X, y = binary_data
        model = LogisticRegression(C=0.5, **TIGHT)
    elif request.param == "multinomial":
        X, y = multiclass_data
        model = LogisticRegression(C=0.5, **TIGHT)
    else:
        X, y = regression_data
        model = Ridge(alpha=1.0)
    ex = InfluenceExplainer(model).fit(X[:250], y[:250])
    return ex, X, y


def _explicit_influence(ex, X_test, y_test):
    """I = -G_test H^-1 G_train^T with numpy, no blocking, no factorisation reuse."""
    ad = ex._adapter
    H = ad.hessian()
    N = ad.null_space()
    Gt = ad.per_sample_gradients(ad.prepare(X_test, y_test))
    Gtr = ad.per_sample_gradients(ad.train_data)
    if N is not None:
        # exact restriction to the complement of the flat directions
        Q = np.linalg.svd(np.eye(len(H)) - N @ N.T)[0][:, : len(H) - N.shape[1]]
        return -(Gt @ Q) @ np.linalg.solve(Q.T @ H @ Q, (Gtr @ Q).T)
    return -Gt @ np.linalg.solve(H, Gtr.T)


def test_influence_equals_explicit_formula(fitted):
    ex, X, y = fitted
    np.testing.assert_allclose(
        ex.influence(X[250:260], y[250:260]),
        _explicit_influence(ex, X[250:260], y[250:260]),
        rtol=1e-8,
        atol=1e-10,
    )


def test_self_influence_is_minus_diagonal_and_nonnegative(fitted):
    ex, X, y = fitted
    si = ex.self_influence()
    assert si.shape == (250,)
    assert np.all(si >= 0)
    np.testing.assert_allclose(si, -np.diag(ex.influence(X[:250], y[:250])), rtol=1e-9)
    np.testing.assert_allclose(ex.self_influence(X[:250], y[:250]), si, rtol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_blocking_does_not_change_results(fitted, batch_size):
    ex, X, y = fitted
    ref = ex.influence(X[250:255], y[250:255])
    ex2 = clone(ex).set_params(batch_size=batch_size).fit(X[:250], y[:250])
    np.testing.assert_allclose(ex2.influence(X[250:255], y[250:255]), ref, rtol=1e-10)
    np.testing.assert_allclose(ex2.self_influence(), ex.self_influence(), rtol=1e-10)


def test_tiny_working_memory_streams_one_row_at_a_time(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression(), working_memory=1e-6).fit(X[:100], y[:100])
    ref = InfluenceExplainer(LogisticRegression()).fit(X[:100], y[:100])
    np.testing.assert_allclose(
        ex.influence(X[100:103], y[100:103]), ref.influence(X[100:103], y[100:103]), rtol=1e-10
    )


def test_most_influential_matches_sorted_matrix(fitted):
    ex, X, y = fitted
    I = ex.influence(X[250:254], y[250:254])
    res = ex.set_params(batch_size=13).most_influential(X[250:254], y[250:254], k=6)
    for key in ("helpful_indices", "helpful_values", "harmful_indices", "harmful_values"):
        assert res[key].shape == (4, 6)
    np.testing.assert_allclose(res.helpful_values, np.sort(I, axis=1)[:, :6], rtol=1e-10)
    np.testing.assert_allclose(res.harmful_values, np.sort(I, axis=1)[:, ::-1][:, :6], rtol=1e-10)
    np.testing.assert_allclose(
        np.take_along_axis(I, res.helpful_indices, 1), res.helpful_values, rtol=1e-12
    )
    np.testing.assert_allclose(
        np.take_along_axis(I, res.harmful_indices, 1), res.harmful_values, rtol=1e-12
    )
    assert np.all(res.helpful_values <= 0) or np.all(np.diff(res.helpful_values) >= 0)


def test_influence_params_is_the_derivative_of_the_refit_parameters(binary_data):
    # Downweighting point i by delta and refitting moves theta by -delta/S * I_up,params
    # to first order; delta -> 1 is removal, small delta checks the derivative itself.
    X, y = binary_data
    model = LogisticRegression(C=1.0, **TIGHT)
    ex = InfluenceExplainer(model).fit(X[:300], y[:300])
    idx = np.array([3, 17, 150])
    P = ex.influence_params(idx)
    assert P.shape == (3, ex.n_params_)
    theta = np.r_[ex.estimator_.coef_.ravel(), ex.estimator_.intercept_]
    predicted_all, actual_all = [], []
    for row, i in zip(P, idx, strict=True):
        for delta in (0.01, 1.0):
            w = np.ones(300)
            w[i] -= delta
            m = clone(model).fit(X[:300], y[:300], sample_weight=w)
            actual = np.r_[m.coef_.ravel(), m.intercept_] - theta
            predicted = -delta * ex.removal_weights_[i] * row
            if delta < 1:
                np.testing.assert_allclose(predicted, actual, rtol=2e-3, atol=1e-9)
            predicted_all.append(predicted)
            actual_all.append(actual)
    assert np.corrcoef(np.ravel(predicted_all), np.ravel(actual_all))[0, 1] > 0.99
    bool_mask = np.zeros(300, bool)
    bool_mask[idx] = True
    np.testing.assert_allclose(ex.influence_params(bool_mask), P)


@pytest.mark.parametrize("data", ["binary", "multinomial"])
def test_perturbation_influence_predicts_retraining(data, binary_data, multiclass_data):
    X, y = binary_data if data == "binary" else multiclass_data
    model = LogisticRegression(C=1.0, **TIGHT)
    ex = InfluenceExplainer(model).fit(X[:300], y[:300])
    X_test, y_test = X[300:302], y[300:302]
    idx = [5, 42]
    pert = ex.perturbation_influence(X_test, y_test, train_indices=idx)
    assert pert.shape == (2, 2, X.shape[1])
    base = ex.loss(X_test, y_test)
    rng = np.random.default_rng(0)
    for j, i in enumerate(idx):
        delta = 0.02 * rng.normal(size=X.shape[1])
        Xp = X[:300].copy()
        Xp[i] += delta
        m = clone(model).fit(Xp, y[:300])
        P = m.predict_proba(X_test)
        actual = -np.log(P[np.arange(2), y_test]) - base
        predicted = ex.removal_weights_[i] * pert[:, j] @ delta
        np.testing.assert_allclose(predicted, actual, rtol=0.05)


def test_cg_agrees_with_direct(multiclass_data):
    X, y = multiclass_data
    direct = InfluenceExplainer(LogisticRegression(**TIGHT), solver="direct").fit(X, y)
    cg = InfluenceExplainer(
        LogisticRegression(**TIGHT), solver="cg", solver_params={"tol": 1e-10}
    ).fit(X, y)
    assert cg.solver_ == "cg" and direct.solver_ == "direct"
    np.testing.assert_allclose(
        cg.influence(X[:5], y[:5]), direct.influence(X[:5], y[:5]), rtol=1e-6, atol=1e-8
    )


def test_sparse_input_matches_dense(binary_data):
    X, y = binary_data
    X = np.where(np.abs(X) < 0.8, 0.0, X)
    dense = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)
    sparse = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(
        sparse.influence(sp.csr_matrix(X[:4]), y[:4]), dense.influence(X[:4], y[:4]), rtol=1e-6
    )
    np.testing.assert_allclose(sparse.self_influence(), dense.self_influence(), rtol=1e-6)


def test_frozen_estimator_is_used_as_is(binary_data):
    X, y = binary_data
    model = LogisticRegression(C=0.3).fit(X, y)
    coef = model.coef_.copy()
    ex = InfluenceExplainer(FrozenEstimator(model)).fit(X, y)
    assert ex.estimator_ is model
    np.testing.assert_array_equal(model.coef_, coef)
    fresh = InfluenceExplainer(LogisticRegression(C=0.3)).fit(X, y)
    np.testing.assert_allclose(ex.influence(X[:3], y[:3]), fresh.influence(X[:3], y[:3]), rtol=1e-6)


def test_wrapped_estimator_is_never_fitted(binary_data):
    X, y = binary_data
    model = LogisticRegression()
    InfluenceExplainer(model).fit(X, y)
    assert not hasattr(model, "coef_")


def test_inputs_are_not_modified(binary_data):
    X, y = binary_data
    X0, y0, w = X.copy(), y.copy(), np.ones(len(y))
    ex = InfluenceExplainer(LogisticRegression()).fit(X, y, sample_weight=w)
    ex.influence(X[:5], y[:5])
    ex.self_influence(X, y)
    ex.perturbation_influence(X[:2], y[:2], train_indices=[0])
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(w, np.ones(len(y)))


def test_copy_X_protects_against_later_changes(binary_data):
    X, y = binary_data
    X = X.copy()
    ex = InfluenceExplainer(LogisticRegression()).fit(X, y)
    before = ex.self_influence()
    X *= 3.0
    np.testing.assert_array_equal(ex.self_influence(), before)


def test_clone_pickle_and_grid_search(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(
        make_pipeline(StandardScaler(), LogisticRegression()), damping=0.01
    ).fit(X, y)
    cloned = clone(ex)
    assert not hasattr(cloned, "estimator_") and cloned.damping == 0.01
    restored = pickle.loads(pickle.dumps(ex))
    np.testing.assert_array_equal(restored.influence(X[:5], y[:5]), ex.influence(X[:5], y[:5]))
    np.testing.assert_array_equal(restored.self_influence(), ex.self_influence())
    gs = GridSearchCV(
        InfluenceExplainer(LogisticRegression()),
        {"damping": [0.0, 0.1], "estimator__C": [0.1, 1.0]},
        cv=3,
    ).fit(X, y)
    assert gs.best_params_["estimator__C"] in (0.1, 1.0)
    assert gs.best_estimator_.damping_ in (0.0, 0.1)
    assert gs.score(X, y) == pytest.approx(gs.best_estimator_.estimator_.score(X, y))


def test_damping_is_reported_and_changes_results(binary_data):
    X, y = binary_data
    a = InfluenceExplainer(LogisticRegression()).fit(X, y)
    b = InfluenceExplainer(LogisticRegression(), damping=1.0).fit(X, y)
    assert a.damping_ == 0.0 and b.damping_ == 1.0
    assert np.all(b.self_influence() < a.self_influence())


def test_score_delegates(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression()).fit(X, y)
    assert isinstance(ex.score(X, y), float)
    assert ex.score(X, y) == ex.estimator_.score(X, y)


def test_loss_is_log_loss_and_squared_error(fitted):
    ex, X, y = fitted
    m = ex.estimator_
    if ex.classes_ is None:
        expected = (m.predict(X[:250]) - y[:250]) ** 2
    else:
        expected = -np.log(m.predict_proba(X[:250])[np.arange(250), y[:250]])
    np.testing.assert_allclose(ex.loss(), expected, rtol=1e-8)


def test_gradient_norms_match_explicit_gradients(fitted):
    ex, X, y = fitted
    G = ex._adapter.per_sample_gradients(ex._adapter.train_data)
    np.testing.assert_allclose(ex.gradient_norms(), np.linalg.norm(G, axis=1), rtol=1e-12)


def test_loo_loss_score_predicts_the_points_own_leave_one_out_loss(binary_data):
    X, y = binary_data
    model = LogisticRegression(C=1.0, **TIGHT)
    ex = InfluenceExplainer(model).fit(X[:300], y[:300])
    scores = ex.mislabel_scores("loo_loss")
    idx = ex.find_mislabeled(k=8, method="loo_loss")
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:8])
    actual = []
    for i in idx:
        mask = np.arange(300) != i
        m = clone(model).fit(X[:300][mask], y[:300][mask])
        actual.append(-np.log(m.predict_proba(X[i : i + 1])[0, y[i]]))
    # first order in the removal: close, and much closer than the training loss
    np.testing.assert_allclose(scores[idx], actual, rtol=0.1)
    assert np.corrcoef(scores[idx], actual)[0, 1] > 0.99


def test_find_mislabeled_shapes_and_errors(fitted):
    ex, X, y = fitted
    if ex.classes_ is None:
        pytest.skip("classification only")
    assert ex.find_mislabeled(fraction=1.0).shape == (250,)
    assert ex.find_mislabeled(fraction=0.1).shape == (25,)
    np.testing.assert_array_equal(
        ex.find_mislabeled(k=5, method="loss"), np.argsort(-ex.loss(), kind="stable")[:5]
    )
    with pytest.raises(ValueError, match="Unknown mislabel method"):
        ex.mislabel_scores("magic")
    with pytest.raises(ValueError, match="not both"):
        ex.find_mislabeled(k=3, fraction=0.1)


def test_verbose_shows_progress_over_blocks(binary_data, capsys):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression(), verbose=1, batch_size=50).fit(X, y)
    quiet = InfluenceExplainer(LogisticRegression(), batch_size=50).fit(X, y)
    capsys.readouterr()
    np.testing.assert_array_equal(ex.influence(X[:2], y[:2]), quiet.influence(X[:2], y[:2]))
    err = capsys.readouterr().err
    assert "influence" in err and "/8 " in err  # 400 samples in blocks of 50
    quiet.self_influence()
    assert capsys.readouterr().err == ""


def test_model_family_picks_the_auto_mislabel_score(fitted):
    ex, X, y = fitted
    assert ex.model_family_ == "linear"
    auto = AUTO[ex.model_family_]
    np.testing.assert_array_equal(ex.mislabel_scores("auto"), ex.mislabel_scores(auto))


def test_prediction_methods_delegate_to_the_model():
    from sklearn.datasets import load_iris, make_regression

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)).fit(X, y)
    for model in (pipe, FrozenEstimator(pipe)):
        ex = InfluenceExplainer(model).fit(X, y)
        for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
            np.testing.assert_array_equal(getattr(ex, method)(X[:7]), getattr(pipe, method)(X[:7]))
    assert is_classifier(ex) and is_classifier(InfluenceExplainer(pipe))

    Xr, yr = make_regression(30, 3, random_state=0)
    ex = InfluenceExplainer(Ridge()).fit(Xr, yr)
    np.testing.assert_array_equal(ex.predict(Xr), ex.estimator_.predict(Xr))
    assert is_regressor(ex)
    # methods the model lacks are absent, as in scikit-learn's meta-estimators
    for method in ("predict_proba", "predict_log_proba", "decision_function"):
        assert not hasattr(ex, method)
        assert not hasattr(InfluenceExplainer(Ridge()), method)
    with pytest.raises(ValueError, match="3 features"):
        ex.predict(Xr[:, :2])


def test_prediction_methods_need_a_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        InfluenceExplainer(LogisticRegression()).predict(np.zeros((2, 3)))


def test_a_pipeline_fitted_step_by_step_is_the_one_pipeline_fit_gives(monkeypatch):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=120), rng.integers(0, 3, 120).astype(float)])
    X[::11, 0] = np.nan
    y = (np.nan_to_num(X[:, 0]) + X[:, 1] + rng.normal(size=120) > 1).astype(int)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), [0]),
            ("cat", OneHotEncoder(sparse_output=False), [1]),
        ]
    )
    pipe = make_pipeline(pre, LogisticRegression(tol=1e-10, max_iter=5000))
    w = rng.uniform(0.5, 2.0, 120)
    ex = InfluenceExplainer(pipe).fit(X, y, sample_weight=w)
    ref = clone(pipe).fit(X, y, logisticregression__sample_weight=w)
    np.testing.assert_array_equal(ex.estimator_[-1].coef_, ref[-1].coef_)
    np.testing.assert_array_equal(ex.estimator_.predict_proba(X), ref.predict_proba(X))
    # the kept training design is what the fitted steps give, computed once
    calls = []
    original = ColumnTransformer.transform
    monkeypatch.setattr(
        ColumnTransformer, "transform", lambda self, Z: calls.append(1) or original(self, Z)
    )
    ex2 = InfluenceExplainer(pipe).fit(X, y, sample_weight=w)
    assert calls == []
    np.testing.assert_allclose(ex2._adapter.train_data.X, ref[:-1].transform(X), rtol=1e-15)
