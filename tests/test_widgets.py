"""InfluenceExplorer: its tables checked against the explainer and independent refits."""

import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skinfluence import InfluenceExplainer

pytest.importorskip("ipywidgets")
pd = pytest.importorskip("pandas")

from skinfluence.widgets import InfluenceExplorer  # noqa: E402

K = 3
N_SUSPECTS = 6


def _frame_data():
    X, y = make_classification(
        n_samples=80, n_features=3, n_informative=3, n_redundant=0, flip_y=0.1, random_state=0
    )
    rng = np.random.default_rng(0)
    colour = np.where(X[:, 0] + rng.normal(scale=1.0, size=80) > 0, "red", "blue")
    colour[rng.choice(80, 10, replace=False)] = "green"
    labels = np.array([f"r{p}" for p in rng.permutation(80)])  # permuted string labels
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "colour": colour}, index=labels)
    y = pd.Series(np.where(y == 1, "yes", "no"), index=labels, name="target")
    return df.iloc[:60], y.iloc[:60], df.iloc[60:], y.iloc[60:]


@pytest.fixture(scope="module")
def frame_case():
    X_train, y_train, X_test, y_test = _frame_data()
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["a", "b", "c"]), ("cat", OneHotEncoder(), ["colour"])]
    )
    ex = InfluenceExplainer(make_pipeline(pre, LogisticRegression())).fit(X_train, y_train)
    explorer = InfluenceExplorer(ex, X_test, y_test, k=K, n_suspects=N_SUSPECTS)
    return ex, explorer, X_train, y_train, X_test, y_test


@pytest.fixture(scope="module")
def array_case():
    X, y = make_classification(
        n_samples=75, n_features=4, n_informative=3, n_redundant=0, flip_y=0.1, random_state=3
    )
    X_train, y_train, X_test, y_test = X[:60], y[:60], X[60:], y[60:]
    ex = InfluenceExplainer(LogisticRegression()).fit(X_train, y_train)
    explorer = InfluenceExplorer(ex, X_test, y_test, k=K, n_suspects=N_SUSPECTS)
    return ex, explorer, X_train, y_train, X_test, y_test


def _iloc(a, positions):
    return a.iloc[positions] if hasattr(a, "iloc") else np.asarray(a)[positions]


def _labels(a, positions):
    """Row labels: a pandas object's index, else the positions."""
    return a.index[positions] if hasattr(a, "index") else pd.Index(positions)


def _output_text(output):
    return "".join(str(o["data"]) for o in output.outputs)


