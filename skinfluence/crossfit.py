"""Cross-fitted per-sample losses: the explainer refitted on K folds of its training set.

An in-sample score (the loss, or influence at the fitted parameters) fades when a
model fits its noisy labels; a model that never saw a point cannot have fitted its
label. These losses come from ``K`` explainers, each fitted on all folds but one,
and feed the ``cv_*`` mislabel scores of :mod:`skinfluence.mislabel`.
"""

import numbers
import sys
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch

from skinfluence.compute import STATIONARITY_WARN, _progress
from skinfluence.indexing import take_rows
from skinfluence.solvers import SingularHessianError


def check_n_folds(cv):
    """Validate a number of folds.

    Parameters
    ----------
    cv : int
        Number of folds.

    Returns
    -------
    cv : int
        The same number, once checked to be an int >= 2 (else ValueError).
    """
    if not (isinstance(cv, numbers.Integral) and not isinstance(cv, bool) and cv >= 2):
        raise ValueError(f"cv must be an int >= 2, got {cv!r}.")
    return int(cv)


def cross_fitted_losses(explainer, X, y, sample_weight=None, *, cv=5):
    """Losses of the training points under models refitted on folds without them.

    The explainer is cloned (same damping, solver, ...) with a clone of its
    model and fitted ``cv`` times (stratified folds for a classifier) on ``X, y``,
    the data it was fitted on. The folds are consecutive, as in
    :func:`sklearn.model_selection.cross_val_predict`, or shuffled with the
    explainer's ``random_state`` when it is set. A frozen model is refitted from
    a clone of it (its hyperparameters). Torch nets draw their initialisation
    from torch's global generator: seed it (``torch.manual_seed``) for
    reproducible scores. Usually called through
    :meth:`InfluenceExplainer.cross_fitted_losses`, which keeps the result.

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer: the template of the fold explainers.
    X : array-like, sparse matrix or tensor of shape (n_train, ...)
        The training inputs the explainer was fitted on.
    y : array-like of shape (n_train,)
        Their labels or targets.
    sample_weight : ndarray of shape (n_train,), default=None
        The sample weights it was fitted with.
    cv : int, default=5
        Number of folds (at least 2).

    Returns
    -------
    result : Bunch
        ``held_out``, ndarray of shape (n_train,): each point's loss under the fold
        model that did not see it. ``fold_loo_mean``, ndarray of shape (n_train,):
        the mean over the ``cv`` fold models of the point's leave-one-out loss
        estimate: its held-out loss under the one model that left it out, its
        approximate leave-one-out loss (its training loss plus
        :meth:`~skinfluence.InfluenceExplainer.self_removal_effect`) under the others.
        ``held_out_proba``, ndarray of shape (n_train, n_classes), classifiers only:
        each point's predicted class probabilities under the fold model that did
        not see it (columns in the order of the explainer's ``classes_``), what
        :func:`sklearn.model_selection.cross_val_predict` with
        ``method="predict_proba"`` returns for these folds.
    """
    cv = check_n_folds(cv)
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
    held_out = np.empty(n)
    loo_sum = np.zeros(n)
    proba = None
    if explainer.classes_ is not None:
        proba = np.empty((n, len(explainer.classes_)))
    splits = folds.split(np.zeros((n, 1)), labels)
    splits = _progress(splits, cv, "cross-fit", explainer.verbose, unit="fold")
    stationarity = []
    for k, (train, test) in enumerate(splits, start=1):
        X_k, y_k = take_rows(X, train), take_rows(y, train)
        w_k = None if sample_weight is None else sample_weight[train]
        fold_model = _warm_started(model, explainer.estimator_)
        if fold_model is not None:  # fitted here (clone() would drop the start), then frozen
            fold_model = _fit_warm(fold_model, model, X_k, y_k, _weight_param(model, w_k))
        fold = clone(explainer).set_params(estimator=fold_model or clone(model), verbose=0)
        try:
            with warnings.catch_warnings():
                # reported once for all folds below, not once per fold
                warnings.filterwarnings("ignore", "The fitted parameters are not a stationary")
                fold.fit(X_k, y_k, sample_weight=w_k)
        except SingularHessianError as exc:
            raise SingularHessianError(
                f"Refitting fold {k} of {cv} for a cross-fitted score: {exc}", damping=exc.damping
            ) from exc
        stationarity.append(fold.stationarity_)
        held_out[test] = fold.loss(take_rows(X, test), take_rows(y, test))
        if proba is not None:
            proba[test] = _fold_proba(fold, take_rows(X, test), explainer.classes_)
        loo_sum[test] += held_out[test]
        loo_sum[train] += fold.mislabel_scores("alo_loss")
    off = [s for s in stationarity if not s <= STATIONARITY_WARN]
    if off:
        warnings.warn(
            f"{len(off)} of the {cv} fold refits stopped short of an optimum (||grad R|| up to "
            f"{max(off):.3g} times the typical per-sample gradient norm); their approximate "
            "leave-one-out losses are rougher. Train the model longer or more tightly.",
            RuntimeWarning,
            stacklevel=3,
        )
    result = Bunch(held_out=held_out, fold_loo_mean=loo_sum / cv)
    if proba is not None:
        result["held_out_proba"] = proba
    return result


