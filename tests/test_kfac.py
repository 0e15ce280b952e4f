"""K-FAC / EK-FAC against independent constructions, and preconditioned CG against direct."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from skorch import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402

from skinfluence import InfluenceExplainer  # noqa: E402
from skinfluence.backend import TorchBackend  # noqa: E402
from skinfluence.constraints import InvalidParameterError  # noqa: E402
from skinfluence.exceptions import SingularHessianError  # noqa: E402

WD = 1e-2


def _optimum(module, X, y, loss):
    """Full-batch L-BFGS on mean loss + WD/2 ||theta||^2 (float64) to a tight optimum."""
    params = list(module.parameters())
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.LBFGS(
        params, lr=1, max_iter=1000, tolerance_grad=1e-13, tolerance_change=0,
        history_size=50, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        total = loss(module(Xt), yt) + 0.5 * WD * sum((p * p).sum() for p in params)
        total.backward()
        return total

    for _ in range(5):
        opt.step(closure)


def _net(cls, module, X, y, loss, **kw):
    module = module.double()
    _optimum(module, X, y, loss)
    net = cls(
        module, optimizer=torch.optim.SGD, optimizer__weight_decay=WD, train_split=None,
        verbose=0, **kw,
    )  # fmt: skip
    net.initialize()
    return FrozenEstimator(net)


@pytest.fixture(scope="module")
def linear_mse():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    Y = X @ rng.normal(size=(4, 3)) + 0.3 * rng.normal(size=(60, 3))
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 3)
    net = _net(NeuralNetRegressor, module, X, Y, torch.nn.functional.mse_loss,
               criterion=torch.nn.MSELoss)  # fmt: skip
    return net, X, Y


def _blobs(n=80, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(k, d))[y] * 1.5 + rng.normal(size=(n, d))
    return X, y


@pytest.fixture(scope="module")
def mlp_ce():
    X, y = _blobs()
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    net = _net(NeuralNetClassifier, module, X, y, torch.nn.functional.cross_entropy,
               criterion=torch.nn.CrossEntropyLoss, classes=np.arange(3))  # fmt: skip
    return net, X, y


@pytest.fixture(scope="module")
def cnn_ce():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    X = rng.normal(size=(2, 1, 6, 6))[y] + rng.normal(size=(40, 1, 6, 6))
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(32, 2)
    )
    net = _net(NeuralNetClassifier, module, X, y, torch.nn.functional.cross_entropy,
               criterion=torch.nn.CrossEntropyLoss, classes=np.arange(2))  # fmt: skip
    return net, X, y


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_kronecker_exact_for_one_linear_layer_with_squared_error(linear_mse, solver):
    # the output Hessian of squared error is constant, so H = S (x) A + WD I exactly
    net, X, Y = linear_mse
    ref = InfluenceExplainer(net, solver="direct").fit(X, Y)
    ex = InfluenceExplainer(net, solver=solver).fit(X, Y)
    assert _rel(ex.influence(X[:7], Y[:7]), ref.influence(X[:7], Y[:7])) < 1e-9
    assert _rel(ex.self_influence(), ref.self_influence()) < 1e-9
    assert ex.solver_ == solver
    assert ex.solver_summary_["passes over the data"] == (2 if solver == "ekfac" else 1)


# -- an independent construction: explicit Jacobians of a Sequential net, sample by sample


def _layer_stats(module, X, y, layer):
    """``(a, g)`` per sample from explicit Jacobians: inputs and J^T c_k of one layer.

    ``a`` ``(n, T, inp + 1)``: the layer's input patches (sliced by loops for a
    convolution), a 1 appended for the bias; ``g`` ``(n, K, T, out)``. ``c_k`` are
    the columns of ``C^(1/2)`` for the softmax cross entropy ``C = diag(p) - p p^T``.
    """
    seq = list(module)
    head, mod, tail = seq[:layer], seq[layer], seq[layer + 1 :]
    A_all, G_all = [], []
    for i in range(len(X)):
        x = torch.as_tensor(X[i : i + 1])
        with torch.no_grad():
            inp = torch.nn.Sequential(*head)(x) if head else x
            s = mod(inp)
            p = torch.softmax(torch.nn.Sequential(*tail)(s), 1)[0]
        C = torch.diag(p) - torch.outer(p, p)
        e, U = torch.linalg.eigh(C)
        roots = U * e.clamp(min=0).sqrt()
        J = torch.autograd.functional.jacobian(lambda z: torch.nn.Sequential(*tail)(z)[0], s)
        J = J.reshape(J.shape[0], *s.shape[1:])  # (K, *out_shape)
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            H2, W2 = s.shape[2:]
            patches = [
                inp[0, :, r : r + kh, c : c + kw].reshape(-1) for r in range(H2) for c in range(W2)
            ]
            a = torch.stack(patches)  # (T, inp)
            g = torch.einsum("kj,jotu->kotu", roots.T, J).flatten(2).transpose(1, 2)  # (K, T, out)
        else:
            a = inp.reshape(1, -1)
            g = (roots.T @ J.reshape(J.shape[0], -1))[:, None, :]
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
        A_all.append(a)
        G_all.append(g)
    return torch.stack(A_all), torch.stack(G_all)


@pytest.mark.parametrize("case", ["mlp_ce", "cnn_ce"])
def test_factors_and_corrected_eigenvalues_match_an_independent_construction(case, request):
    net, X, y = request.getfixturevalue(case)
    module = net.estimator.module_
    ex = InfluenceExplainer(net, solver="ekfac").fit(X, y)
    kf = InfluenceExplainer(net, solver="kfac").fit(X, y)
    solver, ksolver = ex._solver, kf._solver
    layer_index = [
        i for i, m in enumerate(module) if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)
    ]
    n = len(X)
    for j, li in enumerate(layer_index):
        a, g = _layer_stats(module, X, y, li)
        T = a.shape[1]
        A = torch.einsum("nti,ntj->ij", a, a) / n
        S = torch.einsum("nkto,nktp->op", g, g) / (n * T)
        A_got, S_got = solver.factors_[j]
        np.testing.assert_allclose(A_got.numpy(), A.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(S_got.numpy(), S.numpy(), rtol=1e-10, atol=1e-12)
        # EK-FAC: the exact Gauss-Newton block's diagonal in the Kronecker eigenbasis
        G = torch.einsum("nkto,nti->nkoi", g, a).reshape(n, g.shape[1], -1)  # per-sample factors
        GGN = torch.einsum("nkp,nkq->pq", G, G) / n
        QA, QS = solver._bases[j]
        Q = torch.kron(QS, QA)
        expected = torch.diagonal(Q.T @ GGN @ Q).reshape(solver.eigenvalues_[j].shape)
        np.testing.assert_allclose(solver.eigenvalues_[j].numpy(), expected.numpy(), rtol=1e-9,
                                   atol=1e-13)  # fmt: skip
        # K-FAC: S (x) A itself, through its eigenpairs
        QA, QS = ksolver._bases[j]
        approx = torch.kron(QS, QA) @ torch.diag(ksolver.eigenvalues_[j].reshape(-1))
        approx = approx @ torch.kron(QS, QA).T
        np.testing.assert_allclose(approx.numpy(), torch.kron(S, A).numpy(), atol=1e-11)


def test_kronecker_refuses_unsupported_layers_and_models():
    X, y = _blobs()
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.LayerNorm(5), torch.nn.Tanh(), torch.nn.Linear(5, 3)
    )
    net = _net(NeuralNetClassifier, module, X, y, torch.nn.functional.cross_entropy,
               criterion=torch.nn.CrossEntropyLoss, classes=np.arange(3))  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"1\.weight \(LayerNorm\).*params="):
        InfluenceExplainer(net, solver="ekfac").fit(X, y)
    # the supported layers alone are fine
    ex = InfluenceExplainer(net, solver="ekfac", params=["0", "3"]).fit(X, y)
    assert ex.solver_summary_["layers"] == 2
    lr = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidParameterError, match="needs a torch net"):
        InfluenceExplainer(lr, solver="kfac").fit(X, y)


@pytest.mark.filterwarnings("ignore:The fitted parameters are not a stationary point")
def test_singular_kronecker_curvature_asks_for_damping():
    X, y = _blobs()
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    net = NeuralNetClassifier(module.double(), criterion=torch.nn.CrossEntropyLoss,
                              train_split=None, verbose=0, classes=np.arange(3))  # fmt: skip
    net.initialize()  # no weight decay: the softmax's flat direction is left undamped
    with pytest.raises(SingularHessianError, match=r"singular.*Pass damping="):
        InfluenceExplainer(FrozenEstimator(net), solver="kfac").fit(X, y)
    # the advised damping works
    InfluenceExplainer(FrozenEstimator(net), solver="kfac", damping=1e-3).fit(X, y)


# -- preconditioned CG: exact, whatever the preconditioner


@pytest.mark.parametrize("preconditioner", ["lowrank", "kfac", "ekfac"])
def test_preconditioned_cg_equals_direct(mlp_ce, preconditioner):
    net, X, y = mlp_ce
    ref = InfluenceExplainer(net, solver="direct").fit(X, y)
    params = {"preconditioner": preconditioner, "tol": 1e-12}
    if preconditioner == "lowrank":
        params["rank"] = 10
    ex = InfluenceExplainer(net, solver="cg", solver_params=params).fit(X, y)
    assert _rel(ex.influence(X[:9], y[:9]), ref.influence(X[:9], y[:9])) < 1e-6
    assert ex.solver_summary_["preconditioner"] == preconditioner
    assert _rel(ex.self_influence(), ref.self_influence()) < 1e-6
    # plain CG, one recursion per column, with and without it: the iterations it saves
    iters = {}
    for name, extra in (("with", params), ("without", {"tol": 1e-12})):
        one = InfluenceExplainer(net, solver="cg", solver_params={**extra, "block_size": 1})
        one.fit(X, y)
        assert _rel(one.influence(X[:9], y[:9]), ref.influence(X[:9], y[:9])) < 1e-6
        iters[name] = one.solver_summary_["CG iterations"]
    if preconditioner == "lowrank":  # deflation always helps; a Kronecker one need not
        assert iters["with"] < iters["without"]


def test_lowrank_preconditioner_on_logistic_regression():
    X, y = _blobs(n=120, d=6, k=4)
    lr = LogisticRegression(tol=1e-10, max_iter=5000).fit(X, y)
    ref = InfluenceExplainer(lr, solver="direct").fit(X, y)
    # quadratic_tol too: self-influence solved to tol like influence (not sqrt(tol))
    full = {"tol": 1e-12, "quadratic_tol": 1e-12}
    ex = InfluenceExplainer(
        lr, solver="cg", solver_params={"preconditioner": "lowrank", "rank": 8, **full}
    ).fit(X, y)
    assert _rel(ex.influence(X[:5], y[:5]), ref.influence(X[:5], y[:5])) < 1e-8
    assert _rel(ex.self_influence(), ref.self_influence()) < 1e-8
    assert ex.solver_summary_["preconditioner HVPs"] > 0


def test_rank_without_lowrank_preconditioner_is_refused(mlp_ce):
    net, X, y = mlp_ce
    with pytest.raises(InvalidParameterError, match="preconditioner='lowrank'"):
        InfluenceExplainer(net, solver="cg", solver_params={"rank": 5}).fit(X, y)
    with pytest.raises(InvalidParameterError, match="preconditioner"):
        InfluenceExplainer(net, solver="cg", solver_params={"preconditioner": "jacobi"}).fit(X, y)


# -- device residency: every solver iteration sees tensors, the host sees results only


@pytest.mark.parametrize(
    ("solver", "params"),
    [
        ("cg", {"preconditioner": "lowrank", "rank": 6}),
        ("cg", {"preconditioner": "ekfac"}),
        pytest.param("lissa", {"depth": 50}, marks=pytest.mark.filterwarnings("ignore:LiSSA")),
        ("ekfac", None),
        ("direct", None),
    ],
)
def test_solver_iterations_stay_on_the_device(mlp_ce, monkeypatch, solver, params):
    net, X, y = mlp_ce
    ex = InfluenceExplainer(net, solver=solver, solver_params=params, damping=1e-3).fit(X, y)
    adapter = ex._adapter
    seen, to_host = [], []
    hvp = type(adapter).hvp

    def recording_hvp(self, V, indices=None):
        seen.append((type(V).__name__, str(getattr(V, "device", "host"))))
        return hvp(self, V, indices)

    to_numpy = TorchBackend.to_numpy

    def recording_to_numpy(self, A):
        to_host.append(tuple(A.shape))
        return to_numpy(self, A)

    monkeypatch.setattr(type(adapter), "hvp", recording_hvp)
    monkeypatch.setattr(TorchBackend, "to_numpy", recording_to_numpy)
    I = ex.influence(X[:4], y[:4])
    s = ex.self_influence()
    assert isinstance(I, np.ndarray) and isinstance(s, np.ndarray)
    assert all(kind == "Tensor" and dev == str(adapter.device) for kind, dev in seen)
    if solver in ("cg", "lissa"):
        assert len(seen) > 5  # the iterations ran through the recorder
    # the host receives results only: one self-influence vector per block and no
    # (n_params, m) iterate
    assert all(shape == (len(X),) or len(shape) == 1 for shape in to_host)


def test_sampled_curvature_is_an_unbiased_estimate_of_the_exact_factors(mlp_ce):
    net, X, y = mlp_ce
    exact = InfluenceExplainer(net, solver="kfac").fit(X, y)._solver
    sampled = (
        InfluenceExplainer(net, solver="kfac", solver_params={"n_samples": 64}, random_state=0)
        .fit(X, y)
        ._solver
    )
    again = (
        InfluenceExplainer(net, solver="kfac", solver_params={"n_samples": 64}, random_state=0)
        .fit(X, y)
        ._solver
    )
    for (A, S), (A2, S2), (_, S3) in zip(
        exact.factors_, sampled.factors_, again.factors_, strict=True
    ):
        np.testing.assert_allclose(A2.numpy(), A.numpy(), rtol=1e-12)  # inputs: not sampled
        # 80 samples x 64 draws: a relative error of about 1/sqrt(5120) = 1.4%
        assert torch.linalg.norm(S2 - S) / torch.linalg.norm(S) < 0.05
        assert torch.equal(S2, S3)  # seeded


def test_bfloat16_products_track_float64_to_bfloat16_accuracy(mlp_ce):
    # the opt-in low precision: per-sample gradients and their products in bf16
    net, X, y = mlp_ce
    full = InfluenceExplainer(net, solver="ekfac").fit(X, y)
    low = InfluenceExplainer(net, solver="ekfac", dtype="bfloat16").fit(X, y)
    assert low._adapter.dtype == torch.bfloat16
    I, I_low = full.influence(X[:9], y[:9]), low.influence(X[:9], y[:9])
    assert np.isfinite(I_low).all()
    # bf16 keeps 8 bits: entries agree to a few parts in a hundred of the largest
    assert np.corrcoef(I.ravel(), I_low.ravel())[0, 1] > 0.99
    assert np.abs(I - I_low).max() < 0.05 * np.abs(I).max()


def test_auto_says_what_it_chose_and_why(monkeypatch):
    import skinfluence.solvers as solvers

    X, y = _blobs(n=60, d=40)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(40, 80), torch.nn.Tanh(), torch.nn.Linear(80, 3))
    net = _net(NeuralNetClassifier, module, X, y, torch.nn.functional.cross_entropy,
               criterion=torch.nn.CrossEntropyLoss, classes=np.arange(3))  # fmt: skip
    ex = InfluenceExplainer(net).fit(X, y)  # 3,523 parameters
    assert ex.solver_ == "cg" and "preconditioner" not in ex.solver_summary_
    assert "n_params=3523 > 3000: block conjugate gradient" in ex.solver_summary_["chosen by auto"]
    monkeypatch.setattr(solvers, "AUTO_KRONECKER_MIN_PARAMS", 3000)
    big = InfluenceExplainer(net).fit(X, y)
    assert big.solver_ == "ekfac" and "EK-FAC" in big.solver_summary_["chosen by auto"]
    lr = LogisticRegression().fit(X, y)
    assert "dense Hessian" in InfluenceExplainer(lr).fit(X, y).solver_summary_["chosen by auto"]


@pytest.mark.parametrize(
    ("solver", "params"),
    [
        ("ekfac", None),
        ("cg", {"preconditioner": "lowrank", "rank": 6}),
        ("cg", {"preconditioner": "kfac"}),
    ],
)
def test_fitted_device_state_pickles(mlp_ce, solver, params):
    import pickle

    net, X, y = mlp_ce
    ex = InfluenceExplainer(net, solver=solver, solver_params=params).fit(X, y)
    before = ex.influence(X[:5], y[:5])
    restored = pickle.loads(pickle.dumps(ex))
    np.testing.assert_allclose(restored.influence(X[:5], y[:5]), before, rtol=1e-9)
    assert restored._solver.backend.device == ex._adapter.device
    assert "_tensor_device" not in vars(restored._solver)
