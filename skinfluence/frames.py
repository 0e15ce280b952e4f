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
        Column values for every row (full length), taken at ``positions``.
    caller : str
        The method's name, for the missing-pandas message.
    """
    pd = _pandas(caller)
    positions = np.asarray(positions, dtype=np.intp)
    data = {name: np.asarray(values)[positions] for name, values in columns.items()}
    return pd.DataFrame(data, index=labels_for(index, positions, caller))
