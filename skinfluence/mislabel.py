"""Mislabel suspicion scores as array math over per-sample quantities.

Each score is one number per training point, higher = more suspicious, made of the
training losses, self-influence, gradient norms and cross-fitted losses that
:data:`NEEDS` lists. The explainer gathers those from its own methods and calls
:func:`score_from_inputs`; nothing here calls back into the explainer, so the
scores serve every model family alike.

Which score wins is measured by ``benchmarks/bench_mislabel.py`` (see the
"Mislabel detection" page of the documentation); ``AUTO`` records the result.
"""

import numpy as np

from skinfluence.constraints import NONE, POSITIVE_INT, Interval, check_param

#: What each score is made of: the per-sample quantities the explainer gathers for it
#: (its training-set ``loss``, ``self_influence``, ``grad_norm`` and ``self_removal``,
#: the Newton-step change of a point's own loss on its removal, see
#: :meth:`InfluenceExplainer.self_removal_effect`; and the ``cross_fitted`` losses of
#: :meth:`InfluenceExplainer.cross_fitted_losses`).
NEEDS = {
    "cv_loss": ("cross_fitted",),
    "cv_alo_loss": ("loss", "self_removal", "cross_fitted"),
    "cv_blend_loss": ("loss", "self_removal", "cross_fitted"),
    "alo_loss": ("loss", "self_removal"),
    "loo_loss": ("loss", "self_influence"),
    "self_influence": ("self_influence",),
    "loss": ("loss",),
    "grad_norm": ("grad_norm",),
}

#: The scores, in the order the documentation lists them.
METHODS = tuple(NEEDS)


def _alo(inputs):
    # the one implementation is skinfluence.removal.self_removal; alo_log_loss and
    # alo_squared_loss below are its closed forms for one output, from scores alone
    return inputs["loss"] + inputs["self_removal"]


def score_from_inputs(method, inputs, *, removal_weights, classifier=True, cv=5):
    """One suspicion score from the per-sample quantities it is made of.

    Parameters
    ----------
    method : str
        A key of :data:`NEEDS` (not "auto": see :func:`resolve_method`).
    inputs : dict
        The quantities ``NEEDS[method]`` names: ``"loss"``, ``"self_influence"``,
        ``"grad_norm"`` (arrays of shape (n_train,)) and ``"cross_fitted"`` (a
        mapping with ``held_out`` and ``fold_loo_mean``), ``"self_removal"``.
    removal_weights : ndarray of shape (n_train,)
        Each point's weight in the mean training objective.
    classifier : bool, default=True
        Kept for compatibility; the leave-one-out scores take the loss family from
        ``inputs["self_removal"]``.
    cv : int, default=5
        Number of fold models behind ``inputs["cross_fitted"]``.

    Returns
    -------
    scores : ndarray of shape (n_train,)
        Higher = more suspicious.
    """
    # lazy inputs (dask arrays, from training data on a cluster) give a lazy score
    lazy = callable(getattr(type(removal_weights), "__dask_graph__", None))
    w = removal_weights if lazy else np.asarray(removal_weights, dtype=float)
    if method in ("loss", "self_influence", "grad_norm"):
        out = inputs[method]
    elif method == "loo_loss":
        # removing point i raises its own loss by about w_i * self_influence_i: the
        # first-order leave-one-out loss, how badly a model without it fits its label
        out = inputs["loss"] + w * inputs["self_influence"]
    elif method == "alo_loss":
        out = _alo(inputs)
    elif method == "cv_loss":
        out = inputs["cross_fitted"]["held_out"]
    elif method in ("cv_alo_loss", "cv_blend_loss"):
        # the full model's estimate joins the fold models' ones: a mean over cv + 1 models
        fold_mean = inputs["cross_fitted"]["fold_loo_mean"]
        out = (cv * fold_mean + _alo(inputs)) / (cv + 1)
        if method == "cv_blend_loss":
            # the training loss is optimistic about a point the model fitted, its
            # leave-one-out losses pessimistic about a correct but atypical point
            out = 0.5 * (inputs["loss"] + out)
    else:
        raise ValueError(f"Unknown mislabel method {method!r}; choose from {sorted(NEEDS)}.")
    return out.astype(float) if lazy else np.array(out, dtype=float)


