"""Cross-fitted mislabel scores against real refits on the folds."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer

TIGHT = {"tol": 1e-12, "max_iter": 10000}
#: The reference fold models: the exact optimum (Newton, quadratic convergence). The
#: fold refits start L-BFGS from the full model's coefficients; L-BFGS at tol=1e-12
#: stops within about 1e-6 (relative, in held-out loss) of the optimum, warm or cold.
EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}
LBFGS_RTOL = 3e-6


def _exact(model):
    """A clone of ``model`` whose logistic regression is solved to the optimum."""
    out = clone(model)
    last = out.steps[-1][1] if hasattr(out, "steps") else out
    last.set_params(**EXACT)
    return out


def _log_loss_rows(model, X, y):
    proba = model.predict_proba(X)
    return -np.log(proba[np.arange(len(y)), np.searchsorted(model.classes_, y)])


@pytest.fixture
def three_class():
    return make_classification(
        n_samples=150,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        flip_y=0.1,
        random_state=0,
    )


@pytest.mark.parametrize("seed", [None, 3])
def test_cv_loss_is_the_held_out_loss_of_fold_refits(three_class, seed):
    X, y = three_class
    model = LogisticRegression(C=0.5, **TIGHT)
    ex = InfluenceExplainer(model, random_state=seed).fit(X, y)
    expected = np.empty(len(y))
    folds = StratifiedKFold(5, shuffle=seed is not None, random_state=seed)
    for train, test in folds.split(X, y):
        expected[test] = _log_loss_rows(_exact(model).fit(X[train], y[train]), X[test], y[test])
    np.testing.assert_allclose(ex.mislabel_scores("cv_loss"), expected, rtol=LBFGS_RTOL)


def test_cv_alo_loss_averages_real_leave_one_out_losses():
    # every term is a leave-one-out loss: held out by one fold model, removed and
    # refitted for the full model and the other fold models
    # fold models see 80 points, as in test_mislabel's check of alo_loss (within 2%)
    X, y = make_classification(
        n_samples=120, n_features=4, n_informative=3, n_redundant=0, flip_y=0.1, random_state=1
    )
    model = LogisticRegression(C=0.5, **TIGHT)
    cv = 3

    def loo(indices):
        out = {}
        for i in indices:
            keep = indices[indices != i]
            out[i] = _log_loss_rows(clone(model).fit(X[keep], y[keep]), X[i : i + 1], y[i : i + 1])
        return out

    total = np.zeros(len(y))
    for i, v in loo(np.arange(len(y))).items():
        total[i] += v[0]
    for train, test in StratifiedKFold(cv).split(X, y):
        total[test] += _log_loss_rows(clone(model).fit(X[train], y[train]), X[test], y[test])
        for i, v in loo(train).items():
            total[i] += v[0]
    expected = total / (cv + 1)
    ex = InfluenceExplainer(model).fit(X, y)
    loo_mean = ex.mislabel_scores("cv_alo_loss", cv=cv)
    # one Newton step misses most on the highest-loss points (2.9% at a loss of 5.4)
    np.testing.assert_allclose(loo_mean, expected, rtol=0.03)
    assert np.median(np.abs(loo_mean / expected - 1)) < 1e-3
    folds = ex.cross_fitted_losses(cv=cv)
    np.testing.assert_allclose(
        loo_mean, (cv * folds.fold_loo_mean + ex.mislabel_scores("alo_loss")) / (cv + 1)
    )
    np.testing.assert_allclose(
        ex.mislabel_scores("cv_blend_loss", cv=cv), 0.5 * (ex.loss() + loo_mean)
    )


def test_sample_weights_pipeline_and_frozen_model_refit_the_same_way(three_class):
    X, y = three_class
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(**TIGHT))
    ex = InfluenceExplainer(pipe).fit(X, y, sample_weight=w)
    expected = np.empty(len(y))
    for train, test in StratifiedKFold(5).split(X, y):
        fold = _exact(pipe).fit(X[train], y[train], logisticregression__sample_weight=w[train])
        expected[test] = _log_loss_rows(fold, X[test], y[test])
    np.testing.assert_allclose(ex.mislabel_scores("cv_loss"), expected, rtol=LBFGS_RTOL)

    fitted = clone(pipe).fit(X, y, logisticregression__sample_weight=w)
    frozen = InfluenceExplainer(FrozenEstimator(fitted)).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(frozen.mislabel_scores("cv_loss"), expected, rtol=LBFGS_RTOL)


def test_scores_use_the_training_data_as_it_was_at_fit(three_class):
    X, y = three_class
    X, y = X.copy(), y.copy()
    X_before, y_before = X.copy(), y.copy()
    ex = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)
    expected = ex.mislabel_scores("cv_blend_loss")
    np.testing.assert_array_equal(X, X_before)  # nothing the user passed is modified
    np.testing.assert_array_equal(y, y_before)
    X[:] = 0.0
    y[:] = y[::-1]
    np.testing.assert_array_equal(ex.mislabel_scores("cv_blend_loss"), expected)
    assert ex.find_mislabeled(k=5).tolist() == np.argsort(-expected, kind="stable")[:5].tolist()


def test_errors(three_class):
    X, y = three_class
    with pytest.raises(NotFittedError):
        InfluenceExplainer(LogisticRegression()).cross_fitted_losses()
    ex = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)
    for bad in (1, 2.5, "5"):
        with pytest.raises(ValueError, match="cv must be an int >= 2"):
            ex.mislabel_scores("cv_loss", cv=bad)
    y_rare = y.copy()
    y_rare[np.flatnonzero(y == 2)[3:]] = 0  # class 2 keeps 3 samples
    ex = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y_rare)
    with pytest.raises(ValueError, match="class 2 has only 3 samples"):
        ex.mislabel_scores("cv_loss")
    assert ex.mislabel_scores("cv_loss", cv=3).shape == (len(y),)
    assert ex.mislabel_scores("alo_loss").shape == (len(y),)  # no refit, no limit
    pipe = make_pipeline(StandardScaler(), LogisticRegression(**TIGHT))
    ex = InfluenceExplainer(pipe).fit(X, y, standardscaler__sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match="cannot split the fit parameters"):
        ex.mislabel_scores("auto")


def test_torch_net_folds_are_refitted_from_the_same_generator():
    torch = pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from skinfluence.tabular_mlp import make_mlp_classifier

    torch.set_num_threads(1)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = make_mlp_classifier(4, 3, n_hidden=8, max_epochs=300)

    torch.manual_seed(0)
    full = clone(net).fit(X, y)
    folds = [(clone(net).fit(X[tr], y[tr]), te) for tr, te in StratifiedKFold(5).split(X, y)]
    # only now predict: skorch's data loaders draw from torch's generator
    expected = np.empty(len(y))
    for fold, test in folds:
        expected[test] = _log_loss_rows(fold, X[test], y[test])

    torch.manual_seed(0)
    ex = InfluenceExplainer(net, damping=0.05).fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ex.cross_fitted_losses()
    # 300 epochs of Adam is no optimum: one warning for all folds, not one per fold
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "of the 5 fold refits stopped short" in messages[0]
    np.testing.assert_allclose(ex.estimator_.predict_proba(X), full.predict_proba(X), rtol=1e-6)
    np.testing.assert_allclose(got.held_out, expected, rtol=1e-4, atol=1e-6)
    # a point's loss is higher under a model that never saw it
    assert got.held_out.mean() > ex.loss().mean()
    assert np.all(np.isfinite(got.fold_loo_mean)) and np.all(got.fold_loo_mean >= 0)


def test_refits_are_done_once_per_explainer_and_cv(three_class, monkeypatch):
    import skinfluence.crossfit as crossfit

    calls = []
    original = crossfit.cross_fitted_losses

    def counting(ex, X, y, sample_weight=None, *, cv=5):
        calls.append(cv)
        return original(ex, X, y, sample_weight, cv=cv)

    monkeypatch.setattr(crossfit, "cross_fitted_losses", counting)
    X, y = three_class
    ex = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)
    first = ex.mislabel_scores("cv_loss")
    first[:] = -1.0  # the caller's array is a copy: the stored losses are untouched
    again = ex.mislabel_scores("cv_loss")
    assert np.all(again >= 0)
    ranked = ex.find_mislabeled(k=10, method="cv_blend_loss")
    np.testing.assert_array_equal(
        ranked, np.argsort(-ex.mislabel_scores("cv_blend_loss"), kind="stable")[:10]
    )
    direct = ex.cross_fitted_losses()
    np.testing.assert_array_equal(direct.held_out, again)
    direct.held_out[:] = -1.0  # a copy too
    assert np.all(ex.cross_fitted_losses().held_out >= 0)
    assert calls == [5]
    ex.mislabel_scores("cv_loss", cv=3)
    assert calls == [5, 3]
    ex.fit(X, y)  # a new fit forgets the refits of the old one
    ex.mislabel_scores("cv_loss")
    assert calls == [5, 3, 5]


@pytest.mark.parametrize("container", ["csr", "dataframe", "list"])
def test_any_input_container_refits_like_an_array(three_class, container):
    X, y = three_class
    model = LogisticRegression(**TIGHT)
    expected = InfluenceExplainer(model).fit(X, y).mislabel_scores("cv_loss")
    if container == "csr":
        import scipy.sparse as sp

        Xc = sp.csr_matrix(X)
    elif container == "dataframe":
        pd = pytest.importorskip("pandas")
        Xc = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    else:
        Xc = X.tolist()
    got = InfluenceExplainer(model).fit(Xc, list(y)).mislabel_scores("cv_loss")
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_a_bare_linear_model_holds_one_copy_of_the_training_features(three_class):
    X, y = three_class
    ex = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)
    kept = ex._fit_inputs[0]
    assert kept is ex._adapter.train_data.X  # the refits reuse the prepared copy
    assert not np.shares_memory(kept, X)
    X32 = X.astype(np.float32)  # the model saw float32: the refits must too
    ex32 = InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X32, y)
    assert ex32._fit_inputs[0].dtype == np.float32
    assert not np.shares_memory(ex32._fit_inputs[0], X32)
    by_ref = InfluenceExplainer(LogisticRegression(**TIGHT), copy_X=False).fit(X, y)
    assert np.shares_memory(by_ref._fit_inputs[0], X)


def test_held_out_proba_is_cross_val_predict_on_the_same_folds():
    from sklearn.model_selection import cross_val_predict

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(**TIGHT))
    for seed, folds in (
        (None, StratifiedKFold(5)),
        (7, StratifiedKFold(5, shuffle=True, random_state=7)),
    ):
        ex = InfluenceExplainer(model, random_state=seed).fit(X, y)
        got = ex.cross_fitted_losses()
        expected = cross_val_predict(_exact(model), X, y, cv=folds, method="predict_proba")
        np.testing.assert_allclose(got.held_out_proba, expected, rtol=LBFGS_RTOL, atol=1e-9)
        np.testing.assert_allclose(
            got.held_out, -np.log(expected[np.arange(len(y)), y]), rtol=LBFGS_RTOL
        )


def test_a_fold_without_some_category_is_refitted_cold():
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, (100, 1)).astype(float)
    X[5, 0] = 7  # a level on one row: the fold without it has one column fewer
    y = (rng.random(100) < 0.5).astype(int)
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(**TIGHT))
    ex = InfluenceExplainer(model).fit(X, y)
    expected = np.empty(len(y))
    for train, test in StratifiedKFold(5).split(X, y):
        expected[test] = _log_loss_rows(_exact(model).fit(X[train], y[train]), X[test], y[test])
    np.testing.assert_allclose(ex.mislabel_scores("cv_loss"), expected, rtol=LBFGS_RTOL)
