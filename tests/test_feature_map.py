"""as_frame on influence_params and perturbation_influence: named parameters, and
derivatives carried back to the caller's own columns (checked against refits)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence.feature_map import to_input_columns

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame(
        {
            "a": rng.normal(3, 2, n),
            "b": rng.normal(-1, 5, n),
            "city": rng.choice(["x", "y", "z"], n),
        },
        index=pd.Index([f"r{i}" for i in rng.permutation(n)], name="row"),
    )
    y = pd.Series(
        (df["a"] - 3 + 0.2 * df["b"] + (df["city"] == "x") + rng.normal(0, 1, n) > 0).astype(int),
        index=df.index,
    )
    df.loc[df.index[5], "b"] = np.nan  # one missing entry, imputed
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"]),
            ("cat", OneHotEncoder(), ["city"]),
        ]
    )
    model = Pipeline(
        [("prep", prep), ("lr", LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-12))]
    )
    return InfluenceExplainer(model).fit(df, y), df, y


def test_influence_params_frame_names_the_pipelines_features(table):
    ex, df, _ = table
    rows = [3, 0, 17]
    frame = ex.influence_params(rows, as_frame=True)
    names = [*ex.estimator_[:-1].get_feature_names_out(), "intercept"]
    assert list(frame.columns) == names
    assert list(frame.index) == list(df.index[rows])
    np.testing.assert_array_equal(frame.to_numpy(), ex.influence_params(rows))


def test_influence_params_frame_multinomial_has_class_by_feature_columns():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(90, 2)), columns=["u", "v"])
    y = np.array(["p", "q", "r"])[np.argmax(X.to_numpy() @ rng.normal(size=(2, 3)), axis=1)]
    ex = InfluenceExplainer(LogisticRegression(C=0.5)).fit(X, y)
    frame = ex.influence_params(as_frame=True)
    assert isinstance(frame.columns, pd.MultiIndex)
    assert list(frame.columns) == [(c, f) for c in "pqr" for f in ("u", "v", "intercept")]
    np.testing.assert_array_equal(frame["q"].to_numpy(), ex.influence_params()[:, 3:6])


def _test_losses(model, X_train, y_train, X_test, y_test):
    proba = model.fit(X_train, y_train).predict_proba(X_test)
    return -np.log(proba[np.arange(len(y_test)), np.asarray(y_test)])


def test_perturbation_per_input_column_matches_refits_with_the_steps_held(table):
    """Move one column of one training row by +-h, refit the model on the same
    feature map (influence holds the leading steps fixed), compare."""
    ex, df, y = table
    X_test, y_test = df.iloc[:4], y.iloc[:4]
    rows = [4, 7, 30]
    frame = ex.perturbation_influence(X_test, y_test, train_indices=rows, as_frame=True)
    assert list(frame.columns) == ["a", "b", "cat__city_x", "cat__city_y", "cat__city_z"]
    assert frame.index.names == ["test", "train"]
    prep, lr = ex.estimator_[:-1], ex.estimator_[-1]
    Z_test = prep.transform(X_test)
    h = 1e-3  # central differences: O(h^2) truncation; newton-cholesky refits are exact
    for i in rows:
        for col in ("a", "b"):
            moved = []
            for step in (h, -h):
                X = df.copy()
                X.iloc[i, df.columns.get_loc(col)] += step
                moved.append(_test_losses(clone(lr), prep.transform(X), y, Z_test, y_test))
            finite_diff = (moved[0] - moved[1]) / (2 * h)
            estimate = ex.removal_weights_[i] * frame.xs(df.index[i], level="train")[col]
            np.testing.assert_allclose(estimate.to_numpy(), finite_diff, rtol=1e-5, atol=1e-10)


def test_perturbation_columns_are_the_chain_rule_of_the_model_features(table):
    ex, df, y = table
    X_test, y_test = df.iloc[:3], y.iloc[:3]
    rows = [4, 5]
    frame = ex.perturbation_influence(X_test, y_test, train_indices=rows, as_frame=True)
    model_level = ex.perturbation_influence(X_test, y_test, train_indices=rows)
    scale = ex.estimator_[0].named_transformers_["num"][-1].scale_
    for t in range(3):
        for r, i in enumerate(rows):
            got = frame.loc[(df.index[t], df.index[i])]
            np.testing.assert_allclose(got["a"], model_level[t, r, 0] / scale[0])
            np.testing.assert_allclose(
                got[["cat__city_x", "cat__city_y", "cat__city_z"]], model_level[t, r, 2:5]
            )
            if i == 5:  # the imputed entry: no derivative
                assert np.isnan(got["b"])
            else:
                np.testing.assert_allclose(got["b"], model_level[t, r, 1] / scale[1])


def test_untraced_steps_keep_their_feature_names():
    """A step with no known derivative (here a Pipeline ending in a OneHotEncoder
    after an imputer) keeps the model's features; MinMaxScaler divides by its range."""
    rng = np.random.default_rng(3)
    n = 80
    X = pd.DataFrame({"s": rng.uniform(0, 10, n), "c": rng.choice(["u", "v"], n)})
    y = (X["s"] + 3 * (X["c"] == "u") + rng.normal(0, 1, n) > 6).astype(int)
    prep = ColumnTransformer(
        [
            ("mm", MinMaxScaler(), ["s"]),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["c"]),
        ]
    )
    ex = InfluenceExplainer(make_pipeline(prep, LogisticRegression())).fit(X, y)
    frame = ex.perturbation_influence(X.iloc[:2], y.iloc[:2], train_indices=[0, 1], as_frame=True)
    assert list(frame.columns) == ["s", "cat__c_u", "cat__c_v"]
    model_level = ex.perturbation_influence(X.iloc[:2], y.iloc[:2], train_indices=[0, 1])
    mm = ex.estimator_[0].named_transformers_["mm"]
    np.testing.assert_allclose(frame["s"].to_numpy(), model_level[:, :, 0].ravel() * mm.scale_[0])


