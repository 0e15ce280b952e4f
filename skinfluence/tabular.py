"""Reading and encoding tables for the command line: CSV in, model-ready arrays out.

Every cell is read as text; a column whose present values all parse as numbers is
numeric (median-imputed and scaled by :func:`make_preprocessor`), any other is
categorical (one-hot encoded). Problems a user can fix raise :class:`TableError`
with one line that names the file, the column or the line. Also the writing side:
:func:`escape_cell` and :func:`printable` keep what goes back out (a CSV opened in a
spreadsheet, a terminal) inert.
"""

import csv
import os
import shlex
import unicodedata
from contextlib import nullcontext

import numpy as np

#: Cell values read as missing (compared lower-cased, after stripping blanks).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
#: A text column with more distinct values than this, and than half the rows, is
#: refused (free text or an identifier: one-hot encoding it would be meaningless).
MAX_TEXT_LEVELS = 50


class TableError(ValueError):
    """A problem with the user's table, reported as one line."""


# -- reading -----------------------------------------------------------------------------
def read_csv(path, *, text_columns=None, progress=None):
    """Header and columns of a CSV file.

    Parameters
    ----------
    path : str
        A UTF-8 CSV file with a header line.
    text_columns : collection of str or None, default=None
        Columns always kept as text (the target: its labels are printed as
        written). None keeps every column as text.
    progress : callable or None, default=None
        ``progress(fh)``: a context manager giving a wrapper of the open binary
        file handle (e.g. ``tqdm.wrapattr`` to count the bytes read); used with
        pandas only.

    Returns
    -------
    header : list of str
    columns : list of ndarray
        One array per column: float64 where pandas parsed every cell of a
        column as a number (the same values Python's ``float`` gives), else the
        cells as strings (object; surrounding blanks are not part of a value:
        :func:`encode_columns` strips them). Without pandas every column is text.
    """
    if not os.path.exists(path):
        raise TableError(f"no such file: {path}")
    if os.path.isdir(path):
        raise TableError(f"{path} is a directory, not a CSV file")
    if not os.path.isfile(path):
        # a pipe or a device: the header and the rows are read in two passes
        raise TableError(f"{path} is not a regular file (a pipe?); save the table to a file first")
    try:
        return _read_csv_text(path, text_columns, progress)
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _pandas():
    """pandas when installed (the faster, more forgiving reader), else None."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def csv_header(path):
    """The column names on a CSV file's header line, stripped; refused when empty or repeated.

    Parameters
    ----------
    path : str
        A UTF-8 CSV file.

    Returns
    -------
    header : list of str
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header or all(not h.strip() for h in header):
        raise TableError(f"{path} is empty: expected a header line and data rows")
    return checked_header(path, [h.strip() for h in header])


def checked_header(path, header):
    """``header``, refused when a name appears twice."""
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise TableError(f"{path} has duplicate column names: {', '.join(dups)}")
    return header


def _read_csv_text(path, text_columns, progress=None):
    header = csv_header(path)
    pd = _pandas()
    if pd is not None:
        as_text = header if text_columns is None else [h for h in header if h in text_columns]
        try:
            with open(path, "rb") as raw:
                with nullcontext(raw) if progress is None else progress(raw) as fh:
                    df = _pandas_read(pd, fh, header, as_text)
        except UnicodeDecodeError:
            raise
        except ValueError as exc:  # pandas' ParserError and EmptyDataError
            raise TableError(f"{path}: {' '.join(str(exc).split())}") from exc
        if df.shape[1] != len(header):
            raise TableError(f"{path}: rows do not have the header's {len(header)} fields")
        columns = []
        for j in range(len(header)):
            col = df.pop(j)
            if col.dtype.kind in "iuf":
                columns.append(col.to_numpy(dtype=float))
            else:
                # stripped by _decode, on the distinct cells only
                columns.append(col.astype(object).fillna("").to_numpy(dtype=object))
        del df
    else:
        columns = _read_rows_with_csv(path, header)
    if len(columns[0]) == 0:
        raise TableError(f"{path} has a header but no data rows")
    return header, columns


def _spellings(word):
    """Every upper/lower-case spelling of ``word``."""
    out = [""]
    for ch in word:
        out = [w + c for w in out for c in {ch.lower(), ch.upper()}]
    return out


#: MISSING as pandas matches it (exact cells): every case spelling of each token.
_PANDAS_NA = sorted({w for token in MISSING for w in _spellings(token)})


def _pandas_read(pd, fh, header, as_text):
    # only MISSING's tokens are missing (pandas' own NA list would also take "#N/A"...);
    # a column with any other non-number cell stays text and is decided by MISSING after
    # stripping. pandas' parser gives float()'s values (checked on 400,000 numbers
    # written by repr, %.6f and %.17g: no difference)
    return pd.read_csv(
        fh,
        dtype={j: str for j, h in enumerate(header) if h in as_text},
        keep_default_na=False,
        na_values=_PANDAS_NA,
        index_col=False,
        header=0,
        names=range(len(header)),
        encoding="utf-8-sig",
    )


