"""Nets at scale on the CPU: EK-FAC/K-FAC and preconditioned CG next to kronfluence and pyDVL.

Every workload is one float64 net trained to its optimum (full-batch L-BFGS on the
mean cross entropy plus ``wd/2 ||theta||^2``), the exact solve as the reference, and
each method's influence matrix timed end to end (the explainer's fit included,
i.e. factors, preconditioner and Hessian) with its Pearson correlation against
the reference, all in the same run:

- ``ref``: MLP 64-32-10 tanh on digits (2,410 params), 1257 train x 50 test:
  CG iterations to tol 1e-8, plain and with every preconditioner.
- ``w4``: MLP 64-64-10 tanh on digits (4,810 params), 1257 x 50: ours (direct,
  cg, preconditioned cg, ekfac, kfac) next to pyDVL 0.10 (CG, EK-FAC) and
  kronfluence 1.0.1 (EK-FAC, K-FAC).
- ``cnn``: two 3x3 convolutions and a linear layer (5,258 params) on 200
  synthetic 28x28 images x 10 test; the reference is preconditioned CG to tol
  1e-8 (a dense Hessian of this size takes many minutes on one thread).
- ``w5b``: self-influence of 1257 digits under multinomial logistic regression
  (650 params) with ``solver="cg"``: plain CG (as when issue 13 was filed) next
  to block CG (the default) and the lowrank preconditioner.
- ``precision``: W4's net in float32 (direct and ekfac): influence products in
  bfloat16 (``matmul_precision``) and the whole computation in bfloat16, each
  against float32 (Pearson, largest error, top-10 overlap per test point).

The peers are not dependencies: run it in the benchmark environment whose
commands are in ``benchmarks/_peers_torch.py`` (``--no-peers`` runs ours only)::

    OMP_NUM_THREADS=1 /work/benchenv/bin/python benchmarks/bench_torch_scale.py --json out.json
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from skinfluence import InfluenceExplainer

WD = 1e-3


def mlp(hidden):
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)
    )


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3),
        torch.nn.Tanh(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3),
        torch.nn.Tanh(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 5 * 5, 10),
    )


def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return X[:1257], y[:1257], X[1257:1307], y[1257:1307]


def images(n, n_test, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(10, 1, 28, 28))
    y = rng.integers(0, 10, n + n_test)
    X = protos[y] + 2.0 * rng.normal(size=(n + n_test, 1, 28, 28))
    return X[:n], y[:n], X[n:], y[n:]


def train(module, X, y, gtol=1e-9, rounds=40):
    """Full-batch L-BFGS to ||grad|| < gtol on mean CE + WD/2 ||theta||^2 (float64)."""
    module.double()
    params = list(module.parameters())
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=500,
        history_size=50,
        tolerance_grad=0,
        tolerance_change=0,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(Xt), yt)
        loss = loss + 0.5 * WD * sum((p * p).sum() for p in params)
        loss.backward()
        return loss

    for _ in range(rounds):
        opt.step(closure)
        if torch.cat([p.grad.reshape(-1) for p in params]).norm() < gtol:
            break
    return module


def skorch_net(module, X, y):
    """The trained module as a fitted skorch classifier (SGD carries the weight decay)."""
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__weight_decay=WD,
        train_split=None,
        verbose=0,
        classes=np.arange(10),
    )
    net.initialize()
    return FrozenEstimator(net)


def pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def ours(net, Xtr, ytr, Xte, yte, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ex = InfluenceExplainer(net, **kw).fit(Xtr, ytr)
        t1 = time.perf_counter()
        I = ex.influence(Xte, yte)
        t2 = time.perf_counter()
    return I, {"fit_s": t1 - t0, "seconds": t2 - t0, "summary": ex.solver_summary_}


def row(table, workload, method, I, ref, info):
    s = info.get("summary", {})
    r = {
        "workload": workload,
        "method": method,
        "seconds": round(info["seconds"], 2),
        "pearson": round(pearson(I, ref), 6),
        "ratio": round(float(np.linalg.norm(I) / np.linalg.norm(ref)), 4),
        "cg_iterations": s.get("CG iterations", info.get("iterations")),
        "preconditioner_hvps": s.get("preconditioner HVPs"),
    }
    table.append(r)
    print(
        f"{workload:5s} {method:34s} {r['seconds']:8.2f} s  pearson {r['pearson']:.6f}  "
        f"norm ratio {r['ratio']:.3f}  iters {r['cg_iterations']}  "
        f"precond HVPs {r['preconditioner_hvps']}",
        flush=True,
    )


def peers(table, workload, module, Xtr, ytr, Xte, yte, ref, pydvl_defaults=True):
    from _peers_torch import kronfluence_scores, pydvl_cg_scores, pydvl_ekfac_scores

    T = [torch.as_tensor(a) for a in (Xtr, ytr, Xte, yte)]
    runs = [
        # pyDVL stops at ||r|| < max(rtol^2 c, atol^2): its defaults (rtol 1e-4, atol
        # 1e-6) ask for a residual of 1e-12; atol 1e-3 asks for 1e-6
        (
            "pyDVL CG (defaults)",
            lambda: pydvl_cg_scores(module, *T, weight_decay=WD, rtol=1e-4, atol=1e-6),
        ),
        (
            "pyDVL CG atol 1e-3",
            lambda: pydvl_cg_scores(module, *T, weight_decay=WD, rtol=1e-4, atol=1e-3),
        ),
        ("pyDVL EK-FAC", lambda: pydvl_ekfac_scores(module, *T, weight_decay=WD)),
        (
            "kronfluence EK-FAC",
            lambda: kronfluence_scores(module, *T, strategy="ekfac", damping=0.0, weight_decay=WD),
        ),
        (
            "kronfluence K-FAC",
            lambda: kronfluence_scores(module, *T, strategy="kfac", damping=0.0, weight_decay=WD),
        ),
    ]
    if not pydvl_defaults:
        # pyDVL's CG solves the exact Hessian, indefinite on the CNN (ours refuses it):
        # its Kronecker peers only
        runs = runs[2:]
    for name, fn in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = fn()
            except Exception as exc:  # a peer that cannot run this model: say so, go on
                print(f"{workload:5s} {name:34s} failed: {type(exc).__name__}: {exc}"[:300])
                table.append({"workload": workload, "method": name, "error": str(exc)[:300]})
                continue
        row(table, workload, name, out["scores"], ref, out)


def run_ref(table, args):
    Xtr, ytr, Xte, yte = digits()
    torch.manual_seed(0)
    net = skorch_net(train(mlp(32), Xtr, ytr), Xtr, ytr)
    ref, info = ours(net, Xtr, ytr, Xte, yte, solver="direct")
    row(table, "ref", "direct (reference)", ref, ref, info)
    configs = (
        [("plain cg (block_size=1)", {"block_size": 1}), ("cg", {})]
        + [
            (f"cg + lowrank k={k}", {"preconditioner": "lowrank", "rank": k})
            for k in (20, 50, 100, 200, 400)
        ]
        + [("cg + ekfac", {"preconditioner": "ekfac"}), ("cg + kfac", {"preconditioner": "kfac"})]
    )
    for name, params in configs:
        I, info = ours(net, Xtr, ytr, Xte, yte, solver="cg", solver_params={"tol": 1e-8, **params})
        row(table, "ref", name + " tol 1e-8", I, ref, info)


def run_w4(table, args):
    Xtr, ytr, Xte, yte = digits()
    torch.manual_seed(0)
    module = train(mlp(64), Xtr, ytr)
    net = skorch_net(module, Xtr, ytr)
    ref, info = ours(net, Xtr, ytr, Xte, yte, solver="direct")
    row(table, "w4", "direct (reference)", ref, ref, info)
    for tol in (1e-8, 1e-6):
        for name, extra in (("plain cg (block_size=1)", {"block_size": 1}), ("cg", {})):
            params = {"tol": tol, **extra}
            I, info = ours(net, Xtr, ytr, Xte, yte, solver="cg", solver_params=params)
            row(table, "w4", f"{name} tol {tol:g}", I, ref, info)
        for k in (100, 400):
            I, info = ours(
                net,
                Xtr,
                ytr,
                Xte,
                yte,
                solver="cg",
                solver_params={"tol": tol, "preconditioner": "lowrank", "rank": k},
            )
            row(table, "w4", f"cg + lowrank k={k} tol {tol:g}", I, ref, info)
    for solver in ("ekfac", "kfac"):
        I, info = ours(net, Xtr, ytr, Xte, yte, solver=solver)
        row(table, "w4", solver, I, ref, info)
    if not args.no_peers:
        peers(table, "w4", module, Xtr, ytr, Xte, yte, ref)


def run_precision(table, args):
    """W4's net in float32: bfloat16 influence products against float32 ones."""
    Xtr, ytr, Xte, yte = digits()
    torch.manual_seed(0)
    net = skorch_net(train(mlp(64), Xtr, ytr), Xtr, ytr)
    for solver in ("direct", "ekfac"):
        ref, info = ours(net, Xtr, ytr, Xte, yte, solver=solver, dtype="float32")
        row(table, "prec", f"{solver} float32 (reference)", ref, ref, info)
        for name, kw in [
            ("bfloat16 products", {"dtype": "float32", "matmul_precision": "bfloat16"}),
            ("dtype=bfloat16 (everything)", {"dtype": "bfloat16"}),
        ]:
            I, info = ours(net, Xtr, ytr, Xte, yte, solver=solver, **kw)
            row(table, "prec", f"{solver} {name}", I, ref, info)
            err = float(np.abs(I - ref).max() / np.abs(ref).max())
            top = np.argsort(-ref, axis=1)[:, :10]
            top_b = np.argsort(-I, axis=1)[:, :10]
            overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, top_b, strict=True)])
            table[-1].update({"max_error_of_max": err, "top10_overlap": float(overlap)})
            print(f"      max error {err:.2e} of the largest value, top-10 overlap {overlap:.3f}")


