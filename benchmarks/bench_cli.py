"""``skinfluence mislabels`` on a big table next to doing the same by hand.

Generates a CSV of ``--rows`` rows x 20 mixed columns (14 numeric with 2% missing
cells, 6 text columns of 3-12 levels, a binary target from a logistic model, 10%
of the labels flipped), then runs, each in a fresh process:

- ours: ``skinfluence mislabels FILE --target y`` with default options;
- by hand: pandas ``read_csv``, the same pipeline (the command line's
  preprocessing and ``LogisticRegression(tol=1e-8, max_iter=5000)``),
  scikit-learn ``cross_val_predict(..., cv=5, method="predict_proba")`` on the
  same shuffled folds, cleanlab's ``find_label_issues`` and self-confidence
  ranking, and the top 10 printed.

Each side runs ``--repeat`` times, alternating, and its fastest run is kept (the
first import of pandas or cleanlab from a cold disk cache can take seconds). Each
process reports the wall time of its stages and its peak resident memory
(``ru_maxrss``). BLAS runs single-threaded in both (``OMP_NUM_THREADS=1``...), so
the comparison does not depend on how busy the other core is.

Usage::

    python benchmarks/bench_cli.py                      # 1,000,000 rows
    python benchmarks/bench_cli.py --rows 200000 --json benchmarks/results/cli.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HAND = r"""
import resource, sys, time
t = {"start": time.perf_counter()}
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from skinfluence.tabular import make_preprocessor
t["import"] = time.perf_counter()
df = pd.read_csv(sys.argv[1])
t["read"] = time.perf_counter()
df = df[df["y"].notna()]
y_raw = df.pop("y").astype(str).to_numpy()
classes, y = np.unique(y_raw, return_inverse=True)
numeric = [i for i, c in enumerate(df.columns) if df[c].dtype.kind == "f"]
text = [i for i in range(df.shape[1]) if i not in numeric]
levels = {i: df.iloc[:, i].dropna().unique() for i in text}  # dense one-hot, as ours
X = df.to_numpy(dtype=object)
model = Pipeline([
    ("preprocess", make_preprocessor({"numeric": numeric, "categorical": text, "levels": levels})),
    ("model", LogisticRegression(C=1.0, tol=1e-8, max_iter=5000)),
])
t["encode"] = time.perf_counter()
folds = StratifiedKFold(5, shuffle=True, random_state=0)
proba = cross_val_predict(model, X, y, cv=folds, method="predict_proba")
t["cross-fit"] = time.perf_counter()
issues = find_label_issues(y, proba, n_jobs=1)
order = np.argsort(get_label_quality_scores(y, proba))
for r, i in enumerate(order[:10], 1):
    print(r, i, y_raw[i], classes[proba[i].argmax()])
print("flagged", int(issues.sum()))
t["score"] = time.perf_counter()
print("STAGES", {k: round(v - t["start"], 2) for k, v in t.items()})
print("MAXRSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

OURS = r"""
import resource, sys, time
t0 = time.perf_counter()
from skinfluence.cli import main
status = main(["mislabels", sys.argv[1], "--target", "y"])
print("STAGES", {"total": round(time.perf_counter() - t0, 2)})
print("MAXRSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(status)
"""


def make_table(path, n_rows, seed=0, chunk=200_000):
    """Write the benchmark's CSV in chunks; return the number of flipped labels."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    w_num = rng.normal(size=14)
    levels = [3, 4, 5, 6, 8, 12]
    w_cat = [rng.normal(size=k) for k in levels]
    n_flipped = 0
    with open(path, "w", newline="") as fh:
        for start in range(0, n_rows, chunk):
            m = min(chunk, n_rows - start)
            num = rng.normal(size=(m, 14))
            cat = [rng.integers(0, k, size=m) for k in levels]
            logit = num @ w_num / 2 + sum(w[c] for w, c in zip(w_cat, cat, strict=True))
            y = (rng.random(m) < 1 / (1 + np.exp(-logit))).astype(int)
            flip = rng.random(m) < 0.1
            n_flipped += int(flip.sum())
            y = np.where(flip, 1 - y, y)
            num[rng.random(num.shape) < 0.02] = np.nan
            frame = {f"x{j}": np.round(num[:, j], 5) for j in range(14)}
            for j, c in enumerate(cat):
                frame[f"c{j}"] = np.array([f"level_{v}" for v in range(levels[j])])[c]
            frame["y"] = np.where(y == 1, "yes", "no")
            pd.DataFrame(frame).to_csv(fh, header=start == 0, index=False)
    return n_flipped


def run(code, path, env):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{proc.stdout}\n{proc.stderr}")
    stages = rss = None
    for line in proc.stdout.splitlines():
        if line.startswith("STAGES"):
            stages = eval(line.split(" ", 1)[1])  # a dict printed by our own script
        if line.startswith("MAXRSS_MB"):
            rss = float(line.split()[1])
    return {"wall_s": wall, "peak_rss_mb": rss, "stages": stages, "stderr": proc.stderr}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each (the fastest is kept: warm caches)"
    )
    parser.add_argument("--dir", help="where the CSV goes (default: a temporary folder)")
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "table.csv")
        t0 = time.perf_counter()
        n_flipped = make_table(path, args.rows)
        size = os.path.getsize(path) / 2**20
        print(
            f"table: {args.rows} rows x 20 columns, {size:.0f} MB, {n_flipped} labels flipped "
            f"(written in {time.perf_counter() - t0:.0f} s)"
        )
        results = {}
        for _ in range(args.repeat):  # alternate, keep each side's fastest run
            for name, code in (("by hand", HAND), ("skinfluence", OURS)):
                r = run(code, path, env)
                if name not in results or r["wall_s"] < results[name]["wall_s"]:
                    results[name] = r
    hand, ours = results["by hand"], results["skinfluence"]
    print(f"\n{'':<14}{'wall s':>9}{'peak MB':>10}  stages (s since start)")
    for name, r in results.items():
        print(f"{name:<14}{r['wall_s']:>9.1f}{r['peak_rss_mb']:>10.0f}  {r['stages']}")
    print(
        f"ratio ours / by hand: time {ours['wall_s'] / hand['wall_s']:.2f}x, "
        f"peak memory {ours['peak_rss_mb'] / hand['peak_rss_mb']:.2f}x "
        "(targets: <= 1.2x and <= 1.5x)"
    )
    print("\nstderr of skinfluence (progress goes quiet when not a terminal):")
    print(ours["stderr"].strip() or "(empty)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"rows": args.rows, "machine": platform.platform(), "results": results},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
