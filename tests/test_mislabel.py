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
    calibrated_joint,
    confident_joint,
    estimate_n_errors,
    flag_counts,
    flag_mislabeled,
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


# -- the self-sized flagged set (confident learning) ---------------------------------------
def test_confident_joint_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    # thresholds: class 0 mean(0.9, 0.8, 0.3) = 2/3, class 1 mean(0.8, 0.6, 0.4) = 0.6
    joint, confident = confident_joint(labels, proba)
    # row 2: only class 1 reaches its threshold; row 5 reaches neither (0.6 < 2/3, 0.4 < 0.6)
    np.testing.assert_array_equal(confident, [0, 0, 1, 1, 1, -1])
    np.testing.assert_array_equal(joint, [[2, 1], [0, 2]])
    # calibrated: class 0 keeps 2 of its 3 counted -> 3 * 1/3 = 1 error; class 1 none
    assert estimate_n_errors(labels, proba) == 1
    flagged = flag_mislabeled(labels, proba, -proba[np.arange(6), labels])
    np.testing.assert_array_equal(np.flatnonzero(flagged), [2])


def test_flag_mislabeled_recovers_clear_flips_and_sizes_by_class():
    rng = np.random.default_rng(0)
    n, k = 600, 3
    truth = rng.integers(0, k, n)
    # a confident, correct out-of-sample model: 0.9-0.95 on the true class, above every
    # class threshold (about 0.83: the flips into a class pull its mean down)
    top = rng.uniform(0.9, 0.95, n)
    proba = np.repeat(((1 - top) / (k - 1))[:, None], k, axis=1)
    proba[np.arange(n), truth] = top
    labels = truth.copy()
    flip = rng.choice(n, 60, replace=False)
    labels[flip] = (truth[flip] + 1 + rng.integers(0, k - 1, 60)) % k
    scores = -np.log(proba[np.arange(n), labels])
    flagged = flag_mislabeled(labels, proba, scores)
    # every flipped point is confidently another class, every other one its own
    np.testing.assert_array_equal(np.flatnonzero(flagged), np.sort(flip))
    assert estimate_n_errors(labels, proba) == 60
    # per class: the count for class i is the number of flips *into* label i
    for i in range(k):
        assert flagged[labels == i].sum() == np.sum(labels[flip] == i)


def test_flag_mislabeled_counts_by_noise_rate_and_chooses_by_score():
    labels = np.array([0] * 8 + [1] * 4)
    proba = np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9], [0.3, 0.7], [0.45, 0.55]] + [[0.2, 0.8]] * 4)
    # thresholds: class 0 (4.5 + 0.1 + 0.3 + 0.45) / 8 = 0.66875, class 1 0.8. Rows 0-4
    # are confidently 0, row 5 confidently 1, rows 6 and 7 reach no threshold; rows 8-11
    # are confidently 1
    joint, confident = confident_joint(labels, proba)
    np.testing.assert_array_equal(joint, [[5, 1], [0, 4]])
    np.testing.assert_array_equal(confident, [0] * 5 + [1, -1, -1] + [1] * 4)
    # calibrated to the class counts: [5, 1] * 8 / 6 = [6.67, 1.33] -> [7, 1]; [0, 4]
    np.testing.assert_array_equal(calibrated_joint(joint, [8, 4]), [[7, 1], [0, 4]])
    # cell (0, 1) marks the 1 point of class 0 with the largest p1 - p0: row 5
    np.testing.assert_array_equal(flag_counts(labels, proba), [1, 0])
    # which point of class 0 is flagged is the score's choice among those predicted as
    # class 1 (rows 5, 6, 7); row 0, predicted as its own label, is never taken
    scores = np.zeros(12)
    scores[[0, 7, 5]] = [3.0, 2.0, 1.0]
    np.testing.assert_array_equal(np.flatnonzero(flag_mislabeled(labels, proba, scores)), [7])
    cv_loss = -np.log(proba[np.arange(12), labels])
    np.testing.assert_array_equal(np.flatnonzero(flag_mislabeled(labels, proba, cv_loss)), [5])


def _noise_rate_counts_by_loops(labels, proba):
    """Prune by noise rate written out point by point (an independent construction)."""
    n, k = proba.shape
    members = [[i for i in range(n) if labels[i] == c] for c in range(k)]
    t = [sum(proba[i, c] for i in members[c]) / len(members[c]) for c in range(k)]
    joint = [[0] * k for _ in range(k)]
    for i in range(n):
        reached = [c for c in range(k) if proba[i, c] >= t[c] - 1e-6]
        if reached:
            best = max(range(k), key=lambda c: proba[i, c]) if len(reached) > 1 else reached[0]
            joint[labels[i]][best] += 1
    counts = []
    for c in range(k):
        joint[c][c] = max(joint[c][c], 1)
        row = [x * len(members[c]) / sum(joint[c]) for x in joint[c]]
        cells = [round(x) for x in row]
        while sum(cells) < len(members[c]):  # to the largest rounding loss (no ties here)
            j = max(range(k), key=lambda j: row[j] - cells[j])
            cells[j] += 1
        while sum(cells) > len(members[c]):
            j = min(range(k), key=lambda j: row[j] - cells[j])
            cells[j] -= 1
        marked = set()
        for j in range(k):
            if j != c and cells[j] > 0:
                by_margin = sorted(members[c], key=lambda i: (-(proba[i, j] - proba[i, c]), i))
                marked |= set(by_margin[: cells[j]])
        best_other = {i: max(proba[i, j] for j in range(k) if j != c) for i in marked}
        counts.append(sum(1 for i in marked if best_other[i] > proba[i, c] + 1e-6))
    return counts


