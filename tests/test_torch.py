"""The torch/skorch path: agreement with the closed form, solvers, derivatives, errors."""

import copy
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from sklearn.datasets import load_iris, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceExplainer, SingularHessianError  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add contention on small CI machines


class MLP(torch.nn.Module):
    def __init__(self, n_in=4, hidden=8, n_out=3, dtype=torch.float64):
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, hidden, dtype=dtype)
        self.fc2 = torch.nn.Linear(hidden, n_out, dtype=dtype)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Lin(torch.nn.Module):
    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.lin = torch.nn.Linear(n_in, n_out, bias=bias, dtype=torch.float64)

    def forward(self, x):
        return self.lin(x)


def train_full_batch(net, X, y, steps=1500):
    """Full-batch training with the net's own optimizer and loss (fast, deterministic)."""
    net.initialize()
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(steps):
        net.optimizer_.zero_grad()
        net.get_loss(net.module_(Xt), yt).backward()
        net.optimizer_.step()
    return net


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def mlp_net(iris):
    X, y = iris
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=1e-2,
        lr=0.02,
        train_split=None,
        verbose=0,
    )
    return train_full_batch(net, X, y, steps=3000)


@pytest.fixture(scope="module")
def mlp_direct(mlp_net, iris):
    X, y = iris
    return InfluenceExplainer(FrozenEstimator(mlp_net)).fit(X, y)


