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

    The class thresholds and the confident joint are reductions; each class's
    estimated number of wrong labels is then taken from its rows by a top-k over
    the chunks, and those the out-of-sample model predicts as another class are kept.
    """
    from skinfluence.mislabel import _wrong_per_class_from

    labels = adapter.training_labels()
    K = proba.shape[1]
    onehot = labels[:, None] == da.arange(K)[None, :]
    v = adapter.verbose
    sums, counts = run(
        (proba * onehot).sum(axis=0), onehot.sum(axis=0), desc="class thresholds", verbose=v
    )
    thresholds = np.divide(sums, counts, out=np.full(K, np.inf), where=counts > 0)
    above = proba >= thresholds[None, :]
    confident = da.where(above.any(axis=1), da.where(above, proba, -np.inf).argmax(axis=1), -1)
    cells = da.where(confident >= 0, labels * K + confident, K * K)
    (joint,) = run(da.bincount(cells, minlength=K * K + 1), desc="confident joint", verbose=v)
    wrong = _wrong_per_class_from(joint[: K * K].reshape(K, K), counts)
    other = proba.argmax(axis=1) != labels
    picks, values = [], []
    for i, n_wrong in enumerate(wrong):
        n_wrong = min(round(float(n_wrong)), int(counts[i]))
        if n_wrong == 0:
            continue
        masked = da.where(labels == i, scores, -np.inf)
        idx, val = run(
            da.argtopk(masked, n_wrong), da.topk(masked, n_wrong), desc="flagging", verbose=v
        )
        (kept,) = run(other[idx])
        picks.append(idx[kept])
        values.append(val[kept])
    if not picks:
        return np.empty(0, dtype=np.intp)
    idx, val = np.concatenate(picks), np.concatenate(values)
    return np.asarray(idx[np.lexsort((idx, -val))], dtype=np.intp)
