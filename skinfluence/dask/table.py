"""A table too large for memory, read and encoded by dask: the command line's ``--dask`` path.

The same table semantics as :mod:`skinfluence.tabular` (and so the same model inputs
as the in-memory command line), computed partition by partition:

1. one pass over the file (:func:`census`) decides each column's kind (numeric when
   every present cell of the labelled rows parses as a number, else categorical), its
   levels and their counts, the classes, and each partition's kept rows;
2. a second pass (:func:`encode`) writes the features as numbers (categories as codes
   into their sorted levels) into a persisted dask array, next to the labels' codes
   and the rows' positions in the file;
3. :func:`preprocess` is :func:`skinfluence.tabular.make_preprocessor` on that array,
   fitted by reductions: the exact median of each numeric column by a radix selection
   over its values (a few passes, each a histogram per chunk), the mean and scale
   after imputation from per-chunk moments, the most frequent level from the census.

:func:`write_ranked` writes every labelled row in rank order with a distributed sort
(``set_index`` on the rank), never gathering the table on the client.
"""

import os
import shlex

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from skinfluence.dask.adapter import run, tree_reduce
from skinfluence.tabular import (
    _PANDAS_NA,
    FORMULA_LEADS,
    MAX_TEXT_LEVELS,
    TableError,
    checked_header,
    csv_header,
    escape_cell,
    ranked_columns,
)

#: Per partition, a column with more distinct text values than this is not a category
#: the dask path encodes (its one-hot block would make the dense Hessian enormous).
MAX_LEVELS = 1000
#: Distinct labels beyond this many per partition: not class labels.
MAX_LABELS = 10_000
#: Bits of the order-preserving key that one histogram pass of the median resolves.
RADIX_BITS = 10
#: Candidates few enough to gather and sort on the client, ending the median's search.
GATHER = 100_000
_PARQUET = (".parquet", ".pq")


# -- reading -------------------------------------------------------------------------------
def read_table(path, *, blocksize="16MB"):
    """A CSV or Parquet file as a dask DataFrame, with its header.

    CSV cells are read as text, exactly as written (nothing is parsed until the
    census); Parquet columns keep their stored types.

    Parameters
    ----------
    path : str
        A CSV file with a header line, or a Parquet file or dataset directory
        (``.parquet`` or ``.pq``).
    blocksize : str or int, default="16MB"
        Bytes of CSV per partition (its encoded rows take several times as much).

    Returns
    -------
    header : list of str
    parts : list of dask.delayed.Delayed
        The partitions (pandas DataFrames), to be reused by every pass: each pass
        reads the same tasks.
    meta : pandas.DataFrame
        An empty frame with the partitions' columns and types.
    """
    is_parquet = path.lower().rstrip("/\\").endswith(_PARQUET)
    if not os.path.exists(path):
        raise TableError(f"no such file: {path}")
    if os.path.isdir(path) and not is_parquet:
        raise TableError(f"{path} is a directory, not a CSV file")
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise TableError(f"{path} is not a regular file (a pipe?); save the table to a file first")
    if is_parquet:
        with _plain_strings():
            try:
                frame = dd.read_parquet(path)
            except (OSError, ValueError) as exc:
                raise TableError(f"{path}: {' '.join(str(exc).split())}") from exc
            header = checked_header(path, [str(c).strip() for c in frame.columns])
            names = dict(zip(frame.columns, header, strict=True))
            return header, *_partitions(frame.rename(columns=names))
    try:
        header = csv_header(path)
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    # every cell as text (no NA parsing): the census decides what is missing, as
    # tabular does; a quoted cell holding a newline cannot be split on byte blocks
    with _plain_strings():
        return header, *_read_csv(path, header, blocksize)


def _read_csv(path, header, blocksize):
    frame = dd.read_csv(
        path,
        blocksize=blocksize,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        header=0,
        names=header,
        index_col=False,
        encoding="utf-8-sig",
    )
    return _partitions(frame)


def _partitions(frame):
    return list(frame.to_delayed(optimize_graph=False)), frame._meta


def _plain_strings():
    # text stays object columns: no conversion layer whose key could be built two ways
    # across the passes (the scheduler warns of a changed task under one key)
    return dask.config.set({"dataframe.convert-string": False})


