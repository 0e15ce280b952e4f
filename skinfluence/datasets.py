"""Small helpers for demos and benchmarks."""

import numbers

import numpy as np
from sklearn.utils import check_random_state


def flip_labels(y, fraction, random_state=None):
    """Flip a fraction of class labels to a different class, chosen at random.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels (any hashable values; at least two classes).
    fraction : float in [0, 1]
        Fraction of samples whose label is changed (rounded to a whole number).
    random_state : int, RandomState instance or None
        Seed for which samples are flipped and to which class.

    Returns
    -------
    y_noisy : ndarray of shape (n_samples,)
        A copy of ``y`` with the flipped labels; ``y`` is not modified.
    flipped : ndarray of bool, shape (n_samples,)
        True where the label was changed.

    Examples
    --------
    >>> from skinfluence.datasets import flip_labels
    >>> y_noisy, flipped = flip_labels([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 0.3, random_state=0)
    >>> int(flipped.sum())
    3
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}.")
    if not (isinstance(fraction, numbers.Real) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("flip_labels needs at least two classes.")
    rng = check_random_state(random_state)
    n_flip = round(fraction * len(y))
    idx = rng.choice(len(y), size=n_flip, replace=False)
    # shift by 1..K-1 classes: always a different class, uniformly among the others
    shift = rng.randint(1, len(classes), size=n_flip)
    new_codes = codes.copy()
    new_codes[idx] = (codes[idx] + shift) % len(classes)
    flipped = np.zeros(len(y), dtype=bool)
    flipped[idx] = True
    return classes[new_codes], flipped
