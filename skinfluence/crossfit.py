"""Cross-fitted per-sample losses: the explainer refitted on K folds of its training set.

An in-sample score (the loss, or influence at the fitted parameters) fades when a
model fits its noisy labels; a model that never saw a point cannot have fitted its
label. These losses come from ``K`` explainers, each fitted on all folds but one,
and feed the ``cv_*`` mislabel scores of :mod:`skinfluence.mislabel`.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import Bunch, _safe_indexing

from skinfluence.compute import _progress
from skinfluence.explainer import STATIONARITY_WARN
from skinfluence.solvers import SingularHessianError


def cross_fitted_losses(explainer, cv=5, alo_loss=None):
    """Out-of-fold losses and averaged leave-one-out loss estimates of the training set.

    The wrapped model is cloned and fitted ``cv`` times (stratified folds for a
    classifier), each time inside an explainer with the same parameters, on the
    data the explainer was fitted on. The folds are consecutive, as in
    :func:`sklearn.model_selection.cross_val_predict`, or shuffled with the
    explainer's ``random_state`` when it is set. A frozen model is refitted from
    a clone of it (its hyperparameters). Torch nets draw their initialisation
    from torch's global generator: seed it (``torch.manual_seed``) for
    reproducible scores.

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer.
    cv : int, default=5
        Number of folds (at least 2).
    alo_loss : ndarray of shape (n_train,), default=None
        The explainer's own ``mislabel_scores("alo_loss")`` when already computed.

    Returns
    -------
    result : Bunch
        ``held_out``, ndarray of shape (n_train,): each point's loss under the fold
        model that did not see it. ``loo_mean``, ndarray of shape (n_train,): the
        mean over the ``cv`` fold models and the full model of the point's
        leave-one-out loss estimate: its held-out loss under the one model that
        left it out, its approximate leave-one-out loss
        (:func:`skinfluence.mislabel.alo_log_loss`) under every model trained on it.
    """
    from skinfluence.mislabel import mislabel_scores

    if not (isinstance(cv, numbers.Integral) and cv >= 2):
        raise ValueError(f"cv must be an int >= 2, got {cv!r}.")
    X, y, sample_weight, fit_params = explainer._fit_inputs
    if fit_params:
        raise ValueError(
            "Cross-fitted scores refit the model on folds of the training set, which "
            f"cannot split the fit parameters {sorted(fit_params)}; fit the explainer "
            "without them or use a score that needs no refit (e.g. method='alo_loss')."
        )
    n = explainer.n_train_
    labels = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    # like cross_val_predict: consecutive folds unless a seed asks for shuffled ones
    seed = explainer.random_state
    split = {"shuffle": seed is not None, "random_state": seed}
    if explainer.classes_ is not None:
        _check_class_counts(labels, cv)
        folds = StratifiedKFold(cv, **split)
    else:
        folds = KFold(cv, **split)
    model = explainer.estimator
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    family = explainer.model_family_
    held_out = np.empty(n)
    if alo_loss is None:
        alo_loss = mislabel_scores(explainer, "alo_loss", family)
    loo_sum = np.array(alo_loss, dtype=float)
    splits = folds.split(np.zeros((n, 1)), labels)
    splits = _progress(splits, cv, "cross-fit", explainer.verbose, unit="fold")
    stationarity = []
    for k, (train, test) in enumerate(splits, start=1):
        fold = clone(explainer).set_params(estimator=clone(model), verbose=0)
        try:
            with warnings.catch_warnings():
                # reported once for all folds below, not once per fold
                warnings.filterwarnings("ignore", "The fitted parameters are not a stationary")
                fold.fit(
                    _take(X, train),
                    _take(y, train),
                    sample_weight=None if sample_weight is None else sample_weight[train],
                )
        except SingularHessianError as exc:
            raise SingularHessianError(
                f"Refitting fold {k} of {cv} for a cross-fitted score: {exc}"
            ) from exc
        stationarity.append(fold.stationarity_)
        held_out[test] = fold.loss(_take(X, test), _take(y, test))
        loo_sum[test] += held_out[test]
        loo_sum[train] += mislabel_scores(fold, "alo_loss", family)
    off = [s for s in stationarity if not s <= STATIONARITY_WARN]
    if off:
        warnings.warn(
            f"{len(off)} of the {cv} fold refits stopped short of an optimum (||grad R|| up to "
            f"{max(off):.3g} times the typical per-sample gradient norm); their approximate "
            "leave-one-out losses are rougher. Train the model longer or more tightly.",
            RuntimeWarning,
            stacklevel=3,
        )
    return Bunch(held_out=held_out, loo_mean=loo_sum / (cv + 1))


def _take(a, index):
    if sp.issparse(a):
        return a.tocsr()[index]
    if hasattr(a, "iloc") or isinstance(a, np.ndarray):
        return _safe_indexing(a, index)
    return a[index]  # torch tensors


def _check_class_counts(y, cv):
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < cv:
        rare = classes[counts.argmin()].item()
        raise ValueError(
            f"Cross-fitted scores split the training set into cv={cv} stratified folds, but "
            f"class {rare!r} has only {counts.min()} samples: a fold model would not know it. "
            "Pass a smaller cv or use a score that needs no refit (e.g. method='alo_loss')."
        )
