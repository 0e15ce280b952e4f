"""The dask path at scale: logistic regression on rows generated chunk by chunk on the workers.

For each configuration, in a fresh process (so peak memory is its own):

- ``dask``: a LocalCluster of ``--workers`` processes, one thread each. ``X`` (n x d,
  standard normal) and ``y`` (labels of a fixed logistic model) are generated inside
  the tasks, chunk by chunk, every time a pass reads them, as data read from storage
  would be; nothing is persisted. Timed phases: the fit of an unfitted
  LogisticRegression (Newton's method, one map-reduce per iteration), the explainer's
  fit of that model (stationarity check and Hessian: two passes), the influence of
  ``--n-test`` test points written to zarr (one pass), and the training set's
  self-influence (one pass). Peak memory: the largest resident set of any worker
  process over the whole run (``getrusage``), and the client's.
- ``memory``: the same data in one numpy array, the same phases in memory (the fit by
  scikit-learn's lbfgs, tol 1e-8, as a user would; the influence matrix kept as a
  numpy array), on one thread.
- ``dask`` with ``persist``: the rows generated once and held in the worker's memory
  (``client.persist``) before timing: the scheduling and transfer overhead alone, next
  to ``memory`` at the same size; its influence is also gathered on the client
  (``influence_compute_s``), and the memory path's matrix is also written to zarr in
  the same chunks (``zarr_write_s``): the two like-for-like comparisons.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_dask.py                # 200k and 2M rows
    python benchmarks/bench_dask.py --sizes 200000 --json out.json   # one size
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # inherited by the worker processes

SEED = 0


def make_data(n, d, chunk):
    """Lazy ``(X, y)``: each row chunk generated where it is computed, seeded by its position."""
    import dask.array as da

    w = np.random.default_rng(SEED).normal(size=d) / np.sqrt(d) * 2

    def rows(block_info=None):
        (start, stop), _ = block_info[None]["array-location"]
        rng = np.random.default_rng([SEED, start])
        X = rng.standard_normal((stop - start, d))
        noise = rng.logistic(size=stop - start)
        return np.column_stack([X, (X @ w + noise > 0).astype(float)])

    Z = da.map_blocks(
        rows, chunks=(da.core.normalize_chunks(chunk, (n,))[0], (d + 1,)), dtype=float
    )
    return Z[:, :d], Z[:, d].astype(int)


def test_points(d, n_test):
    rng = np.random.default_rng([SEED, 999])
    X = rng.standard_normal((n_test, d))
    return X, (X[:, 0] > 0).astype(int)


def write_zarr(path, matrix, chunk):
    import zarr

    z = zarr.create_array(path, shape=matrix.shape, chunks=(matrix.shape[0], chunk), dtype=float)
    z[...] = matrix


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(script, cfg):
    """``script --one CFG`` in a new interpreter (its peak memory its own); its JSON row."""
    res = subprocess.run(
        [sys.executable, script, "--one", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"configuration {cfg} failed")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def save_rows(path, rows):
    """The rows as JSON, with the machine they were measured on."""
    with open(path, "w") as f:
        json.dump(
            {"machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, f, indent=1
        )


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@contextlib.contextmanager
def local_cluster(workers):
    """A client of a LocalCluster of ``workers`` processes, one thread each, no limits."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def run_dask(n, d, chunk, workers, n_test, persist=False):
    import dask.array as da  # noqa: F401
    import distributed
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    from skinfluence import InfluenceExplainer
    from skinfluence.dask import newton_fit

    X, y = make_data(n, d, chunk)
    Xt, yt = test_points(d, n_test)
    out = {"path": "dask", "n": n, "d": d, "chunk": chunk, "workers": workers}
    with local_cluster(workers) as client:
        if persist:  # the rows held in the workers' memory: the scheduling overhead alone
            X, y = client.persist([X, y])
            distributed.wait([X, y])
        out["persist"] = persist
        out["fit_newton_s"], (model, n_iter) = timed(lambda: newton_fit(LogisticRegression(), X, y))
        out["newton_iterations"] = n_iter
        out["explainer_fit_s"], ex = timed(
            lambda: InfluenceExplainer(FrozenEstimator(model)).fit(X, y)
        )
        with tempfile.TemporaryDirectory() as tmp:
            out["influence_zarr_s"], _ = timed(
                lambda: ex.influence(Xt, yt).to_zarr(os.path.join(tmp, "I.zarr"))
            )
        if persist:  # the matrix gathered on the client instead, as the memory path has it
            out["influence_compute_s"], _ = timed(lambda: ex.influence(Xt, yt).compute())
        out["self_influence_s"], si = timed(lambda: ex.self_influence().compute())
        out["self_influence_checksum"] = float(si.sum())
        rss = client.run(peak_rss_mib)
        out["worker_peak_rss_mib"] = max(rss.values())
    out["client_peak_rss_mib"] = peak_rss_mib()
    out["coef_checksum"] = float(np.abs(model.coef_).sum())
    return out


