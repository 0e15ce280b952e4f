"""flip_labels: deterministic, exact, always a different class, input untouched."""

import numpy as np
import pytest

from skinfluence.datasets import flip_labels


def test_same_seed_same_flips_and_other_seed_other_flips():
    y = np.repeat(np.arange(4), 50)
    a, ma = flip_labels(y, 0.2, random_state=3)
    b, mb = flip_labels(y, 0.2, random_state=3)
    c, mc = flip_labels(y, 0.2, random_state=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(ma, mc)


def test_random_state_instance_is_used():
    y = np.repeat([0, 1], 50)
    a, _ = flip_labels(y, 0.3, random_state=np.random.RandomState(7))
    b, _ = flip_labels(y, 0.3, random_state=7)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("n", "fraction", "expected"), [(200, 0.1, 20), (7, 0.5, 4), (10, 0, 0), (10, 1, 10)]
)
def test_exact_number_flipped(n, fraction, expected):
    y = np.arange(n) % 3
    y_noisy, flipped = flip_labels(y, fraction, random_state=0)
    assert flipped.dtype == bool and flipped.shape == (n,)
    assert flipped.sum() == expected
    # the mask is exactly where the labels changed
    np.testing.assert_array_equal(flipped, y_noisy != y)


def test_every_flipped_label_is_another_existing_class():
    y = np.array(["cat", "dog", "bird"] * 40)
    y_noisy, flipped = flip_labels(y, 1.0, random_state=1)
    assert flipped.all()
    assert (y_noisy != y).all()
    assert set(y_noisy) <= {"cat", "dog", "bird"}
    # with three classes both other classes are used
    assert len(set(y_noisy[y == "cat"])) == 2


def test_binary_flips_swap_the_two_classes():
    y = np.array([0, 1] * 30)
    y_noisy, flipped = flip_labels(y, 0.5, random_state=2)
    np.testing.assert_array_equal(y_noisy[flipped], 1 - y[flipped])
    np.testing.assert_array_equal(y_noisy[~flipped], y[~flipped])


def test_y_is_not_modified_and_dtype_is_kept():
    y = np.array([3, 1, 2, 3, 1, 2, 3, 1])
    original = y.copy()
    y_noisy, _ = flip_labels(y, 0.5, random_state=0)
    np.testing.assert_array_equal(y, original)
    assert y_noisy is not y and y_noisy.dtype == y.dtype
    y_list = [0, 1, 0, 1]
    flip_labels(y_list, 0.5, random_state=0)
    assert y_list == [0, 1, 0, 1]


def test_errors():
    with pytest.raises(ValueError, match="fraction must be in"):
        flip_labels([0, 1], 1.5)
    with pytest.raises(ValueError, match="fraction must be in"):
        flip_labels([0, 1], -0.1)
    with pytest.raises(ValueError, match="at least two classes"):
        flip_labels([1, 1, 1], 0.5)
    with pytest.raises(ValueError, match="one-dimensional"):
        flip_labels([[0, 1], [1, 0]], 0.5)


def test_fraction_must_be_a_number():
    with pytest.raises(ValueError, match="fraction must be in"):
        flip_labels([0, 1], "0.5")
