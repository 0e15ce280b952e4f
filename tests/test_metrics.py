"""Detection metrics on cases small enough to compute by hand."""

import numpy as np
import pytest

from skinfluence.metrics import (
    average_precision,
    detection_auc,
    detection_curve,
    fraction_found,
    roc_auc,
)

# 5 points, 2 flipped (0 and 2). Checking by decreasing score visits 0, 1, 3, 4, 2:
# found after k checked = 0, 1/2, 1/2, 1/2, 1/2, 1.
FLIPPED = np.array([True, False, True, False, False])
SCORES = np.array([0.9, 0.8, 0.1, 0.5, 0.3])


def test_detection_curve_by_hand():
    checked, found = detection_curve(FLIPPED, SCORES)
    np.testing.assert_allclose(checked, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(found, [0, 0.5, 0.5, 0.5, 0.5, 1.0])


def test_detection_curve_ties_are_checked_in_index_order():
    # all scores equal: the order is 0, 1, 2, 3 and the one flip (index 2) is third
    _, found = detection_curve([False, False, True, False], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(found, [0, 0, 0, 1, 1])


def test_detection_curve_accepts_0_1_integers():
    _, found = detection_curve(FLIPPED.astype(int), SCORES)
    np.testing.assert_allclose(found, [0, 0.5, 0.5, 0.5, 0.5, 1.0])


def test_fraction_found_rounds_the_number_checked():
    # 0.2 * 5 = 1 point checked, 0.5 * 5 = 2.5 -> round to 2, 1.0 -> all 5
    np.testing.assert_allclose(
        fraction_found(FLIPPED, SCORES, (0.0, 0.2, 0.5, 1.0)), [0, 0.5, 0.5, 1]
    )


def test_roc_auc_by_hand():
    # flipped scores {0.9, 0.1} against clean {0.8, 0.5, 0.3}: 0.9 beats 3, 0.1 beats 0
    assert roc_auc(FLIPPED, SCORES) == pytest.approx(3 / 6)


def test_roc_auc_counts_ties_as_half():
    # flipped {2, 1} against clean {1, 0}: 2 beats both, 1 beats 0 and ties 1
    assert roc_auc([True, True, False, False], [2.0, 1.0, 1.0, 0.0]) == pytest.approx(3.5 / 4)


def test_average_precision_by_hand():
    # cut after each flip: after rank 1 precision 1/1, after rank 5 precision 2/5
    assert average_precision(FLIPPED, SCORES) == pytest.approx((1 + 2 / 5) / 2)


def test_perfect_and_reversed_rankings():
    flipped = np.array([True, True, False, False, False, False])
    perfect = np.array([6.0, 5, 4, 3, 2, 1])
    assert roc_auc(flipped, perfect) == 1.0
    assert average_precision(flipped, perfect) == 1.0
    assert detection_auc(flipped, perfect) == pytest.approx(1.0)
    assert roc_auc(flipped, -perfect) == 0.0
    # reversed: the flips are found at ranks 5 and 6: AP = (1/5 + 2/6) / 2
    assert average_precision(flipped, -perfect) == pytest.approx((1 / 5 + 2 / 6) / 2)


def test_detection_auc_by_hand():
    # found after 1..5 checked: .5 .5 .5 .5 1 (sum 3); best: .5 1 1 1 1 (sum 4.5)
    assert detection_auc(FLIPPED, SCORES) == pytest.approx(3 / 4.5)
    # first 20% only (1 point): the first point checked is a flip, as good as it gets
    assert detection_auc(FLIPPED, SCORES, max_fraction=0.2) == pytest.approx(1.0)
    # first 40% (2 points): found .5 + .5 against best .5 + 1
    assert detection_auc(FLIPPED, SCORES, max_fraction=0.4) == pytest.approx(1 / 1.5)


def test_detection_auc_of_random_scores_is_the_diagonal():
    rng = np.random.default_rng(0)
    flipped = rng.random(20000) < 0.1
    m, n = flipped.sum(), len(flipped)
    expected = (n + 1) / 2 / (n - (m - 1) / 2)  # sum k/n over sum min(k, m)/m
    assert detection_auc(flipped, rng.random(n)) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("fn", [detection_curve, fraction_found, roc_auc, average_precision])
def test_errors_name_the_problem(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([True, False], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        fn([[True, False]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="marks no point"):
        fn([False, False], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn([True, False], [np.nan, 0.2])
    with pytest.raises(ValueError, match="boolean mask"):
        fn([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="numeric"):
        fn([True, False], ["a", "b"])


@pytest.mark.parametrize("fn", [roc_auc, average_precision])
def test_rank_metrics_need_clean_points(fn):
    with pytest.raises(ValueError, match="every point"):
        fn([True, True], [0.1, 0.2])


def test_bad_fractions():
    with pytest.raises(ValueError, match=r"fractions must lie in \[0, 1\]"):
        fraction_found(FLIPPED, SCORES, (0.1, 1.5))
    with pytest.raises(ValueError, match="max_fraction"):
        detection_auc(FLIPPED, SCORES, max_fraction=0)


def test_inputs_are_not_modified():
    flipped, scores = FLIPPED.copy(), SCORES.copy()
    detection_curve(flipped, scores)
    roc_auc(flipped, scores)
    np.testing.assert_array_equal(flipped, FLIPPED)
    np.testing.assert_array_equal(scores, SCORES)