# -- Test point tab ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["frame_case", "array_case"])
def test_test_tables_match_most_influential(case, request):
    ex, explorer, X_train, y_train, X_test, y_test = request.getfixturevalue(case)
    full = ex.influence(X_test, y_test)  # independent: the whole matrix, sorted here
    for t in (0, 4, len(y_test) - 1):
        label = _labels(X_test, [t])[0]
        tables = explorer.test_tables(label)
        ref = ex.most_influential(_iloc(X_test, [t]), _iloc(y_test, [t]), k=K)
        for kind, idx, val, order in (
            ("helpful", ref.helpful_indices[0], ref.helpful_values[0], np.sort(full[t])[:K]),
            ("harmful", ref.harmful_indices[0], ref.harmful_values[0], np.sort(full[t])[::-1][:K]),
        ):
            table = tables[kind]
            assert table.index.equals(_labels(X_train, idx))  # same rows, same order
            np.testing.assert_array_equal(table["position"], idx)
            np.testing.assert_allclose(table["influence"], val, rtol=1e-12)
            np.testing.assert_allclose(table["influence"], order, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(table["influence"], full[t, idx], rtol=1e-8, atol=1e-12)
            np.testing.assert_array_equal(table["label"], np.asarray(y_train)[idx])
            if hasattr(X_train, "iloc"):
                pd.testing.assert_frame_equal(table[list(X_train.columns)], X_train.iloc[idx])
            else:
                cols = [f"x{j}" for j in range(X_train.shape[1])]
                assert list(table.columns) == ["position", "label", "influence", *cols]
                np.testing.assert_array_equal(table[cols].to_numpy(), X_train[idx])
        test = tables.test
        assert test.index.tolist() == [label]
        assert test["label"].iloc[0] == np.asarray(y_test)[t]
        assert test["prediction"].iloc[0] == ex.predict(_iloc(X_test, [t]))[0]
        np.testing.assert_allclose(test["loss"].iloc[0], ex.loss(X_test, y_test)[t])
        if hasattr(X_test, "iloc"):
            pd.testing.assert_frame_equal(test[list(X_test.columns)], X_test.iloc[[t]])
        else:
            np.testing.assert_array_equal(test.iloc[0, -X_test.shape[1] :], X_test[t])


def test_test_tables_are_copies(frame_case):
    _, explorer, _, _, X_test, _ = frame_case
    label = X_test.index[1]
    tables = explorer.test_tables(label)
    tables.helpful["influence"] = 0.0
    tables.test.loc[:, "loss"] = -1.0
    assert (explorer.test_tables(label).helpful["influence"] != 0).all()
    assert (explorer.test_tables(label).test["loss"] > 0).all()


def test_dropdown_options_name_the_rows(frame_case, array_case):
    ex, explorer, _, _, X_test, y_test = frame_case
    options = explorer._test_dropdown.options
    assert [value for _, value in options] == list(range(len(X_test)))
    pred = ex.predict(X_test)
    for (text, _), label, true, p in zip(options, X_test.index, y_test, pred, strict=True):
        assert text.startswith(f"{label}:") and true in text and p in text
    _, explorer, _, _, X_test, _ = array_case
    assert [text.split(":")[0] for text, _ in explorer._test_dropdown.options] == [
        str(p) for p in range(len(X_test))
    ]


# -- Suspects tab --------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["frame_case", "array_case"])
def test_suspect_details_match_explainer(case, request):
    ex, explorer, X_train, y_train, X_test, y_test = request.getfixturevalue(case)
    suspects = ex.find_mislabeled(k=N_SUSPECTS, as_frame=True)
    pd.testing.assert_frame_equal(explorer.suspects_, suspects)
    assert [v for _, v in explorer._suspect_dropdown.options] == suspects["position"].tolist()
    loss = ex.loss()
    held_out = ex.cross_fitted_losses().held_out
    scores = ex.mislabel_scores()
    full = ex.influence(X_test, y_test)
    for rank, (label, pos) in enumerate(suspects["position"].items(), 1):
        d = explorer.suspect_details(label)
        assert d.row == label and d.position == pos and d.rank == rank
        assert d.label == np.asarray(y_train)[pos]
        assert d.prediction == suspects["prediction"].iloc[rank - 1]
        assert d.loss == pytest.approx(loss[pos], rel=1e-12)
        assert d.probability == pytest.approx(np.exp(-loss[pos]), rel=1e-12)
        assert d.cv_probability == pytest.approx(np.exp(-held_out[pos]), rel=1e-12)
        assert d.score == pytest.approx(scores[pos], rel=1e-12)
        column = full[:, pos]
        order = np.argsort(-np.abs(column), kind="stable")[:K]
        np.testing.assert_allclose(d.moved["influence"], column[order], rtol=1e-8, atol=1e-12)
        assert np.all(np.diff(np.abs(d.moved["influence"].to_numpy())) <= 0)
        assert d.moved.index.equals(_labels(X_test, order))
        np.testing.assert_array_equal(d.moved["label"], np.asarray(y_test)[order])
        np.testing.assert_array_equal(d.moved["prediction"], ex.predict(X_test)[order])
    assert explorer._influence_matrix is not None  # computed once, kept
    kept = explorer._influence_matrix
    explorer.suspect_details(suspects.index[0])
    assert explorer._influence_matrix is kept


def test_probabilities_against_independent_refits(frame_case):
    """exp(-loss) and exp(-held_out) are the probabilities refitted models give the label."""
    ex, explorer, X_train, y_train, _, _ = frame_case
    proba = ex.predict_proba(X_train)
    own = proba[np.arange(len(y_train)), np.searchsorted(ex.classes_, y_train)]
    held = np.empty(len(y_train))
    # the fold refits' optimum, solved exactly (Newton); the explainer's folds run the
    # model's own L-BFGS at tol=1e-4 (from the full model's coefficients), which stops
    # within about 1e-3 of it (a cold start: 1.2e-3 on this data)
    exact = clone(ex.estimator).set_params(
        logisticregression__solver="newton-cholesky", logisticregression__tol=1e-14
    )
    for fit_idx, out_idx in StratifiedKFold(5).split(X_train, y_train):
        model = clone(exact).fit(X_train.iloc[fit_idx], y_train.iloc[fit_idx])
        p = model.predict_proba(X_train.iloc[out_idx])
        held[out_idx] = p[
            np.arange(len(out_idx)), np.searchsorted(model.classes_, y_train.iloc[out_idx])
        ]
    for label in explorer.suspects_.index[:3]:
        d = explorer.suspect_details(label)
        assert d.probability == pytest.approx(own[d.position], rel=1e-6)
        assert d.cv_probability == pytest.approx(held[d.position], rel=2e-3)
        assert d.held_out_note is None


def test_suspect_details_any_training_row(array_case):
    ex, explorer, _, _, _, _ = array_case
    ranked = ex.find_mislabeled(fraction=1.0)
    outsider = int(ranked[-1])  # the least suspicious row
    d = explorer.suspect_details(outsider)
    assert d.rank is None and d.position == outsider
    assert d.loss == pytest.approx(ex.loss()[outsider])
    with pytest.raises(KeyError, match="not one of the 6 suspects"):
        explorer.select_suspect(outsider)


def test_regressor_has_no_probabilities():
    X, y = make_regression(n_samples=50, n_features=3, noise=1.0, random_state=0)
    ex = InfluenceExplainer(Ridge()).fit(X[:40], y[:40])
    explorer = InfluenceExplorer(ex, X[40:], y[40:], k=2, n_suspects=3, method="loss")
    d = explorer.suspect_details(int(explorer.suspects_.index[0]))
    assert d.probability is None and d.cv_probability is None
    assert d.held_out_loss == pytest.approx(ex.cross_fitted_losses().held_out[d.position])
    explorer.select_suspect(int(explorer.suspects_.index[1]))
    assert "Cross-fitted loss" in _output_text(explorer._suspect_output)


# -- the widget ----------------------------------------------------------------------------
def test_select_test_updates_dropdown_and_output(frame_case):
    _, explorer, _, _, X_test, _ = frame_case
    first, other = X_test.index[0], X_test.index[5]
    explorer.select_test(first)
    before = _output_text(explorer._test_output)
    assert f"Test row {first}" in before
    explorer.select_test(other)
    assert explorer._test_dropdown.value == 5
    after = _output_text(explorer._test_output)
    assert f"Test row {other}" in after and after != before
    harmful = explorer.test_tables(other).harmful
    assert all(str(label) in after for label in harmful.index)  # the table drawn is the data
    explorer._test_dropdown.value = 2  # as a click would
    assert f"Test row {X_test.index[2]}" in _output_text(explorer._test_output)
    with pytest.raises(KeyError, match="not one of the test rows"):
        explorer.select_test("nope")


def test_select_suspect_updates_dropdown_and_output(frame_case):
    _, explorer, _, _, _, _ = frame_case
    first, other = explorer.suspects_.index[0], explorer.suspects_.index[3]
    explorer.select_suspect(first)
    before = _output_text(explorer._suspect_output)
    assert f"Training row {first}" in before
    assert "when it did not see the row" in before
    explorer.select_suspect(other)
    assert explorer._suspect_dropdown.value == explorer.suspects_["position"].iloc[3]
    after = _output_text(explorer._suspect_output)
    assert f"Training row {other}" in after and after != before
    moved = explorer.suspect_details(other).moved
    assert all(str(label) in after for label in moved.index)


def test_suspects_tab_drawn_when_shown(array_case):
    ex, _, _, _, X_test, y_test = array_case
    explorer = InfluenceExplorer(ex, X_test, y_test, k=2, n_suspects=4)
    assert explorer._suspect_output.outputs == ()  # nothing computed before it is shown
    explorer.widget.selected_index = 1
    assert "Training row" in _output_text(explorer._suspect_output)


def test_widget_and_display(array_case):
    _, explorer, _, _, _, _ = array_case
    import ipywidgets

    assert isinstance(explorer.widget, ipywidgets.Tab)
    assert explorer.widget.titles == ("Test point", "Suspects")
    bundle = explorer._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id
    assert "InfluenceExplorer(n_test=15" in repr(explorer)


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "'k' parameter"),
        ({"k": 61}, "'k' parameter"),
        ({"k": 2.0}, "'k' parameter"),
        ({"k": True}, "'k' parameter"),
        ({"n_suspects": 0}, "'n_suspects' parameter"),
        ({"n_suspects": 61}, "'n_suspects' parameter"),
    ],
)
def test_bad_parameters(array_case, kwargs, match):
    ex, _, _, _, X_test, y_test = array_case
    with pytest.raises(ValueError, match=match):
        InfluenceExplorer(ex, X_test, y_test, **kwargs)


