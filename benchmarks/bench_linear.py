"""Influence matrix and self-influence for logistic regression, next to the floor.

The floor is one plain numpy product of the same shape as the influence matrix,
``(n_test x p) @ (p x n_train)``, timed in the same run on the same BLAS. Peak
memory is measured with tracemalloc (numpy reports its buffers to it) and given as
the largest temporary beyond the returned array.

Usage::

    python benchmarks/bench_linear.py                 # 10k and 100k, 1M streamed
    python benchmarks/bench_linear.py --sizes 10000 --json out.json
"""

import argparse
import json
import platform
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceExplainer

MIB = 2**20


def best_time(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        out = None
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def peak_temporaries(fn):
    """Peak traced bytes during ``fn()`` minus the bytes of what it returns."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    size = out.nbytes if isinstance(out, np.ndarray) else 0
    return peak - size, size


def make_data(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) / np.sqrt(d) * 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w)))).astype(int)
    return X, y


def run(n_train, n_features, n_test, working_memory, repeat, streamed):
    X, y = make_data(n_train + n_test, n_features, seed=n_train)
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    model = LogisticRegression(C=1.0, tol=1e-8, max_iter=1000).fit(X_train, y_train)
    p = n_features + 1

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent non-optimum
        ex = InfluenceExplainer(
            FrozenEstimator(model), working_memory=working_memory, copy_X=False
        ).fit(X_train, y_train)
    fit_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    A = rng.normal(size=(n_test, p))
    B = rng.normal(size=(p, n_train))
    row = {
        "n_train": n_train,
        "n_features": n_features,
        "n_test": n_test,
        "working_memory_mib": working_memory,
        "fit_s": fit_s,
    }
    if streamed:
        # the full matrix is not held: top-10 per test point, blocks consumed as made
        block = max(1, int(working_memory * MIB // (8 * (p + n_test))))

        def floor():
            for s in range(0, n_train, block):
                A @ B[:, s : s + block]

        row["floor_s"], _ = best_time(floor, repeat)
        row["influence_s"], _ = best_time(lambda: ex.most_influential(X_test, y_test, k=10), repeat)
        row["influence_peak_mib"], _ = peak_temporaries(
            lambda: ex.most_influential(X_test, y_test, k=10)
        )
        row["output_mib"] = 0.0
        row["mode"] = "streamed top-10"
    else:
        row["floor_s"], _ = best_time(lambda: A @ B, repeat)
        row["influence_s"], _ = best_time(lambda: ex.influence(X_test, y_test), repeat)
        peak, out = peak_temporaries(lambda: ex.influence(X_test, y_test))
        row["influence_peak_mib"], row["output_mib"] = peak, out
        row["mode"] = "full matrix"
    row["influence_peak_mib"] /= MIB
    row["output_mib"] /= MIB
    def fresh_self_influence():
        # the explainer keeps the training set's self-influence after the first call:
        # time the computation, not the cache
        ex._train_cache.pop("self_influence", None)
        return ex.self_influence()

    row["self_influence_s"], _ = best_time(fresh_self_influence, repeat)
    peak, _ = peak_temporaries(fresh_self_influence)
    row["self_influence_peak_mib"] = peak / MIB
    row["ratio_to_floor"] = row["influence_s"] / row["floor_s"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--streamed-from",
        type=int,
        default=1_000_000,
        help="sizes from this one up are streamed (top-k), not held whole",
    )
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--working-memory", type=float, default=256.0, help="MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    rows = []
    header = (
        f"{'n_train':>9} {'mode':>16} {'fit s':>7} {'floor s':>8} {'influence s':>12} "
        f"{'x floor':>8} {'peak MiB':>9} {'out MiB':>8} {'self-infl s':>12} "
        f"{'self peak MiB':>13}"
    )
    print(
        f"logistic regression, {args.n_features} features, {args.n_test} test points, "
        f"working_memory={args.working_memory:g} MiB, {platform.processor() or platform.machine()}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        r = run(
            n,
            args.n_features,
            args.n_test,
            args.working_memory,
            args.repeat,
            streamed=n >= args.streamed_from,
        )
        rows.append(r)
        print(
            f"{n:>9} {r['mode']:>16} {r['fit_s']:>7.2f} {r['floor_s']:>8.3f} "
            f"{r['influence_s']:>12.3f} {r['ratio_to_floor']:>8.2f} "
            f"{r['influence_peak_mib']:>9.1f} {r['output_mib']:>8.1f} "
            f"{r['self_influence_s']:>12.3f} {r['self_influence_peak_mib']:>13.1f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