def alo_log_loss(loss, self_influence, removal_weights):
    """Approximate leave-one-out log-loss from one Newton step (Sherman-Morrison).

    Removing training point ``i`` from the objective ``R`` leaves ``R - w_i L_i``,
    whose Hessian is ``H - w_i H_i``. One Newton step from the fitted parameters
    moves them by ``w_i (H - w_i H_i)^-1 g_i``; unlike the first-order
    (infinitesimal) estimate ``loss + w_i * self_influence`` it takes the point's
    own curvature out of ``H`` and evaluates the log-loss exactly at the moved
    margin, which matters for high-leverage points.

    For binary logistic regression this is the exact one-Newton-step
    leave-one-out loss (Rad & Maleki's approximate leave-one-out), and it needs
    only the loss ``L``, self-influence ``s`` and removal weight ``w`` of the point:
    with ``q = exp(-L)`` the probability of the given label and margin
    ``m = log(q / (1 - q))``, the margin moves by ``-w s / ((1 - q) - w q s)``.
    For a multinomial model (or a net with cross-entropy) it treats the given
    label against the others as one binary margin, an approximation. The
    explainer's ``"alo_loss"`` comes from :func:`skinfluence.removal.self_removal`,
    which moves all ``K`` outputs (the exact one-step leave-one-out loss of a
    multinomial model) and equals this closed form for one output.

    Parameters
    ----------
    loss : array-like of shape (n_samples,)
        Per-sample log-loss ``-log q`` at the fitted parameters.
    self_influence : array-like of shape (n_samples,)
        ``g^T H^-1 g`` of each sample (>= 0).
    removal_weights : array-like of shape (n_samples,)
        Each sample's weight in the mean training objective (``1/n`` unweighted).

    Returns
    -------
    alo : ndarray of shape (n_samples,)
        Approximate leave-one-out log-loss, >= ``loss``. A point whose Newton
        step diverges (the rest of the data cannot hold the fit) gets a very
        large finite value.

    References
    ----------
    Rad, K. R. and Maleki, A. "A scalable estimate of the out-of-sample prediction
    error via approximate leave-one-out cross-validation." JRSS B, 2020.
    """
    L, s, w = _as_float_triplet(loss, self_influence, removal_weights)
    q = np.exp(-L)
    one_minus_q = -np.expm1(-L)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = -L - np.log(one_minus_q)
        den = one_minus_q - w * q * s
        # den > 0 whenever H - w_i H_i is positive definite; floor it otherwise
        den = np.maximum(den, 1e-12 * np.maximum(one_minus_q, np.finfo(float).tiny))
        shift = -w * s / den
        out = np.logaddexp(0.0, -(margin + shift))
    # a perfectly fitted point (q == 1, zero gradient) keeps its loss
    return np.where(one_minus_q > 0, out, L)


