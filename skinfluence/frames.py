"""Results as pandas objects keyed by the caller's own row labels (``as_frame=True``).

numpy stays the default output, as in scikit-learn; these helpers build the
DataFrame when asked. pandas is imported only then.
"""

import numpy as np


def _pandas(caller):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas ships with the test extra
        raise ImportError(
            f"{caller}(as_frame=True) requires pandas. You can install it with "
            "`pip install pandas`."
        ) from exc
    return pd


def row_index(X):
    """The row labels of a pandas input (a copy), or None for anything else."""
    index = getattr(X, "index", None)
    if index is None or not hasattr(X, "iloc"):
        return None
    return index.copy()


def labels_for(index, positions, caller):
    """Row labels for ``positions``: the kept index's, or the positions themselves."""
    pd = _pandas(caller)
    positions = np.asarray(positions, dtype=np.intp)
    if index is None:
        return pd.Index(positions)
    return index[positions]


def rows_frame(index, positions, columns, caller):
    """A DataFrame with one row per position, indexed by the caller's labels.

    Parameters
    ----------
    index : pandas.Index or None
        The caller's row labels (None: positions are the labels).
    positions : array-like of int
        Which rows, in the order wanted.
    columns : dict of str to array-like
        Column values, one per position (already taken at ``positions``).
    caller : str
        The method's name, for the missing-pandas message.
    """
    pd = _pandas(caller)
    positions = np.asarray(positions, dtype=np.intp)
    data = {}
    for name, values in columns.items():
        data.update(_columns(name, np.asarray(values)))
    return pd.DataFrame(data, index=labels_for(index, positions, caller))


def _columns(name, values):
    """One column, or ``name_0``, ``name_1``, ... for a 2-d value (several targets)."""
    if values.ndim == 2:
        return {f"{name}_{j}": values[:, j] for j in range(values.shape[1])}
    return {name: values}


def matrix_frame(values, index, columns, caller):
    """A (n_test, n_train) matrix as a DataFrame with both axes labelled."""
    pd = _pandas(caller)
    return pd.DataFrame(values, index=index, columns=columns)


def column_labels(labels, caller):
    """Column labels: a MultiIndex when every label is a pair, else a flat Index."""
    pd = _pandas(caller)
    if labels and all(isinstance(lab, tuple) for lab in labels):
        return pd.MultiIndex.from_tuples(labels)
    return pd.Index(labels)


def pair_frame(values, test_rows, train_rows, columns, caller):
    """``(n_test, n_train, n_columns)`` values, one row per (test, training) pair."""
    pd = _pandas(caller)
    n_test, n_train, n_columns = values.shape
    index = pd.MultiIndex.from_arrays(
        [np.asarray(test_rows).repeat(n_train), np.tile(np.asarray(train_rows), n_test)],
        names=["test", "train"],
    )
    return pd.DataFrame(values.reshape(n_test * n_train, n_columns), index=index, columns=columns)


def top_k_frame(result, test_rows, train_index, train_labels, caller):
    """``most_influential``'s arrays as one long DataFrame keyed by training rows.

    Rows run test point by test point, helpful before harmful, rank 1 first.
    """
    pd = _pandas(caller)
    h_idx, h_val, b_idx, b_val = result
    n_test, k = h_idx.shape
    positions = np.concatenate([h_idx, b_idx], axis=1).ravel()  # (n_test * 2k,)
    values = np.concatenate([h_val, b_val], axis=1).ravel()
    kind = np.tile(np.repeat(["helpful", "harmful"], k), n_test)
    rank = np.tile(np.concatenate([np.arange(1, k + 1)] * 2), n_test)
    return pd.DataFrame(
        {
            "test": np.asarray(test_rows).repeat(2 * k),
            "kind": kind,
            "rank": rank,
            "position": positions,
            **_columns("label", train_labels[positions]),
            "influence": values,
        },
        index=labels_for(train_index, positions, caller),
    )