def test_linear_net_equals_closed_form_multinomial():
    X, y = make_classification(200, 5, n_informative=4, n_redundant=0, n_classes=3, random_state=0)
    C = 0.5
    lr = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X, y)
    net = NeuralNetClassifier(
        Lin,
        module__n_in=5,
        module__n_out=3,
        module__bias=False,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer__weight_decay=1 / (C * len(y)),
        train_split=None,
        verbose=0,
    ).initialize()
    net.classes = [0, 1, 2]
    with torch.no_grad():
        net.module_.lin.weight.copy_(torch.as_tensor(lr.coef_))
    ex_t = InfluenceExplainer(FrozenEstimator(net)).fit(X, y)
    ex_l = InfluenceExplainer(FrozenEstimator(lr)).fit(X, y)
    assert ex_t.stationarity_ < 1e-6
    assert ex_t.model_family_ == "torch" and ex_l.model_family_ == "linear"
    np.testing.assert_allclose(
        ex_t.influence(X[:6], y[:6]), ex_l.influence(X[:6], y[:6]), rtol=1e-6
    )
    np.testing.assert_allclose(ex_t.self_influence(), ex_l.self_influence(), rtol=1e-6)
    np.testing.assert_allclose(
        ex_t.influence_params([0, 9]), ex_l.influence_params([0, 9]), rtol=1e-6, atol=1e-12
    )
    np.testing.assert_allclose(
        ex_t.perturbation_influence(X[:2], y[:2], train_indices=[3, 4]),
        ex_l.perturbation_influence(X[:2], y[:2], train_indices=[3, 4]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(ex_t.loss(), ex_l.loss(), rtol=1e-10)


def test_binary_net_with_unpenalised_bias_equals_logistic_regression():
    X, y = make_classification(200, 4, n_informative=3, n_redundant=0, random_state=1)
    C = 1.0
    lr = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    net = NeuralNetBinaryClassifier(
        Lin,
        module__n_in=4,
        module__n_out=1,
        optimizer__weight_decay=1 / (C * len(y)),
        optimizer__param_groups=[("lin.bias", {"weight_decay": 0.0})],
        train_split=None,
        verbose=0,
    ).initialize()
    with torch.no_grad():
        net.module_.lin.weight.copy_(torch.as_tensor(lr.coef_))
        net.module_.lin.bias.copy_(torch.as_tensor(lr.intercept_))
    yf = y.astype(np.float64)
    ex_t = InfluenceExplainer(FrozenEstimator(net)).fit(X, yf)
    ex_l = InfluenceExplainer(FrozenEstimator(lr)).fit(X, y)
    np.testing.assert_allclose(
        ex_t.influence(X[:5], yf[:5]), ex_l.influence(X[:5], y[:5]), rtol=1e-6
    )
    # Gauss-Newton equals the exact Hessian for a linear model with a convex loss
    ex_gn = InfluenceExplainer(FrozenEstimator(net), hessian="gauss-newton").fit(X, yf)
    np.testing.assert_allclose(
        ex_gn._adapter.hessian(), ex_t._adapter.hessian(), rtol=1e-10, atol=1e-14
    )


def _plain_objective(net, X, y, wd):
    """The training objective written with plain torch, independently of the adapter."""
    module = net.module_
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    names = [n for n, _ in module.named_parameters()]

    def R(flat):
        params, start = {}, 0
        for n, p in module.named_parameters():
            params[n] = flat[start : start + p.numel()].reshape(p.shape)
            start += p.numel()
        out = torch.func.functional_call(module, params, (Xt,))
        loss = torch.nn.functional.cross_entropy(out, yt)
        return loss + 0.5 * wd * (flat**2).sum()

    theta = torch.cat([p.detach().reshape(-1) for _, p in module.named_parameters()])
    return R, theta, names


def test_hessian_and_hvp_against_autograd_and_finite_differences(mlp_net, iris, mlp_direct):
    X, y = iris
    R, theta, _ = _plain_objective(mlp_net, X, y, wd=1e-2)
    H_ref = torch.autograd.functional.hessian(R, theta).numpy()
    ad = mlp_direct._adapter
    np.testing.assert_allclose(ad.hessian(), H_ref, rtol=1e-8, atol=1e-10)
    v = np.random.default_rng(0).normal(size=ad.n_params)
    eps = 1e-5
    g = lambda t: torch.func.grad(R)(t).numpy()  # noqa: E731
    fd = (g(theta + eps * torch.as_tensor(v)) - g(theta - eps * torch.as_tensor(v))) / (2 * eps)
    np.testing.assert_allclose(ad.hvp(v), fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ad.objective_gradient(), g(theta), rtol=1e-8, atol=1e-12)


def test_gauss_newton_products_from_the_cached_factor(mlp_net, iris):
    """The Gauss-Newton product from the cached factor ``F^T diag(s) F`` against
    ``sum_i w_i J_i^T C_i J_i + L2`` built row by row from autograd Jacobians and the
    softmax curvature ``diag(p) - p p^T`` (a subset of rows, sample weights); a
    reweighted view and an unpickled copy get their own factor, and a budget too
    small for the factor streams the same products."""
    import pickle

    X, y = iris
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    opts = {"hessian": "gauss-newton", "hessian_samples": 90, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # weighted: not the net's optimum
        ex = InfluenceExplainer(FrozenEstimator(mlp_net), **opts).fit(X, y, sample_weight=sw)
        small = InfluenceExplainer(FrozenEstimator(mlp_net), working_memory=1e-4, **opts)
        small.fit(X, y, sample_weight=sw)
    ad = ex._adapter
    theta = torch.as_tensor(ad.theta)
    data, w = ad._hessian_data()

    def outputs(t, x):
        return torch.func.functional_call(mlp_net.module_, ad._unflat(t), (x[None],))[0]

    G = torch.diag(ad._lam_t.double())
    for x, wi in zip(data.X, w, strict=True):
        J = torch.autograd.functional.jacobian(lambda t, x=x: outputs(t, x), theta)
        p = torch.softmax(outputs(theta, x), 0)
        G += wi * J.T @ (torch.diag(p) - torch.outer(p, p)) @ J
    V = np.random.default_rng(1).normal(size=(ad.n_params, 4))
    expected = G.numpy() @ V
    np.testing.assert_allclose(ad.hvp(V), expected, rtol=1e-10, atol=1e-13)
    assert ad._gn_cache[1] is not None  # that product came from the factor
    np.testing.assert_allclose(small._adapter.hvp(V), expected, rtol=1e-10, atol=1e-13)
    assert small._adapter._gn_cache[1] is None  # streamed: the factor did not fit
    # the dense matrix, from the factor in one product and from streamed columns
    np.testing.assert_allclose(ad.hessian(), G.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(small._adapter.hessian(), G.numpy(), rtol=1e-10, atol=1e-13)
    weights = np.random.default_rng(2).uniform(0, 1, len(y))
    view, streamed = ad.reweighted(weights), small._adapter.reweighted(weights)
    np.testing.assert_allclose(view.hvp(V), streamed.hvp(V), rtol=1e-10, atol=1e-13)
    assert not np.allclose(view.hvp(V), expected)
    theta = ad.theta + 0.05 * np.random.default_rng(3).normal(size=ad.n_params)
    moved, moved_streamed = ad.reweighted(weights, theta), small._adapter.reweighted(weights, theta)
    np.testing.assert_allclose(moved.hvp(V), moved_streamed.hvp(V), rtol=1e-10, atol=1e-13)
    assert not np.allclose(moved.hvp(V), view.hvp(V))
    copy_ = pickle.loads(pickle.dumps(ad))
    assert getattr(copy_, "_gn_cache", None) is None
    np.testing.assert_allclose(copy_.hvp(V), expected, rtol=1e-10, atol=1e-13)


def test_per_sample_gradients_against_a_loop_of_backward_passes(mlp_net, iris, mlp_direct):
    X, y = iris
    G = mlp_direct._adapter.per_sample_gradients(mlp_direct._adapter.train_data)
    module = mlp_net.module_
    for i in (0, 77, 149):
        module.zero_grad()
        out = module(torch.as_tensor(X[i : i + 1]))
        torch.nn.functional.cross_entropy(out, torch.as_tensor(y[i : i + 1])).backward()
        ref = torch.cat([p.grad.reshape(-1) for p in module.parameters()]).numpy()
        np.testing.assert_allclose(G[i], ref, rtol=1e-10, atol=1e-14)


def test_iterative_solvers_agree_with_direct(mlp_net, iris, mlp_direct):
    X, y = iris
    I = mlp_direct.influence(X[:10], y[:10])
    settings = {
        "cg": ({}, 0.999),
        "lissa": ({"depth": 2000, "repeats": 2, "batch_size": 50}, 0.98),
        "lowrank": ({"rank": 40}, 0.95),
    }
    for name, (params, bar) in settings.items():
        ex = InfluenceExplainer(
            FrozenEstimator(mlp_net), solver=name, solver_params=params, random_state=0
        ).fit(X, y)
        r = np.corrcoef(ex.influence(X[:10], y[:10]).ravel(), I.ravel())[0, 1]
        assert r >= bar, (name, r)
    assert mlp_direct.solver_ == "direct"


def test_float32_model_tracks_float64(iris):
    X, y = iris
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP,
        module__dtype=torch.float32,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=1e-2,
        lr=0.02,
        train_split=None,
        verbose=0,
    )
    X32 = X.astype(np.float32)
    train_full_batch(net, X32, y, steps=1500)
    ex32 = InfluenceExplainer(FrozenEstimator(net)).fit(X32, y)
    ex64 = InfluenceExplainer(FrozenEstimator(net), dtype="float64").fit(X32, y)
    assert ex32._adapter.dtype == torch.float32 and ex64._adapter.dtype == torch.float64
    np.testing.assert_allclose(ex32.self_influence(), ex64.self_influence(), rtol=1e-2)


class _CauchyLoss(torch.nn.Module):
    """``log(1 + r^2)``: its curvature in the output is negative where ``|r| > 1``."""

    def forward(self, out, y):
        return torch.log1p((out - y) ** 2).mean()


def test_gauss_newton_factor_keeps_the_sign_of_an_indefinite_output_curvature():
    """A robust regression loss whose curvature in the net's output changes sign:
    the factor's rows carry ``sign(e)``, so its products equal the streamed ones."""
    from skorch import NeuralNetRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X @ rng.normal(size=(4, 1)) + 2.0 * rng.standard_t(1, size=(80, 1))).astype(float)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        MLP,
        module__n_out=1,
        criterion=_CauchyLoss,
        optimizer__weight_decay=1e-2,
        train_split=None,
        verbose=0,
    )
    net = train_full_batch(net, X, y, steps=200)
    opts = {"hessian": "gauss-newton", "damping": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not trained to an optimum
        ex = InfluenceExplainer(FrozenEstimator(net), **opts).fit(X, y)
        small = InfluenceExplainer(FrozenEstimator(net), working_memory=1e-5, **opts).fit(X, y)
    ad = ex._adapter
    V = np.random.default_rng(1).normal(size=(ad.n_params, 3))
    np.testing.assert_allclose(ad.hvp(V), small._adapter.hvp(V), rtol=1e-10, atol=1e-13)
    F, sign = ad._gn_cache[1]
    assert (sign < 0).any() and (sign > 0).any()  # both kinds of rows are in use
    assert small._adapter._gn_cache[1] is None


def test_matmul_precision_rounds_only_the_influence_products(mlp_net, iris, mlp_direct):
    """bfloat16 products: with u = 2^-8 (bfloat16's unit roundoff), rounding both
    factors costs at most (2u + u^2) |G| |M| per entry and rounding each layer's
    product at most u times the sum of its terms' sizes, so every entry of ``G M``
    is within ``(3u + u^2) (|G| |M|)`` of the exact product; "tf32" changes nothing
    on a CPU; a linear model refuses the option."""
    X, y = iris
    bf = InfluenceExplainer(FrozenEstimator(mlp_net), matmul_precision="bfloat16").fit(X, y)
    ad, ad_ref = bf._adapter, mlp_direct._adapter
    M = np.random.default_rng(0).normal(size=(ad.n_params, 5))
    G = ad_ref.per_sample_gradients(ad_ref.train_data)
    exact = G @ M
    got = ad.gradients_dot(ad.train_data, ad.asarray(M))
    u = 2.0**-8
    bound = (3 * u + u**2) * (np.abs(G) @ np.abs(M)) + 1e-12
    assert np.all(np.abs(got - exact) <= bound)
    assert np.abs(got - exact).max() > 1e-6  # it really rounded
    np.testing.assert_array_equal(bf.hessian_condition_, mlp_direct.hessian_condition_)
    ref = mlp_direct.influence(X[:10], y[:10])
    assert np.corrcoef(bf.influence(X[:10], y[:10]).ravel(), ref.ravel())[0, 1] > 0.999
    tf = InfluenceExplainer(FrozenEstimator(mlp_net), matmul_precision="tf32").fit(X, y)
    np.testing.assert_array_equal(tf.influence(X[:10], y[:10]), ref)
    with pytest.raises(ValueError, match="matmul_precision only apply to torch nets"):
        InfluenceExplainer(LogisticRegression(), matmul_precision="bfloat16").fit(X, y)


def test_frozen_layers_and_params_option_restrict_influence(mlp_net, iris):
    X, y = iris
    ex = InfluenceExplainer(FrozenEstimator(mlp_net), params="fc2").fit(X, y)
    assert ex.n_params_ == 8 * 3 + 3
    # the same as the Hessian block and gradients of the last layer alone
    full = InfluenceExplainer(FrozenEstimator(mlp_net)).fit(X, y)._adapter
    H = full.hessian()
    last = slice(full.n_params - 27, full.n_params)
    G = full.per_sample_gradients(full.train_data)[:, last]
    np.testing.assert_allclose(
        ex.self_influence(),
        np.einsum("ij,ji->i", G, np.linalg.solve(H[last, last], G.T)),
        rtol=1e-8,
    )


def test_leave_one_out_retraining_from_optimum(mlp_net, iris, mlp_direct):
    # Basu et al.'s protocol: retrain from theta_hat without the point, full batch.
    X, y = iris
    res = mlp_direct.validate(X[:3], y[:3], n_points=6, refit_steps=2000, random_state=0)
    assert res.pearson > 0.9, res
    assert res.spearman > 0.8, res


def test_nets_trained_by_the_explainer_and_a_4d_input():
    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)
            self.fc = torch.nn.Linear(2 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 6, 6)).astype(np.float32)
    y = (X[:, 0, 2:4, 2:4].mean(axis=(1, 2)) > 0).astype(np.int64)
    net = NeuralNetClassifier(
        Conv,
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=3,
        optimizer__weight_decay=1e-2,
        train_split=None,
        verbose=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SGD for 3 epochs is no optimum
        ex = InfluenceExplainer(net, damping=0.01, solver="cg", hessian="gauss-newton").fit(X, y)
    assert not hasattr(net, "module_")  # the user's net is never fitted
    I = ex.influence(X[:3], y[:3])
    assert I.shape == (3, 40) and np.all(np.isfinite(I))
    pert = ex.perturbation_influence(X[:1], y[:1], train_indices=[0])
    assert pert.shape == (1, 1, 36)


def test_errors_and_warnings(mlp_net, iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        InfluenceExplainer(FrozenEstimator(NeuralNetClassifier(MLP))).fit(X, y)
    frozen_net = NeuralNetClassifier(
        MLP, criterion=torch.nn.CrossEntropyLoss, train_split=None
    ).initialize()
    for p in frozen_net.module_.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad"):
        InfluenceExplainer(FrozenEstimator(frozen_net)).fit(X, y)
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        InfluenceExplainer(FrozenEstimator(mlp_net), params="fc9").fit(X, y)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        InfluenceExplainer(FrozenEstimator(mlp_net)).fit(Xn, y)
    with pytest.raises(SingularHessianError, match="LiSSA diverged"):
        InfluenceExplainer(
            FrozenEstimator(mlp_net),
            solver="lissa",
            random_state=0,
            solver_params={"scale": 1e-3, "depth": 200},
        ).fit(X, y).influence(X[:2], y[:2])
    ex = InfluenceExplainer(
        FrozenEstimator(mlp_net), solver="cg", solver_params={"max_iter": 2, "tol": 1e-12}
    ).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="worst relative residual"):
        ex.influence(X[:2], y[:2])
    with pytest.raises(ValueError, match="only apply to torch nets"):
        InfluenceExplainer(LogisticRegression(), hessian="gauss-newton").fit(X, y)


def test_split_adamw_and_non_decomposable_loss(iris):
    X, y = iris
    # untrained nets are indefinite: over 30 initialisations the damping that made
    # the Hessian definite was at most 1.2, so 5 is safe whatever the test order
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="train_split"):
        net = NeuralNetClassifier(
            MLP, criterion=torch.nn.CrossEntropyLoss, optimizer__weight_decay=1e-2, verbose=0
        ).initialize()
        InfluenceExplainer(FrozenEstimator(net), damping=5.0).fit(X, y)
    with pytest.warns(UserWarning, match="AdamW"):
        net = NeuralNetClassifier(
            MLP,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.AdamW,
            train_split=None,
            verbose=0,
        ).initialize()
        InfluenceExplainer(FrozenEstimator(net), damping=5.0).fit(X, y)

    class MaxLossNet(NeuralNet):
        def get_loss(self, y_pred, y_true, *args, **kwargs):
            per = torch.nn.functional.cross_entropy(y_pred, y_true, reduction="none")
            return per.max()

    net = MaxLossNet(
        MLP, criterion=torch.nn.CrossEntropyLoss, train_split=None, verbose=0
    ).initialize()
    with pytest.raises(ValueError, match="not per-sample decomposable"):
        InfluenceExplainer(FrozenEstimator(net), damping=1.0).fit(X, y)