def _text(series, floats="{:g}".format):
    """A column's cells as an object array of str (missing as ""); typed floats are
    written by ``floats`` (as a label: ``format(v, "g")``, as encode_columns does)."""
    values = series.to_numpy(dtype=object)
    if series.dtype.kind in "iu":
        return values.astype(str).astype(object)
    if series.dtype.kind == "f":
        return np.array([floats(v) if v == v else "" for v in values], dtype=object)
    missing = series.isna().to_numpy()
    if missing.any():
        values = values.copy()
        values[missing] = ""
    return values


def _levels(values):
    """Sorted distinct stripped cells of a text column, their counts, each cell's position."""
    # hashing only: numpy sorts the (stripped) distinct cells faster than pandas would
    inverse, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques, dtype=str)
    levels, merge = np.unique(np.char.strip(uniques), return_inverse=True)
    codes = merge[inverse]
    return levels, np.bincount(codes, minlength=len(levels)), codes


def _present(levels):
    # every upper/lower-case spelling of the missing tokens, matched exactly: no lower()
    # over a numeric column's hundred thousand distinct cells
    return ~np.isin(levels, _PANDAS_NA)


def _kept(part, target):
    """The partition's labelled rows (mask) and their stripped labels."""
    levels, _, codes = _levels(_text(part[target]))
    labelled = _present(levels)[codes]
    return labelled, levels[codes[labelled]]


# -- pass 1: the census --------------------------------------------------------------------
def _census_part(part, target, names):
    labelled, labels = _kept(part, target)
    classes, counts = np.unique(labels, return_counts=True)
    out = {"rows": len(part), "kept": int(labelled.sum())}
    out["classes"] = (classes, counts) if len(classes) <= MAX_LABELS else None
    columns = {}
    for name in names:
        series = part[name]
        if series.dtype.kind in "iuf":  # a typed (Parquet) number column
            columns[name] = ("numeric", int(series[labelled].notna().sum()), None, None)
            continue
        levels, counts, _ = _levels(_text(series)[labelled])
        present = _present(levels)
        levels, counts = levels[present], counts[present]
        try:
            levels.astype(float)
            kind = "numeric"
        except ValueError:
            kind = "text"
        if len(levels) > MAX_LEVELS:
            levels = counts = None
        columns[name] = (kind, int(present.sum()), levels, counts)
    out["columns"] = columns
    return out


def feature_names(header, target, drop=()):
    """The feature columns: the header less the target and ``drop``, each checked to exist."""
    if target not in header:
        raise TableError(f"target column {target!r} not found; columns are: {', '.join(header)}")
    unknown = [d for d in drop if d not in header]
    if unknown:
        raise TableError(f"--drop names unknown column(s): {', '.join(unknown)}")
    names = [n for n in header if n != target and n not in drop]
    if not names:
        raise TableError("no feature columns left besides the target")
    return names


