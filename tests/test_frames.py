"""as_frame=True: the same results as the positional ones, keyed by the caller's rows."""

import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skinfluence import InfluenceExplainer

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(3, 0.5, n),
            "city": rng.choice(["north", "south", "east"], n),
        },
        index=pd.Index([f"id{i:03d}" for i in rng.permutation(n)], name="person"),
    )
    logit = 0.1 * (df["age"] - 40) + 1.0 * (df["city"] == "north") - 0.3
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    pipe = make_pipeline(
        make_column_transformer((StandardScaler(), ["age", "income"]), (OneHotEncoder(), ["city"])),
        LogisticRegression(C=1.0, tol=1e-10, max_iter=2000),
    )
    ex = InfluenceExplainer(pipe).fit(df.iloc[:100], y[:100])
    return ex, df, y


def test_find_mislabeled_frame_is_the_ranking_keyed_by_the_callers_index(table):
    ex, df, y = table
    ranked = ex.find_mislabeled(k=7, method="self_influence")
    frame = ex.find_mislabeled(k=7, method="self_influence", as_frame=True)
    assert list(frame.columns) == ["position", "label", "prediction", "score"]
    assert frame.index.name == "person"
    assert list(frame.index) == list(df.index[:100][ranked])
    np.testing.assert_array_equal(frame["position"], ranked)
    np.testing.assert_array_equal(frame["label"], y[:100][ranked])
    np.testing.assert_array_equal(frame["prediction"], ex.predict(df.iloc[:100])[ranked])
    np.testing.assert_array_equal(frame["score"], ex.self_influence()[ranked])
    assert frame.attrs["method"] == "self_influence"
    # the index finds the caller's own rows
    assert (df.loc[frame.index, "age"].to_numpy() == df["age"].iloc[ranked].to_numpy()).all()


def test_scores_and_self_influence_frames_in_training_order(table):
    ex, df, y = table
    frame = ex.mislabel_scores("loss", as_frame=True)
    assert list(frame.index) == list(df.index[:100])
    np.testing.assert_array_equal(frame["score"], ex.mislabel_scores("loss"))
    np.testing.assert_array_equal(frame["label"], y[:100])
    si = ex.self_influence(as_frame=True)
    np.testing.assert_array_equal(si["self_influence"], ex.self_influence())
    assert list(si.index) == list(df.index[:100])
    # test rows keep their own index
    test = ex.self_influence(df.iloc[100:], y[100:], as_frame=True)
    assert list(test.index) == list(df.index[100:])
    np.testing.assert_array_equal(test["self_influence"], ex.self_influence(df.iloc[100:], y[100:]))
    np.testing.assert_array_equal(test["prediction"], ex.predict(df.iloc[100:]))


def test_positions_label_the_rows_of_an_array_input():
    X, y = make_regression(40, 3, noise=1.0, random_state=0)
    ex = InfluenceExplainer(Ridge()).fit(X, y)
    frame = ex.find_mislabeled(fraction=0.25, method="loss", as_frame=True)
    ranked = ex.find_mislabeled(fraction=0.25, method="loss")
    np.testing.assert_array_equal(frame.index, ranked)
    np.testing.assert_allclose(frame["prediction"], ex.predict(X)[ranked])
    np.testing.assert_allclose(frame["label"], y[ranked])


def test_as_frame_must_be_a_bool(table):
    ex, *_ = table
    with pytest.raises(ValueError, match="as_frame"):
        ex.find_mislabeled(k=3, as_frame="yes")
    with pytest.raises(ValueError, match="as_frame"):
        ex.mislabel_scores("loss", as_frame=1.5)


def test_influence_frame_has_test_rows_by_training_rows(table):
    ex, df, y = table
    frame = ex.influence(df.iloc[100:105], y[100:105], as_frame=True)
    np.testing.assert_array_equal(frame.to_numpy(), ex.influence(df.iloc[100:105], y[100:105]))
    assert list(frame.index) == list(df.index[100:105])
    assert list(frame.columns) == list(df.index[:100])


def test_most_influential_frame_is_the_bunch_keyed_by_training_rows(table):
    ex, df, y = table
    X_test, y_test = df.iloc[100:103], y[100:103]
    res = ex.most_influential(X_test, y_test, k=4)
    frame = ex.most_influential(X_test, y_test, k=4, as_frame=True)
    assert list(frame.columns) == ["test", "kind", "rank", "position", "label", "influence"]
    assert len(frame) == 3 * 2 * 4
    for t, name in enumerate(df.index[100:103]):
        for kind, idx, val in (
            ("helpful", res.helpful_indices, res.helpful_values),
            ("harmful", res.harmful_indices, res.harmful_values),
        ):
            part = frame[(frame["test"] == name) & (frame["kind"] == kind)]
            np.testing.assert_array_equal(part["rank"], np.arange(1, 5))
            np.testing.assert_array_equal(part["position"], idx[t])
            np.testing.assert_array_equal(part["influence"], val[t])
            np.testing.assert_array_equal(part["label"], y[:100][idx[t]])
            assert list(part.index) == list(df.index[:100][idx[t]])
    assert frame.index.name == "person"
    with pytest.raises(ValueError, match="as_frame"):
        ex.most_influential(X_test, y_test, as_frame="no")


def test_several_targets_get_one_label_column_each():
    X, Y = make_regression(40, 3, n_targets=2, noise=1.0, random_state=0)
    ex = InfluenceExplainer(Ridge()).fit(X, Y)
    frame = ex.mislabel_scores("loss", as_frame=True)
    assert list(frame.columns) == ["label_0", "label_1", "prediction_0", "prediction_1", "score"]
    np.testing.assert_array_equal(frame[["label_0", "label_1"]].to_numpy(), Y)
    np.testing.assert_allclose(frame[["prediction_0", "prediction_1"]].to_numpy(), ex.predict(X))
    top = ex.most_influential(X[:2], Y[:2], k=3, as_frame=True)
    np.testing.assert_array_equal(top["label_1"], Y[top["position"], 1])
