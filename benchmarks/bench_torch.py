"""Torch/skorch path: per-sample gradients, HVPs, influence and self-influence vs floors.

For an MLP on digits-sized data (64 features, 10 classes) and a small CNN on
28x28 synthetic images, printed side by side from one run:

- floor: one plain forward + backward pass over the training set (mean loss);
- per-sample gradients of the whole training set (torch.func vmap(grad));
- one Hessian-vector product vs one full-batch gradient;
- the influence matrix for ``--n-test`` test points with cg (Hessian on
  ``--hessian-samples`` points, damping ``--damping``);
- self-influence of every training point with lowrank;
- the naive one-sample-at-a-time loop (one backward pass per training point, as
  the seed reimplementation does) for the same influence matrix, timed on
  ``--naive-points`` training points and extrapolated (marked ``~``).

Usage::

    python benchmarks/bench_torch.py                  # CPU, 10k training points
    python benchmarks/bench_torch.py --n-train 50000 --device cuda --json gpu.json
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier

from skinfluence import InfluenceExplainer


class MLP(torch.nn.Module):
    def __init__(self, n_in=64, hidden=128, n_out=10):
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, hidden)
        self.fc2 = torch.nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class CNN(torch.nn.Module):
    def __init__(self, n_out=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3)
        self.conv2 = torch.nn.Conv2d(8, 16, 3)
        self.fc = torch.nn.Linear(16 * 5 * 5, n_out)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def make_data(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        centers = rng.normal(size=(10, 64)) * 1.5
        y = rng.integers(0, 10, n)
        X = centers[y] + rng.normal(size=(n, 64))
        return X.astype(np.float32), y
    protos = rng.normal(size=(10, 1, 28, 28))
    y = rng.integers(0, 10, n)
    X = protos[y] + 2.0 * rng.normal(size=(n, 1, 28, 28))
    return X.astype(np.float32), y


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=1):
    best = np.inf
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def train(kind, X, y, device, epochs):
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP if kind == "mlp" else CNN,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=1e-3,
        lr=3e-3,
        batch_size=256,
        max_epochs=epochs,
        train_split=None,
        device=device,
        verbose=0,
    )
    return net.fit(X, y)


def naive_influence_time(net, X, y, X_test, y_test, n_points, device):
    """One backward pass per training point (the seed's loop), for a subset."""
    module = net.module_.eval()
    params = [p for p in module.parameters() if p.requires_grad]
    v = [torch.randn_like(p) for p in params]  # stands in for H^-1 grad L(z_test)
    Xt = torch.as_tensor(X[:n_points], device=device)
    yt = torch.as_tensor(y[:n_points], device=device)

    def run():
        for i in range(n_points):
            loss = torch.nn.functional.cross_entropy(module(Xt[i : i + 1]), yt[i : i + 1])
            grads = torch.autograd.grad(loss, params)
            sum((g * w).sum() for g, w in zip(grads, v, strict=True)).item()

    return timed(run, device)


def bench(kind, args):
    n, device = args.n_train, args.device
    X, y = make_data(kind, n + args.n_test, seed=0)
    X_train, y_train, X_test, y_test = X[:n], y[:n], X[n:], y[n:]
    t0 = time.perf_counter()
    net = train(kind, X_train, y_train, device, args.epochs)
    train_s = time.perf_counter() - t0
    row = {"model": kind, "n_train": n, "device": device, "train_s": train_s}

    # floor: one plain forward + backward over the training set, in batches
    module = net.module_
    Xd = torch.as_tensor(X_train, device=device)
    yd = torch.as_tensor(y_train, device=device)
    bs = args.batch_size

    def fwd_bwd():
        module.zero_grad()
        for s in range(0, n, bs):
            torch.nn.functional.cross_entropy(module(Xd[s : s + bs]), yd[s : s + bs]).backward()

    row["floor_fwd_bwd_s"] = timed(fwd_bwd, device, args.repeat)
    n_params = sum(p.numel() for p in module.parameters())
    # a second floor: writing the n x n_params per-sample gradients once (memory bound)
    row["floor_write_grads_s"] = timed(
        lambda: [torch.ones(min(bs, n - s), n_params, device=device) for s in range(0, n, bs)],
        device,
        args.repeat,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Adam for a few epochs is no exact optimum
        ex_cg = InfluenceExplainer(
            FrozenEstimator(net),
            solver="cg",
            damping=args.damping,
            hessian=args.hessian,
            hessian_samples=args.hessian_samples,
            random_state=0,
            solver_params={"tol": 1e-4, "max_iter": args.cg_iter},
            batch_size=bs,
        ).fit(X_train, y_train)
    ad = ex_cg._adapter
    row["n_params"] = ad.n_params
    train_data = ad.train_data
    row["per_sample_grads_s"] = timed(
        lambda: [
            ad.gradients_dot(
                ad.take(train_data, slice(s, s + bs)), ad.asarray(np.zeros((ad.n_params, 1)))
            )
            for s in range(0, n, bs)
        ],
        device,
        args.repeat,
    )
    v = np.random.default_rng(0).normal(size=ad.n_params)
    row["hvp_s"] = timed(lambda: ad.hvp(v, indices=np.arange(n)), device, args.repeat)
    row["grad_s"] = timed(lambda: ad.objective_gradient(), device, args.repeat)

    row["influence_cg_s"] = timed(lambda: ex_cg.influence(X_test, y_test), device)
    row["cg_iterations"] = ex_cg.solver_summary_["CG iterations"]
    row["cg_residual"] = ex_cg.solver_summary_["CG worst relative residual"]

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex_lr = InfluenceExplainer(
            FrozenEstimator(net),
            solver="lowrank",
            damping=args.damping,
            hessian=args.hessian,
            hessian_samples=args.hessian_samples,
            random_state=0,
            solver_params={"rank": args.rank, "tol": 1e-3},
            batch_size=bs,
        ).fit(X_train, y_train)
    row["lowrank_fit_s"] = time.perf_counter() - t0
    row["self_influence_lowrank_s"] = timed(ex_lr.self_influence, device)
    row["influence_lowrank_s"] = timed(lambda: ex_lr.influence(X_test, y_test), device)

    k = min(args.naive_points, n)
    per_test = naive_influence_time(net, X_train, y_train, X_test, y_test, k, device)
    row["naive_influence_s_extrapolated"] = per_test * (n / k) * args.n_test
    row["speedup_vs_naive"] = row["naive_influence_s_extrapolated"] / row["influence_cg_s"]
    row["speedup_lowrank_vs_naive"] = (
        row["naive_influence_s_extrapolated"] / row["influence_lowrank_s"]
    )
    row["ratio_grads_to_floor"] = row["per_sample_grads_s"] / row["floor_fwd_bwd_s"]
    row["ratio_hvp_to_grad"] = row["hvp_s"] / row["grad_s"]
    if torch.device(device).type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--damping", type=float, default=1e-2)
    parser.add_argument("--hessian", default="gauss-newton", choices=["exact", "gauss-newton"])
    parser.add_argument("--hessian-samples", type=int, default=2000)
    parser.add_argument("--cg-iter", type=int, default=100)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--naive-points", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cols = [
        ("model", "{:>5}"),
        ("n_params", "{:>8d}"),
        ("floor_fwd_bwd_s", "{:>9.3f}"),
        ("floor_write_grads_s", "{:>9.3f}"),
        ("per_sample_grads_s", "{:>9.3f}"),
        ("ratio_grads_to_floor", "{:>6.2f}"),
        ("hvp_s", "{:>7.3f}"),
        ("grad_s", "{:>7.3f}"),
        ("ratio_hvp_to_grad", "{:>6.2f}"),
        ("influence_cg_s", "{:>9.2f}"),
        ("self_influence_lowrank_s", "{:>9.2f}"),
        ("naive_influence_s_extrapolated", "{:>10.0f}"),
        ("speedup_vs_naive", "{:>8.0f}"),
    ]
    heads = [
        "model",
        "params",
        "fwd+bwd",
        "write G",
        "psg",
        "x",
        "hvp",
        "grad",
        "x",
        "infl cg",
        "self lr",
        "~naive",
        "speedup",
    ]
    widths = [5, 8, 9, 9, 9, 6, 7, 7, 6, 9, 9, 10, 8]
    print(
        f"n_train={args.n_train}, n_test={args.n_test}, device={args.device}, "
        f"threads={torch.get_num_threads()}, "
        f"{args.hessian} Hessian on {args.hessian_samples} points, "
        f"damping={args.damping}; times in seconds"
    )
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    rows = []
    for kind in args.models:
        r = bench(kind, args)
        rows.append(r)
        print(" ".join(fmt.format(r[c]) for c, fmt in cols), flush=True)
        print(
            f"      cg: {r['cg_iterations']} iterations, worst residual "
            f"{r['cg_residual']:.2g}; lowrank: fit {r['lowrank_fit_s']:.2f} s, influence "
            f"{r['influence_lowrank_s']:.2f} s ({r['speedup_lowrank_vs_naive']:.0f}x naive)"
            + (f"; peak GPU {r['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in r else "")
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