#: LogisticRegression solvers that start from ``coef_`` when ``warm_start=True``.
_WARM_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")


def _fit_warm(warm, model, X, y, params):
    """The warm-started fold model, frozen; a cold refit when the start does not fit.

    A fold whose training rows lack a category has fewer one-hot columns than the
    full model has coefficients; scikit-learn refuses that start.
    """
    try:
        return FrozenEstimator(warm.fit(X, y, **params))
    except ValueError as exc:
        if "nitial" not in str(exc):  # "Initialization coef is of shape ..."
            raise
        return FrozenEstimator(clone(model).fit(X, y, **params))


def _weight_param(model, sample_weight):
    if sample_weight is None:
        return {}
    if isinstance(model, Pipeline):
        return {f"{model.steps[-1][0]}__sample_weight": sample_weight}
    return {"sample_weight": sample_weight}


def _warm_started(model, fitted):
    """An unfitted clone of ``model`` whose logistic regression starts from ``fitted``'s.

    A fold's optimum is near the full model's, so its solver needs far fewer
    iterations from there (measured: 23 instead of 49 L-BFGS iterations on 200,000
    rows). The objective is strictly convex: the fold model is the same optimum, to
    the solver's tolerance (a cold and a warm L-BFGS run stop about 1e-6 apart in
    relative loss at ``tol=1e-12``). None for any other model (it is refitted
    from a plain clone).
    """
    from sklearn.linear_model import LogisticRegression

    out = clone(model)
    last = out.steps[-1][1] if isinstance(out, Pipeline) else out
    done = fitted.steps[-1][1] if isinstance(fitted, Pipeline) else fitted
    if (
        type(last) is LogisticRegression
        and last.solver in _WARM_SOLVERS
        and hasattr(done, "coef_")
        and done.coef_.shape[0] == (1 if len(done.classes_) == 2 else len(done.classes_))
    ):
        last.set_params(warm_start=True)
        last.coef_ = done.coef_.copy()
        last.intercept_ = np.array(done.intercept_, dtype=float, copy=True)
        return out
    return None


def _fold_proba(fold, X, classes):
    """A fold model's class probabilities, columns aligned to the full model's classes.

    skorch's prediction loader draws from torch's global generator; the next fold's
    initialisation must not depend on whether probabilities were asked for, so
    the generator's state is put back afterwards.
    """
    torch = sys.modules.get("torch")
    with torch.random.fork_rng(devices=[]) if torch is not None else nullcontext():
        proba = np.asarray(fold.predict_proba(X), dtype=float)
    fold_classes = np.asarray(fold.classes_)
    if len(fold_classes) == len(classes) and np.array_equal(fold_classes, classes):
        return proba
    out = np.zeros((proba.shape[0], len(classes)))
    out[:, np.searchsorted(classes, fold_classes)] = proba
    return out


def _check_class_counts(y, cv):
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < cv:
        rare = classes[counts.argmin()].item()
        raise ValueError(
            f"Cross-fitted scores split the training set into cv={cv} stratified folds, but "
            f"class {rare!r} has only {counts.min()} samples: a fold model would not know it. "
            "Pass a smaller cv or use a score that needs no refit (e.g. method='alo_loss')."
        )
