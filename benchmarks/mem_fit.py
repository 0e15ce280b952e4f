"""Memory an explainer holds after ``fit``, next to the size of the training data.

The explainer keeps what it needs later: the prepared training features (for
influence) and the raw X, y (for the refits of the cross-fitted mislabel scores).
This measures both with ``tracemalloc`` (numpy's allocations are traced) for a bare
LogisticRegression, where the two are one array, and for a Pipeline, where they
are not, with ``copy_X`` on and off.

Usage::

    python benchmarks/mem_fit.py                 # 200k x 100 float64 (a few seconds)
    python benchmarks/mem_fit.py --n 50000 --json benchmarks/results/mem_fit.json
"""

import argparse
import json
import platform
import tracemalloc

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer

MODELS = {
    "LogisticRegression": lambda: LogisticRegression(max_iter=200),
    "StandardScaler + LogisticRegression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=200)
    ),
}


def measure(model, X, y, copy_X):
    tracemalloc.start()
    ex = InfluenceExplainer(model, copy_X=copy_X).fit(X, y)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del ex
    return held, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d))
    y = (X[:, 0] + rng.normal(size=args.n) > 0).astype(int)
    mib = 2.0**20
    print(f"X: {args.n} x {args.d} float64, {X.nbytes / mib:.0f} MiB")
    print(f"{'model':<38}{'copy_X':>8}{'held after fit':>16}{'x X':>6}{'peak in fit':>13}")
    rows = []
    for name, make in MODELS.items():
        for copy_X in (True, False):
            held, peak = measure(make(), X, y, copy_X)
            rows.append({"model": name, "copy_X": copy_X, "held": held, "peak": peak})
            print(
                f"{name:<38}{copy_X!s:>8}{held / mib:>12.0f} MiB{held / X.nbytes:>6.2f}"
                f"{peak / mib:>9.0f} MiB"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"config": vars(args), "machine": platform.platform(), "rows": rows}, fh, indent=1
            )


if __name__ == "__main__":
    main()
