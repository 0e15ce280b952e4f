"""Mislabel scores: the approximate leave-one-out loss against real retraining."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceExplainer
from skinfluence.mislabel import (
    AUTO,
    DEFAULT_AUTO,
    METHODS,
    all_mislabel_scores,
    alo_log_loss,
    alo_squared_loss,
    rank_suspects,
    resolve_method,
)

TIGHT = {"tol": 1e-12, "max_iter": 10000}


def _loo_losses(model, X, y, loss):
    out = []
    for i in range(len(y)):
        mask = np.arange(len(y)) != i
        out.append(loss(clone(model).fit(X[mask], y[mask]), X[i : i + 1], y[i]))
    return np.array(out)


def test_alo_loss_is_the_leave_one_out_log_loss_of_binary_logistic_regression():
    X, y = make_classification(
        n_samples=80, n_features=5, n_informative=4, n_redundant=0, flip_y=0.1, random_state=0
    )
    model = LogisticRegression(C=0.5, **TIGHT)
    ex = InfluenceExplainer(model).fit(X, y)
    actual = _loo_losses(model, X, y, lambda m, x, t: -np.log(m.predict_proba(x)[0, t]))
    alo = ex.mislabel_scores("alo_loss")
    first_order = ex.mislabel_scores("loo_loss")
    alo_err = np.abs(alo - actual) / actual
    first_err = np.abs(first_order - actual) / actual
    # one Newton step with the point's own curvature removed: within 2%, and
    # several times closer than the first-order estimate on the hardest points
    assert alo_err.max() < 0.02
    worst = np.argsort(-first_err)[:10]
    assert np.all(alo_err[worst] < first_err[worst] / 3)


def test_alo_loss_is_exact_press_for_ridge():
    X, y = make_regression(n_samples=60, n_features=4, noise=3.0, random_state=0)
    model = Ridge(alpha=2.0)
    ex = InfluenceExplainer(model).fit(X, y)
    actual = _loo_losses(model, X, y, lambda m, x, t: (m.predict(x)[0] - t) ** 2)
    np.testing.assert_allclose(ex.mislabel_scores("alo_loss"), actual, rtol=1e-8)


def test_alo_log_loss_by_hand():
    # q = 1/2 (margin 0), s = 1, w = 0.1: the margin moves by -0.1 / (0.5 - 0.05)
    out = alo_log_loss([np.log(2.0)], [1.0], [0.1])
    assert out[0] == pytest.approx(np.log1p(np.exp(0.1 / 0.45)))
    # a point fitted exactly (zero loss, zero gradient) keeps its zero loss
    assert alo_log_loss([0.0], [0.0], [0.1])[0] == 0.0
    # a Newton step that diverges gives a huge but finite score
    big = alo_log_loss([0.1], [100.0], [0.5])
    assert np.isfinite(big[0]) and big[0] > 1e6


def test_alo_squared_loss_by_hand():
    # r = 2 (L = 4), s = 8, w = 0.1: leverage h = w s / (2 L) = 0.1
    assert alo_squared_loss([4.0], [8.0], [0.1])[0] == pytest.approx(4 / 0.9**2)
    assert alo_squared_loss([0.0], [0.0], [0.1])[0] == 0.0
    with pytest.raises(ValueError, match="same length"):
        alo_squared_loss([1.0, 2.0], [1.0], [0.1, 0.1])


@pytest.fixture(scope="module")
def multiclass():
    X, y = make_classification(
        n_samples=200,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        flip_y=0.1,
        random_state=2,
    )
    return InfluenceExplainer(LogisticRegression(**TIGHT)).fit(X, y)


def test_scores_are_ordered_loss_le_first_order_le_newton(multiclass):
    # convexity of the log-loss in the margin: alo >= loss + w s >= loss
    s = all_mislabel_scores(multiclass)
    assert np.all(s["loo_loss"] >= s["loss"])
    assert np.all(s["alo_loss"] >= s["loo_loss"] * (1 - 1e-12))


def test_all_mislabel_scores_share_the_self_influence(multiclass, monkeypatch):
    from skinfluence import compute

    expected = {
        m: clone(multiclass).fit(*multiclass._fit_inputs[:2]).mislabel_scores(m) for m in METHODS
    }
    ex = clone(multiclass).fit(*multiclass._fit_inputs[:2])
    calls = []
    original = compute.self_influence

    def counting(adapter, *args, **kwargs):
        calls.append(adapter is ex._adapter)  # the fold refits have adapters of their own
        return original(adapter, *args, **kwargs)

    monkeypatch.setattr(compute, "self_influence", counting)
    got = all_mislabel_scores(ex)
    assert sum(calls) == 1  # the training set's self-influence, once for every score
    assert list(got) == list(METHODS)
    for m in METHODS:
        np.testing.assert_array_equal(got[m], expected[m])
    assert list(all_mislabel_scores(multiclass, ["loss", "grad_norm"])) == ["loss", "grad_norm"]
    with pytest.raises(ValueError, match="Unknown mislabel method"):
        all_mislabel_scores(multiclass, ["auto"])


def test_auto_resolves_per_family(multiclass):
    assert resolve_method("auto", "linear") == AUTO["linear"]
    assert resolve_method("auto", "some-new-family") == DEFAULT_AUTO
    assert resolve_method("loss") == "loss"
    np.testing.assert_array_equal(
        multiclass.mislabel_scores("auto"), multiclass.mislabel_scores(AUTO["linear"])
    )
    with pytest.raises(ValueError, match="Unknown mislabel method 'magic'"):
        resolve_method("magic")


def test_rank_suspects():
    scores = np.array([0.5, 2.0, 0.5, 3.0, 1.0])
    np.testing.assert_array_equal(rank_suspects(scores), [3, 1, 4, 0, 2])  # ties: index order
    np.testing.assert_array_equal(rank_suspects(scores, k=2), [3, 1])
    np.testing.assert_array_equal(rank_suspects(scores, k=10), [3, 1, 4, 0, 2])
    np.testing.assert_array_equal(rank_suspects(scores, fraction=0.4), [3, 1])
    np.testing.assert_array_equal(rank_suspects(scores, fraction=0.01), [3])  # at least one
    with pytest.raises(ValueError, match="not both"):
        rank_suspects(scores, k=1, fraction=0.5)
    with pytest.raises(ValueError, match=r"'fraction' parameter of rank_suspects .* \(0, 1\]"):
        rank_suspects(scores, fraction=0)
    with pytest.raises(ValueError, match="'k' parameter of rank_suspects must be an int >= 1"):
        rank_suspects(scores, k=0)
    with pytest.raises(ValueError, match="'k' parameter of rank_suspects must be an int >= 1"):
        rank_suspects(scores, k=1.5)
    with pytest.raises(ValueError, match=r"'k' parameter of rank_suspects .* got True"):
        rank_suspects(scores, k=True)
