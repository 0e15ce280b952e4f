"""How the model's features depend on the caller's input columns.

A Pipeline's leading steps map the caller's columns to the features the last step
sees. Influence is taken over those model features; this module names them and,
where a step is a known elementwise affine map (scalers, imputers on observed
values, passthrough), carries a feature's derivative back to the input column it
came from (the chain rule). Features made by any other step (one-hot encoders,
polynomial features, ...) are kept as they are, under their own names.
"""

import numbers

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)

try:
    from sklearn.impute import SimpleImputer
except ImportError:  # pragma: no cover - part of scikit-learn since 0.20
    SimpleImputer = ()


def input_names(X, n_features):
    """The caller's column names (``str``), or ``x0``, ``x1``, ... without them."""
    columns = getattr(X, "columns", None)
    if columns is not None and len(columns) == n_features:
        return [str(c) for c in columns]
    return [f"x{j}" for j in range(n_features)]


def model_feature_names(feature_map, X, n_features):
    """Names of the features entering the model (the last step).

    ``get_feature_names_out`` of the leading steps when they provide it, the
    caller's column names for a bare model, ``x0``, ``x1``, ... otherwise.
    """
    if feature_map is None:
        return input_names(X, n_features)
    try:
        names = [str(n) for n in feature_map.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        names = []
    if len(names) != n_features:
        return [f"x{j}" for j in range(n_features)]
    return names


def _n_columns(X):
    return X.shape[1]


def _columns(X, idx):
    if hasattr(X, "iloc"):
        return X.iloc[:, idx]
    return X[:, idx]


def _dense(X):
    X = X.toarray() if hasattr(X, "toarray") else X
    return np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)


def _is_missing(values, missing_values):
    values = np.asarray(values, dtype=object)
    if missing_values is None or (
        isinstance(missing_values, numbers.Real) and np.isnan(missing_values)
    ):
        try:
            import pandas as pd
        except ImportError:  # NaN is the one value unequal to itself
            return np.frompyfunc(lambda v: v is None or v != v, 1, 1)(values).astype(bool)
        return np.asarray(pd.isna(values), dtype=bool)
    return values == missing_values


def _own(Xt, n):
    """Features not traced back: each is its own column (src -1, factor 1)."""
    p = _n_columns(Xt)
    return Xt, np.full(p, -1), np.ones((n, p))


def _identity(X, n):
    p = _n_columns(X)
    return X, np.arange(p), np.ones((n, p))


def _elementwise(step, X, n, factor):
    Xt = step.transform(X)
    return Xt, np.arange(_n_columns(X)), np.broadcast_to(factor, (n, _n_columns(X))).copy()


def _trace(step, X):
    """``(Xt, src, factor)`` for one fitted step applied to rows ``X``.

    ``src[j]`` is the input column output feature ``j`` is an affine function
    of (-1 when it is not traced), ``factor[i, j]`` its derivative at row ``i``.
    """
    n = X.shape[0]
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return _identity(X, n)
    if isinstance(step, Pipeline):
        return _trace_pipeline(step, X)
    if isinstance(step, ColumnTransformer):
        return _trace_columns(step, X)
    if isinstance(step, StandardScaler):
        scale = getattr(step, "scale_", None)
        return _elementwise(step, X, n, 1.0 if scale is None else 1.0 / scale)
    if isinstance(step, MaxAbsScaler | RobustScaler):
        scale = getattr(step, "scale_", None)
        return _elementwise(step, X, n, 1.0 if scale is None else 1.0 / scale)
    if isinstance(step, MinMaxScaler):
        Xt, src, factor = _elementwise(step, X, n, step.scale_)
        if step.clip:  # flat beyond the fitted range
            lo, hi = step.feature_range
            Xd = _dense(Xt).astype(float)
            factor[(Xd <= lo) | (Xd >= hi)] = 0.0
        return Xt, src, factor
    if isinstance(step, FunctionTransformer) and step.func is None:
        return _identity(step.transform(X), n)
    if SimpleImputer and isinstance(step, SimpleImputer):
        return _trace_imputer(step, X)
    return _own(step.transform(X), n)


