"""The command line: ``skinfluence demo`` and ``skinfluence mislabels FILE.csv``.

Also ``python -m skinfluence``. Errors a user can cause (a bad file, a bad
argument) print one line on stderr and exit with status 2, never a traceback;
Ctrl-C prints one line and exits with 130. Output paths are checked before any
computation, and whatever came from the input is printed with control characters
shown as escapes and written to CSV with formula-leading cells guarded
(:mod:`skinfluence.tabular`).
"""

import argparse
import csv
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np

from skinfluence.tabular import (
    encode_columns,
    make_preprocessor,
    printable,
    ranked_columns,
    read_csv,
    write_ranked_csv,
)

DEMO_FRACTIONS = (0.05, 0.1, 0.2, 0.3)


class UsageError(ValueError):
    """A problem with the user's input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported as one line (no usage block) and status 2."""

    def error(self, message):
        self.exit(2, f"skinfluence: error: {printable(message)} (see {self.prog} --help)\n")


# -- argument types and output paths -----------------------------------------------------
def _number(kind, low, high=None, *, low_open=False, high_open=False):
    """An argparse type: a number of ``kind`` in a range, else argparse's one-line error."""
    text = f"{'an integer' if kind is int else 'a number'} "
    if high is None:
        text += f"{'>' if low_open else '>='} {low}"
    else:
        text += f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(value):
        try:
            x = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {text}, got {value!r}") from None
        inside = (x > low if low_open else x >= low) and (
            high is None or (x < high if high_open else x <= high)
        )
        if not (inside and np.isfinite(x)):
            raise argparse.ArgumentTypeError(f"must be {text}, got {value!r}")
        return x

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _bytes(value):
    """An argparse type: a size such as ``64MB`` or ``1000000`` (bytes), as dask reads it."""
    import re

    if not re.fullmatch(r"\s*\d+(\.\d*)?\s*([kMGT]i?B|[kKMGT]|B)?\s*", value):
        raise argparse.ArgumentTypeError(
            f"must be a size in bytes such as 64MB, 512kB or 1000000, got {value!r}"
        )
    return value.strip()


def _check_output_file(path, option, inputs=(), formats=None):
    """Refuse an output path that cannot be written or that is one of the inputs.

    ``formats``, when given, are the file extensions the writer supports.
    """
    if path is None:
        return
    if not path.strip():
        raise UsageError(f"{option} needs a file name, got an empty one")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise UsageError(f"{option} {path} names a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path} is not writable")
    if formats is not None:
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        if ext not in formats:
            raise UsageError(
                f"{option} {path}: give a file name ending in one of "
                f"{', '.join('.' + f for f in sorted(formats))}"
            )
    for other in inputs:
        if os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other):
            raise UsageError(f"{option} {path} is the input file; give another name")
        if os.path.abspath(path) == os.path.abspath(other):
            raise UsageError(f"{option} {path} is the input file; give another name")


def _check_output_dir(path, option):
    if path is None:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path} cannot be created: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path} is not writable")


@contextmanager
def _warnings_as_lines():
    """Warnings raised inside, printed once each as one line on stderr afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = set()
    for w in caught:
        message = _one_line(w.message)
        # deprecation notices inside torch or skorch are for developers, not for this user
        if issubclass(w.category, DeprecationWarning | FutureWarning) or message in shown:
            continue
        shown.add(message)
        print(f"skinfluence: warning: {message}", file=sys.stderr)


# -- demo ------------------------------------------------------------------------------
def _demo(args):
    _check_output_dir(args.plots, "--plots")
    if args.plots:
        _pyplot()  # a missing matplotlib is found before the work, not after
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
    with _warnings_as_lines():
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
        top = min(args.top, ex.n_train_)  # like head -n: asking for more shows them all
        res = ex.most_influential(X_test[t : t + 1], y_test[t : t + 1], k=top)
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
        top = min(args.top, ex.n_train_)
        for path in _demo_plots(args.plots, ex, flipped, X_train, y_noisy, test, top):
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


def _logreg_pipeline(X, kinds, n_classes, args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("preprocess", make_preprocessor(kinds)),
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

    preprocess = make_preprocessor(kinds, dense=True)
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
#: ``--model auto`` chooses between these.
MODEL_CHOICES = ("auto", *MODELS)
#: Fits with a raised damping before a Hessian that is not positive definite is an error.
DAMPING_ATTEMPTS = 4


# -- mislabels: the command ---------------------------------------------------------------------
def _stderr_is_terminal():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _bar(desc, total=1, unit="step", **kwargs):
    """A progress bar on stderr for one stage, silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=f"skinfluence: {desc}",
        unit=unit,
        file=sys.stderr,
        disable=not _stderr_is_terminal(),
        **kwargs,
    )