def _noisy_proba(k, n=300):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(n, k)) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.where(rng.random(n) < 0.8, proba.argmax(axis=1), rng.integers(0, k, n))
    return labels, proba


@pytest.mark.parametrize("k", [2, 4])
def test_flag_counts_match_prune_by_noise_rate_written_out(k):
    labels, proba = _noisy_proba(k)
    n, rng = len(labels), np.random.default_rng(0)
    counts = flag_counts(labels, proba)
    assert counts.sum() > 0
    np.testing.assert_array_equal(counts, _noise_rate_counts_by_loops(labels, proba))
    scores = rng.random(n)
    flagged = flag_mislabeled(labels, proba, scores)
    np.testing.assert_array_equal(np.bincount(labels[flagged], minlength=k), counts)
    pairs = zip(proba, labels, strict=True)
    other = np.array([np.delete(p, c).max() > p[c] + 1e-6 for p, c in pairs])
    for c in range(k):  # the class's count, its highest scores among those predicted other
        pool = np.flatnonzero((labels == c) & other)
        best = pool[np.argsort(-scores[pool])[: counts[c]]]
        np.testing.assert_array_equal(np.flatnonzero(flagged & (labels == c)), np.sort(best))


@pytest.mark.parametrize("k", [2, 4])
def test_flag_counts_are_cleanlabs(k):
    """The reference implementation, where it is installed (the bench extra)."""
    cleanlab = pytest.importorskip("cleanlab.filter")
    labels, proba = _noisy_proba(k)
    issues = cleanlab.find_label_issues(labels, proba, n_jobs=1)
    np.testing.assert_array_equal(
        np.bincount(labels[issues], minlength=k), flag_counts(labels, proba)
    )


def test_flag_mislabeled_refuses_bad_input():
    with pytest.raises(ValueError, match="class positions"):
        flag_mislabeled(np.array([0, 2]), np.full((2, 2), 0.5), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        flag_mislabeled(np.array([0, 1]), np.full((2, 2), 0.5), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        confident_joint(np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]))


def test_find_mislabeled_sizes_itself_from_the_cross_fitted_probabilities():
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from skinfluence.datasets import flip_labels

    X, y = make_classification(
        n_samples=400,
        n_features=5,
        n_informative=4,
        n_redundant=0,
        class_sep=2.0,
        flip_y=0.0,
        n_clusters_per_class=1,
        random_state=0,
    )
    y_noisy, flipped = flip_labels(y, 0.1, random_state=0)
    model = LogisticRegression(tol=1e-10, max_iter=10000)
    ex = InfluenceExplainer(model, random_state=3).fit(X, y_noisy)
    found = ex.find_mislabeled(method="cv_loss")
    # an independent construction: scikit-learn's own cross-validated probabilities on the
    # same folds, and confident learning's binary rule written out (with two classes and the
    # out-of-sample loss as the score, flag_mislabeled's set is this one)
    folds = StratifiedKFold(5, shuffle=True, random_state=3)
    proba = cross_val_predict(model, X, y_noisy, cv=folds, method="predict_proba")
    own = proba[np.arange(len(y)), y_noisy]
    t = np.array([own[y_noisy == c].mean() for c in (0, 1)])
    confident_other = proba[np.arange(len(y)), 1 - y_noisy] >= t[1 - y_noisy]
    confident_own = own >= t[y_noisy]
    expected = set()
    for c in (0, 1):
        members = np.flatnonzero(y_noisy == c)
        counted = confident_own[members] | confident_other[members]
        # the confident class is the larger probability among those above threshold
        off = confident_other[members] & (~confident_own[members] | (own[members] < 0.5))
        n_wrong = round(len(members) * off.sum() / counted.sum())
        worst = members[np.argsort(own[members], kind="stable")[:n_wrong]]
        expected |= {i for i in worst if proba[i].argmax() != c}
    assert set(found.tolist()) == expected
    # most suspicious first, and it finds flips: precision and recall well above chance
    np.testing.assert_array_equal(
        found, [i for i in ex.find_mislabeled(fraction=1.0, method="cv_loss") if i in expected]
    )
    # 40 flips on well separated classes: measured 35 flagged, all flips, 35 of 40 found
    precision, recall = flipped[found].mean(), flipped[found].sum() / flipped.sum()
    assert precision > 0.9 and recall > 0.8
    frame = ex.find_mislabeled(as_frame=True)
    assert len(frame) == len(ex.find_mislabeled())


def test_find_mislabeled_without_a_cut_needs_a_classifier():
    X, y = make_regression(n_samples=60, n_features=3, noise=1.0, random_state=0)
    ex = InfluenceExplainer(Ridge()).fit(X, y)
    with pytest.raises(ValueError, match="pass k"):
        ex.find_mislabeled()
    assert ex.find_mislabeled(k=5).shape == (5,)
