"""LiSSA's convergence diagnostic next to its real error against the exact solve.

LiSSA warns when the second half of its recursion still moves the estimate by more
than 10% (``drift``). This prints, for logistic regressions of a few sizes and a
few LiSSA settings, that drift next to the relative error of the estimate against
``solver="direct"`` (the figures quoted in docs/solvers.rst).

Usage::

    python benchmarks/lissa_drift.py [--json out.json]
"""

import argparse
import json
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from skinfluence.models import LinearAdapter
from skinfluence.solvers import DirectSolver, LissaSolver

SETTINGS = [
    {},
    {"scale": 100.0},
    {"scale": 1000.0},
    {"scale": 1e6},
    {"depth": 100},
    {"batch_size": 8},
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    print(f"{'n':>5} {'d':>3}  {'setting':<22} {'drift':>7} {'error':>7}  warns")
    for seed, (n, d) in enumerate([(60, 4), (400, 6), (1000, 20)]):
        X, y = make_classification(n_samples=n, n_features=d, random_state=seed)
        ad = LinearAdapter(LogisticRegression().fit(X, y), X, y)
        B = ad.per_sample_gradients(ad.take(ad.train_data, slice(0, 3))).T
        exact = DirectSolver().fit(ad).solve(B)
        for setting in SETTINGS:
            solver = LissaSolver(random_state=0, **setting).fit(ad)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = solver.solve(B)
            err = float(np.linalg.norm(est - exact) / np.linalg.norm(exact))
            row = {"n": n, "d": d, **setting, "drift": solver.drift_, "error": err}
            row["warned"] = any("LiSSA has not settled" in str(w.message) for w in caught)
            rows.append(row)
            label = ", ".join(f"{k}={v:g}" for k, v in setting.items()) or "defaults"
            print(
                f"{n:>5} {d:>3}  {label:<22} {solver.drift_:>7.3f} {err:>7.3f}  {row['warned']}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
