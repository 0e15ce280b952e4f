"""A fitted skorch net on dask data: 1 and 2 workers next to the in-memory path.

The rows (``--features`` standard normal columns, labels of a fixed logistic model) are
generated chunk by chunk inside the tasks whenever a pass reads them, as storage reads
would be (``bench_dask.make_data``). The net, a ``d -> 32 -> 2`` tanh MLP in float32
with weight decay, is trained once in memory on the same rows before timing (the
explainer does not train nets on dask data) and handed over as ``FrozenEstimator``.
Timed, each configuration in a fresh process: the explainer's fit (one pass: the
objective's gradient and the dense ``P x P`` Gauss-Newton Hessian, damped 1e-3), the
influence of ``--n-test`` test points (written to zarr by the workers; in memory, a
numpy array) and the
training set's self-influence. Peak memory: the largest resident set of any worker,
and the client's (in memory: the process's). The results of the paths are compared
(largest relative difference of self-influence), so the timings are of the same work.

The workers run with dask's default environment and again with glibc's allocation
thresholds raised (``--malloc``; see ``LARGE_MALLOC``).

Usage::

    python benchmarks/bench_dask_torch.py                      # 200k rows, 1 and 2 workers
    python benchmarks/bench_dask_torch.py --n 50000 --json out.json
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_dask import (
    in_fresh_process,
    local_cluster,
    make_data,
    peak_rss_mib,
    save_rows,
    test_points,
    timed,
)

DAMPING = 1e-3


def trained_net(n, d, chunk):
    """The net, trained in memory on the benchmark's rows (the same generator)."""
    import dask
    import torch
    from skorch import NeuralNetClassifier

    Xd, yd = make_data(n, d, chunk)
    with dask.config.set(scheduler="synchronous"):
        X, y = dask.compute(Xd, yd)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=1e-3,
        lr=0.01,
        max_epochs=10,
        batch_size=2048,
        train_split=None,
        verbose=0,
    )
    return net.fit(X.astype(np.float32), y), X, y


#: glibc's thresholds in the workers' environment for ``--malloc large``. dask's nanny
#: sets ``MALLOC_TRIM_THRESHOLD_=65536`` by default, which also fixes the mmap threshold
#: at 128 KiB: every block's tensors are then fresh mappings (page faults each time).
LARGE_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 2**30, "MALLOC_MMAP_THRESHOLD_": 2**30}


def run(path, n, d, chunk, workers, n_test, malloc="dask"):
    import warnings

    from sklearn.frozen import FrozenEstimator

    from skinfluence import InfluenceExplainer

    net, X, y = trained_net(n, d, chunk)
    Xt, yt = test_points(d, n_test)
    Xt = Xt.astype(np.float32)
    out = {"path": path, "n": n, "d": d, "chunk": chunk, "workers": workers}
    warnings.simplefilter("ignore", RuntimeWarning)  # ten epochs of Adam: near, not at, θ̂
    ex = InfluenceExplainer(FrozenEstimator(net), hessian="gauss-newton", damping=DAMPING)
    if path == "memory":
        X = X.astype(np.float32)
        out["explainer_fit_s"], ex = timed(lambda: ex.fit(X, y))
        out["influence_s"], _ = timed(lambda: ex.influence(Xt, yt))
        out["self_influence_s"], si = timed(lambda: ex.self_influence())
        out["peak_rss_mib"] = peak_rss_mib()
    else:
        import dask

        if malloc == "large":
            dask.config.set(
                {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in LARGE_MALLOC.items()}
            )
        out["malloc"] = malloc
        Xd, yd = make_data(n, d, chunk)
        Xd = Xd.astype(np.float32)
        with local_cluster(workers) as client:
            out["explainer_fit_s"], ex = timed(lambda: ex.fit(Xd, yd))
            with tempfile.TemporaryDirectory() as tmp:
                out["influence_s"], _ = timed(
                    lambda: ex.influence(Xt, yt).to_zarr(os.path.join(tmp, "I.zarr"))
                )
            out["self_influence_s"], si = timed(lambda: ex.self_influence().compute())
            out["worker_peak_rss_mib"] = max(client.run(peak_rss_mib).values())
        out["client_peak_rss_mib"] = peak_rss_mib()
    out["n_params"] = int(ex.n_params_)
    out["total_s"] = out["explainer_fit_s"] + out["influence_s"] + out["self_influence_s"]
    with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as f:
        np.save(f, si)
        out["self_influence_file"] = f.name
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=25_000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--malloc",
        nargs="+",
        choices=["dask", "large"],
        default=["dask", "large"],
        help="the workers' glibc thresholds: dask's default, or LARGE_MALLOC",
    )
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(**json.loads(args.one))))
        return
    base = {"n": args.n, "d": args.features, "chunk": args.chunk, "n_test": args.n_test}
    configs = [
        {"path": "dask", **base, "workers": w, "malloc": m}
        for m in args.malloc
        for w in args.workers
    ]
    configs.append({"path": "memory", **base, "workers": 1})
    rows = [in_fresh_process(__file__, cfg) for cfg in configs]
    ref = np.load(rows[-1].pop("self_influence_file"))
    for r in rows[:-1]:
        si = np.load(r.pop("self_influence_file"))
        r["self_influence_max_rel_diff"] = float(np.max(np.abs(si - ref) / np.abs(ref).max()))
    print_table(rows)
    if args.json:
        save_rows(args.json, rows)


def print_table(rows):
    print(
        f"\n{'n':>8} {'P':>5} {'path':>6} {'malloc':>6} {'wk':>3} {'ex.fit':>7} {'influence':>9} "
        f"{'self-inf':>8} {'total':>7} {'x 1 wk':>7} {'peak MiB':>17} {'max rel diff':>12}"
    )
    for r in rows:
        mem = (
            f"w {r['worker_peak_rss_mib']:.0f} c {r['client_peak_rss_mib']:.0f}"
            if r["path"] == "dask"
            else f"{r['peak_rss_mib']:.0f}"
        )
        one = next(
            (
                o
                for o in rows
                if o["path"] == "dask" and o["workers"] == 1 and o["malloc"] == r.get("malloc")
            ),
            None,
        )
        speed = f"{one['total_s'] / r['total_s']:.2f}" if one else ""
        diff = r.get("self_influence_max_rel_diff")
        print(
            f"{r['n']:>8} {r['n_params']:>5} {r['path']:>6} {r.get('malloc', ''):>6} "
            f"{r['workers']:>3} "
            f"{r['explainer_fit_s']:>7.1f} {r['influence_s']:>9.1f} {r['self_influence_s']:>8.1f} "
            f"{r['total_s']:>7.1f} {speed:>7} {mem:>17} "
            f"{'' if diff is None else f'{diff:.1e}':>12}"
        )


if __name__ == "__main__":
    main()