@contextmanager
def _stage(desc):
    """One step of work shown as a bar that fills when the step is done."""
    with _bar(desc) as bar:
        yield
        bar.update()


class _CountingReader:
    """A binary file handle whose reads move a progress bar."""

    def __init__(self, fh, bar):
        self._fh, self._bar = fh, bar

    def read(self, size=-1):
        data = self._fh.read(size)
        self._bar.update(len(data))
        return data

    def read1(self, size=-1):  # what a TextIOWrapper around it calls
        data = self._fh.read1(size)
        self._bar.update(len(data))
        return data

    def readinto(self, buffer):
        n = self._fh.readinto(buffer)
        self._bar.update(n or 0)
        return n

    def __iter__(self):
        return iter(self._fh)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _reading_bar(path):
    """``progress`` of :func:`read_csv`: the bytes read, on a terminal only."""
    if not _stderr_is_terminal():
        return None

    @contextmanager
    def wrap(fh):
        total = os.path.getsize(path)
        with _bar("reading", total=total, unit="B", unit_scale=True, unit_divisor=1024) as bar:
            yield _CountingReader(fh, bar)

    return wrap


def _columns_bar(iterable, total):
    with _bar("encoding", total=total, unit="column") as bar:
        for item in iterable:
            yield item
            bar.update()


def _fit_explainer(model_name, X, y_index, kinds, n_classes, args, *, cross_fit=False):
    """The explainer of one ``--model``, fitted (folds shuffled with ``--seed``).

    With ``cross_fit`` the fold refits are run too. Without ``--damping``, a Hessian
    (or a fold's) that is not positive definite with the default damping is refitted
    with the damping its error advises, and a note says so.
    """
    from skinfluence import InfluenceExplainer
    from skinfluence.exceptions import SingularHessianError

    # a net is not at an exact minimum and its Hessian can be indefinite: damp it
    damping = args.damping
    if damping is None:
        damping = 0.01 if model_name == "mlp" else 0.0
    for attempt in range(1, DAMPING_ATTEMPTS + 1):
        # built (and seeded) anew: every attempt trains the net a fresh run trains
        model = MODELS[model_name](X, kinds, n_classes, args)
        # folds are shuffled with the seed: a table sorted by some column would otherwise
        # leave whole groups out of a fold
        ex = InfluenceExplainer(
            model, damping=damping, random_state=args.seed, verbose=int(_stderr_is_terminal())
        )
        try:
            with _stage(f"fitting {model_name}"):
                ex.fit(X, y_index)
            if cross_fit:  # the fold refits (cached: the scores reuse them)
                ex.cross_fitted_losses(cv=args.cv)
            return ex
        except SingularHessianError as exc:
            # the default damping is ours to raise (the same seed trains the same net);
            # a damping the user chose is theirs: the error says what would work
            if args.damping is not None or exc.damping is None or attempt == DAMPING_ATTEMPTS:
                raise
            print(
                f"skinfluence: note: the {model_name}'s Hessian is not positive definite "
                f"with damping {damping:g}; refitting with damping {exc.damping:g}, the "
                "smallest that makes it so (--damping chooses another)",
                file=sys.stderr,
            )
            damping = exc.damping
    raise AssertionError("unreachable")


def _choose_model(X, y_index, kinds, n_classes, args):
    """``--model auto``: the candidate with the lower cross-validated log-loss."""
    fitted, cv_loss = {}, {}
    for name in ("logreg", "mlp"):
        ex = _fit_explainer(name, X, y_index, kinds, n_classes, args, cross_fit=True)
        fitted[name] = ex
        # the same folds as the cross-fitted scores: these refits are reused by them
        cv_loss[name] = float(np.mean(ex.cross_fitted_losses(cv=args.cv).held_out))
    chosen = min(cv_loss, key=cv_loss.get)
    return chosen, fitted[chosen], cv_loss


def _check_outputs(args):
    """``--out`` and ``--plot`` checked before any work (and matplotlib found)."""
    _check_output_file(args.out, "--out", inputs=[args.file])
    if args.plot is not None:  # a missing matplotlib is found before the work, not after
        _pyplot()
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        _check_output_file(args.plot, "--plot", [args.file, args.out or args.file], formats)


