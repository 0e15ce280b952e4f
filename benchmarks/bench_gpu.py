"""GPU: skinfluence EK-FAC next to kronfluence EK-FAC on nets of the size users run.

Two workloads, each timed end to end (factors fitted, influence matrix of every
query against every training point on the host), in fp32 and bf16, with the peak
GPU memory of each run (``--dtypes bf16-products`` adds ours with an fp32 net and
``matmul_precision="bfloat16"``, the influence products alone in bfloat16):

- ``resnet9``: a ResNet-9-shaped net (conv-BN-ReLU blocks 64-128-256-512 with two
  residual blocks, about 6.6M parameters of which the conv and linear weights are
  explained, BN left out as kronfluence does) on 50,000 synthetic 32x32x3 images x
  2,000 queries;
- ``mlp``: an MLP 784-512-256-10 on 60,000 synthetic 28x28 inputs x 1,000 queries.

The nets are trained for ``--epochs`` epochs of SGD on the synthetic data first
(influence needs a fitted net; the timing does not depend on how well).
``--scale 0.1`` shrinks every size for a smoke run; ``--device cpu --scale 0.01``
checks the script on a machine without a GPU. Sized to finish in under 8 minutes
on one H200 at ``--scale 1``. Run in the benchmark environment of
``benchmarks/_peers_torch.py`` (kronfluence from PyPI)::

    python benchmarks/bench_gpu.py --json gpu.json
"""

import argparse
import functools
import json
import time
import warnings

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier

from skinfluence import InfluenceExplainer


def conv_bn(c_in, c_out, pool=False):
    layers = [
        torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(c_out),
        torch.nn.ReLU(),
    ]
    if pool:
        layers.append(torch.nn.MaxPool2d(2))
    return torch.nn.Sequential(*layers)


class Residual(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = torch.nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


def resnet9():
    return torch.nn.Sequential(
        conv_bn(3, 64),
        conv_bn(64, 128, pool=True),
        Residual(128),
        conv_bn(128, 256, pool=True),
        conv_bn(256, 512, pool=True),
        Residual(512),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(512, 10),
    )


def mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def synthetic(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(10, *shape)).astype(np.float32)
    y = rng.integers(0, 10, n)
    X = protos[y] + 1.5 * rng.normal(size=(n, *shape)).astype(np.float32)
    return X, y


def train(module, X, y, device, epochs, batch=512):
    module.to(device).train()
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(epochs):
        for s in range(0, len(X), batch):
            xb, yb = Xt[s : s + batch].to(device), yt[s : s + batch].to(device)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xb), yb).backward()
            opt.step()
    return module.eval()


def explained(module):
    """Names of the conv and linear weights and biases (what both libraries cover)."""
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    return [
        f"{name}.{leaf}"
        for name, mod in module.named_modules()
        if isinstance(mod, kinds)
        for leaf, _ in mod.named_parameters(recurse=False)
    ]


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measured(fn, device):
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else None
    )
    return out, seconds, peak


def ours(module, X, y, Xq, yq, device, working_memory, batch_size, n_samples, precision):
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__weight_decay=5e-4,
        device=device,
        classes=np.arange(10),
        train_split=None,
        verbose=0,
    )
    net.initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a briefly trained net is not an optimum
        ex = InfluenceExplainer(
            FrozenEstimator(net),
            solver="ekfac",
            solver_params={"n_samples": n_samples},
            random_state=0,
            params=explained(module),
            working_memory=working_memory,
            batch_size=batch_size,
            matmul_precision=precision,
        ).fit(X, y)
        return ex.influence(Xq, yq)


def kron(module, X, y, Xq, yq, device, batch_size):
    from _peers_torch import kronfluence_scores

    dtype = next(module.parameters()).dtype
    out = kronfluence_scores(
        module,
        torch.as_tensor(X).to(dtype),
        torch.as_tensor(y),
        torch.as_tensor(Xq).to(dtype),
        torch.as_tensor(yq),
        strategy="ekfac",
        damping=0.0,
        weight_decay=5e-4,
        batch_size=batch_size,
        cpu=torch.device(device).type != "cuda",
    )
    return out["scores"]


def run(name, make, shape, n, n_query, args, table):
    X, y = synthetic(shape, n + n_query)
    X, y, Xq, yq = X[:n], y[:n], X[n:], y[n:]
    torch.manual_seed(0)
    base = train(make(), X, y, args.device, args.epochs)
    n_params = sum(p.numel() for p in base.parameters())
    for dtype in args.dtypes:
        # "bf16-products": an fp32 net whose influence products alone run in bfloat16
        tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
        precision = "bfloat16" if dtype == "bf16-products" else "highest"
        module = make().to(args.device)
        module.load_state_dict(base.state_dict())
        module = module.to(tdt).eval()
        Xd = X.astype(np.float32)
        results = {}
        for lib in args.libraries:
            if lib == "skinfluence":
                fn = functools.partial(
                    ours, module, Xd, y, Xq.astype(np.float32), yq, args.device,
                    args.working_memory, args.batch_size, args.n_samples, precision,
                )  # fmt: skip
            elif dtype == "bf16-products":  # no kronfluence counterpart
                continue
            else:
                fn = functools.partial(kron, module, Xd, y, Xq, yq, args.device, args.batch_size)
            try:
                scores, seconds, peak = measured(fn, args.device)
            except Exception as exc:  # report and go on: one failure must not hide the rest
                print(f"{name:8s} {dtype} {lib:12s} failed: {type(exc).__name__}: {exc}"[:400])
                table.append({"workload": name, "dtype": dtype, "library": lib, "error": str(exc)})
                continue
            results[lib] = scores
            r = {
                "workload": name,
                "dtype": dtype,
                "library": lib,
                "n_params": n_params,
                "n_train": n,
                "n_query": n_query,
                "seconds": round(seconds, 2),
                "peak_gpu_gib": None if peak is None else round(peak, 2),
            }
            if "skinfluence" in results and lib != "skinfluence":
                a, b = results["skinfluence"].ravel(), np.asarray(scores).ravel()
                r["pearson_vs_skinfluence"] = round(float(np.corrcoef(a, b)[0, 1]), 4)
            table.append(r)
            print(json.dumps(r), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workloads", nargs="+", default=["mlp", "resnet9"])
    parser.add_argument(
        "--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "bf16-products"]
    )
    parser.add_argument("--libraries", nargs="+", default=["skinfluence", "kronfluence"])
    parser.add_argument("--working-memory", type=float, default=60_000, help="MiB")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--n-samples", type=int, default=1,
        help="curvature samples per point (kronfluence samples one label); 0: exact (K)",
    )  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.n_samples = args.n_samples or None
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here: pass --device cpu (with a small --scale).")
    table = []
    sizes = {
        "mlp": (mlp, (1, 28, 28), 60_000, 1_000),
        "resnet9": (resnet9, (3, 32, 32), 50_000, 2_000),
    }
    for name in args.workloads:
        make, shape, n, q = sizes[name]
        run(name, make, shape, max(int(n * args.scale), 20), max(int(q * args.scale), 2),
            args, table)  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                 "torch": torch.__version__, "rows": table},
                fh, indent=1,
            )  # fmt: skip


if __name__ == "__main__":
    main()
