"""Newton-step removal for torch nets: the closed form for linear nets, retraining for MLPs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from scipy.stats import pearsonr  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_classification  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceExplainer, SingularHessianError  # noqa: E402
from tests.test_torch import MLP, Lin, train_full_batch  # noqa: E402

torch.set_num_threads(1)


def _linear_pair(binary):
    """A linear net and the LogisticRegression with the same weights and objective."""
    k = 2 if binary else 3
    X, y = make_classification(150, 4, n_informative=3, n_redundant=0, n_classes=k, random_state=0)
    C = 0.7
    # a softmax's shared bias is a flat direction the net's adapter does not remove
    lr = LogisticRegression(C=C, fit_intercept=binary, tol=1e-12, max_iter=10_000).fit(X, y)
    cls = NeuralNetBinaryClassifier if binary else NeuralNetClassifier
    extra = {} if binary else {"criterion": torch.nn.CrossEntropyLoss}
    net = cls(
        Lin,
        module__n_in=4,
        module__n_out=1 if binary else 3,
        module__bias=binary,
        optimizer__weight_decay=1 / (C * len(y)),
        optimizer__param_groups=[("lin.bias", {"weight_decay": 0.0})] if binary else [],
        train_split=None,
        verbose=0,
        **extra,
    ).initialize()
    if not binary:
        net.classes = [0, 1, 2]
    with torch.no_grad():
        net.module_.lin.weight.copy_(torch.as_tensor(lr.coef_))
        if binary:
            net.module_.lin.bias.copy_(torch.as_tensor(lr.intercept_))
    y_net = y.astype(np.float64) if binary else y
    return (
        InfluenceExplainer(FrozenEstimator(net)).fit(X, y_net),
        InfluenceExplainer(FrozenEstimator(lr)).fit(X, y),
        X,
        y,
        y_net,
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "multinomial"])
def test_linear_net_removal_equals_the_closed_form(binary):
    # outputs linear in the weights: the Gauss-Newton term is the whole curvature and
    # the linearised outputs are exact, so the net's step is the closed form's
    ex_t, ex_l, X, y, y_net = _linear_pair(binary)
    np.testing.assert_allclose(
        ex_t.removal_effect(X[:5], y_net[:5]),
        ex_l.removal_effect(X[:5], y[:5]),
        rtol=1e-7,
        atol=1e-13,
    )
    np.testing.assert_allclose(ex_t.self_removal_effect(), ex_l.self_removal_effect(), rtol=1e-7)
    np.testing.assert_allclose(
        ex_t.group_removal_effect(X[:5], y_net[:5], [1, 2, 40], n_steps=3),
        ex_l.group_removal_effect(X[:5], y[:5], [1, 2, 40], n_steps=3),
        rtol=1e-7,
        atol=1e-13,
    )


@pytest.fixture(scope="module")
def iris_mlp():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
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
    net = train_full_batch(net, X, y, steps=3000)
    return InfluenceExplainer(FrozenEstimator(net)).fit(X, y), X, y


def test_mlp_removal_is_nearer_retraining_than_first_order(iris_mlp):
    ex, X, y = iris_mlp
    t = np.argsort(-ex.loss())[:1]
    Xt, yt = X[t], y[t]
    newton = ex.removal_effect(Xt, yt)[0]
    first = ex.removal_effect(Xt, yt, method="first-order")[0]
    top = np.argsort(-np.abs(first))[:12]
    ad = ex._adapter
    data = ad.prepare(Xt, yt)
    base = ad.per_sample_losses(data)[0]
    actual = []
    for j in top:  # retraining from theta_hat without the point (Basu et al.'s protocol)
        w = np.ones(ad.n_train)
        w[j] = 0.0
        actual.append(ad.retrained_losses(data, w, refit_steps=200)[0] - base)
    actual = np.array(actual)
    err_newton = np.abs(newton[top] - actual).mean()
    err_first = np.abs(first[top] - actual).mean()
    assert err_newton < 0.5 * err_first
    assert pearsonr(newton[top], actual)[0] > pearsonr(first[top], actual)[0]
    # the group: Newton steps with the solver, exact test losses at the new weights.
    # Without these five points the exact Hessian is indefinite (a net is not convex):
    # named, with the way out, which is the Gauss-Newton Hessian
    group = top[:5]
    with pytest.raises(SingularHessianError, match=r"Newton step 1 .* 5 removed points.*gauss"):
        ex.group_removal_effect(Xt, yt, group)
    gn = clone(ex).set_params(hessian="gauss-newton").fit(X, y)
    w = np.ones(ad.n_train)
    w[group] = 0.0
    g_actual = ad.retrained_losses(data, w, refit_steps=300)[0] - base
    g_newton = gn.group_removal_effect(Xt, yt, group, n_steps=3)[0]
    g_first = ex.group_removal_effect(Xt, yt, group, method="first-order")[0]
    assert abs(g_newton - g_actual) < 0.5 * abs(g_first - g_actual)
