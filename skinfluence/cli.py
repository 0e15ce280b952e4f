"""The command line: ``skinfluence demo`` and ``skinfluence mislabels FILE.csv``.

Also ``python -m skinfluence``. Errors a user can cause (a bad file, a bad
argument) print one line on stderr and exit with status 2, never a traceback.
"""

import argparse
import csv
import os
import shlex
import sys
import time
import warnings

import numpy as np

DEMO_FRACTIONS = (0.05, 0.1, 0.2, 0.3)

#: Cell values read as missing (compared lower-cased, after stripping blanks).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
#: A text column with more distinct values than this, and than half the rows, is
#: refused (free text or an identifier: one-hot encoding it would be meaningless).
MAX_TEXT_LEVELS = 50


class UsageError(ValueError):
    """A problem with the user's input, reported as one line."""


# -- demo ------------------------------------------------------------------------------
def _demo(args):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skinfluence import InfluenceExplainer
    from skinfluence.datasets import flip_labels
    from skinfluence.metrics import fraction_found
    from skinfluence.mislabel import auto_method

    t0 = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed
    )
    y_noisy, flipped = flip_labels(y_train, args.noise, random_state=args.seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, tol=1e-8, max_iter=5000))
    ex = InfluenceExplainer(model).fit(X_train, y_noisy)
    self_inf = ex.self_influence()
    loss = ex.loss()
    auto = ex.mislabel_scores("auto")

    print(
        f"skinfluence demo: digits, {len(y_train)} training images, "
        f"{flipped.sum()} labels flipped ({args.noise:.0%}, seed {args.seed})"
    )
    print(
        f"model: StandardScaler + LogisticRegression(C={args.C}), "
        f"{ex.n_params_} parameters, solver={ex.solver_}, "
        f"Hessian condition {ex.hessian_condition_:.3g}, "
        f"test accuracy {ex.score(X_test, y_test):.3f}"
    )
    print()
    print("Fraction of flipped labels found after checking the top of each ranking")
    auto_name = f"auto ({auto_method(ex)})"
    header = (
        f"{'checked':>8} | {'self-influence':>14} | {'training loss':>13} | "
        f"{auto_name:>{len(auto_name)}} | {'random (expected)':>17}"
    )
    print(header)
    print("-" * len(header))
    found = [fraction_found(flipped, s, DEMO_FRACTIONS) for s in (self_inf, loss, auto)]
    for f, a, b, c in zip(DEMO_FRACTIONS, *found, strict=True):
        print(f"{f:>8.0%} | {a:>14.2f} | {b:>13.2f} | {c:>{len(auto_name)}.2f} | {f:>17.2f}")

    pred = ex.estimator_.predict(X_test)
    wrong = np.flatnonzero(pred != y_test)
    t = wrong[0] if wrong.size else None
    if t is not None:
        res = ex.most_influential(X_test[t : t + 1], y_test[t : t + 1], k=args.top)
        print()
        print(f"Test image {t}: true label {y_test[t]}, predicted {pred[t]}.")
        print("I_up,loss (Koh & Liang sign): negative = helpful, positive = harmful")
        for kind in ("helpful", "harmful"):
            print(f"  most {kind}:")
            for i, v in zip(res[f"{kind}_indices"][0], res[f"{kind}_values"][0], strict=True):
                note = f"  (flipped from {y_train[i]})" if flipped[i] else ""
                print(f"    train #{i:<5d} label {y_noisy[i]}  influence {v:+9.3f}{note}")
    if args.plots:
        test = None if t is None else (X_test[t : t + 1], y_test[t : t + 1])
        for path in _demo_plots(args.plots, ex, flipped, X_train, y_noisy, test, args.top):
            print(f"wrote {path}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def _pyplot():
    """pyplot on the non-interactive Agg backend (the command line only writes files)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise UsageError(
            "writing plots needs matplotlib: pip install matplotlib (or skinfluence[plot])"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _demo_plots(directory, ex, flipped, X_train, y_noisy, test, k):
    """Write the demo's figures into ``directory``; return their paths."""
    plt = _pyplot()
    from skinfluence.plotting import InfluenceDisplay, MislabelDisplay, SelfInfluenceDisplay

    os.makedirs(directory, exist_ok=True)
    paths = []

    def save(disp, name):
        path = os.path.join(directory, name)
        disp.figure_.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(disp.figure_)
        paths.append(path)

    save(MislabelDisplay.from_explainer(ex, flipped, max_fraction=0.4), "detection_curve.png")
    save(SelfInfluenceDisplay.from_explainer(ex, flagged=flipped, log=True), "self_influence.png")
    if test is not None:
        disp = InfluenceDisplay.from_explainer(
            ex, *test, X_train=X_train, y_train=y_noisy, k=k, image_shape=(8, 8)
        )
        save(disp, "influence.png")
    return paths


# -- mislabels: reading the CSV ---------------------------------------------------------------
def _read_csv(path):
    """Header and columns of a CSV file, every cell as a stripped string."""
    if not os.path.exists(path):
        raise UsageError(f"no such file: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a CSV file")
    try:
        return _read_csv_text(path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _pandas():
    """pandas when installed (the faster, more forgiving reader), else None."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _read_csv_text(path):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header or all(not h.strip() for h in header):
        raise UsageError(f"{path} is empty: expected a header line and data rows")
    header = [h.strip() for h in header]
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise UsageError(f"{path} has duplicate column names: {', '.join(dups)}")
    pd = _pandas()
    if pd is not None:
        try:
            df = pd.read_csv(
                path, dtype=str, na_filter=False, index_col=False, encoding="utf-8-sig"
            )
        except UnicodeDecodeError:
            raise
        except ValueError as exc:  # pandas' ParserError and EmptyDataError
            raise UsageError(f"{path}: {_one_line(exc)}") from exc
        if df.shape[1] != len(header):
            raise UsageError(f"{path}: rows do not have the header's {len(header)} fields")
        columns = [
            df.iloc[:, j].fillna("").str.strip().to_numpy(dtype=object) for j in range(len(header))
        ]
    else:
        columns = _read_rows_with_csv(path, header)
    if len(columns[0]) == 0:
        raise UsageError(f"{path} has a header but no data rows")
    return header, columns


def _read_rows_with_csv(path, header):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) > len(header):
                raise UsageError(
                    f"{path}: line {line} has {len(row)} fields, the header {len(header)}"
                )
            rows.append([c.strip() for c in row] + [""] * (len(header) - len(row)))
    return [np.array([r[j] for r in rows], dtype=object) for j in range(len(header))]


def _is_missing(values):
    return np.array([v.lower() in MISSING for v in values], dtype=bool)


def _as_numbers(values, missing):
    """Floats (NaN where missing), or None when some present value is not a number."""
    out = np.full(len(values), np.nan)
    try:
        out[~missing] = [float(v) for v in values[~missing]]
    except ValueError:
        return None
    return out


def _encode_columns(header, columns, target, drop):
    """``(X, y, kinds, kept_rows)``: an object array for a ColumnTransformer."""
    if target not in header:
        raise UsageError(f"target column {target!r} not found; columns are: {', '.join(header)}")
    unknown = [d for d in drop if d not in header]
    if unknown:
        raise UsageError(f"--drop names unknown column(s): {', '.join(unknown)}")
    y_raw = columns[header.index(target)]
    kept = ~_is_missing(y_raw)
    n_dropped = int((~kept).sum())
    if n_dropped:
        print(
            f"skinfluence: note: {n_dropped} rows without a {target!r} label are left out",
            file=sys.stderr,
        )
    y = y_raw[kept].astype(str)
    classes = np.unique(y)
    if len(classes) < 2:
        found = f"only {str(classes[0])!r}" if len(classes) else "no labels at all"
        raise UsageError(f"target column {target!r} has a single class ({found}): nothing to rank")
    if len(classes) > MAX_TEXT_LEVELS and len(classes) > 0.5 * len(y):
        raise UsageError(
            f"target column {target!r} has {len(classes)} distinct values in {len(y)} rows: "
            "mislabels needs class labels, not a continuous target"
        )
    features, kinds = [], {"numeric": [], "categorical": []}
    for name, values in zip(header, columns, strict=True):
        if name == target or name in drop:
            continue
        values = values[kept]
        missing = _is_missing(values)
        if missing.all():
            raise UsageError(
                f"column {name!r} has no values; leave it out with --drop {shlex.quote(name)}"
            )
        numbers_ = _as_numbers(values, missing)
        if numbers_ is not None:
            if np.isinf(numbers_).any():
                raise UsageError(f"column {name!r} holds infinite values, which cannot be scaled")
            kinds["numeric"].append(len(features))
            features.append(numbers_)
            continue
        levels = len(set(values[~missing]))
        if levels > MAX_TEXT_LEVELS and levels > 0.5 * len(values):
            raise UsageError(
                f"column {name!r} cannot be encoded: {levels} distinct text values in "
                f"{len(values)} rows (free text or an identifier); leave it out with "
                f"--drop {shlex.quote(name)}"
            )
        cats = values.copy()
        cats[missing] = np.nan
        kinds["categorical"].append(len(features))
        features.append(cats)
    if not features:
        raise UsageError("no feature columns left besides the target")
    X = np.empty((int(kept.sum()), len(features)), dtype=object)
    for j, col in enumerate(features):
        X[:, j] = col
    return X, y, kinds, np.flatnonzero(kept)


def _preprocessor(kinds, dense=False):
    """Median-imputed, scaled numeric columns next to one-hot encoded text columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if kinds["numeric"]:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        transformers.append(("numeric", numeric, kinds["numeric"]))
    if kinds["categorical"]:
        categorical = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=not dense),
        )
        transformers.append(("categorical", categorical, kinds["categorical"]))
    return ColumnTransformer(transformers, sparse_threshold=0.0 if dense else 0.3)