def test_clone_and_pickle_round_trip(mlp_net, iris, mlp_direct):
    import pickle

    from sklearn.base import clone

    X, y = iris
    restored = pickle.loads(pickle.dumps(mlp_direct))
    np.testing.assert_array_equal(
        restored.influence(X[:3], y[:3]), mlp_direct.influence(X[:3], y[:3])
    )
    cloned = clone(mlp_direct)
    assert not hasattr(cloned, "estimator_")
    assert cloned.get_params()["estimator"] is mlp_direct.estimator  # frozen: kept as is


def test_lowrank_self_influence_uses_the_top_eigenspace(mlp_net, iris, mlp_direct):
    X, y = iris
    P = mlp_direct.n_params_
    full = InfluenceExplainer(
        FrozenEstimator(mlp_net), solver="lowrank", solver_params={"rank": P - 1}, random_state=0
    ).fit(X, y)
    # rank P-1 drops only the flattest direction: nearly the exact self-influence
    r = np.corrcoef(full.self_influence(), mlp_direct.self_influence())[0, 1]
    assert r > 0.99


def test_negative_curvature_is_an_error_that_suggests_a_damping(iris):
    X, y = iris
    torch.manual_seed(3)
    net = NeuralNetClassifier(
        MLP, module__hidden=16, criterion=torch.nn.CrossEntropyLoss, train_split=None, verbose=0
    ).initialize()  # far from an optimum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SingularHessianError, match=r"smallest eigenvalue -.*damping=") as e:
            InfluenceExplainer(FrozenEstimator(net)).fit(X, y)
        advised = float(re.search(r"Pass damping=([-+.e0-9]+)", str(e.value)).group(1))
        # too little damping: the advice is again the whole damping, from the undamped H
        with pytest.raises(SingularHessianError) as e2:
            InfluenceExplainer(FrozenEstimator(net), damping=advised / 3).fit(X, y)
        again = float(re.search(r"Pass damping=([-+.e0-9]+)", str(e2.value)).group(1))
        assert again == advised
        ex = InfluenceExplainer(FrozenEstimator(net), damping=again).fit(X, y)
    assert ex.solver_summary_["smallest eigenvalue"] > 0