def run_cnn(table, args):
    # On one CPU thread a CNN HVP is slow (about 0.1-0.2 s per vector per 250 images:
    # conv forward-over-reverse under vmap), so this workload is small.
    Xtr, ytr, Xte, yte = images(args.cnn_train, 10)
    torch.manual_seed(0)
    module = train(cnn(), Xtr, ytr, rounds=3)  # 1,500 L-BFGS steps (the CNN is slow to fit)
    net = skorch_net(module, Xtr, ytr)
    # its exact Hessian is indefinite where L-BFGS stops (CG says so): the Gauss-Newton
    # Hessian, which the Kronecker methods approximate, for every row
    gn = {"hessian": "gauss-newton"}
    ref, info = ours(
        net, Xtr, ytr, Xte, yte, solver="cg", **gn,
        solver_params={"tol": 1e-8, "preconditioner": "lowrank", "rank": 100},
    )  # fmt: skip
    row(table, "cnn", "GN cg + lowrank k=100 tol 1e-8 (reference)", ref, ref, info)
    for name, params in [
        ("plain cg tol 1e-4 (block_size=1)", {"tol": 1e-4, "block_size": 1}),
        ("cg tol 1e-4 (bench_torch's setting)", {"tol": 1e-4}),
        ("cg + lowrank k=100 tol 1e-4", {"tol": 1e-4, "preconditioner": "lowrank", "rank": 100}),
    ]:
        I, info = ours(net, Xtr, ytr, Xte, yte, solver="cg", solver_params=params, **gn)
        row(table, "cnn", "GN " + name, I, ref, info)
    for solver in ("ekfac", "kfac"):
        I, info = ours(net, Xtr, ytr, Xte, yte, solver=solver)
        row(table, "cnn", solver, I, ref, info)
    if not args.no_peers:
        peers(table, "cnn", module, Xtr, ytr, Xte, yte, ref, pydvl_defaults=False)