def _logreg_pipeline(X, kinds, n_classes, args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("preprocess", _preprocessor(kinds)),
            ("model", LogisticRegression(C=args.C, tol=1e-8, max_iter=5000)),
        ]
    )


def _mlp_pipeline(X, kinds, n_classes, args):
    try:
        import torch

        from skinfluence.tabular_mlp import make_mlp_classifier
    except ImportError as exc:
        raise ImportError(
            f"--model mlp needs torch and skorch ({exc}); pip install 'skinfluence[torch]'"
        ) from exc
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    preprocess = _preprocessor(kinds, dense=True)
    width = preprocess.fit(X).transform(X[:1]).shape[1]
    torch.manual_seed(args.seed)
    return Pipeline(
        [
            ("preprocess", preprocess),
            ("float32", FunctionTransformer(np.asarray, kw_args={"dtype": np.float32})),
            ("model", make_mlp_classifier(width, n_classes, max_epochs=args.epochs)),
        ]
    )


#: ``--model`` choices: name -> factory(X, kinds, n_classes, args) of an unfitted estimator
#: for integer labels ``0 .. n_classes - 1``.
MODELS = {"logreg": _logreg_pipeline, "mlp": _mlp_pipeline}


# -- mislabels: the command ---------------------------------------------------------------------
def _mislabels(args):
    from skinfluence import InfluenceExplainer
    from skinfluence.mislabel import auto_method, rank_suspects

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    header, columns = _read_csv(args.file)
    X, y, kinds, rows = _encode_columns(header, columns, args.target, args.drop or [])
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    classes, y_index = np.unique(y, return_inverse=True)
    _check_folds(args, classes, np.bincount(y_index))
    model = MODELS[args.model](X, kinds, len(classes), args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a net is not at an exact minimum and its Hessian can be indefinite: damp it
        damping = 0.01 if args.model == "mlp" else 0.0
        ex = InfluenceExplainer(model, damping=damping).fit(X, y_index)
        scores = ex.mislabel_scores(args.method, cv=args.cv)
    shown = set()
    for w in caught:
        message = _one_line(w.message)
        # deprecation notices inside torch or skorch are for developers, not for this user
        if issubclass(w.category, DeprecationWarning | FutureWarning) or message in shown:
            continue
        shown.add(message)
        print(f"skinfluence: warning: {message}", file=sys.stderr)
    method = f"{auto_method(ex)} (auto)" if args.method == "auto" else args.method
    predicted = classes[np.asarray(ex.estimator_.predict(X)).astype(int)]
    order = rank_suspects(scores)

    print(
        f"skinfluence mislabels: {args.file}, {len(y)} rows, {len(kinds['numeric'])} numeric "
        f"and {len(kinds['categorical'])} categorical feature columns, target {args.target!r} "
        f"with {len(classes)} classes"
    )
    print(
        f"model: {args.model}, {ex.n_params_} parameters, solver={ex.solver_}, training "
        f"accuracy {np.mean(predicted == y):.3f}; score: {method}, higher = more suspicious"
    )
    print()
    print(f"{'rank':>5} {'row':>7}  {'label':<16} {'predicted':<16} {'score':>10}")
    for r, i in enumerate(order[: args.top], start=1):
        print(f"{r:>5} {rows[i]:>7}  {_cut(y[i]):<16} {_cut(predicted[i]):<16} {scores[i]:>10.4g}")
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["rank", "row", "score", "predicted", *header])
            for r, i in enumerate(order, start=1):
                cells = [col[rows[i]] for col in columns]
                writer.writerow([r, rows[i], repr(float(scores[i])), predicted[i], *cells])
        print(f"\nwrote {len(order)} ranked rows to {args.out}")
    if args.plot:
        plt = _pyplot()
        from skinfluence.plotting import SelfInfluenceDisplay

        disp = SelfInfluenceDisplay.from_scores(scores, k=min(args.top, len(scores)), name=method)
        disp.figure_.savefig(args.plot, dpi=110, bbox_inches="tight")
        plt.close(disp.figure_)
        print(f"wrote {args.plot}")
    return 0