def test_double_backward_fallback_matches_forward_over_reverse(mlp_direct):
    ad = mlp_direct._adapter
    V = np.random.default_rng(1).normal(size=(ad.n_params, 3))
    Vd = ad._unflat(ad.asarray(V.T), batch=True)
    f = ad._block_objective(ad.train_data, ad._w)
    fallback = ad._flat(ad._hvp_double_backward(f, Vd), batch=True).numpy().T
    np.testing.assert_allclose(fallback + ad.lam[:, None] * V, ad.hvp(V), rtol=1e-10, atol=1e-12)


# -- errors that name the real cause -------------------------------------------------------
def test_nan_weight_is_named_not_blamed_on_the_loss(mlp_net, iris):
    X, y = iris
    net = copy.deepcopy(mlp_net)
    with torch.no_grad():
        net.module_.fc2.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"weights contain NaN or infinity \(fc2.weight\)"):
        InfluenceExplainer(FrozenEstimator(net)).fit(X, y)


def test_decomposability_is_checked_beyond_the_first_rows(iris):
    X, y = iris

    class MeanUpTo16ThenSum(NeuralNet):
        # decomposable-looking on 16 rows (a mean), a sum on bigger batches
        def get_loss(self, y_pred, y_true, *args, **kwargs):
            per = torch.nn.functional.cross_entropy(y_pred, y_true, reduction="none")
            return per.mean() if len(per) <= 16 else per.sum()

    net = MeanUpTo16ThenSum(
        MLP, criterion=torch.nn.CrossEntropyLoss, train_split=None, verbose=0
    ).initialize()
    with pytest.raises(ValueError, match=r"not per-sample decomposable: .*\['mean', 'sum'\]"):
        InfluenceExplainer(FrozenEstimator(net), damping=1.0).fit(X, y)


