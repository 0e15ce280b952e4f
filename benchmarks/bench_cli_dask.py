"""``skinfluence mislabels`` on a generated CSV: in memory next to ``--dask``, same file.

The table: ``--rows`` rows of 8 numeric columns (some cells missing, written as ``NA``),
2 text columns (5 and 12 levels) and a 3-class label, 10% of the labels flipped;
written chunk by chunk, so it is never whole in this process either. Each command runs
in a fresh process (``/usr/bin/time``'s job done by ``getrusage``): wall time, and the
peak resident set of the largest process it started (with ``--dask``: the command
itself or one of its worker processes, whichever is larger). Both write the ranked
file; the fraction of flipped rows in the top 10% of each ranking is printed next to
the times, and the scores of the two rankings are compared row by row.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_cli_dask.py --rows 1000000 --json out.json
"""

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_table(path, n, seed=0, chunk=200_000):
    """The generated table at ``path``; returns the flipped rows' positions."""
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=(10, 3))
    flipped = []
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*(f"x{j}" for j in range(8)), "colour", "city", "label"])
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            X = rng.normal(size=(m, 8))
            colour = rng.integers(0, 5, m)
            city = rng.integers(0, 12, m)
            z = np.column_stack([X, colour / 4 - 0.5, (city % 3) - 1.0]) @ coef
            y = np.argmax(z + rng.gumbel(size=z.shape), axis=1)
            flip = rng.random(m) < 0.1
            y[flip] = (y[flip] + rng.integers(1, 3, flip.sum())) % 3
            flipped.append(start + np.flatnonzero(flip))
            cells = np.round(X, 5).astype(str)
            cells[rng.random(cells.shape) < 0.02] = "NA"
            names = np.array(["red", "green", "blue", "amber", "violet"])[colour]
            towns = np.array([f"town{c:02d}" for c in range(12)])[city]
            labels = np.array(["a", "b", "c"])[y]
            w.writerows(np.column_stack([cells, names, towns, labels]).tolist())
    return np.concatenate(flipped)


def run(argv):
    """Wall seconds and the largest peak RSS (MiB) of a command and its children, measured
    by a fresh copy of this script (a process's children's peak covers all it has reaped)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", "--", *argv], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return wall, float(proc.stdout.strip().splitlines()[-1]) / 1024


def measure(argv):
    status = subprocess.run(argv, stdout=subprocess.DEVNULL).returncode
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    sys.exit(status)


def ranked(path):
    rows, scores = [], []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for r in reader:
            rows.append(int(r[1]))
            scores.append(float(r[2]))
    return np.array(rows), np.array(scores)


def main():
    if sys.argv[1:2] == ["--measure"]:
        return measure(sys.argv[3:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--method", default="auto")
    p.add_argument("--json")
    args = p.parse_args()
    exe = [sys.executable, "-m", "skinfluence"]
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, "table.csv")
        flipped = write_table(table, args.rows)
        size = os.path.getsize(table) / 2**20
        common = ["mislabels", table, "--target", "label", "--method", args.method]
        configs = {
            "memory": [*common, "--out", os.path.join(tmp, "memory.csv")],
            f"dask ({args.workers} workers)": [
                *common,
                "--out",
                os.path.join(tmp, "dask.csv"),
                "--dask",
                "--workers",
                str(args.workers),
            ],
        }
        results = {}
        for name, argv in configs.items():
            wall, peak = run([*exe, *argv])
            rows, scores = ranked(argv[argv.index("--out") + 1])
            top = rows[: len(rows) // 10]
            results[name] = {
                "wall_s": wall,
                "peak_rss_mib": peak,
                "found_at_10pct": float(np.isin(top, flipped).sum() / len(flipped)),
                "rows": rows,
                "scores": scores,
            }
        (m, d) = results.values()
        om, od = np.argsort(m["rows"]), np.argsort(d["rows"])
        rel = np.abs(m["scores"][om] - d["scores"][od]) / np.maximum(
            np.abs(m["scores"][om]), 1e-300
        )
    print(
        f"mislabels on {args.rows} rows ({size:.0f} MiB of CSV), method {args.method}, "
        f"{platform.processor() or platform.machine()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"{'config':<22} {'wall s':>8} {'peak RSS MiB':>13} {'flipped in top 10%':>19}")
    for name, r in results.items():
        found = r["found_at_10pct"]
        print(f"{name:<22} {r['wall_s']:>8.1f} {r['peak_rss_mib']:>13.0f} {found:>19.3f}")
    print(f"scores, dask vs memory, per row: max relative difference {rel.max():.2e}")
    if args.json:
        out = {
            k: {kk: v for kk, v in r.items() if kk not in ("rows", "scores")}
            for k, r in results.items()
        }
        out["meta"] = {
            "rows": args.rows,
            "csv_mib": size,
            "method": args.method,
            "max_rel_diff": float(rel.max()),
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