def run_memory(n, d, chunk, n_test):
    import dask
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    from skinfluence import InfluenceExplainer

    Xd, yd = make_data(n, d, chunk)
    with dask.config.set(scheduler="synchronous"):
        X, y = dask.compute(Xd, yd)
    Xt, yt = test_points(d, n_test)
    out = {"path": "memory", "n": n, "d": d, "workers": 1}
    out["fit_lbfgs_s"], model = timed(
        lambda: LogisticRegression(tol=1e-8, max_iter=10_000).fit(X, y)
    )
    out["explainer_fit_s"], ex = timed(
        lambda: InfluenceExplainer(FrozenEstimator(model), copy_X=False).fit(X, y)
    )
    out["influence_s"], infl = timed(lambda: ex.influence(Xt, yt))
    with tempfile.TemporaryDirectory() as tmp:  # the same matrix written as the dask path does
        out["zarr_write_s"], _ = timed(lambda: write_zarr(os.path.join(tmp, "I.zarr"), infl, chunk))
    out["self_influence_s"], si = timed(lambda: ex.self_influence())
    out["self_influence_checksum"] = float(si.sum())
    out["peak_rss_mib"] = peak_rss_mib()
    out["coef_checksum"] = float(np.abs(model.coef_).sum())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-memory-above", type=int, default=2_000_000)
    ap.add_argument(
        "--persist-up-to",
        type=int,
        default=200_000,
        help="also time a 1-worker run with the rows persisted, up to this size",
    )
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration
    args = ap.parse_args()
    if args.one:
        cfg = json.loads(args.one)
        fn = run_dask if cfg.pop("path") == "dask" else run_memory
        print(json.dumps(fn(**cfg)))
        return
    rows = []
    for n in args.sizes:
        configs = [
            {
                "path": "dask",
                "n": n,
                "d": args.features,
                "chunk": args.chunk,
                "workers": w,
                "n_test": args.n_test,
            }
            for w in args.workers
        ]
        if n <= args.persist_up_to:
            configs.append({**configs[0], "persist": True})
        if n <= args.skip_memory_above:
            configs.append(
                {
                    "path": "memory",
                    "n": n,
                    "d": args.features,
                    "chunk": args.chunk,
                    "n_test": args.n_test,
                }
            )
        for cfg in configs:
            rows.append(in_fresh_process(__file__, cfg))
    print_table(rows)
    if args.json:
        save_rows(args.json, rows)


def print_table(rows):
    print("\ninfluence: to zarr (dask), a numpy array (memory); other form: gathered as numpy")
    print("(dask-p) or also written to zarr (memory); dask-p: rows persisted on the worker")
    head = (
        f"{'n':>9} {'path':>7} {'wk':>3} {'fit':>8} {'ex.fit':>7} {'influence':>9} "
        f"{'self-inf':>8} {'total':>8} {'peak MiB':>17} {'other form':>11}"
    )
    print("\n" + head)
    for r in rows:
        fit = r.get("fit_newton_s", r.get("fit_lbfgs_s"))
        infl = r.get("influence_zarr_s", r.get("influence_s"))
        total = fit + r["explainer_fit_s"] + infl + r["self_influence_s"]
        mem = (
            f"w {r['worker_peak_rss_mib']:.0f} c {r['client_peak_rss_mib']:.0f}"
            if r["path"] == "dask"
            else f"{r['peak_rss_mib']:.0f}"
        )
        path = "dask-p" if r.get("persist") else r["path"]
        # the influence matrix in the other path's form: gathered on the client (dask),
        # or computed and written to zarr (memory)
        other = r.get("influence_compute_s")
        if "zarr_write_s" in r:
            other = r["influence_s"] + r["zarr_write_s"]
        other = "" if other is None else f"{other:.1f}"
        print(
            f"{r['n']:>9} {path:>7} {r['workers']:>3} {fit:>8.1f} "
            f"{r['explainer_fit_s']:>7.1f} {infl:>9.1f} {r['self_influence_s']:>8.1f} "
            f"{total:>8.1f} {mem:>17} {other:>11}"
        )


if __name__ == "__main__":
    main()
