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


def test_every_query_before_fit_is_not_fitted_error(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression())
    for call in (
        lambda: ex.loss(),
        lambda: ex.loss(X, y),
        lambda: ex.gradient_norms(),
        lambda: ex.mislabel_scores("loss"),
        lambda: ex.find_mislabeled(k=3),
        lambda: ex.cross_fitted_losses(),
        lambda: ex.perturbation_influence(X[:1], y[:1]),
        lambda: ex.validate(X[:1], y[:1]),
        lambda: ex.score(X, y),
        lambda: ex.solver_summary_,
    ):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("scalar", [1, np.int64(0), "a"])
def test_a_scalar_y_is_named(fitted, scalar):
    ex, X, _ = fitted
    with pytest.raises(
        ValueError, match=r"y must hold one label or target per sample, got the scalar"
    ):
        ex.influence(X[:1], scalar)
    with pytest.raises(ValueError, match=r"got the scalar"):
        InfluenceExplainer(LogisticRegression()).fit(X[:1], scalar)


def test_mixed_label_types_are_named(binary_data):
    X, y = binary_data
    mixed = np.array([1, "a"] * (len(y) // 2), dtype=object)
    with pytest.raises(ValueError, match="y mixes string labels with other types"):
        InfluenceExplainer(LogisticRegression()).fit(X, mixed)
    ex = InfluenceExplainer(LogisticRegression()).fit(X, np.where(y == 1, "a", "b"))
    with pytest.raises(ValueError, match="y mixes string labels"):
        ex.influence(X[:2], np.array([1, "a"], dtype=object))
    with pytest.raises(ValueError, match=r"labels not seen during fit: \[0, 1\]; known classes"):
        ex.influence(X[:2], [0, 1])


def test_fitted_arrays_are_not_live_internals(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(LogisticRegression()).fit(X, y)
    before = ex.influence(X[:3], y[:3])
    scores = ex.mislabel_scores("alo_loss")
    ex.removal_weights_[:] = 5.0
    ex.classes_[:] = 7
    ex.estimator_.coef_[:] = 100.0  # the fitted model, edited in place
    ex.self_influence()[:] = 0.0
    ex.loss()[:] = 0.0
    np.testing.assert_array_equal(ex.influence(X[:3], y[:3]), before)
    np.testing.assert_array_equal(ex.mislabel_scores("alo_loss"), scores)
    assert ex.solver_summary_ is not ex.solver_summary_  # a new dict each time


def test_sample_weight_smuggled_in_as_a_fit_param_is_refused(binary_data):
    X, y = binary_data
    w = np.random.default_rng(0).random(len(y)) * 3 + 0.1
    model = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(ValueError, match=r"fit\(X, y, sample_weight=...\), not as the fit"):
        InfluenceExplainer(model).fit(X, y, logisticregression__sample_weight=w)
    ex = InfluenceExplainer(model).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ex.removal_weights_, w / w.sum())


def test_a_column_of_labels_with_class_weights(binary_data):
    X, y = binary_data
    ref = InfluenceExplainer(LogisticRegression(class_weight="balanced")).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own DataConversionWarning
        col = InfluenceExplainer(LogisticRegression(class_weight="balanced")).fit(X, y[:, None])
    np.testing.assert_allclose(col.removal_weights_, ref.removal_weights_)
    np.testing.assert_allclose(col.influence(X[:2], y[:2]), ref.influence(X[:2], y[:2]))


def test_no_training_rows_selected_gives_empty_results(fitted):
    ex, X, y = fitted
    assert ex.perturbation_influence(X[:2], y[:2], train_indices=[]).shape == (2, 0, 5)
    assert ex.influence_params([]).shape == (0, ex.n_params_)


def test_an_exact_fit_is_stationary():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ex = InfluenceExplainer(LinearRegression()).fit(X, X @ [1.0, 2.0, 0.0, -1.0])
    assert ex.stationarity_ < 1e-6
    np.testing.assert_allclose(ex.influence(X[:2], X[:2] @ [1.0, 2.0, 0.0, -1.0]), 0, atol=1e-12)


def test_tiny_sample_weights_are_called_numerically_singular_not_indefinite(binary_data):
    X, y = binary_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            SingularHessianError, match=r"numerically singular.*tiny sample weights"
        ):
            InfluenceExplainer(LogisticRegression()).fit(
                X, y, sample_weight=np.full(len(y), 1e-300)
            )


def test_cg_with_a_tolerance_below_machine_precision(fitted):
    ex, X, y = fitted
    cg = InfluenceExplainer(LogisticRegression(), solver="cg", solver_params={"tol": 1e-300})
    got = cg.fit(X, y).influence(X[:2], y[:2])
    np.testing.assert_allclose(got, ex.influence(X[:2], y[:2]), rtol=1e-9, atol=1e-12)


def test_lissa_far_from_converged_warns_with_the_figure(fitted):
    ex, X, y = fitted
    lissa = InfluenceExplainer(
        LogisticRegression(), solver="lissa", solver_params={"scale": 1e6}, random_state=0
    ).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"LiSSA has not settled: .* by \d+%"):
        lissa.influence(X[:2], y[:2])
    assert lissa.solver_summary_["LiSSA drift (2nd half)"] > 0.4
    settled = InfluenceExplainer(
        LogisticRegression(), solver="lissa", solver_params={"batch_size": 400}, random_state=0
    ).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        got = settled.influence(X[:2], y[:2])
    np.testing.assert_allclose(got, ex.influence(X[:2], y[:2]), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("bad", [{0, 1}, {0: 0, 1: 1}, (v for v in [0, 1])])
def test_sets_dicts_and_generators_are_not_called_scalars(fitted, bad):
    ex, X, _ = fitted
    with pytest.raises(ValueError, match="y must be array-like"):
        ex.influence(X[:2], bad)


def test_the_estimator_class_instead_of_an_instance(binary_data):
    X, y = binary_data
    with pytest.raises(ValueError, match=r"LogisticRegression\(\), not the class"):
        InfluenceExplainer(LogisticRegression).fit(X, y)


def test_a_failed_refit_leaves_an_unfitted_explainer_not_a_mixture(binary_data):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X[:, 0] + rng.normal(size=50)
    ex = InfluenceExplainer(LinearRegression()).fit(X, y)
    with pytest.raises(SingularHessianError):
        ex.fit(np.hstack([X, X[:, :1]]), y)  # collinear: the Hessian is singular
    for call in (ex.loss, ex.self_influence, lambda: ex.influence(X[:2], y[:2])):
        with pytest.raises(NotFittedError):
            call()
    assert not hasattr(ex, "n_features_in_") and not hasattr(ex, "estimator_")
    ex.fit(X, y)  # and it fits again
    assert ex.loss().shape == (50,)


def test_solver_params_with_auto_are_refused_before_any_work(binary_data):
    X, y = binary_data

    class Loud(LogisticRegression):
        def fit(self, *a, **k):
            raise AssertionError("fitted before the check")

    with pytest.raises(ValueError, match=r"solver_params=.* needs a named solver"):
        InfluenceExplainer(Loud(), solver_params={"tol": 1e-6}).fit(X, y)