def alo_squared_loss(loss, self_influence, removal_weights):
    """Leave-one-out squared error from the hat-matrix identity (PRESS).

    For a squared loss ``L = r^2`` the leverage of a point is
    ``h = w s / (2 L)`` and its leave-one-out residual ``r / (1 - h)``, exact for
    Ridge and LinearRegression. See :func:`alo_log_loss` for the parameters.

    Parameters
    ----------
    loss : array-like of shape (n_samples,)
        Per-sample squared error.
    self_influence : array-like of shape (n_samples,)
        ``g^T H^-1 g`` of each sample (>= 0).
    removal_weights : array-like of shape (n_samples,)
        Each sample's weight in the mean training objective.

    Returns
    -------
    press : ndarray of shape (n_samples,)
        Leave-one-out squared error ``L / (1 - h)^2``.
    """
    L, s, w = _as_float_triplet(loss, self_influence, removal_weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(L > 0, w * s / (2.0 * L), 0.0)
    h = np.minimum(h, 1.0 - 1e-12)
    return L / (1.0 - h) ** 2


def _as_float_triplet(*arrays):
    out = [np.asarray(a, dtype=float) for a in arrays]
    if not out[0].ndim == 1 or any(a.shape != out[0].shape for a in out):
        raise ValueError(
            f"loss, self_influence and removal_weights must be 1-d of the same length, "
            f"got shapes {[a.shape for a in out]}."
        )
    return out


#: Probabilities within this of a class threshold count as reaching it (cleanlab's
#: tolerance, so that the counts below are the reference implementation's).
THRESHOLD_TOLERANCE = 1e-6


def confident_joint(labels, proba):
    """Confident-learning counts of given label against the confidently predicted class.

    With ``t_j`` the mean predicted probability of class ``j`` over the points
    labelled ``j`` (a per-class threshold), a point labelled ``i`` whose predicted
    probability reaches the threshold (less :data:`THRESHOLD_TOLERANCE`) for at
    least one class is counted in row ``i``, column ``j``: that class when it is the
    only one reached, the point's most probable class when several are (as cleanlab's
    ``compute_confident_joint`` counts; Northcutt, Jiang and Chuang, "Confident
    learning", JAIR 2021, eq. 1, takes the most probable of the classes reached).
    Points above no threshold are not counted.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Given labels as class positions ``0 .. n_classes - 1``.
    proba : array-like of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities (e.g. cross-fitted, see
        :meth:`InfluenceExplainer.cross_fitted_losses`).

    Returns
    -------
    joint : ndarray of int, shape (n_classes, n_classes)
        ``joint[i, j]``: points labelled ``i`` that are confidently class ``j``.
    confident : ndarray of int, shape (n_samples,)
        Each point's confident class, ``-1`` where it has none.
    """
    labels, proba = _labels_and_proba(labels, proba)
    k = proba.shape[1]
    thresholds = _class_thresholds(labels, proba)
    confident = confident_classes(proba, thresholds)
    counted = confident >= 0
    joint = np.zeros((k, k), dtype=int)
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    return joint, confident


def _class_thresholds(labels, proba):
    """Each class's mean predicted probability over the points labelled with it
    (``inf`` for a class nobody is labelled with: it is never confident)."""
    k = proba.shape[1]
    sums = np.zeros(k)
    np.add.at(sums, labels, proba[np.arange(len(labels)), labels])
    counts = np.bincount(labels, minlength=k)
    return np.divide(sums, counts, out=np.full(k, np.inf), where=counts > 0)


def confident_classes(proba, thresholds):
    """Each point's confident class (see :func:`confident_joint`), ``-1`` for none.

    Parameters
    ----------
    proba : ndarray or dask array of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities.
    thresholds : ndarray of shape (n_classes,)
        Each class's threshold: its mean predicted probability over the points
        labelled with it (``inf`` for a class nobody is labelled with).

    Returns
    -------
    confident : array of int, shape (n_samples,)
        Of the same kind as ``proba`` (numpy or dask).
    """
    above = proba >= thresholds[None, :] - THRESHOLD_TOLERANCE
    n_above = above.sum(axis=1)
    # np.where dispatches to dask.array.where for dask arrays (__array_function__)
    return np.where(
        n_above > 1, proba.argmax(axis=1), np.where(n_above == 1, above.argmax(axis=1), -1)
    )


def estimate_n_errors(labels, proba):
    """Estimated number of wrong labels: the calibrated confident joint's off-diagonal mass.

    The confident joint (:func:`confident_joint`) counts only the points above
    some threshold; each of its rows is rescaled to the number of points with
    that given label (the calibration of Northcutt et al., eq. 2), and the
    estimate is what falls off the diagonal: ``sum_i n_i * (1 - C[i, i] / C[i, :].sum())``,
    rounded. A class whose points are all below every threshold keeps its points.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Given labels as class positions ``0 .. n_classes - 1``.
    proba : array-like of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities.

    Returns
    -------
    n_errors : int
        Between 0 and ``n_samples``.
    """
    return round(float(_wrong_per_class(*_labels_and_proba(labels, proba)).sum()))


def _wrong_per_class(labels, proba):
    """Each class's estimated number of wrong labels (unrounded), from the calibrated joint."""
    joint, _ = confident_joint(labels, proba)
    return _wrong_per_class_from(joint, np.bincount(labels, minlength=proba.shape[1]))


def _wrong_per_class_from(joint, counts):
    """Each class's estimated number of wrong labels from the joint and the class counts."""
    rows = joint.sum(axis=1)
    kept = np.divide(np.diag(joint), rows, out=np.ones(len(rows)), where=rows > 0)
    return counts * (1.0 - kept)


#: A point whose given label's probability is within this of the largest counts as
#: predicted as its given label (cleanlab's tolerance for the same test).
PREDICTION_TOLERANCE = 1e-6


def calibrated_joint(joint, counts):
    """The confident joint with each row rescaled to its class count, in integers.

    Row ``i`` of ``joint`` (:func:`confident_joint`) is scaled to sum to
    ``counts[i]`` (Northcutt et al., eq. 2) and rounded to integers that keep that
    sum: each cell rounded to nearest, then the cells whose rounding lost the most
    (or, when the row came out too large, gained the most; of equal ones the later
    class) moved by one until the row adds up. The diagonal counts at least one
    first, so a row with no counted point keeps all its points on the diagonal.

    Parameters
    ----------
    joint : ndarray of int, shape (n_classes, n_classes)
        Given label (rows) against confident class (columns).
    counts : ndarray of int, shape (n_classes,)
        The number of points with each given label.

    Returns
    -------
    calibrated : ndarray of int, shape (n_classes, n_classes)
        Rows summing to ``counts``.
    """
    joint = np.array(joint, dtype=float)
    counts = np.asarray(counts)
    # every class keeps at least one point on its diagonal (as cleanlab counts)
    np.fill_diagonal(joint, np.maximum(np.diag(joint), 1.0))
    out = np.zeros(joint.shape, dtype=int)
    for i, row in enumerate(joint):
        total = row.sum()
        exact = row * counts[i] / total
        ints = np.rint(exact)
        short = int(counts[i] - ints.sum())
        gap = exact - ints
        # equal gaps: the later class moves first (the order cleanlab rounds in)
        if short > 0:
            ints[np.argsort(gap, kind="stable")[::-1][:short]] += 1
        elif short < 0:
            ints[np.argsort(-gap, kind="stable")[::-1][:-short]] -= 1
        out[i] = ints.astype(int)
    return out


def predicts_other(labels, proba):
    """Whether the out-of-sample model predicts another class than the given label.

    Another class must beat the given label's probability by more than
    :data:`PREDICTION_TOLERANCE`.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Given labels as class positions ``0 .. n_classes - 1``.
    proba : array-like of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities.

    Returns
    -------
    other : ndarray of bool, shape (n_samples,)
    """
    labels, proba = _labels_and_proba(labels, proba)
    rows = np.arange(len(labels))
    own = proba[rows, labels]
    others = proba.copy()
    others[rows, labels] = -np.inf
    return others.max(axis=1) > own + PREDICTION_TOLERANCE


def flag_counts(labels, proba):
    """How many points of each given label are judged mislabeled (prune by noise rate).

    For each off-diagonal cell ``(i, j)`` of the calibrated confident joint
    (:func:`calibrated_joint`), that many points labelled ``i`` with the largest
    margin ``p_j - p_i`` are marked (ties: the smaller index first); a point marked
    by two cells counts once, and only points the out-of-sample model predicts as
    another class (:func:`predicts_other`) count. This is the number of points per
    class that cleanlab's ``find_label_issues`` (``filter_by="prune_by_noise_rate"``)
    flags on the same probabilities.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Given labels as class positions ``0 .. n_classes - 1``.
    proba : array-like of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities.

    Returns
    -------
    counts : ndarray of int, shape (n_classes,)
    """
    labels, proba = _labels_and_proba(labels, proba)
    return _flag_counts(labels, proba, predicts_other(labels, proba))


def _flag_counts(labels, proba, other):
    k = proba.shape[1]
    class_counts = np.bincount(labels, minlength=k)
    cells = calibrated_joint(confident_joint(labels, proba)[0], class_counts)
    out = np.zeros(k, dtype=int)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        marked = np.zeros(len(members), dtype=bool)
        for j in np.flatnonzero(cells[i] > 0):
            if j != i:
                margin = proba[members, j] - proba[members, i]
                marked[np.argsort(-margin, kind="stable")[: cells[i, j]]] = True
        out[i] = int((marked & other[members]).sum())
    return out


def flag_mislabeled(labels, proba, scores):
    """The points judged mislabeled: a self-sized set, by confident learning.

    Each class ``i`` flags :func:`flag_counts` points: as many as cleanlab's
    ``find_label_issues`` (prune by noise rate) flags among the points labelled
    ``i``, an estimate of how many of them carry a wrong label from the calibrated
    confident joint of the out-of-sample probabilities (Northcutt, Jiang and
    Chuang, "Confident learning", JAIR 2021). The points themselves are chosen by
    ``scores``: the most suspicious points labelled ``i`` among those the
    out-of-sample model predicts as another class (ties: the smaller index first).
    The set is as large as cleanlab's, class by class, so it finds more wrong
    labels exactly when ``scores`` ranks them better than cleanlab's margins; with
    ``scores`` the out-of-sample loss and two classes it is cleanlab's set.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Given labels as class positions ``0 .. n_classes - 1``.
    proba : array-like of shape (n_samples, n_classes)
        Out-of-sample predicted probabilities (the cross-fitted ones of
        :meth:`InfluenceExplainer.cross_fitted_losses`).
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = more suspicious (any of :data:`METHODS`).

    Returns
    -------
    flagged : ndarray of bool, shape (n_samples,)
    """
    labels, proba = _labels_and_proba(labels, proba)
    scores = np.asarray(scores, dtype=float)
    if scores.shape != labels.shape:
        raise ValueError(f"scores must have shape {labels.shape}, got {scores.shape}.")
    other = predicts_other(labels, proba)
    flagged = np.zeros(len(labels), dtype=bool)
    for i, n_flag in enumerate(_flag_counts(labels, proba, other)):
        candidates = np.flatnonzero((labels == i) & other)
        flagged[candidates[np.argsort(-scores[candidates], kind="stable")[:n_flag]]] = True
    return flagged


def _labels_and_proba(labels, proba):
    labels = np.asarray(labels)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or labels.shape != (proba.shape[0],):
        raise ValueError(
            f"labels must have shape (n_samples,) and proba (n_samples, n_classes), got "
            f"{labels.shape} and {proba.shape}."
        )
    out_of_range = labels.size and (labels.min() < 0 or labels.max() >= proba.shape[1])
    if not np.issubdtype(labels.dtype, np.integer) or out_of_range:
        raise ValueError(
            f"labels must be class positions 0 .. {proba.shape[1] - 1} (the columns of proba)."
        )
    if not np.isfinite(proba).all():
        raise ValueError("proba holds NaN or infinite values.")
    return labels, proba


#: What ``method="auto"`` means, per model family: the score with the best fraction of
#: flips found at 10% and 20% checked in the study behind ``benchmarks/bench_mislabel.py``
#: (logistic regression and a memorising MLP on three data sets; see the "Mislabel
#: detection" page of the documentation). The same score won for both families.
AUTO = {"linear": "cv_blend_loss", "torch": "cv_blend_loss"}

#: Used for a family the benchmark has not measured yet.
DEFAULT_AUTO = "cv_blend_loss"


def resolve_method(method, family="linear"):
    """The concrete score name for ``method``, with ``"auto"`` resolved per family.

    Parameters
    ----------
    method : str
        ``"auto"`` or one of ``METHODS``.
    family : str, default="linear"
        The model family (the adapter's ``family_name``).

    Returns
    -------
    name : str
        A key of ``METHODS``.
    """
    if method == "auto":
        method = AUTO.get(family, DEFAULT_AUTO)
    if method not in METHODS:
        raise ValueError(
            f"Unknown mislabel method {method!r}; choose 'auto' or one of {sorted(METHODS)}."
        )
    return method


def auto_method(family):
    """The method ``"auto"`` stands for.

    Parameters
    ----------
    family : str or InfluenceExplainer
        A model family ("linear", "torch"), or a fitted explainer (its
        ``model_family_`` is read).

    Returns
    -------
    name : str
        A key of ``METHODS``.
    """
    if not isinstance(family, str):
        family = getattr(family, "model_family_", "linear")
    return resolve_method("auto", family)


def all_mislabel_scores(explainer, methods=None, cv=5):
    """Several suspicion scores of a fitted explainer at once.

    A convenience over :meth:`InfluenceExplainer.mislabel_scores` (the public
    API): the explainer keeps its training-set losses, self-influence, gradient
    norms and cross-fitted refits, so the scores share that work.

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer.
    methods : sequence of str, default=None
        Names from ``METHODS`` (not ``"auto"``); None means all of them.
    cv : int, default=5
        Number of folds of the cross-fitted (``"cv_*"``) scores.

    Returns
    -------
    scores : dict of str to ndarray of shape (n_train,)
        Suspicion scores by method, in the order asked for.
    """
    methods = list(METHODS) if methods is None else list(methods)
    for name in methods:
        if name not in NEEDS:
            raise ValueError(f"Unknown mislabel method {name!r}; choose from {sorted(NEEDS)}.")
    return {name: explainer.mislabel_scores(name, cv=cv) for name in methods}


def check_cut(k=None, fraction=None, owner="find_mislabeled"):
    """Check ``k`` / ``fraction`` of :func:`rank_suspects` (before any scores are made).

    Parameters
    ----------
    k : int >= 1 or None
        How many to keep.
    fraction : float in (0, 1] or None
        Which fraction to keep.
    owner : str, default="find_mislabeled"
        Whose parameters they are, for the message.
    """
    if k is not None and fraction is not None:
        raise ValueError(f"Pass k or fraction, not both (got k={k!r}, fraction={fraction!r}).")
    check_param(owner, "k", k, [POSITIVE_INT, NONE])
    check_param(owner, "fraction", fraction, [Interval("real", 0, 1, closed="right"), NONE])


def rank_suspects(scores, k=None, fraction=None):
    """Indices sorted by decreasing score, cut to ``k`` or to ``fraction`` of them.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Suspicion scores, higher = more suspicious. Ties keep index order.
    k : int, default=None
        Keep the first ``k`` indices (all of them when ``k`` exceeds the length).
    fraction : float in (0, 1], default=None
        Keep the first ``round(fraction * n_samples)`` indices (at least one).

    Returns
    -------
    indices : ndarray of int
        Most suspicious first.
    """
    scores = np.asarray(scores)
    n = len(scores)
    check_cut(k, fraction, owner="rank_suspects")
    if fraction is not None:
        k = max(1, round(fraction * n))
    order = np.argsort(-scores, kind="stable")
    return order if k is None else order[:k]