def _mislabels(args):
    from skinfluence.mislabel import auto_method, rank_suspects

    if args.dask or args.scheduler is not None:
        return _mislabels_on_dask(args)
    _check_outputs(args)
    header, columns = read_csv(
        args.file, text_columns={args.target}, progress=_reading_bar(args.file)
    )
    n_file_rows = len(columns[0])
    X, y, kinds, rows = encode_columns(
        header, columns, args.target, args.drop or [], progress=_columns_bar
    )
    del columns  # the ranked file reads the input again, as text
    _note_dropped(args, n_file_rows - len(rows))
    classes, y_index = np.unique(y, return_inverse=True)
    can_flag = _check_folds(args, classes, np.bincount(y_index))
    with _warnings_as_lines():
        if args.model == "auto":
            model_name, ex, cv_losses = _choose_model(X, y_index, kinds, len(classes), args)
        else:
            model_name = args.model
            # the fold refits (with can_flag), one bar of their own (the explainer's verbose)
            ex = _fit_explainer(
                model_name, X, y_index, kinds, len(classes), args, cross_fit=can_flag
            )
        with _stage("scoring"):
            scores = ex.mislabel_scores(args.method, cv=args.cv)
            flagged = np.zeros(len(y), dtype=bool)
            if can_flag:
                flagged[ex.find_mislabeled(method=args.method, cv=args.cv)] = True
    method = f"{auto_method(ex)} (auto)" if args.method == "auto" else args.method
    predicted = classes[np.asarray(ex.estimator_.predict(X)).astype(int)]
    order = rank_suspects(scores)

    _print_header(args, len(y), kinds, classes)
    if args.model == "auto":
        losses = ", ".join(f"{k} {v:.4f}" for k, v in cv_losses.items())
        print(
            f"model: auto picked {model_name} by {args.cv}-fold cross-validated log-loss ({losses})"
        )
    _print_model(args, model_name, ex, np.mean(predicted == y), method, can_flag, flagged)
    top = order[: args.top]
    _print_top(rows[top], y[top], predicted[top], scores[top], flagged[top])
    if args.out is not None:
        _note_renamed_columns(header)
        write_ranked_csv(args.out, args.file, rows, order, scores, predicted, flagged)
        print(f"\nwrote {len(order)} ranked rows to {printable(args.out)}")
    _write_plot(args, scores, method)
    return 0


def _note_dropped(args, n_dropped):
    if n_dropped:
        print(
            f"skinfluence: note: {n_dropped} rows without a {printable(repr(args.target))} "
            "label are left out",
            file=sys.stderr,
        )


def _print_header(args, n_rows, kinds, classes):
    print(
        f"skinfluence mislabels: {printable(args.file)}, {n_rows} rows, "
        f"{len(kinds['numeric'])} numeric and {len(kinds['categorical'])} categorical feature "
        f"columns, target {printable(repr(args.target))} with {len(classes)} classes"
    )


def _print_model(args, model_name, ex, accuracy, method, can_flag, flagged):
    print(
        f"model: {model_name}, {ex.n_params_} parameters, solver={ex.solver_}, training "
        f"accuracy {accuracy:.3f}; score: {method}, higher = more suspicious"
    )
    if can_flag:
        print(
            f"flagged: {flagged.sum()} rows ({flagged.mean():.1%}) judged mislabeled: "
            f"confident learning on the {args.cv}-fold cross-fitted probabilities, taken by "
            "the score (marked * below, 1 in the flagged column of --out)"
        )


def _print_top(rows, labels, predicted, scores, flagged):
    """The table of the top rows (given in rank order)."""
    print()
    print(f"{'rank':>5} {'row':>7}  {'label':<16} {'predicted':<16} {'score':>10} flagged")
    for r, (row, label, pred, score, flag) in enumerate(
        zip(rows, labels, predicted, scores, flagged, strict=True), start=1
    ):
        mark = "*" if flag else ""
        print(f"{r:>5} {row:>7}  {_cut(label):<16} {_cut(pred):<16} {score:>10.4g} {mark}")


def _note_renamed_columns(header):
    if ranked_columns(header)[0] != "rank":
        print(
            "skinfluence: note: the input has a column named like an added one (rank, "
            "row, score, predicted, flagged): the added columns are prefixed with "
            "skinfluence_",
            file=sys.stderr,
        )


def _write_plot(args, scores, method):
    if args.plot is None:
        return
    plt = _pyplot()
    from skinfluence.plotting import SelfInfluenceDisplay

    disp = SelfInfluenceDisplay.from_scores(scores, k=min(args.top, len(scores)), name=method)
    disp.figure_.savefig(args.plot, dpi=110, bbox_inches="tight")
    plt.close(disp.figure_)
    print(f"wrote {printable(args.plot)}")