@pytest.fixture(scope="module")
def float32_net():
    """An untrained float32 MLP (its weights as initialised)."""
    torch.manual_seed(0)
    return NeuralNetClassifier(
        MLP,
        module__dtype=torch.float32,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        verbose=0,
    ).initialize()


def test_integer_X_for_a_float_net_is_named(iris, float32_net):
    X, y = iris
    net = float32_net
    with pytest.raises(ValueError, match=r"X of dtype int64.*computes in float32.*astype"):
        InfluenceExplainer(FrozenEstimator(net), damping=1.0).fit(X.round().astype(np.int64), y)


def test_float_labels_for_a_classifier(mlp_net, mlp_direct, iris):
    X, y = iris
    ex = InfluenceExplainer(FrozenEstimator(mlp_net)).fit(X, y.astype(float))
    np.testing.assert_allclose(
        ex.influence(X[:3], y[:3].astype(float)), mlp_direct.influence(X[:3], y[:3])
    )
    with pytest.raises(ValueError, match="non-integer values"):
        mlp_direct.influence(X[:2], [0.5, 1.0])


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="tests the message on a machine without a GPU"
)
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_named(mlp_net, iris, device):
    X, y = iris
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False"):
        InfluenceExplainer(FrozenEstimator(mlp_net), device=device).fit(X, y)


