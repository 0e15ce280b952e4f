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
    w = np.asarray(removal_weights, dtype=float)
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
    return np.array(out, dtype=float)


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
