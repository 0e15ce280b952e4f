"""Mislabel suspicion scores built on a fitted explainer's per-sample quantities.

Each score is one number per training point, higher = more suspicious. They use
only the explainer's public methods (``loss``, ``self_influence``,
``gradient_norms``, ``removal_weights_``).
"""

import numpy as np


def _self_influence(ex):
    return ex.self_influence()


def _loss(ex):
    return ex.loss()


def _grad_norm(ex):
    return ex.gradient_norms()


def _loo_loss(ex):
    # Removing point i raises its own loss by about w_i * self_influence_i, so this
    # is the first-order leave-one-out loss of the point: how badly a model that
    # never saw it would fit its label.
    return ex.loss() + ex.removal_weights_ * ex.self_influence()


METHODS = {
    "self_influence": _self_influence,
    "loss": _loss,
    "grad_norm": _grad_norm,
    "loo_loss": _loo_loss,
}

#: What ``method="auto"`` means, per model family (chosen by benchmarks/bench_mislabel.py).
AUTO = {"linear": "loo_loss"}


def resolve_method(method, family="linear"):
    """The concrete score name for ``method`` (``"auto"`` resolved per family)."""
    if method == "auto":
        method = AUTO.get(family, "loo_loss")
    if method not in METHODS:
        raise ValueError(
            f"Unknown mislabel method {method!r}; choose 'auto' or one of {sorted(METHODS)}."
        )
    return method


def mislabel_scores(explainer, method="auto", family="linear"):
    """One suspicion score per training point of a fitted explainer (higher = worse)."""
    return np.asarray(METHODS[resolve_method(method, family)](explainer), dtype=float)


def rank_suspects(scores, k=None, fraction=None):
    """Indices sorted by decreasing score, cut to ``k`` or to ``fraction`` of them."""
    scores = np.asarray(scores)
    n = len(scores)
    if k is not None and fraction is not None:
        raise ValueError("Pass k or fraction, not both.")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
        k = max(1, round(fraction * n))
    if k is not None and not (isinstance(k, int | np.integer) and 1 <= k):
        raise ValueError(f"k must be a positive int, got {k!r}.")
    order = np.argsort(-scores, kind="stable")
    return order if k is None else order[:k]
