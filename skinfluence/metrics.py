"""How well a suspicion ranking finds known mislabeled points.

Every function takes ``flipped`` (True for the points known to be mislabeled, e.g.
from :func:`skinfluence.datasets.flip_labels`) and ``scores`` (higher = more
suspicious, e.g. :meth:`InfluenceExplainer.mislabel_scores`).
"""

import numbers

import numpy as np


def _check_flipped_scores(flipped, scores, *, need_both=False):
    """Validate and convert ``(flipped, scores)``; name the problem when they are wrong."""
    flipped = np.asarray(flipped)
    scores = np.asarray(scores)
    if flipped.ndim != 1 or scores.ndim != 1 or flipped.shape != scores.shape:
        raise ValueError(
            f"flipped and scores must be 1-d of the same length, got {flipped.shape} "
            f"and {scores.shape}."
        )
    if flipped.dtype != bool:
        if not (np.issubdtype(flipped.dtype, np.number) and np.isin(flipped, (0, 1)).all()):
            raise ValueError(
                "flipped must be a boolean mask (or 0/1), True for the mislabeled points; "
                f"got values {np.unique(flipped)[:5].tolist()}."
            )
        flipped = flipped.astype(bool)
    try:
        scores = scores.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}.") from exc
    if not np.isfinite(scores).all():
        raise ValueError(f"scores contain {np.sum(~np.isfinite(scores))} NaN or infinite values.")
    n_flipped = int(flipped.sum())
    if n_flipped == 0:
        raise ValueError("flipped marks no point: the detection curve is undefined.")
    if need_both and n_flipped == len(flipped):
        raise ValueError("flipped marks every point: a ranking has nothing to separate.")
    return flipped, scores


def detection_curve(flipped, scores):
    """Fraction of flipped labels found against fraction of the data checked.

    Points are checked in order of decreasing ``scores`` (Koh & Liang, Figure 6);
    ties are checked in index order.

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

    Examples
    --------
    >>> from skinfluence.metrics import detection_curve
    >>> checked, found = detection_curve([True, False, True, False], [0.9, 0.8, 0.1, 0.5])
    >>> found.tolist()
    [0.0, 0.5, 0.5, 0.5, 1.0]
    """
    flipped, scores = _check_flipped_scores(flipped, scores)
    order = np.argsort(-scores, kind="stable")
    found = np.concatenate([[0], np.cumsum(flipped[order])])
    return np.arange(len(scores) + 1) / len(scores), found / flipped.sum()


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
    fractions = np.atleast_1d(np.asarray(fractions, dtype=float))
    if fractions.ndim != 1 or not ((fractions >= 0) & (fractions <= 1)).all():
        raise ValueError(f"fractions must lie in [0, 1], got {fractions.tolist()}.")
    checked, found = detection_curve(flipped, scores)
    n = len(checked) - 1
    return np.array([found[round(f * n)] for f in fractions])


def detection_auc(flipped, scores, max_fraction=1.0):
    """Area under the detection curve, normalised so that a perfect ranking scores 1.

    The curve is integrated (step-wise, as it is drawn point by point) from 0 to
    ``max_fraction`` of the data checked and divided by the area under the best
    possible curve on the same range, which finds one flip per point checked
    until all are found. Checking in random order scores the area under the
    diagonal over that of the best curve (about 0.53 over the whole range when 10%
    of the points are flipped).

    Parameters
    ----------
    flipped : array-like of bool, shape (n_samples,)
        True for the points known to be mislabeled.
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = checked first.
    max_fraction : float in (0, 1], default=1.0
        Integrate over the first ``max_fraction`` of the data checked only (e.g. 0.2
        when only the top of the ranking will ever be looked at).

    Returns
    -------
    auc : float
        In [0, 1]; 1 for a ranking that puts every flipped point first.
    """
    if not (isinstance(max_fraction, numbers.Real) and 0 < max_fraction <= 1):
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction!r}.")
    flipped, scores = _check_flipped_scores(flipped, scores)
    _, found = detection_curve(flipped, scores)
    n = len(scores)
    k = max(1, round(max_fraction * n))
    best = np.minimum(np.arange(n + 1), flipped.sum()) / flipped.sum()
    # right-endpoint sums: the value after checking 1, 2, ..., k points
    return float(found[1 : k + 1].sum() / best[1 : k + 1].sum())


def roc_auc(flipped, scores):
    """ROC AUC of a suspicion score at separating flipped from clean points.

    The probability that a random flipped point scores higher than a random clean
    one (ties count one half): 0.5 is chance, 1 a perfect ranking. A thin,
    validating wrapper over :func:`sklearn.metrics.roc_auc_score`.

    Parameters
    ----------
    flipped : array-like of bool, shape (n_samples,)
        True for the points known to be mislabeled; needs both kinds.
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = more suspicious.

    Returns
    -------
    auc : float
        Area under the ROC curve.
    """
    from sklearn.metrics import roc_auc_score

    flipped, scores = _check_flipped_scores(flipped, scores, need_both=True)
    return float(roc_auc_score(flipped, scores))


def average_precision(flipped, scores):
    """Average precision of a suspicion score at finding the flipped points.

    The mean, over the flipped points, of the precision of the ranking cut just
    after each of them (the area under the precision-recall curve, without
    interpolation); equal to the fraction flipped for a random ranking and to 1
    for a perfect one. A thin, validating wrapper over
    :func:`sklearn.metrics.average_precision_score`.

    Parameters
    ----------
    flipped : array-like of bool, shape (n_samples,)
        True for the points known to be mislabeled; needs both kinds.
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = more suspicious.

    Returns
    -------
    ap : float
        Average precision.
    """
    from sklearn.metrics import average_precision_score

    flipped, scores = _check_flipped_scores(flipped, scores, need_both=True)
    return float(average_precision_score(flipped, scores))