def test_arrays_get_positions_and_x_names():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    ex = InfluenceExplainer(make_pipeline(StandardScaler(), LogisticRegression())).fit(X, y)
    frame = ex.perturbation_influence(X[:2], y[:2], train_indices=[5, 9], as_frame=True)
    assert list(frame.columns) == ["x0", "x1", "x2"]
    assert list(frame.index) == [(0, 5), (0, 9), (1, 5), (1, 9)]
    scale = ex.estimator_[0].scale_
    pert = ex.perturbation_influence(X[:2], y[:2], train_indices=[5, 9])
    np.testing.assert_allclose(frame.to_numpy(), (pert / scale).reshape(4, 3))
    params = ex.influence_params(as_frame=True)
    assert list(params.columns) == ["x0", "x1", "x2", "intercept"]
    # a bare model on a frame: its own column names, no chain to apply
    Xf = pd.DataFrame(X, columns=["p", "q", "r"])
    bare = InfluenceExplainer(FrozenEstimator(LogisticRegression().fit(Xf, y))).fit(Xf, y)
    assert list(bare.influence_params(as_frame=True).columns) == ["p", "q", "r", "intercept"]
    frame = bare.perturbation_influence(Xf[:1], y[:1], train_indices=[0], as_frame=True)
    np.testing.assert_array_equal(
        frame.to_numpy(), bare.perturbation_influence(Xf[:1], y[:1], train_indices=[0])[0]
    )


def test_to_input_columns_sums_features_fed_by_one_column():
    """Two model features made from the same input column add up (a passthrough
    column used twice through a ColumnTransformer)."""
    X = np.arange(12.0).reshape(4, 3)
    ct = ColumnTransformer(
        [("twice", StandardScaler(), [0]), ("again", "passthrough", [0, 2])]
    ).fit(X)
    values = np.random.default_rng(0).normal(size=(2, 4, 3))
    out, names = to_input_columns(ct, X, values, ["f0", "f1", "f2"], ["x0", "x1", "x2"])
    assert names == ["x0", "x2"]
    expected_x0 = values[:, :, 0] / ct.named_transformers_["twice"].scale_[0] + values[:, :, 1]
    np.testing.assert_allclose(out[:, :, 0], expected_x0)
    np.testing.assert_allclose(out[:, :, 1], values[:, :, 2])


def test_as_frame_checked(table):
    ex, df, y = table
    with pytest.raises(ValueError, match="as_frame"):
        ex.influence_params(as_frame="yes")
    with pytest.raises(ValueError, match="as_frame"):
        ex.perturbation_influence(df.iloc[:1], y.iloc[:1], as_frame=1)
