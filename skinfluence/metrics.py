"""How well a suspicion ranking finds known mislabeled points."""

import numpy as np


def detection_curve(flipped, scores):
    """Fraction of flipped labels found against fraction of the data checked.

    Points are checked in order of decreasing ``scores`` (Koh & Liang, Figure 6).

    Parameters
    ----------
    flipped : array-like of bool, shape (n_samples,)
        True for the points known to be mislabeled.
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = checked first.

    Returns
    -------
    fraction_checked : ndarray of shape (n_samples + 1,)
        ``k / n`` for ``k = 0 .. n``.
    fraction_found : ndarray of shape (n_samples + 1,)
        Fraction of all flipped points among the first ``k`` checked.
    """
    flipped = np.asarray(flipped, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    if flipped.shape != scores.shape or flipped.ndim != 1:
        raise ValueError(
            f"flipped and scores must be 1-d of the same length, got {flipped.shape} "
            f"and {scores.shape}."
        )
    n_flipped = flipped.sum()
    if n_flipped == 0:
        raise ValueError("flipped marks no point: the detection curve is undefined.")
    order = np.argsort(-scores, kind="stable")
    found = np.concatenate([[0], np.cumsum(flipped[order])])
    return np.arange(len(scores) + 1) / len(scores), found / n_flipped


def fraction_found(flipped, scores, fractions=(0.05, 0.1, 0.2, 0.3)):
    """Fraction of flipped points found after checking each fraction of the data.

    Parameters
    ----------
    flipped : array-like of bool, shape (n_samples,)
        True for the points known to be mislabeled.
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = checked first.
    fractions : sequence of float, default=(0.05, 0.1, 0.2, 0.3)
        Fractions of the data checked (the first ``round(f * n)`` by score).

    Returns
    -------
    found : ndarray of shape (len(fractions),)
        Fraction of flipped points among those checked.
    """
    checked, found = detection_curve(flipped, scores)
    n = len(checked) - 1
    return np.array([found[round(f * n)] for f in fractions])