def census(parts, header, target, drop=(), *, verbose=0):
    """Each column's kind and levels, the classes and the kept rows, in one pass.

    Parameters
    ----------
    parts : list of dask.delayed.Delayed
        The partitions, from :func:`read_table`.
    header : list of str
    target : str
        The column holding the labels; rows without one are left out.
    drop : sequence of str, default=()
        Columns to leave out.
    verbose : int, default=0

    Returns
    -------
    dict
        ``names`` (the feature columns, in file order), ``kinds`` (as
        :func:`skinfluence.tabular.encode_columns` gives them: numeric and
        categorical positions, ``levels`` of each categorical position, and
        ``counts``, each level's rows), ``classes`` and ``class_counts``, ``rows``
        and ``kept`` (per partition), ``n_file_rows``.
    """
    names = feature_names(header, target, drop)
    task = delayed(_census_part, pure=True)
    parts = run(
        *[task(p, target, names) for p in parts],
        desc="reading the table",
        verbose=verbose,
    )
    n_kept = sum(p["kept"] for p in parts)
    if any(p["classes"] is None for p in parts):
        raise TableError(
            f"target column {target!r} has over {MAX_LABELS} distinct values in one "
            "partition: mislabels needs class labels, not a continuous target"
        )
    classes = np.unique(np.concatenate([p["classes"][0] for p in parts]).astype(str))
    class_counts = np.zeros(len(classes), dtype=np.int64)
    for found, counts in (p["classes"] for p in parts):
        class_counts[np.searchsorted(classes, found)] += counts
    if len(classes) < 2:
        found = f"only {str(classes[0])!r}" if len(classes) else "no labels at all"
        raise TableError(f"target column {target!r} has a single class ({found}): nothing to rank")
    if len(classes) > MAX_TEXT_LEVELS and len(classes) > 0.5 * n_kept:
        raise TableError(
            f"target column {target!r} has {len(classes)} distinct values in {n_kept} rows: "
            "mislabels needs class labels, not a continuous target"
        )
    kinds = {"numeric": [], "categorical": [], "levels": {}, "counts": {}}
    for j, name in enumerate(names):
        seen = [p["columns"][name] for p in parts]
        if sum(s[1] for s in seen) == 0:
            raise TableError(
                f"column {name!r} has no values; leave it out with --drop {shlex.quote(name)}"
            )
        if all(s[0] == "numeric" for s in seen):
            kinds["numeric"].append(j)
            continue
        if any(s[2] is None for s in seen):
            raise TableError(
                f"column {name!r} cannot be encoded on dask: over {MAX_LEVELS} distinct text "
                f"values in one partition; leave it out with --drop {shlex.quote(name)}"
            )
        levels = np.unique(np.concatenate([s[2] for s in seen]))
        counts = np.zeros(len(levels), dtype=np.int64)
        for s in seen:
            counts[np.searchsorted(levels, s[2])] += s[3]
        if len(levels) > MAX_TEXT_LEVELS and len(levels) > 0.5 * n_kept:
            raise TableError(
                f"column {name!r} cannot be encoded: {len(levels)} distinct text values in "
                f"{n_kept} rows (free text or an identifier); leave it out with "
                f"--drop {shlex.quote(name)}"
            )
        kinds["categorical"].append(j)
        kinds["levels"][j], kinds["counts"][j] = levels, counts
    return {
        "names": names,
        "kinds": kinds,
        "classes": classes,
        "class_counts": class_counts,
        "rows": [p["rows"] for p in parts],
        "kept": [p["kept"] for p in parts],
        "n_file_rows": sum(p["rows"] for p in parts),
    }


# -- pass 2: encoding ----------------------------------------------------------------------
def _codes(values, levels):
    """Each cell's position in ``levels`` (sorted), NaN where missing."""
    cells, _, codes = _levels(values)
    at = np.searchsorted(levels, cells).astype(float)
    at[~_present(cells)] = np.nan
    return at[codes]


def _encode_part(part, target, names, kinds, classes, offset):
    labelled, labels = _kept(part, target)
    X = np.empty((int(labelled.sum()), len(names)))
    for j, name in enumerate(names):
        series = part[name]
        if series.dtype.kind in "iuf":
            X[:, j] = series.to_numpy(dtype=float)[labelled]
            continue
        values = _text(series)[labelled]
        if j in kinds["levels"]:
            X[:, j] = _codes(values, kinds["levels"][j])
            continue
        cells, _, codes = _levels(values)
        numbers = np.full(len(cells), np.nan)
        present = _present(cells)
        numbers[present] = cells[present].astype(float)
        X[:, j] = numbers[codes]
    return X, np.searchsorted(classes, labels), offset + np.flatnonzero(labelled)


def _item(pair, i):
    return pair[i]


