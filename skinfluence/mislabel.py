"""Mislabel suspicion scores built on a fitted explainer's per-sample quantities.

Each score is one number per training point, higher = more suspicious. They use
only the explainer's public methods and attributes (``loss``, ``self_influence``,
``gradient_norms``, ``removal_weights_``, ``classes_`` and, for the cross-fitted
``cv_*`` scores, ``cross_fitted_losses``), so they serve every model family the
explainer supports.

Which score wins is measured by ``benchmarks/bench_mislabel.py`` (see the
"Mislabel detection" page of the documentation); ``AUTO`` records the result.
"""

import numbers

import numpy as np

_QUANTITIES = {
    "loss": lambda ex: ex.loss(),
    "self_influence": lambda ex: ex.self_influence(),
    "grad_norm": lambda ex: ex.gradient_norms(),
}


def _get(ex, cache, name):
    """A per-sample quantity of ``ex``, computed once per ``cache``."""
    if name not in cache:
        cache[name] = np.asarray(_QUANTITIES[name](ex), dtype=float)
    return cache[name]


def _loo_loss(ex, cache):
    # Removing point i raises its own loss by about w_i * self_influence_i, so this
    # is the first-order leave-one-out loss of the point: how badly a model that
    # never saw it would fit its label.
    return _get(ex, cache, "loss") + ex.removal_weights_ * _get(ex, cache, "self_influence")


def _alo_loss(ex, cache):
    loss, s = _get(ex, cache, "loss"), _get(ex, cache, "self_influence")
    if ex.classes_ is None:
        return alo_squared_loss(loss, s, ex.removal_weights_)
    return alo_log_loss(loss, s, ex.removal_weights_)


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
    label against the others as one binary margin, an approximation.

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


def _cross_fitted(ex, cache):
    if "cross_fitted" not in cache:
        cache["cross_fitted"] = ex.cross_fitted_losses(cv=cache.get("cv", 5))
    return cache["cross_fitted"]


def _cv_alo_loss(ex, cache):
    # the full model's estimate joins the fold models' ones: a mean over cv + 1 models
    cv = cache.get("cv", 5)
    fold_mean = _cross_fitted(ex, cache).fold_loo_mean
    return (cv * fold_mean + _alo_loss(ex, cache)) / (cv + 1)


def _cv_blend_loss(ex, cache):
    # the training loss is optimistic about a point the model fitted, its held-out
    # and leave-one-out losses pessimistic about a correct but atypical point
    return 0.5 * (_get(ex, cache, "loss") + _cv_alo_loss(ex, cache))


METHODS = {
    "cv_loss": lambda ex, cache: _cross_fitted(ex, cache).held_out,
    "cv_alo_loss": _cv_alo_loss,
    "cv_blend_loss": _cv_blend_loss,
    "alo_loss": _alo_loss,
    "loo_loss": _loo_loss,
    "self_influence": lambda ex, cache: _get(ex, cache, "self_influence"),
    "loss": lambda ex, cache: _get(ex, cache, "loss"),
    "grad_norm": lambda ex, cache: _get(ex, cache, "grad_norm"),
}

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


def auto_method(explainer):
    """The method ``"auto"`` stands for on a fitted explainer.

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer.

    Returns
    -------
    name : str
        A key of ``METHODS``.
    """
    return resolve_method("auto", getattr(explainer, "model_family_", "linear"))


def mislabel_scores(explainer, method="auto", family="linear", cv=5):
    """One suspicion score per training point of a fitted explainer (higher = worse).

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer.
    method : str, default="auto"
        ``"auto"`` or one of ``METHODS``: ``"alo_loss"`` (approximate
        leave-one-out loss, :func:`alo_log_loss`), ``"loo_loss"`` (first-order
        leave-one-out loss), ``"self_influence"``, ``"loss"``, ``"grad_norm"``,
        and the cross-fitted ``"cv_loss"``, ``"cv_alo_loss"`` and
        ``"cv_blend_loss"`` (see :meth:`InfluenceExplainer.mislabel_scores`).
    family : str, default="linear"
        The model family, which ``"auto"`` is resolved for.
    cv : int, default=5
        Number of folds of the cross-fitted (``"cv_*"``) scores.

    Returns
    -------
    scores : ndarray of shape (n_train,)
        Suspicion scores.
    """
    name = resolve_method(method, family)
    return np.array(METHODS[name](explainer, {"cv": cv}), dtype=float)


def all_mislabel_scores(explainer, methods=None, cv=5):
    """Several suspicion scores at once, sharing the per-sample work between them.

    Self-influence, the loss, gradient norms and the cross-fitted refits are
    computed once however many scores use them.

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
    cache = {"cv": cv}
    out = {}
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"Unknown mislabel method {name!r}; choose from {sorted(METHODS)}.")
        out[name] = np.array(METHODS[name](explainer, cache), dtype=float)
    return out


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
    if k is not None and fraction is not None:
        raise ValueError("Pass k or fraction, not both.")
    if fraction is not None:
        if not (isinstance(fraction, numbers.Real) and 0 < fraction <= 1):
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
        k = max(1, round(fraction * n))
    if k is not None and not (isinstance(k, numbers.Integral) and k >= 1):
        raise ValueError(f"k must be a positive int, got {k!r}.")
    order = np.argsort(-scores, kind="stable")
    return order if k is None else order[:k]