def _read_rows_with_csv(path, header):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) > len(header):
                raise TableError(
                    f"{path}: line {line} has {len(row)} fields, the header {len(header)}"
                )
            rows.append([c.strip() for c in row] + [""] * (len(header) - len(row)))
    return [np.array([r[j] for r in rows], dtype=object) for j in range(len(header))]


# -- encoding ----------------------------------------------------------------------------
def _distinct(values):
    """Sorted distinct cells of a text column (as str) and each cell's position among them.

    Everything after works on the distinct values only (a column of a million cells
    has a handful), so a column costs one hashing pass.
    """
    pd = _pandas()
    if pd is not None:
        codes, uniques = pd.factorize(values, sort=True)
        return np.asarray(uniques, dtype=str), codes
    uniques, codes = np.unique(values.astype(str), return_inverse=True)
    return uniques, codes


def _decode(values):
    """``(missing, numbers, codes, levels)`` of one column as :func:`read_csv` gives it.

    ``numbers`` are floats (NaN where missing) when every present cell is a number,
    else None and ``codes`` index the sorted present ``levels`` (NaN where missing).
    """
    if values.dtype.kind == "f":
        return np.isnan(values), values, None, None
    uniques, inverse = _distinct(values)
    stripped = np.char.strip(uniques)
    if not np.array_equal(stripped, uniques):
        # " a" and "a" are one level
        uniques, merge = np.unique(stripped, return_inverse=True)
        inverse = merge[inverse]
    absent = np.isin(np.char.lower(uniques), list(MISSING))
    missing = absent[inverse]
    present = uniques[~absent]
    try:
        parsed = present.astype(float)
    except ValueError:
        parsed = None
    table = np.full(len(uniques), np.nan)
    if parsed is not None:
        table[~absent] = parsed
        return missing, table[inverse], None, None
    table[~absent] = np.arange(len(present))
    return missing, None, table[inverse], present


def encode_columns(header, columns, target, drop=(), *, progress=None):
    """Features and labels of a table read by :func:`read_csv`.

    Parameters
    ----------
    header : list of str
        Column names.
    columns : list of ndarray
        The columns, as :func:`read_csv` returns them (numbers or text).
    target : str
        The column holding the labels; rows without one are left out.
    drop : sequence of str, default=()
        Columns to leave out.
    progress : callable or None, default=None
        ``progress(iterable, total)`` wraps the loop over the feature columns.

    Returns
    -------
    X : ndarray of float64, shape (n_kept, n_features)
        Numeric columns as numbers, text columns as codes ``0, 1, ...`` into
        their sorted distinct values (``kinds["levels"]``); NaN where missing.
    y : ndarray of str, shape (n_kept,)
    kinds : dict
        ``{"numeric": [...], "categorical": [...]}`` column positions in ``X``,
        and ``"levels"``: for each categorical position, its values as text.
    kept_rows : ndarray of int
        The kept rows' positions in the file (0 = first data row).
    """
    if target not in header:
        raise TableError(f"target column {target!r} not found; columns are: {', '.join(header)}")
    unknown = [d for d in drop if d not in header]
    if unknown:
        raise TableError(f"--drop names unknown column(s): {', '.join(unknown)}")
    y_raw = columns[header.index(target)]
    if y_raw.dtype.kind == "f":  # only when read as numbers (read_csv keeps the target text)
        y_raw = np.array([format(v, "g") if v == v else "" for v in y_raw], dtype=object)
    uniques, inverse = _distinct(y_raw)
    labels = np.char.strip(uniques)
    kept = ~np.isin(np.char.lower(labels), list(MISSING))[inverse]
    all_kept = bool(kept.all())
    y = labels[inverse[kept]]
    classes = np.unique(y)
    if len(classes) < 2:
        found = f"only {str(classes[0])!r}" if len(classes) else "no labels at all"
        raise TableError(f"target column {target!r} has a single class ({found}): nothing to rank")
    if len(classes) > MAX_TEXT_LEVELS and len(classes) > 0.5 * len(y):
        raise TableError(
            f"target column {target!r} has {len(classes)} distinct values in {len(y)} rows: "
            "mislabels needs class labels, not a continuous target"
        )
    names = [n for n in header if n != target and n not in drop]
    if not names:
        raise TableError("no feature columns left besides the target")
    X = np.empty((int(kept.sum()), len(names)))
    kinds = {"numeric": [], "categorical": [], "levels": {}}
    loop = enumerate(names)
    for j, name in loop if progress is None else progress(loop, len(names)):
        values = columns[header.index(name)]
        values = values if all_kept else values[kept]
        missing, numbers_, codes, levels = _decode(values)
        if missing.all():
            raise TableError(
                f"column {name!r} has no values; leave it out with --drop {shlex.quote(name)}"
            )
        if numbers_ is not None:
            if np.isinf(numbers_).any():
                raise TableError(f"column {name!r} holds infinite values, which cannot be scaled")
            with np.errstate(over="ignore", invalid="ignore"):
                spread = np.nanstd(numbers_)
            if not np.isfinite(spread):
                raise TableError(
                    f"column {name!r} holds values too large to scale (up to "
                    f"{np.nanmax(np.abs(numbers_)):.3g}); rescale it or leave it out with "
                    f"--drop {shlex.quote(name)}"
                )
            kinds["numeric"].append(j)
            X[:, j] = numbers_
            continue
        if len(levels) > MAX_TEXT_LEVELS and len(levels) > 0.5 * len(values):
            raise TableError(
                f"column {name!r} cannot be encoded: {len(levels)} distinct text values in "
                f"{len(values)} rows (free text or an identifier); leave it out with "
                f"--drop {shlex.quote(name)}"
            )
        kinds["categorical"].append(j)
        kinds["levels"][j] = levels
        X[:, j] = codes
    return X, y, kinds, np.flatnonzero(kept)


