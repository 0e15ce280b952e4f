"""Ranking lazy scores: top-k suspects and the self-sized flagged set, as reductions."""

import dask.array as da
import numpy as np

from skinfluence.dask.adapter import run


def top_suspects(scores, k=None, fraction=None, *, verbose=0):
    """The indices of the ``k`` (or ``fraction``) highest of lazy ``scores``, highest first.

    A tree reduction over the chunks (``dask.array.argtopk``). Tied scores among
    those kept come in index order, as :func:`skinfluence.mislabel.rank_suspects`
    gives them in memory; which of several rows tied at the cut is kept follows
    ``argtopk``, where the in-memory sort keeps the smallest index.
    """
    n = scores.shape[0]
    if fraction is not None:
        k = max(1, round(fraction * n))
    k = min(int(k), n)
    idx, val = run(da.argtopk(scores, k), da.topk(scores, k), desc="ranking", verbose=verbose)
    order = np.lexsort((idx, -val))
    return np.asarray(idx[order], dtype=np.intp)


def flagged_suspects(adapter, proba, scores):
    """:func:`skinfluence.mislabel.flag_mislabeled` over lazy arrays, most suspicious first.

    The class thresholds and the confident joint are reductions; each off-diagonal
    cell's points (the largest margins) are a top-k over the chunks, and so are each
    class's most suspicious points among those predicted as another class. Rows tied
    at a cut are kept in ``argtopk``'s order, where the in-memory code keeps the
    smallest index.
    """
    from skinfluence.mislabel import PREDICTION_TOLERANCE, calibrated_joint, confident_classes

    labels = adapter.training_labels()
    K = proba.shape[1]
    onehot = labels[:, None] == da.arange(K)[None, :]
    v = adapter.verbose
    own = (proba * onehot).sum(axis=1)
    sums, counts = run(
        (proba * onehot).sum(axis=0), onehot.sum(axis=0), desc="class thresholds", verbose=v
    )
    thresholds = np.divide(sums, counts, out=np.full(K, np.inf), where=counts > 0)
    confident = confident_classes(proba, thresholds)
    cells = da.where(confident >= 0, labels * K + confident, K * K)
    (joint,) = run(da.bincount(cells, minlength=K * K + 1), desc="confident joint", verbose=v)
    cells = calibrated_joint(joint[: K * K].reshape(K, K), counts)
    other = da.where(onehot, -np.inf, proba).max(axis=1) > own + PREDICTION_TOLERANCE

    pairs = [(i, j) for i in range(K) for j in range(K) if i != j and cells[i, j] > 0]
    margins = [
        da.argtopk(da.where(labels == i, proba[:, j] - own, -np.inf), int(cells[i, j]))
        for i, j in pairs
    ]
    marked = run(*margins, desc="noise-rate cells", verbose=v) if pairs else []
    by_class = {i: [] for i in range(K)}
    for (i, _), idx in zip(pairs, marked, strict=True):
        by_class[i].append(idx)
    union = {i: np.unique(np.concatenate(p)) for i, p in by_class.items() if p}
    kept = run(*[other[u] for u in union.values()]) if union else []
    n_flag = {i: int(k.sum()) for i, k in zip(union, kept, strict=True)}

    todo = [i for i, n in n_flag.items() if n > 0]
    if not todo:
        return np.empty(0, dtype=np.intp)
    masked = {i: da.where((labels == i) & other, scores, -np.inf) for i in todo}
    found = run(
        *[f(masked[i], n_flag[i]) for i in todo for f in (da.argtopk, da.topk)],
        desc="flagging",
        verbose=v,
    )
    idx, val = np.concatenate(found[0::2]), np.concatenate(found[1::2])
    return np.asarray(idx[np.lexsort((idx, -val))], dtype=np.intp)