def encode(parts, table, target):
    """Features, label codes and file rows of the labelled rows, persisted on the workers.

    Parameters
    ----------
    parts : list of dask.delayed.Delayed
    table : dict
        From :func:`census` on the same ``parts``.
    target : str

    Returns
    -------
    X : dask.array.Array of float64, shape (n_kept, n_features)
        Numbers, or codes into the sorted levels; NaN where missing; one chunk
        per partition.
    y : dask.array.Array of int
        Positions in ``table["classes"]``.
    rows : dask.array.Array of int
        Each row's position in the file (0 = first data row).
    """
    names, kinds, classes = table["names"], table["kinds"], table["classes"]
    shared = delayed(kinds), delayed(classes)
    offsets = np.cumsum([0, *table["rows"]])
    task = delayed(_encode_part, pure=True, nout=3)
    X, y, rows = [], [], []
    for p, (part, m) in enumerate(zip(parts, table["kept"], strict=True)):
        if m == 0:
            continue
        Xp, yp, rp = task(part, target, names, *shared, int(offsets[p]))
        X.append(da.from_delayed(Xp, (m, len(names)), dtype=np.float64))
        y.append(da.from_delayed(yp, (m,), dtype=np.intp))
        rows.append(da.from_delayed(rp, (m,), dtype=np.int64))
    # held by the workers from here on (spilled to their disks past their memory limit):
    # the passes after this one read no file
    return dask.persist(*(da.concatenate(a) for a in (X, y, rows)))


# -- pass 3: the preprocessor's statistics -----------------------------------------------
def _moments(X, cols):
    """Per numeric column: present count, mean and sum of squared deviations; non-finite."""
    x = X[:, cols]
    present = ~np.isnan(x)
    count = present.sum(axis=0).astype(float)
    finite = np.isfinite(np.where(present, x, 0.0)).all(axis=0)
    filled = np.where(present, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), 0.0)
        m2 = (np.where(present, x - mean, 0.0) ** 2).sum(axis=0)
    return count, mean, m2, finite


def _merge_moments(*parts):
    """Chan, Golub and LeVeque's pairwise merge of counts, means and squared deviations."""
    count, mean, m2, finite = parts[0]
    for c, m, s, f in parts[1:]:
        total = count + c
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            delta = m - mean
            share = np.where(total > 0, c / np.maximum(total, 1), 0.0)
            mean = mean + delta * share
            m2 = m2 + s + delta**2 * count * share
        count, finite = total, finite & f
    return count, mean, m2, finite


def _keys(x):
    """Order-preserving unsigned 64-bit keys of finite floats (negatives reversed)."""
    bits = x.view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _float(key):
    key = np.uint64(key)
    bits = key & ~np.uint64(1 << 63) if key >> np.uint64(63) else ~key
    return np.array([bits], dtype=np.uint64).view(np.float64)[0]


def _histograms(X, targets, bits):
    """For each target (column, prefix, shift): counts of the next ``bits`` key bits
    among the column's present values whose key starts with ``prefix``."""
    out = np.zeros((len(targets), 1 << bits), dtype=np.int64)
    for t, (j, prefix, shift) in enumerate(targets):
        x = X[:, j]
        k = _keys(x[~np.isnan(x)])
        if shift < 64:
            k = k[(k >> np.uint64(shift)) == np.uint64(prefix)]
        step = min(bits, shift)
        digits = (k >> np.uint64(shift - step)) & np.uint64((1 << step) - 1)
        out[t, : 1 << step] = np.bincount(digits.astype(np.intp), minlength=1 << step)
    return out


def _candidates(X, targets):
    """For each target, the column's present values whose key starts with its prefix."""
    out = []
    for j, prefix, shift in targets:
        x = X[:, j]
        x = x[~np.isnan(x)]
        out.append(x if shift >= 64 else x[(_keys(x) >> np.uint64(shift)) == np.uint64(prefix)])
    return out


def _sum(*parts):
    return np.sum(parts, axis=0)


def _concat(*parts):
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def _chunk_tasks(X, func, *shared):
    f = delayed(func, pure=True)
    return [f(b, *shared) for b in X.to_delayed(optimize_graph=False).ravel()]