def linear_run(model, Xtr, ytr, Xte=None, yte=None, **kw):
    """``(self-influence, influence or None, info)`` of a fitted linear model, timed:
    ``info["seconds"]`` (= ``"self_s"``) is fit plus self-influence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ex = InfluenceExplainer(model, **kw).fit(Xtr, ytr)
        s = ex.self_influence()
        t1 = time.perf_counter()
        I = None if Xte is None else ex.influence(Xte, yte)
        t2 = time.perf_counter()
    info = {"seconds": t1 - t0, "self_s": t1 - t0, "influence_s": t2 - t1}
    return s, I, {**info, "summary": ex.solver_summary_}


def run_w5b(table, args):
    Xtr, ytr, _, _ = digits()
    lr = LogisticRegression(max_iter=5000, tol=1e-10).fit(Xtr, ytr)

    def timed(**kw):
        s, _, info = linear_run(lr, Xtr, ytr, **kw)
        return s, info

    ref, info = timed(solver="direct")
    row(table, "w5b", "direct (reference)", ref, ref, info)
    lowrank = {"preconditioner": "lowrank", "rank": 300}
    plain = {"block_size": 1}
    for name, params in [
        ("plain cg, quadratic_tol=tol=1e-8 (issue time)", {**plain, "quadratic_tol": 1e-8}),
        ("plain cg, quadratic_tol=sqrt(tol)=1e-4", plain),
        ("plain cg + lowrank k=300, quadratic_tol=1e-4", {**plain, **lowrank}),
        ("block cg, block_size=16", {"block_size": 16}),
        ("cg default (block cg, block_size=64)", {}),
        ("block cg, block_size=256", {"block_size": 256}),
        ("block cg, block_size=1257", {"block_size": 1257}),
        ("block cg 64, quadratic_tol=tol=1e-8", {"quadratic_tol": 1e-8}),
        ("block cg 64 + lowrank k=300", lowrank),
    ]:
        s, info = timed(solver="cg", solver_params=params or None)
        row(table, "w5b", name, s, ref, info)


def run_text(table, args):
    """Wide sparse "text": binary logistic regression on 2,000 x 5,000 sparse counts
    (5,001 parameters, where ``auto`` takes CG): self-influence of every row and the
    influence of 50 queries, by block size."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, d = 2050, 5000
    X = sp.random(n, d, density=0.01, format="csr", random_state=0)
    X.data = 1.0 + rng.poisson(1.0, size=X.data.shape)  # word counts
    w = rng.normal(size=d) * (rng.random(d) < 0.05)
    y = (X @ w + 0.5 * rng.normal(size=n) > 0).astype(int)
    Xtr, ytr, Xte, yte = X[:2000], y[:2000], X[2000:], y[2000:]
    lr = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(Xtr, ytr)

    def timed(**kw):
        return linear_run(lr, Xtr, ytr, Xte, yte, **kw)

    ref_s, ref_I, info = timed(solver="direct")
    configs = (
        [("direct", None)]
        + [(f"cg block_size={b}", {"block_size": b}) for b in (1, 16, 64, 256)]
        + [("cg 64 + lowrank k=100", {"preconditioner": "lowrank", "rank": 100})]
    )
    for name, params in configs:
        if name != "direct":
            s, I, info = timed(solver="cg", solver_params=params)
        else:
            s, I = ref_s, ref_I
        r = {
            "workload": "text",
            "method": name,
            "self_influence_s": round(info["self_s"], 2),
            "influence_s": round(info["influence_s"], 2),
            "cg_iterations": info["summary"].get("CG iterations"),
            "pearson_self": round(pearson(s, ref_s), 8),
            "pearson_influence": round(pearson(I, ref_I), 8),
        }
        table.append(r)
        print(
            f"text  {name:24s} self-influence {r['self_influence_s']:7.2f} s  influence "
            f"{r['influence_s']:6.2f} s  iters {r['cg_iterations']}  pearson "
            f"{r['pearson_self']:.8f} / {r['pearson_influence']:.8f}",
            flush=True,
        )