# -- mislabels on dask ------------------------------------------------------------------------
@contextmanager
def _dask_client(args):
    """A client of ``--scheduler ADDRESS``, or of a LocalCluster started for ``--dask``."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"--dask and --scheduler need dask ({exc}); pip install 'skinfluence[dask]'"
        ) from exc
    if args.scheduler is not None:
        try:
            client = distributed.Client(args.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(
                f"--scheduler {args.scheduler}: cannot connect ({_one_line(exc)})"
            ) from exc
        with client:
            yield client
        return
    # the sort of the ranked rows logs each shuffle's start and end: not news to this user
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with (
        distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _dask_predictions(Z, model):
    import dask.array as da

    def predict(block):
        return model.predict(block).astype(np.intp)

    return da.map_blocks(predict, Z, drop_axis=1, dtype=np.intp)


def _mislabels_on_dask(args):
    """``mislabels`` with dask: the table is read, encoded and scored on the workers."""
    flag = "--dask" if args.scheduler is None else "--scheduler"
    if args.model != "logreg":
        raise UsageError(
            f"--model {args.model} is not available with {flag}: the dask path fits "
            "logistic regression (its fit and scores are reductions over the rows); "
            f"pass --model logreg, or leave out {flag} to fit in memory"
        )
    if args.workers is not None and args.scheduler is not None:
        raise UsageError("--workers sizes the LocalCluster of --dask; --scheduler has its own")
    _check_outputs(args)
    import dask
    from sklearn.linear_model import LogisticRegression

    from skinfluence import InfluenceExplainer
    from skinfluence.dask import table as dask_table
    from skinfluence.mislabel import auto_method, rank_suspects

    header, parts, meta = dask_table.read_table(args.file, blocksize=args.blocksize)
    dask_table.feature_names(header, args.target, args.drop or [])  # before any cluster
    with _dask_client(args) as client:
        print(f"skinfluence: dask dashboard: {client.dashboard_link}", file=sys.stderr)
        with _stage("reading"):
            tab = dask_table.census(parts, header, args.target, args.drop or [])
        kinds, classes = tab["kinds"], tab["classes"]
        n = int(sum(tab["kept"]))
        _note_dropped(args, tab["n_file_rows"] - n)
        can_flag = _check_folds(args, classes, tab["class_counts"])
        with _stage("encoding"):
            X, y, rows = dask_table.encode(parts, tab, args.target)
            stats = dask_table.fit_preprocessor(X, tab)
            (Z,) = dask.persist(dask_table.preprocess(X, stats))
            del X
        with _warnings_as_lines():
            ex = InfluenceExplainer(
                LogisticRegression(C=args.C, tol=1e-8, max_iter=5000),
                damping=args.damping or 0.0,
                random_state=args.seed,
                verbose=int(_stderr_is_terminal()),
            )
            with _stage("fitting logreg"):
                ex.fit(Z, y)
            with _stage("scoring"):
                predicted = _dask_predictions(Z, ex.estimator_)
                scores, predicted, accuracy = dask.compute(
                    ex.mislabel_scores(args.method, cv=args.cv),
                    predicted,
                    (predicted == y).mean(),
                )
                flagged = np.zeros(n, dtype=bool)
                if can_flag:
                    flagged[ex.find_mislabeled(method=args.method, cv=args.cv)] = True
        method = f"{auto_method(ex)} (auto)" if args.method == "auto" else args.method
        order = rank_suspects(scores)
        top = order[: args.top]
        top_rows, top_y = dask.compute(rows[top], y[top])
        _print_header(args, n, kinds, classes)
        _print_model(args, "logreg", ex, accuracy, method, can_flag, flagged)
        _print_top(top_rows, classes[top_y], classes[predicted[top]], scores[top], flagged[top])
        if args.out is not None:
            _note_renamed_columns(header)
            with _stage("writing"):
                dask_table.write_ranked(
                    args.out,
                    parts,
                    meta,
                    header,
                    args.target,
                    tab,
                    order,
                    scores,
                    predicted,
                    flagged,
                )
            print(f"\nwrote {n} ranked rows to {printable(args.out)}")
    _write_plot(args, scores, method)
    return 0


def _check_folds(args, classes, counts):
    """Whether every class fits in every fold; an error in the user's terms when the
    score needs the folds, a note (no flagged set) when only the flagging does."""
    from skinfluence.mislabel import resolve_method

    family = "linear" if args.model == "logreg" else "torch"
    method = resolve_method(args.method, family)
    if counts.min() >= args.cv:
        return True
    rare, n_rare = classes[counts.argmin()], counts.min()
    if method.startswith("cv_") or args.model == "auto":
        raise UsageError(
            f"class {printable(repr(str(rare)))} has only {n_rare} rows, fewer than the "
            f"{args.cv} folds the {method} score refits on; pass a smaller --cv or "
            "--method alo_loss"
        )
    print(
        f"skinfluence: note: class {printable(repr(str(rare)))} has only {n_rare} rows, fewer "
        f"than the {args.cv} folds: no rows are flagged (pass a smaller --cv)",
        file=sys.stderr,
    )
    return False


def _cut(value, width=16):
    text = printable(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(message):
    return printable(" ".join(str(message).split()))


# -- parser and entry point ------------------------------------------------------------------
def build_parser():
    """The argument parser of the ``skinfluence`` command."""
    from skinfluence.mislabel import METHODS

    parser = _Parser(
        prog="skinfluence",
        description="Influence functions for scikit-learn models (Koh & Liang, 2017).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="find flipped labels in digits (self-influence, loss, auto), and explain one error",
    )
    demo.add_argument(
        "--noise",
        type=_number(float, 0, 1, low_open=True, high_open=True),
        default=0.1,
        help="fraction of labels flipped, in (0, 1)",
    )
    demo.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0, help="random seed")
    demo.add_argument(
        "--C", type=_number(float, 0, low_open=True), default=1.0, help="inverse L2 strength"
    )
    demo.add_argument("--top", type=_number(int, 1), default=5, help="training points to show")
    demo.add_argument("--plots", metavar="DIR", help="write the demo's figures (PNG) into DIR")
    demo.set_defaults(func=_demo)

    mis = sub.add_parser(
        "mislabels",
        help="rank the rows of a CSV file by how likely their label is wrong",
        description="Fit a model on a CSV file (numeric columns imputed and scaled, text "
        "columns one-hot encoded) and rank its rows by a mislabel score.",
    )
    mis.add_argument(
        "file", help="CSV file with a header line (or, with --dask/--scheduler, Parquet)"
    )
    mis.add_argument("--target", required=True, help="the column holding the labels")
    mis.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="logreg",
        help="logreg: logistic regression; mlp: a one-hidden-layer torch net (needs torch, "
        "skorch); auto: the one of the two with the lower cross-validated log-loss",
    )
    mis.add_argument(
        "--method",
        choices=["auto", *METHODS],
        default="auto",
        help="the mislabel score (default: auto, the best in benchmarks/bench_mislabel.py)",
    )
    mis.add_argument("--top", type=_number(int, 1), default=10, help="rows to print")
    mis.add_argument("--out", metavar="RANKED.csv", help="write every row, ranked, with its score")
    mis.add_argument("--plot", metavar="PLOT.png", help="write the score distribution, top marked")
    mis.add_argument("--drop", action="append", metavar="COLUMN", help="leave a column out")
    mis.add_argument(
        "--C",
        type=_number(float, 0, low_open=True),
        default=1.0,
        help="inverse L2 strength of logreg",
    )
    mis.add_argument(
        "--cv",
        type=_number(int, 2),
        default=5,
        help="folds of the cross-fitted scores (auto, cv_*)",
    )
    mis.add_argument(
        "--damping",
        type=_number(float, 0),
        default=None,
        help="added to the Hessian (default: 0 for logreg, 0.01 for mlp)",
    )
    mis.add_argument(
        "--epochs", type=_number(int, 1), default=500, help="full-batch training epochs of mlp"
    )
    mis.add_argument(
        "--seed",
        type=_number(int, 0, 2**32 - 1),
        default=0,
        help="random seed of the folds and of mlp's initialisation",
    )
    on_dask = mis.add_argument_group(
        "dask",
        "for a table larger than memory: read, encode and score it on a dask cluster "
        "(logreg only; needs skinfluence[dask])",
    )
    where = on_dask.add_mutually_exclusive_group()
    where.add_argument(
        "--dask", action="store_true", help="run on a LocalCluster started for this command"
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on an existing cluster (tcp://host:8786)"
    )
    on_dask.add_argument(
        "--workers", type=_number(int, 1), default=None, help="worker processes of --dask"
    )
    on_dask.add_argument(
        "--blocksize",
        type=_bytes,
        default="16MB",
        help="bytes of CSV per partition with --dask/--scheduler (default 16MB: a "
        "partition's encoded rows take several times its text)",
    )
    mis.set_defaults(func=_mislabels)
    return parser


def main(argv=None):
    """Entry point of the ``skinfluence`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("skinfluence: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, csv.Error) as exc:
        print(f"skinfluence: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