def _trace_pipeline(pipe, X):
    n = X.shape[0]
    src = np.arange(_n_columns(X))
    factor = np.ones((n, src.size))
    for _, step in pipe.steps:
        X, s, f = _trace(step, X)
        traced = s >= 0
        new_src = np.full(s.size, -1)
        new_src[traced] = src[s[traced]]
        new_factor = np.ones((n, s.size))
        new_factor[:, traced] = f[:, traced] * factor[:, s[traced]]
        new_factor[:, new_src < 0] = 1.0
        src, factor = new_src, new_factor
    return X, src, factor


def _trace_columns(ct, X):
    n = X.shape[0]
    inputs = getattr(ct, "_transformer_to_input_indices", None)
    Xt = ct.transform(X)
    p = _n_columns(Xt)
    if inputs is None:
        return _own(Xt, n)
    src, factor = np.full(p, -1), np.ones((n, p))
    for name, out in ct.output_indices_.items():
        if out.stop <= out.start:
            continue
        idx = np.asarray(inputs.get(name, []), dtype=np.intp)
        step = ct.named_transformers_[name]
        _, s, f = _trace(step, _columns(X, idx))
        if s.size != out.stop - out.start:
            continue  # cannot line the outputs up: keep them untraced
        traced = s >= 0
        src[out][traced] = idx[s[traced]]
        factor[:, out][:, traced] = f[:, traced]
    return Xt, src, factor


def _trace_imputer(imp, X):
    n = X.shape[0]
    Xt = imp.transform(X)
    p = _n_columns(Xt)
    n_in = _n_columns(X)
    stats = np.asarray(imp.statistics_)
    if getattr(imp, "keep_empty_features", False) or stats.dtype.kind not in "fc":
        kept = np.arange(n_in)
    else:
        kept = np.flatnonzero(~np.isnan(stats))
    if p < kept.size:
        return _own(Xt, n)
    src, factor = np.full(p, -1), np.ones((n, p))
    src[: kept.size] = kept
    # an imputed value does not move with the input; the derivative at a missing
    # entry is undefined: NaN, documented in perturbation_influence
    missing = _is_missing(_dense(_columns(X, kept)), imp.missing_values)
    factor[:, : kept.size] = np.where(missing, np.nan, 1.0)
    return Xt, src, factor


def to_input_columns(feature_map, X_rows, values, model_names, in_names):
    """Carry derivatives over the model features back to the input columns.

    Parameters
    ----------
    feature_map : Pipeline, transformer or None
        The fitted leading steps (None: the model sees the inputs directly).
    X_rows : array-like of shape (n, n_inputs)
        The raw input rows the derivatives belong to.
    values : ndarray of shape (m, n, n_model_features)
        Derivatives with respect to the model features, for each of ``m``
        (e.g. test points) and each of the ``n`` rows.
    model_names, in_names : list of str
        Names of the model features and of the input columns.

    Returns
    -------
    out : ndarray of shape (m, n, n_columns)
        Derivatives with respect to each traced input column (summed over the
        model features it feeds), then the untraced model features as they are.
    names : list of str
        The columns: input column names (in order of first use), untraced
        feature names where they occur.
    """
    n = values.shape[1]
    if feature_map is None:
        return values, list(in_names)
    _, src, factor = _trace(feature_map, X_rows)
    if src.size != values.shape[2]:
        return values, list(model_names)
    columns, names = {}, []
    for j, s in enumerate(src):
        key = ("in", int(s)) if s >= 0 else ("own", j)
        if key not in columns:
            columns[key] = len(names)
            names.append(in_names[s] if s >= 0 else model_names[j])
    out = np.zeros((values.shape[0], n, len(names)))
    for j, s in enumerate(src):
        col = columns[("in", int(s)) if s >= 0 else ("own", j)]
        out[:, :, col] += values[:, :, j] * factor[None, :, j]
    return out, names