def test_bad_device_string(mlp_net, iris):
    X, y = iris
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        InfluenceExplainer(FrozenEstimator(mlp_net), device="gpu").fit(X, y)


def test_unknown_names_inside_a_params_list(mlp_net, iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"'fc3' matches no trainable parameter"):
        InfluenceExplainer(FrozenEstimator(mlp_net), params=["fc2", "fc3"]).fit(X, y)
    ex = InfluenceExplainer(FrozenEstimator(mlp_net), params=["fc2"]).fit(X, y)
    assert ex.n_params_ == 8 * 3 + 3


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_hessian_samples_range(mlp_net, iris, value):
    X, y = iris
    with pytest.raises(ValueError, match="'hessian_samples' parameter"):
        InfluenceExplainer(FrozenEstimator(mlp_net), hessian_samples=value).fit(X, y)


def test_float32_net_is_budgeted_in_float32(iris, float32_net):
    X, y = iris
    net = float32_net
    sizes = {}
    for dtype in (None, "float64"):
        ex = InfluenceExplainer(FrozenEstimator(net), damping=1.0, dtype=dtype).fit(
            X.astype(np.float32), y
        )
        ex.set_params(working_memory=0.02)  # the queries' budget (read at query time)
        seen = sizes.setdefault(dtype, [])
        original = ex._adapter.gradients_dot

        def counting(data, M, out=None, _orig=original, _seen=seen, _ad=ex._adapter):
            _seen.append(_ad.n_samples(data))
            return _orig(data, M, out=out)

        ex._adapter.gradients_dot = counting
        ex.influence(X[:5].astype(np.float32), y[:5])
    # 67 parameters: float32 rows of gradients are half as wide as float64 ones
    per_row = {None: 4 * 67 + 8 * 5, "float64": 8 * 67 + 8 * 5}
    for dtype, seen in sizes.items():
        assert seen[0] == int(0.02 * 2**20 // per_row[dtype])
    assert sizes[None][0] > 1.5 * sizes["float64"][0]


def test_meta_device_is_named(mlp_net, iris):
    X, y = iris
    with pytest.raises(ValueError, match="holds no data"):
        InfluenceExplainer(FrozenEstimator(mlp_net), device=torch.device("meta")).fit(X, y)


def test_editing_the_nets_weights_after_fit_changes_nothing(mlp_net, iris):
    X, y = iris
    net = copy.deepcopy(mlp_net)
    ex = InfluenceExplainer(FrozenEstimator(net)).fit(X, y)
    before, losses = ex.influence(X[:3], y[:3]), ex.loss(X[:5], y[:5])
    with torch.no_grad():
        net.module_.fc1.weight.mul_(3.0)
    np.testing.assert_array_equal(ex.influence(X[:3], y[:3]), before)
    np.testing.assert_array_equal(ex.loss(X[:5], y[:5]), losses)


def test_prediction_methods_delegate_to_the_net(mlp_direct, mlp_net, iris):
    X, _ = iris
    np.testing.assert_array_equal(mlp_direct.predict(X[:9]), mlp_net.predict(X[:9]))
    np.testing.assert_array_equal(mlp_direct.predict_proba(X[:9]), mlp_net.predict_proba(X[:9]))


def test_influence_display_from_the_net_explainer_alone(mlp_direct, iris):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skinfluence.plotting import InfluenceDisplay

    X, y = iris
    disp = InfluenceDisplay.from_explainer(mlp_direct, X[5], y[5], k=2)
    res = mlp_direct.most_influential(X[5:6], y[5:6], k=2)
    np.testing.assert_array_equal(disp.harmful_indices, res.harmful_indices[0])
    i = res.harmful_indices[0, 0]
    assert f"#{i} (y={y[i]})" in [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert f"predicted {mlp_direct.predict(X[5:6])[0]}" in disp.ax_.get_title()
    plt.close("all")


def test_influence_params_frame_names_each_weight(mlp_direct):
    pd = pytest.importorskip("pandas")
    frame = mlp_direct.influence_params([2, 0], as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (2, mlp_direct.n_params_)
    # MLP(4 -> 8 -> 3): fc1.weight (8, 4), fc1.bias (8,), fc2.weight (3, 8), fc2.bias (3,)
    assert list(frame.columns[:2]) == ["fc1.weight[0, 0]", "fc1.weight[0, 1]"]
    assert frame.columns[32] == "fc1.bias[0]"
    assert frame.columns[-1] == "fc2.bias[2]"
    assert frame.columns.is_unique
    np.testing.assert_array_equal(frame.to_numpy(), mlp_direct.influence_params([2, 0]))
    assert list(frame.index) == [2, 0]
