"""Cross-fitted losses on dask data: stratified folds from chunk counts, fold models by Newton."""

import dask
import dask.array as da
import numpy as np
from dask import delayed
from sklearn.utils import check_random_state

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


def _chunk_folds(tpl, y, before, bounds, dealt=None):
    """Fold of each row: its rank in its class, against the class's fold boundaries, or
    (shuffled) the entry at that rank of the chunk's part of the class's shuffled folds."""
    labels = tpl._encode_y(y, len(y))
    out = np.empty(len(labels), dtype=np.intp)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        if dealt is not None:
            out[rows] = dealt[k]
            continue
        out[rows] = np.searchsorted(bounds[:, k], before[k] + np.arange(rows.size), side="right")
    return out


def stratified_folds(adapter, cv, random_state=None):
    """Each training row's fold, a lazy int array: ``StratifiedKFold(cv)``'s.

    scikit-learn deals each class's rows, in data order, to the folds in blocks
    whose sizes come from a round robin over the labels sorted by class (classes in
    order of first appearance). Those sizes need only the classes' counts and first
    rows, which one pass over the chunks gives; each chunk then places its rows from
    the counts of the chunks before it.

    With ``random_state`` (an int or a ``RandomState``) the folds are
    ``StratifiedKFold(cv, shuffle=True, random_state=random_state)``'s: each class's
    block of fold numbers is shuffled on the client as scikit-learn shuffles it (one
    byte per row when ``cv`` < 128) and each chunk receives only its own part.
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
    tpl, f = delayed(adapter._tpl), delayed(_chunk_folds, pure=True)
    if random_state is None:
        bounds = delayed(bounds)
        parts = [f(tpl, y, before[c], bounds) for c, y in enumerate(adapter._ys)]
        return adapter.stack(parts, dtype=np.intp)
    rng = check_random_state(random_state)
    dtype = np.int8 if cv < 128 else np.int64  # a permutation's draws depend on the length only
    shuffled = {}
    for k in order:  # scikit-learn's loop: classes in order of first appearance
        shuffled[k] = np.arange(cv, dtype=dtype).repeat(allocation[:, k])
        rng.shuffle(shuffled[k])
    parts = []
    for c, y in enumerate(adapter._ys):
        dealt = {
            k: shuffled[k][before[c, k] : before[c, k] + counts[c, k]]
            for k in range(len(total))
            if counts[c, k]
        }
        parts.append(f(tpl, y, None, None, dealt))
    return adapter.stack(parts, dtype=np.intp)


def _proba(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return np.asarray(a.model.predict_proba(a.train_data.X), dtype=np.float64)


def cross_fitted(adapter, cv, *, damping=0.0, random_state=None):
    """Cross-fitted losses of the training rows: fold models by Newton from the full model.

    Fold ``k``'s model is the optimum of the objective without the rows of fold ``k``
    (their weights set to zero; the penalty and class weights those of the rest, as
    a refit on the remaining rows has them), reached by Newton's method from the
    full model's coefficients: a few map-reduces each. The folds are scikit-learn's
    ``StratifiedKFold(cv)``, shuffled with ``random_state`` when it is not None (as
    the in-memory path shuffles them with the explainer's ``random_state``).

    Returns
    -------
    dict
        ``held_out``, ``fold_loo_mean`` (lazy ``(n_train,)``) and ``held_out_proba``
        (lazy ``(n_train, n_classes)``), as in
        :func:`skinfluence.crossfit.cross_fitted_losses`; and ``folds``, each row's fold.
        They are persisted: held by the workers under a distributed client, computed
        into memory under the local schedulers.
    """
    from skinfluence.solvers import make_solver

    folds = stratified_folds(adapter, cv, random_state)
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
    # held by the workers (a few numbers a row): every score and the flagged set read
    # them, and would otherwise recompute each fold's losses and leave-one-out terms
    held_out, loo_mean, proba, folds = dask.persist(held_out, loo_sum / cv, proba, folds)
    return {
        "held_out": held_out,
        "fold_loo_mean": loo_mean,
        "held_out_proba": proba,
        "folds": folds,
    }