def test_bad_inputs(array_case):
    ex, _, _, _, X_test, y_test = array_case
    with pytest.raises(ValueError, match="X_test has 15 rows, y_test has 14"):
        InfluenceExplorer(ex, X_test, y_test[:-1])
    with pytest.raises(ValueError, match="X_test has no rows"):
        InfluenceExplorer(ex, X_test[:0], y_test[:0])
    with pytest.raises(NotFittedError):
        InfluenceExplorer(InfluenceExplainer(LogisticRegression()), X_test, y_test)
    with pytest.raises(TypeError, match="fitted InfluenceExplainer"):
        InfluenceExplorer(LogisticRegression().fit(X_test, y_test), X_test, y_test)
    with pytest.raises(ValueError, match="method"):
        InfluenceExplorer(ex, X_test, y_test, method="nonsense")


def test_missing_ipywidgets_is_named(array_case, monkeypatch):
    ex, _, _, _, X_test, y_test = array_case
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        InfluenceExplorer(ex, X_test, y_test)


def test_cross_fitted_unavailable_is_explained(array_case):
    """Fit parameters cannot be split into folds: the view says so instead of failing."""
    _, _, X_train, y_train, X_test, y_test = array_case
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y_train))
    ex = InfluenceExplainer(make_pipeline(StandardScaler(), LogisticRegression()))
    ex.fit(X_train, y_train, standardscaler__sample_weight=w)
    explorer = InfluenceExplorer(ex, X_test, y_test, k=2, n_suspects=3, method="loss")
    label = int(explorer.suspects_.index[0])
    d = explorer.suspect_details(label)
    assert d.cv_probability is None and d.held_out_loss is None
    assert "fit parameters" in d.held_out_note
    assert d.score == pytest.approx(ex.loss()[label])  # method="loss"
    explorer.select_suspect(label)
    assert "not available" in _output_text(explorer._suspect_output)
