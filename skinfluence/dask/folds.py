"""Cross-fitted losses on dask data: stratified folds from chunk counts, fold models by Newton."""

import dask.array as da
import numpy as np
from dask import delayed

from skinfluence.dask.adapter import _block, run
from skinfluence.dask.newton import newton_fit


# -- cross-fitting: fold models by Newton steps from the full model ----------------------
def _fold_census(tpl, y, w):
    """The chunk's class counts (unweighted) and each class's first row in it (-1: none)."""
    labels = tpl._encode_y(y, len(y))
    first = np.full(len(tpl.classes_), -1)
    present, at = np.unique(labels, return_index=True)
    first[present] = at
    return np.bincount(labels, minlength=len(tpl.classes_)), first


def _chunk_folds(tpl, y, before, bounds):
    """Fold of each row: its rank in its class, against the class's fold boundaries."""
    labels = tpl._encode_y(y, len(y))
    out = np.empty(len(labels), dtype=np.intp)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        out[rows] = np.searchsorted(bounds[:, k], before[k] + np.arange(rows.size), side="right")
    return out


def stratified_folds(adapter, cv):
    """Each training row's fold, a lazy int array: ``StratifiedKFold(cv)``'s, unshuffled.

    scikit-learn deals each class's rows, in data order, to the folds in blocks
    whose sizes come from a round robin over the labels sorted by class (classes in
    order of first appearance). Those sizes need only the classes' counts and first
    rows, which one pass over the chunks gives; each chunk then places its rows from
    the counts of the chunks before it.
    """
    census = run(*adapter._tasks(_fold_census, with_x=False), desc="folds", verbose=adapter.verbose)
    counts = np.array([c for c, _ in census])  # (n_chunks, K)
    total = counts.sum(axis=0)
    if total.min() < cv:
        rare = adapter.classes_[total.argmin()].item()
        raise ValueError(
            f"Cross-fitted scores split the training set into cv={cv} stratified folds, but "
            f"class {rare!r} has only {total.min()} samples: a fold model would not know it. "
            "Pass a smaller cv or use a score that needs no refit (e.g. method='alo_loss')."
        )
    never = np.iinfo(np.int64).max
    first = np.min(
        [
            np.where(f >= 0, f + o, never)
            for (_, f), o in zip(census, adapter.offsets[:-1], strict=True)
        ],
        axis=0,
    )
    order = np.argsort(first, kind="stable")  # class positions in order of appearance
    ends = np.cumsum(total[order])
    i = np.arange(cv)[:, None]

    def dealt(b):  # rows p < b of the sorted labels with p = i (mod cv), per fold i
        return np.maximum(0, (b[None, :] - i + cv - 1) // cv)

    allocation = np.empty((cv, len(total)), dtype=np.int64)
    allocation[:, order] = dealt(ends) - dealt(ends - total[order])
    bounds = np.cumsum(allocation, axis=0)
    before = np.cumsum(counts, axis=0) - counts
    tpl, bounds, f = delayed(adapter._tpl), delayed(bounds), delayed(_chunk_folds, pure=True)
    parts = [f(tpl, y, before[c], bounds) for c, y in enumerate(adapter._ys)]
    return adapter.stack(parts, dtype=np.intp)


def _proba(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return np.asarray(a.model.predict_proba(a.train_data.X), dtype=np.float64)


def cross_fitted(adapter, cv, *, damping=0.0):
    """Cross-fitted losses of the training rows: fold models by Newton from the full model.

    Fold ``k``'s model is the optimum of the objective without the rows of fold ``k``
    (their weights set to zero; the penalty and class weights those of the rest, as
    a refit on the remaining rows has them), reached by Newton's method from the
    full model's coefficients: a few map-reduces each. The folds are scikit-learn's
    unshuffled ``StratifiedKFold(cv)``.

    Returns
    -------
    dict
        ``held_out``, ``fold_loo_mean`` (lazy ``(n_train,)``) and ``held_out_proba``
        (lazy ``(n_train, n_classes)``), as in
        :func:`skinfluence.crossfit.cross_fitted_losses`; and ``folds``, each row's fold.
    """
    from skinfluence.solvers import make_solver

    folds = stratified_folds(adapter, cv)
    w = adapter.sample_weight
    if w is None:
        w = da.ones(adapter.n_train, chunks=(adapter.row_chunks,))
    held_out = loo_sum = proba = None
    options = {"blocking": adapter.blocking, "verbose": adapter.verbose}
    for k in range(cv):
        out_k = folds == k
        w_k = da.where(out_k, 0.0, w)
        _, _, fold = newton_fit(
            adapter.model, adapter.X, adapter.y, w_k, **options, return_adapter=True
        )
        solver = make_solver("direct", damping=damping).fit(fold)
        loss_k = fold.training_losses()
        proba_k = fold._rows(_proba, tail=(len(adapter.classes_),))
        loo_k = da.where(out_k, loss_k, loss_k + fold.training_self_removal(solver))
        held_out = da.where(out_k, loss_k, 0.0 if held_out is None else held_out)
        proba = da.where(out_k[:, None], proba_k, 0.0 if proba is None else proba)
        loo_sum = loo_k if loo_sum is None else loo_sum + loo_k
    return {
        "held_out": held_out,
        "fold_loo_mean": loo_sum / cv,
        "held_out_proba": proba,
        "folds": folds,
    }