def run_hvp(table, args):
    """Seconds per Hessian-vector product and vector: ours (on-device blocks) vs raw torch.func."""
    from torch.func import functional_call, grad, jvp, vmap

    Xtr, ytr, _, _ = digits()
    torch.manual_seed(0)
    net = skorch_net(train(mlp(64), Xtr, ytr), Xtr, ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = InfluenceExplainer(net, solver="cg").fit(Xtr, ytr)._adapter
    module = net.estimator.module_
    params = {k: v.detach() for k, v in module.named_parameters()}
    Xt, yt = torch.as_tensor(Xtr), torch.as_tensor(ytr)

    def loss(p):  # the mean loss plus the L2 term, as a peer's full-batch HVP sees it
        out = torch.nn.functional.cross_entropy(functional_call(module, p, (Xt,)), yt)
        return out + 0.5 * WD * sum((t * t).sum() for t in p.values())

    def best(fn, repeat=3):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    for m in (1, 50):
        V = torch.randn(ad.n_params, m, dtype=torch.float64)
        Vd = dict(ad._unflat(V.T, batch=True))

        def raw(Vd=Vd):
            return vmap(lambda u: jvp(grad(loss), (params,), (u,))[1])(Vd)

        ours_s = best(lambda V=V: ad.hvp(V)) / m
        raw_s = best(raw) / m
        r = {"workload": "hvp", "method": f"m={m}", "ours_s_per_vector": round(ours_s, 5),
             "torch_func_s_per_vector": round(raw_s, 5)}  # fmt: skip
        table.append(r)
        print(f"hvp   m={m:<3d} ours {ours_s * 1e3:.2f} ms/vector, full-batch torch.func "
              f"{raw_s * 1e3:.2f} ms/vector", flush=True)  # fmt: skip


WORKLOADS = {
    "ref": run_ref,
    "w4": run_w4,
    "cnn": run_cnn,
    "w5b": run_w5b,
    "hvp": run_hvp,
    "precision": run_precision,
    "text": run_text,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--cnn-train", type=int, default=200)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = []
    for w in args.workloads:
        WORKLOADS[w](table, args)
        if args.json:  # after every workload, so that a long run keeps what it has
            _save(args, table)


def _save(args, table):
    with open(args.json, "w") as fh:
        json.dump(
            {"threads": args.threads, "torch": torch.__version__, "rows": table}, fh, indent=1
        )


if __name__ == "__main__":
    main()