def _check_folds(args, classes, counts):
    """A cross-fitted score needs every class in every fold: say so in the user's terms."""
    from skinfluence.mislabel import resolve_method

    family = "torch" if args.model == "mlp" else "linear"
    method = resolve_method(args.method, family)
    if method.startswith("cv_") and args.cv >= 2 and counts.min() < args.cv:
        rare = classes[counts.argmin()]
        raise UsageError(
            f"class {str(rare)!r} has only {counts.min()} rows, fewer than the {args.cv} folds "
            f"the {method} score refits on; pass a smaller --cv or --method alo_loss"
        )


def _cut(value, width=16):
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(message):
    return " ".join(str(message).split())


# -- parser and entry point ------------------------------------------------------------------
def build_parser():
    """The argument parser of the ``skinfluence`` command."""
    from skinfluence.mislabel import METHODS

    parser = argparse.ArgumentParser(
        prog="skinfluence",
        description="Influence functions for scikit-learn models (Koh & Liang, 2017).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="find flipped labels in digits (self-influence, loss, auto), and explain one error",
    )
    demo.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    demo.add_argument("--top", type=int, default=5, help="training points to show")
    demo.add_argument("--plots", metavar="DIR", help="write the demo's figures (PNG) into DIR")
    demo.set_defaults(func=_demo)

    mis = sub.add_parser(
        "mislabels",
        help="rank the rows of a CSV file by how likely their label is wrong",
        description="Fit a model on a CSV file (numeric columns imputed and scaled, text "
        "columns one-hot encoded) and rank its rows by a mislabel score.",
    )
    mis.add_argument("file", help="CSV file with a header line")
    mis.add_argument("--target", required=True, help="the column holding the labels")
    mis.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="logreg",
        help="logreg: logistic regression; mlp: a one-hidden-layer torch net (needs torch, skorch)",
    )
    mis.add_argument(
        "--method",
        choices=["auto", *METHODS],
        default="auto",
        help="the mislabel score (default: auto, the best in benchmarks/bench_mislabel.py)",
    )
    mis.add_argument("--top", type=int, default=10, help="rows to print")
    mis.add_argument("--out", metavar="RANKED.csv", help="write every row, ranked, with its score")
    mis.add_argument("--plot", metavar="PLOT.png", help="write the score distribution, top marked")
    mis.add_argument("--drop", action="append", metavar="COLUMN", help="leave a column out")
    mis.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of logreg")
    mis.add_argument(
        "--cv", type=int, default=5, help="folds of the cross-fitted scores (auto, cv_*)"
    )
    mis.add_argument("--epochs", type=int, default=500, help="full-batch training epochs of mlp")
    mis.add_argument("--seed", type=int, default=0, help="random seed of mlp's initialisation")
    mis.set_defaults(func=_mislabels)
    return parser


def main(argv=None):
    """Entry point of the ``skinfluence`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError, csv.Error) as exc:
        print(f"skinfluence: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