#: Up to this many one-hot columns in all, :func:`make_preprocessor` keeps its output dense.
DENSE_LEVELS = 200


def make_preprocessor(kinds, dense=False):
    """Median-imputed, scaled numeric columns next to one-hot encoded text columns.

    Parameters
    ----------
    kinds : dict
        Column positions by kind, as :func:`encode_columns` returns them.
    dense : bool, default=False
        Dense output (for a torch net). Otherwise the output is dense too when
        the text columns have at most ``DENSE_LEVELS`` levels in all (as
        ``kinds["levels"]`` tells), sparse when they have more.

    Returns
    -------
    preprocessor : sklearn.compose.ColumnTransformer
        Unfitted.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if kinds["numeric"]:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        transformers.append(("numeric", numeric, kinds["numeric"]))
    levels = kinds.get("levels")
    if levels is not None and sum(len(v) for v in levels.values()) <= DENSE_LEVELS:
        dense = True  # a few one-hot columns: stacking them sparse costs more than it saves
    if kinds["categorical"]:
        categorical = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=not dense),
        )
        transformers.append(("categorical", categorical, kinds["categorical"]))
    return ColumnTransformer(transformers, sparse_threshold=0.0 if dense else 0.3)


# -- writing -----------------------------------------------------------------------------
#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def escape_cell(value):
    """A CSV cell that a spreadsheet shows as text, never runs as a formula.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
    leading ``'`` (the usual guard); numbers such as ``-1.5`` are left as they are.

    Parameters
    ----------
    value : object
        The cell's value.

    Returns
    -------
    cell : str
    """
    text = str(value)
    if text.startswith(FORMULA_LEADS) and not _is_number(text):
        return "'" + text
    return text


def _unsafe(ch):
    o = ord(ch)
    # C0 and C1 controls (newlines and tabs too: they would break a table's rows) and
    # format characters such as the bidi overrides, which reorder what a terminal shows
    return o < 0x20 or 0x7F <= o <= 0x9F or unicodedata.category(ch) == "Cf"


def printable(text):
    """``text`` with control and format characters shown as escapes (``\\x1b``, ``\\u202e``).

    Terminal escape sequences, newlines, tabs and bidi overrides from a user's file
    are shown, never acted on.

    Parameters
    ----------
    text : object
        What is about to be printed.

    Returns
    -------
    safe : str
    """
    text = str(text)
    if not any(map(_unsafe, text)):
        return text
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}") if _unsafe(c) else c
        for c in text
    )


#: The columns the ranked file puts before the input's own (and ``flagged``).
RANKED_COLUMNS = ("rank", "row", "score", "predicted", "flagged")


def ranked_columns(header):
    """Names of the added columns: ``RANKED_COLUMNS``, prefixed when the input has them.

    An input column called ``score`` next to the added ``score`` would make a
    ``csv.DictReader`` of the ranked file read the wrong one, so on any clash all
    added columns become ``skinfluence_rank``, ``skinfluence_row``, ...
    """
    if set(RANKED_COLUMNS) & set(header):
        return [f"skinfluence_{c}" for c in RANKED_COLUMNS]
    return list(RANKED_COLUMNS)


def write_ranked_csv(path, source, rows, order, scores, predicted, flagged):
    """Write every row of ``source``, most suspicious first, with rank, row, score, prediction
    and whether it is flagged.

    The input is read again as text, so its cells go out as they were written;
    every cell that came from the input (and the predicted labels) goes through
    :func:`escape_cell`.

    Parameters
    ----------
    path : str
        The ranked CSV file to write.
    source : str
        The input CSV file.
    rows : ndarray of int
        Positions in ``source`` of the rows that were scored.
    order : ndarray of int
        Positions into ``rows``, most suspicious first.
    scores, predicted : ndarray of shape (len(rows),)
        Each scored row's score and predicted label.
    flagged : ndarray of bool of shape (len(rows),)
        Rows judged mislabeled (written as 1 / 0).
    """
    header, columns = read_csv(source)
    added = ranked_columns(header)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*added, *map(escape_cell, header)])
        for r, i in enumerate(order, start=1):
            cells = [escape_cell(col[rows[i]].strip()) for col in columns]
            writer.writerow(
                [
                    r,
                    rows[i],
                    repr(float(scores[i])),
                    escape_cell(predicted[i]),
                    int(flagged[i]),
                    *cells,
                ]
            )
