"""Newton-step removal: its time next to ``influence``, and its accuracy against retraining.

Speed: ``removal_effect(method="newton")`` and ``influence`` on the same data and
the same test points, with a plain numpy GEMM of the influence matrix's shape as the
floor, timed in one run (logistic regression, binary and 3-class). The Newton
time includes the training points' leverages (computed once per fit, so they are
cleared before each repeat).

Accuracy: real leave-one-out retraining (scikit-learn, tol=1e-12) on small,
weakly regularised data (C=3): Pearson correlation of the first-order and Newton
estimates with the real change of each of the three highest-loss test points'
loss; and for the 10 points most harmful to the worst test point, removed at once,
the relative error of first order and of 1, 2 and 5 Newton steps.

Usage::

    python benchmarks/bench_newton.py                       # speed at 10k and 100k, accuracy
    python benchmarks/bench_newton.py --sizes 10000 --skip-accuracy --json out.json
"""

import argparse
import json
import platform
import time
import warnings

import numpy as np
from scipy.stats import pearsonr
from sklearn.datasets import load_breast_cancer, load_wine, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer


def best_time(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def make_data(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k)) / np.sqrt(d) * 2
    logits = X @ W
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1)
    return X, np.minimum(y, k - 1)


def _time_case(ex, Xte, yte, n, n_test, repeat):
    t_inf, _ = best_time(lambda: ex.influence(Xte, yte), repeat)

    def newton():
        ex._train_cache.pop("leverage", None)  # time the leverages too
        return ex.removal_effect(Xte, yte)

    t_newton, _ = best_time(newton, repeat)
    rng = np.random.default_rng(0)
    A, B = rng.random((n_test, ex.n_params_)), rng.random((ex.n_params_, n))
    t_gemm, _ = best_time(lambda: A @ B, repeat)
    return t_inf, t_newton, t_gemm


def speed(sizes, d, n_test, repeat):
    rows = []
    for k in (2, 3):
        for n in sizes:
            X, y = make_data(n + n_test, d, k, seed=n + k)
            Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lr = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(Xtr, ytr)
            ex = InfluenceExplainer(lr).fit(Xtr, ytr)
            t_inf, t_newton, t_gemm = _time_case(ex, Xte, yte, n, n_test, repeat)
            P = ex.n_params_
            rows.append(
                {
                    "classes": k,
                    "n_train": n,
                    "n_params": P,
                    "n_test": n_test,
                    "influence_s": t_inf,
                    "newton_s": t_newton,
                    "gemm_s": t_gemm,
                    "newton_over_influence": t_newton / t_inf,
                }
            )
            r = rows[-1]
            print(
                f"{k:>7} {n:>8} {P:>6} {n_test:>6} {t_gemm:>8.3f} {t_inf:>10.3f} "
                f"{t_newton:>9.3f} {r['newton_over_influence']:>8.2f}x",
                flush=True,
            )
    return rows


def _loo(C, X, y, Xt, yt, base, columns):
    out = np.empty((len(yt), len(columns)))
    for c, j in enumerate(columns):
        m = LogisticRegression(C=C, tol=1e-12, max_iter=100_000)
        m.fit(np.delete(X, j, 0), np.delete(y, j))
        p = m.predict_proba(Xt)[np.arange(len(yt)), np.searchsorted(m.classes_, yt)]
        out[:, c] = -np.log(p) - base
    return out


def accuracy_case(name, X, y, n_train, C=3.0):
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    ex = InfluenceExplainer(LogisticRegression(C=C, tol=1e-12, max_iter=100_000)).fit(Xtr, ytr)
    worst = np.argsort(-ex.loss(Xte, yte))[:3]
    Xt, yt = Xte[worst], yte[worst]
    base = ex.loss(Xt, yt)
    newton = ex.removal_effect(Xt, yt)
    first = ex.removal_effect(Xt, yt, method="first-order")
    actual = _loo(C, Xtr, ytr, Xt, yt, base, range(n_train))
    r_first = [float(pearsonr(first[t], actual[t])[0]) for t in range(3)]
    r_newton = [float(pearsonr(newton[t], actual[t])[0]) for t in range(3)]
    harmful = np.argsort(first[0])[:10]
    m = LogisticRegression(C=C, tol=1e-12, max_iter=100_000)
    m.fit(np.delete(Xtr, harmful, 0), np.delete(ytr, harmful))
    truth = -np.log(m.predict_proba(Xt[:1])[0, np.searchsorted(m.classes_, yt[0])]) - base[0]

    def err(**kw):
        return float(abs(ex.group_removal_effect(Xt[:1], yt[:1], harmful, **kw)[0] - truth))

    group = {
        "first": err(method="first-order") / abs(truth),
        **{f"newton_{s}": err(n_steps=s) / abs(truth) for s in (1, 2, 5)},
    }
    row = {"case": name, "n_train": n_train, "C": C, "pearson_first": r_first}
    row.update(pearson_newton=r_newton, group_rel_error=group)
    print(
        f"{name:<22} first {' '.join(f'{v:.4f}' for v in r_first)} | newton "
        f"{' '.join(f'{v:.4f}' for v in r_newton)} | group of 10: first {group['first']:.3f}, "
        f"1 step {group['newton_1']:.3f}, 2 {group['newton_2']:.3f}, 5 {group['newton_5']:.4f}",
        flush=True,
    )
    return row


def accuracy():
    rows = []
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    p = np.random.default_rng(0).permutation(len(y))
    X, y = X[p], y[p]
    rows.append(accuracy_case("wine, 3 classes", X, y, 140))
    for c in range(3):
        rows.append(accuracy_case(f"wine, class {c} vs rest", X, (y == c).astype(int), 140))
    for seed in range(3):
        Xs, ys = make_classification(
            200, 5, n_informative=3, n_redundant=0, class_sep=1.5, random_state=seed
        )
        rows.append(accuracy_case(f"synthetic binary {seed}", Xs, ys, 160))
    Xs, ys = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
    rows.append(accuracy_case("synthetic 3-class", Xs, ys, 160))
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xb = StandardScaler().fit_transform(Xb)
    p = np.random.default_rng(1).permutation(len(yb))
    rows.append(accuracy_case("breast cancer (200)", Xb[p][:240], yb[p][:240], 200, C=1.0))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", help="save the rows to this file")
    args = parser.parse_args()
    result = {"machine": platform.platform(), "speed": [], "accuracy": []}
    if not args.skip_speed:
        print(
            f"{'classes':>7} {'n_train':>8} {'P':>6} {'n_test':>6} {'gemm s':>8} "
            f"{'influence':>10} {'newton s':>9} {'ratio':>9}"
        )
        result["speed"] = speed(args.sizes, args.n_features, args.n_test, args.repeat)
    if not args.skip_accuracy:
        print("\nPearson with leave-one-out retraining, three highest-loss test points (C=3):")
        result["accuracy"] = accuracy()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
