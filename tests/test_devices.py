"""Every solver on a net's device: the same answers there as on the host.

Each case runs on every device this machine has: the CPU always, CUDA where a GPU
is present (skipped otherwise, as on CI). On the CPU the case checks that asking
for the device explicitly changes nothing; on a GPU it is the check that every
solver path runs there and agrees with the CPU.
"""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from skinfluence import InfluenceExplainer  # noqa: E402
from tests.test_kfac import cnn_ce, mlp_ce  # noqa: E402, F401 (fixtures)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
    ),
]

CASES = [
    ("direct", None, "exact"),
    ("cg", None, "exact"),
    ("cg", {"block_size": 1}, "exact"),
    ("cg", {"preconditioner": "lowrank", "rank": 5}, "exact"),
    ("cg", None, "gauss-newton"),  # products from the cached Gauss-Newton factor
    ("cg", {"preconditioner": "ekfac"}, "gauss-newton"),
    ("lowrank", {"rank": 10}, "exact"),
    ("lissa", {"depth": 200, "batch_size": 40}, "gauss-newton"),
    ("kfac", None, "gauss-newton"),
    ("ekfac", None, "gauss-newton"),
]


def _fit(net, X, y, solver, params, hessian, device):
    return InfluenceExplainer(
        net,
        solver=solver,
        solver_params=params,
        hessian=hessian,
        damping=1e-3,
        device=device,
        random_state=0,
    ).fit(X, y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "solver,params,hessian", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES]
)
def test_every_solver_on_the_device_equals_the_host(mlp_ce, device, solver, params, hessian):  # noqa: F811
    net, X, y = mlp_ce
    host = _fit(net, X, y, solver, params, hessian, "cpu")
    ex = _fit(net, X, y, solver, params, hessian, device)
    assert ex._adapter.device.type == device
    I, ref = ex.influence(X[:6], y[:6]), host.influence(X[:6], y[:6])
    assert isinstance(I, np.ndarray) and I.dtype == np.float64
    scale = np.abs(ref).max()
    np.testing.assert_allclose(I, ref, rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(ex.self_influence(), host.self_influence(), rtol=1e-6)
    # an explainer fitted on the device unpickles and answers the same
    again = pickle.loads(pickle.dumps(ex))
    np.testing.assert_allclose(again.influence(X[:6], y[:6]), I, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["highest", "tf32", "bfloat16"])
def test_conv_net_and_matmul_precision_on_the_device(cnn_ce, device, precision):  # noqa: F811
    net, X, y = cnn_ce
    opts = {"hessian": "gauss-newton", "damping": 1e-3, "matmul_precision": precision}
    host = InfluenceExplainer(net, solver="cg", device="cpu", **opts).fit(X, y)
    ex = InfluenceExplainer(net, solver="cg", device=device, **opts).fit(X, y)
    I, ref = ex.influence(X[:4], y[:4]), host.influence(X[:4], y[:4])
    # bfloat16 products are rounded (differently on each device's kernels)
    rtol = 2e-2 if precision == "bfloat16" else 1e-6
    np.testing.assert_allclose(I, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