def medians(X, cols, counts, *, verbose=0):
    """The exact median of each column in ``cols`` over its present values (NaN skipped).

    A radix selection on order-preserving integer keys of the values: each pass, one
    histogram per chunk of the next ``RADIX_BITS`` bits among the candidates, which
    narrows every column to one bin; once few values are left (``GATHER``) they come
    to the client and are sorted. For an even count the median is the mean of the
    two middle values, as numpy's. Exact (ties included) after at most
    ``ceil(64 / RADIX_BITS)`` passes; usually two or three.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    cols : sequence of int
    counts : ndarray of int
        Present values of each column in ``cols``.
    verbose : int, default=0

    Returns
    -------
    medians : ndarray of float64, shape (len(cols),)
    """
    # one search per (column, middle rank): [column, rank left to skip, prefix, shift]
    state = []
    for j, m in zip(cols, counts, strict=True):
        state += [[j, (m - 1) // 2, 0, 64], [j, m // 2, 0, 64]]
    values = [None] * len(state)
    while any(v is None for v in values):
        active = [t for t, v in enumerate(values) if v is None]
        wide = [t for t in active if state[t][3] > 0]
        targets = [(state[t][0], state[t][2], state[t][3]) for t in active]
        hist = None
        if wide:
            wide_targets = [targets[active.index(t)] for t in wide]
            parts = _chunk_tasks(X, _histograms, wide_targets, RADIX_BITS)
            (hist,) = run(tree_reduce(parts, _sum), desc="median", verbose=verbose)
        done = []
        for row, t in enumerate(wide):
            j, rank, prefix, shift = state[t]
            step = min(RADIX_BITS, shift)
            cum = np.cumsum(hist[row])
            b = int(np.searchsorted(cum, rank, side="right"))
            rank -= int(cum[b - 1]) if b else 0
            state[t] = [j, rank, (prefix << step) | b, shift - step]
            if state[t][3] == 0:
                values[t] = _float(state[t][2])
            elif hist[row, b] <= GATHER:
                done.append(t)
        if done:  # few enough: gather and sort them
            targets = [(state[t][0], state[t][2], state[t][3]) for t in done]
            parts = _chunk_tasks(X, _candidates, targets)
            (found,) = run(tree_reduce(parts, _concat), desc="median", verbose=verbose)
            for t, v in zip(done, found, strict=True):
                values[t] = np.sort(v)[state[t][1]]
    pairs = np.array(values, dtype=np.float64).reshape(-1, 2)
    return pairs.mean(axis=1)


def fit_preprocessor(X, table, *, verbose=0):
    """The fitted statistics of :func:`skinfluence.tabular.make_preprocessor` on ``X``.

    Numeric columns: SimpleImputer(median) then StandardScaler (population variance;
    a column constant up to rounding gets scale 1, as scikit-learn's check of its
    two-pass variance's error bound decides). Categorical: SimpleImputer(most
    frequent; ties to the smallest level) then one-hot over every level.

    Returns
    -------
    dict
        ``numeric`` (positions), ``median``, ``mean``, ``scale``; ``categorical``
        (positions), ``fill`` (a code each) and ``n_levels``.
    """
    kinds, names = table["kinds"], table["names"]
    num = list(kinds["numeric"])
    n = X.shape[0]
    stats = {"numeric": num, "categorical": list(kinds["categorical"])}
    if num:
        parts = _chunk_tasks(X, _moments, num)
        (moments,) = run(tree_reduce(parts, _merge_moments), desc="scaling", verbose=verbose)
        count, mean_p, m2_p, finite = moments
        for j, ok in zip(num, finite, strict=True):
            if not ok:
                raise TableError(
                    f"column {names[j]!r} holds infinite values, which cannot be scaled"
                )
        med = medians(X, num, count.astype(np.int64), verbose=verbose)
        gone = n - count
        mean = (count * mean_p + gone * med) / n
        with np.errstate(over="ignore", invalid="ignore"):
            var = (m2_p + count * (mean_p - mean) ** 2 + gone * (med - mean) ** 2) / n
        for j, v in zip(num, var, strict=True):
            if not np.isfinite(v):
                raise TableError(
                    f"column {names[j]!r} holds values too large to scale; rescale it or "
                    f"leave it out with --drop {shlex.quote(names[j])}"
                )
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        stats.update(median=med, mean=mean, scale=np.where(constant, 1.0, np.sqrt(var)))
    fill, widths = [], []
    for j in stats["categorical"]:
        fill.append(int(np.argmax(kinds["counts"][j])))  # first maximum: the smallest level
        widths.append(len(kinds["levels"][j]))
    stats.update(fill=np.array(fill, dtype=float), n_levels=widths)
    return stats


def _transform(X, stats):
    blocks = []
    if stats["numeric"]:
        x = X[:, stats["numeric"]]
        x = np.where(np.isnan(x), stats["median"], x)
        blocks.append((x - stats["mean"]) / stats["scale"])
    if stats["categorical"]:
        codes = X[:, stats["categorical"]]
        codes = np.where(np.isnan(codes), stats["fill"], codes)
        for c, width in enumerate(stats["n_levels"]):
            blocks.append((codes[:, c : c + 1] == np.arange(width)).astype(np.float64))
    return np.hstack(blocks)


def preprocess(X, stats):
    """The model's input: ``X`` imputed, scaled and one-hot encoded, chunk by chunk (lazy).

    Equal to ``make_preprocessor(kinds, dense=True).fit_transform(X)`` in memory:
    numeric columns first, then each categorical column's one-hot block.
    """
    width = len(stats["numeric"]) + sum(stats["n_levels"])
    return X.map_blocks(_transform, stats, chunks=(X.chunks[0], (width,)), dtype=np.float64)


# -- writing the ranked rows ---------------------------------------------------------------
def _escaped(values):
    """escape_cell on a column of str, calling Python only for the cells that need it."""
    values = np.asarray(values, dtype=object)
    leads = np.fromiter((v.startswith(FORMULA_LEADS) for v in values), bool, len(values))
    if leads.any():
        values = values.copy()
        values[leads] = [escape_cell(v) for v in values[leads]]
    return values


def _written(values):
    """Cells as :func:`skinfluence.tabular.write_ranked_csv` writes them: a cell that is
    exactly one of the missing spellings is empty, every other one stripped."""
    out = np.char.strip(values.astype(str)).astype(object)
    out[np.isin(values, _PANDAS_NA)] = ""
    return out


def _ranked_part(part, target, header, added, offset, rank, score, predicted, classes, flagged):
    labelled, _ = _kept(part, target)
    out = pd.DataFrame(
        {
            "__key": rank,
            added[0]: rank,
            added[1]: offset + np.flatnonzero(labelled),
            added[2]: [repr(float(s)) for s in score],
            added[3]: _escaped(classes[predicted].astype(object)),
            added[4]: flagged.astype(np.int64),
        }
    )
    for i, c in enumerate(header):
        out[f"__c{i}"] = _escaped(_written(_text(part[c], floats=repr)[labelled]))
    return out


def write_ranked(path, parts, meta, header, target, table, order, scores, predicted, flagged):
    """Write every labelled row, most suspicious first, as the in-memory command line does.

    Each partition labels its rows with their ranks; a distributed sort on the rank
    (``set_index`` with known divisions: no sampling pass) brings them into order and
    the partitions are appended to one file.

    Parameters
    ----------
    path : str
        The ranked CSV file.
    parts : list of dask.delayed.Delayed
    meta : pandas.DataFrame
        The input, from :func:`read_table`.
    header : list of str
    target : str
    table : dict
        From :func:`census`.
    order : ndarray of int
        Kept-row positions, most suspicious first.
    scores : ndarray of shape (n_kept,)
    predicted : ndarray of int of shape (n_kept,)
        Positions in ``table["classes"]``.
    flagged : ndarray of bool of shape (n_kept,)
    """
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    added = ranked_columns(header)
    kept = np.cumsum([0, *table["kept"]])
    offsets = np.cumsum([0, *table["rows"]])
    classes = table["classes"]
    task, shared = delayed(_ranked_part, pure=True), delayed(classes)
    ranked = []
    for p, part in enumerate(parts):
        s = slice(kept[p], kept[p + 1])
        ranked.append(
            task(
                part,
                target,
                header,
                added,
                int(offsets[p]),
                rank[s],
                scores[s],
                predicted[s],
                shared,
                flagged[s],
            )
        )
    empty = np.array([], dtype=np.int64)
    meta = _ranked_part(meta, target, header, added, 0, empty, empty, empty, classes, empty)
    ranked = dd.from_delayed(ranked, meta=meta, verify_meta=False)
    n_out = max(1, len(parts))
    divisions = sorted({1 + (n * i) // n_out for i in range(n_out)} | {n})
    ranked = ranked.set_index("__key", divisions=divisions, sorted=False)
    ranked = ranked.rename(columns={f"__c{i}": escape_cell(c) for i, c in enumerate(header)})
    ranked.to_csv(path, single_file=True, index=False, lineterminator="\r\n")
