"""Every declared constraint: a bad value is refused before any work, naming the culprit."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceExplainer
from skinfluence.constraints import (
    BOOLEAN,
    NONE,
    RANDOM_STATE,
    InstanceOf,
    Interval,
    InvalidParameterError,
    Options,
    check_param,
    check_params,
    describe,
)
from skinfluence.mislabel import rank_suspects
from skinfluence.solvers import (
    CGSolver,
    DirectSolver,
    EKFACSolver,
    KFACSolver,
    LissaSolver,
    LowRankSolver,
    make_solver,
)


class FitMustNotRun(LogisticRegression):
    """A model whose fit fails loudly: parameter checks must come first."""

    def fit(self, X, y, sample_weight=None):
        raise AssertionError("the model was fitted before the parameters were checked")


# -- the constraint objects ---------------------------------------------------------------
def test_interval_rejects_bools_inf_nan_and_wrong_kind():
    pos_int = Interval("int", 1, None)
    assert pos_int.is_satisfied_by(1) and pos_int.is_satisfied_by(np.int64(3))
    for bad in (0, -1, 1.5, 2.0, True, np.True_, "3", None, np.inf):
        assert not pos_int.is_satisfied_by(bad), bad
    real = Interval("real", 0, None, closed="neither")
    assert real.is_satisfied_by(0.5) and real.is_satisfied_by(3) and real.is_satisfied_by(1e300)
    for bad in (0, -1e-9, np.inf, np.nan, False):
        assert not real.is_satisfied_by(bad), bad
    unit = Interval("real", 0, 1, closed="right")
    assert unit.is_satisfied_by(1) and not unit.is_satisfied_by(0)
    assert str(unit) == "a finite number in (0, 1]"
    assert str(pos_int) == "an int >= 1"


def test_check_param_message_names_owner_parameter_value_and_range():
    with pytest.raises(InvalidParameterError) as e:
        check_param("Thing", "depth", 0, [Interval("int", 1, None), NONE])
    assert str(e.value) == "The 'depth' parameter of Thing must be an int >= 1 or None; got 0."
    assert isinstance(e.value, ValueError) and isinstance(e.value, TypeError)
    with pytest.raises(InvalidParameterError, match=r"unknown parameter\(s\) \['colour'\]"):
        check_params("Thing", {"depth": [NONE]}, {"colour": 1})
    assert describe([Options("a", "b"), BOOLEAN]) == "one of 'a', 'b' or a bool"
    assert check_param("Thing", "rs", np.random.RandomState(0), RANDOM_STATE) is not None
    assert not InstanceOf(int, "an int").is_satisfied_by(True)


# -- the explainer's table ------------------------------------------------------------------
BAD_EXPLAINER = [
    ("damping", -1.0),
    ("damping", np.nan),
    ("damping", np.inf),
    ("damping", True),
    ("damping", "0.1"),
    ("solver", "magic"),
    ("solver", None),
    ("solver_params", [("tol", 1e-6)]),
    ("params", ""),
    ("params", []),
    ("params", ["fc1", 3]),
    ("hessian", "fisher"),
    ("dtype", "float16"),
    ("dtype", np.float32),
    ("device", 0),
    ("matmul_precision", "bf16"),
    ("matmul_precision", None),
    ("hessian_samples", 0),
    ("hessian_samples", -5),
    ("hessian_samples", 10.5),
    ("hessian_samples", True),
    ("batch_size", 0),
    ("batch_size", 2.0),
    ("batch_size", False),
    ("working_memory", 0),
    ("working_memory", -5),
    ("working_memory", np.inf),
    ("copy_X", "yes"),
    ("copy_X", 1),
    ("random_state", -1),
    ("random_state", 1.5),
    ("random_state", "seed"),
    ("verbose", -1),
    ("verbose", 0.5),
    ("polish", "yes"),
    ("polish", 1),
]


@pytest.mark.parametrize("name,value", BAD_EXPLAINER, ids=[f"{n}={v!r}" for n, v in BAD_EXPLAINER])
def test_every_explainer_parameter_is_range_checked_before_fit(binary_data, name, value):
    X, y = binary_data
    assert name in InfluenceExplainer._parameter_table
    ex = InfluenceExplainer(FitMustNotRun(), **{name: value})
    with pytest.raises(InvalidParameterError) as e:
        ex.fit(X, y)
    assert f"'{name}' parameter of InfluenceExplainer" in str(e.value)
    assert repr(value) in str(e.value)


def test_every_declared_explainer_parameter_is_tested():
    tested = {n for n, _ in BAD_EXPLAINER} | {"estimator"}
    assert tested == set(InfluenceExplainer._parameter_table)
    assert set(InfluenceExplainer._parameter_table) == set(
        InfluenceExplainer(LogisticRegression()).get_params(deep=False)
    )


def test_estimator_must_have_fit(binary_data):
    X, y = binary_data
    with pytest.raises(InvalidParameterError, match=r"'estimator' parameter .* an estimator"):
        InfluenceExplainer(estimator="LogisticRegression").fit(X, y)


def test_good_edge_values_are_accepted(binary_data):
    X, y = binary_data
    ex = InfluenceExplainer(
        LogisticRegression(),
        damping=0,
        batch_size=1,
        working_memory=1e-3,
        random_state=np.random.RandomState(0),
        verbose=False,
        copy_X=np.True_,
    ).fit(X[:50], y[:50])
    assert ex.influence(X[:2], y[:2]).shape == (2, 50)


# -- solvers' tables ------------------------------------------------------------------------
BAD_SOLVER_OPTIONS = [
    ("cg", "tol", -1e-3),
    ("cg", "tol", 0.0),
    ("cg", "tol", 1.0),
    ("cg", "tol", np.nan),
    ("cg", "max_iter", 0),
    ("cg", "max_iter", -3),
    ("cg", "max_iter", 10.0),
    ("cg", "preconditioner", "jacobi"),
    ("cg", "preconditioner", 1),
    ("cg", "rank", 0),
    ("cg", "rank", 3.0),
    ("cg", "quadratic_tol", 0.0),
    ("cg", "quadratic_tol", 1.5),
    ("cg", "quadratic_tol", "loose"),
    ("cg", "block_size", 0),
    ("cg", "block_size", 2.5),
    ("lissa", "depth", 0),
    ("lissa", "repeats", 0),
    ("lissa", "batch_size", 0),
    ("lissa", "batch_size", True),
    ("lissa", "scale", 0.0),
    ("lissa", "scale", -2.0),
    ("lissa", "scale", np.inf),
    ("lowrank", "rank", 0),
    ("lowrank", "rank", 2.5),
    ("lowrank", "tol", -1.0),
    ("kfac", "n_samples", 0),
    ("ekfac", "n_samples", 1.5),
]


@pytest.mark.parametrize(
    "solver,option,value",
    BAD_SOLVER_OPTIONS,
    ids=[f"{s}-{o}={v!r}" for s, o, v in BAD_SOLVER_OPTIONS],
)
def test_every_solver_option_is_range_checked_before_fit(binary_data, solver, option, value):
    X, y = binary_data
    ex = InfluenceExplainer(FitMustNotRun(), solver=solver, solver_params={option: value})
    with pytest.raises(InvalidParameterError) as e:
        ex.fit(X, y)
    assert f"'{option}' parameter of" in str(e.value) and f"solver={solver!r}" in str(e.value)
    assert repr(value) in str(e.value)


def test_every_declared_solver_option_is_tested():
    for cls in (CGSolver, LissaSolver, LowRankSolver, DirectSolver, KFACSolver, EKFACSolver):
        own = set(cls._parameter_table) - {"damping", "random_state"}
        tested = {o for s, o, _ in BAD_SOLVER_OPTIONS if s == cls.name}
        assert own == tested, cls.name


@pytest.mark.parametrize("solver", ["direct", "cg", "lissa", "lowrank", "kfac", "ekfac"])
def test_unknown_solver_option_is_named(binary_data, solver):
    X, y = binary_data
    with pytest.raises(InvalidParameterError, match=r"\['tolerance'\]"):
        InfluenceExplainer(FitMustNotRun(), solver=solver, solver_params={"tolerance": 1}).fit(X, y)


def test_solvers_check_their_own_options_when_used_directly():
    with pytest.raises(InvalidParameterError, match="'depth' parameter of LissaSolver"):
        LissaSolver(depth=0).fit(None)
    with pytest.raises(InvalidParameterError, match="'damping' parameter of CGSolver"):
        CGSolver(damping=-1).fit(None)
    with pytest.raises(InvalidParameterError, match="solver_params applies to a solver given"):
        make_solver(CGSolver(), damping=0.0, solver_params={"tol": 1e-3})
    with pytest.raises(InvalidParameterError, match="set the damping on the explainer"):
        make_solver(CGSolver(damping=0.5), damping=0.1)


# -- methods' own parameters ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    return InfluenceExplainer(LogisticRegression()).fit(X, y), X, y


@pytest.mark.parametrize("n_points", [0, -1, 2.5, True])
def test_validate_n_points(fitted, n_points):
    ex, X, y = fitted
    with pytest.raises(InvalidParameterError, match=r"'n_points' parameter of validate"):
        ex.validate(X[:1], y[:1], n_points=n_points)


@pytest.mark.parametrize("refit_steps", [0, -1, 1.5])
def test_validate_refit_steps(fitted, refit_steps):
    ex, X, y = fitted
    with pytest.raises(InvalidParameterError, match=r"'refit_steps' parameter of validate"):
        ex.validate(X[:1], y[:1], refit_steps=refit_steps)


@pytest.mark.parametrize("k", [0, -2, 61, 1.0, True])
def test_most_influential_k(fitted, k):
    ex, X, y = fitted
    with pytest.raises(
        InvalidParameterError, match=r"'k' parameter of most_influential .*\[1, 60\]"
    ):
        ex.most_influential(X[:1], y[:1], k=k)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(k=0), "k"),
        (dict(k=True), "k"),
        (dict(fraction=0), "fraction"),
        (dict(fraction=1.5), "fraction"),
        (dict(fraction=np.nan), "fraction"),
    ],
)
def test_find_mislabeled_cut_is_checked_before_any_refit(fitted, kwargs, name, monkeypatch):
    ex, _, _ = fitted
    monkeypatch.setattr(type(ex), "cross_fitted_losses", lambda *a, **k: pytest.fail("refit"))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of find_mislabeled"):
        ex.find_mislabeled(**kwargs)
    with pytest.raises(ValueError, match="not both"):
        ex.find_mislabeled(k=2, fraction=0.5)
    with pytest.raises(InvalidParameterError, match="'k' parameter of rank_suspects"):
        rank_suspects(np.arange(3.0), k=0)


@pytest.mark.parametrize("cv", [1, 0, 2.0, True])
def test_cv_is_checked_for_every_score(fitted, cv):
    ex, _, _ = fitted
    for method in ("loss", "cv_loss"):
        with pytest.raises(ValueError, match="cv must be an int >= 2"):
            ex.mislabel_scores(method, cv=cv)


def test_unknown_mislabel_method(fitted):
    ex, _, _ = fitted
    with pytest.raises(ValueError, match="Unknown mislabel method 'magic'"):
        ex.mislabel_scores("magic")


def test_indices_mask_and_range(fitted):
    ex, _, _ = fitted
    with pytest.raises(IndexError, match=r"train_indices out of range for 60 points"):
        ex.influence_params([0, 60])
    with pytest.raises(ValueError, match=r"boolean train_indices mask must have shape \(60,\)"):
        ex.influence_params(np.ones(3, bool))
    with pytest.raises(ValueError, match="train_indices must be a boolean mask or a 1-d array"):
        ex.influence_params([0.5, 1.0])
    np.testing.assert_array_equal(
        ex.influence_params(np.arange(60) < 2), ex.influence_params([0, 1])
    )


def test_float64_dtype_spellings_are_accepted():
    table = InfluenceExplainer._parameter_table["dtype"]
    for ok in (None, "float64", np.float64, np.dtype("float64"), "float32", "bfloat16"):
        check_param("InfluenceExplainer", "dtype", ok, table)
    for bad in ("float16", np.float32, np.dtype("float32"), 64):
        with pytest.raises(InvalidParameterError):
            check_param("InfluenceExplainer", "dtype", bad, table)
