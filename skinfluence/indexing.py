"""Rows of any container, and index or mask arguments checked in one way."""

import numpy as np
import scipy.sparse as sp

from skinfluence.exceptions import OutOfRangeError


def take_rows(a, index):
    """Rows ``index`` of an array, list, sparse matrix, pandas object or torch tensor.

    Parameters
    ----------
    a : array-like, sparse matrix, DataFrame, Series or tensor
        Anything indexed by rows.
    index : slice or array of int
        The rows, by position.

    Returns
    -------
    rows : same kind of container as ``a`` (an ndarray for a list; CSR for sparse)
    """
    if sp.issparse(a):
        return a.tocsr()[index]
    if hasattr(a, "iloc"):
        return a.iloc[index]
    if hasattr(a, "detach"):  # torch tensor
        return a[index]
    return np.asarray(a)[index]


def as_indices(index, n, *, name="indices"):
    """``index`` (a boolean mask or integer positions) as an int array of positions.

    Parameters
    ----------
    index : array-like of bool of shape (n,), or of int
        A mask over ``n`` points, or positions (negative ones count from the end).
    n : int
        Number of points.
    name : str, default="indices"
        The parameter's name, for the message.

    Returns
    -------
    positions : ndarray of int, 1-d
    """
    idx = np.asarray(index)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(
                f"A boolean {name} mask must have shape ({n},) (one entry per point), "
                f"got {idx.shape}."
            )
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            f"{name} must be a boolean mask or a 1-d array of integer positions, got "
            f"an array of dtype {idx.dtype} and shape {idx.shape}."
        )
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise OutOfRangeError(
            f"{name} out of range for {n} points (got values from {idx.min()} to {idx.max()})."
        )
    return idx.astype(np.intp, copy=False)


def as_mask(index, n, *, name="indices"):
    """``index`` (a boolean mask or integer positions) as a boolean mask of shape (n,)."""
    mask = np.zeros(n, dtype=bool)
    mask[as_indices(index, n, name=name)] = True
    return mask
