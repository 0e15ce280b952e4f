"""Fitted skorch nets on dask data: every result equals the in-memory path's.

Ground truth: the same explainer fitted in memory on the numpy data (the torch path,
itself checked against the closed form and against leave-one-out retraining in
tests/test_torch.py). Both compute in float64 on the CPU with the same per-sample
code; they differ only in the order of the sums (per chunk, then across chunks, for
the gradient and the P x P Hessian) and so in the Hessian's last bits, which its
condition number (a few hundred here) amplifies. rtol=1e-9 leaves three orders of
magnitude over what is seen (~1e-13) and would still catch a penalty added once per
chunk, a chunk's weights normalised by its own total, or a dropped class weight.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceExplainer  # noqa: E402

torch.set_num_threads(1)  # tiny nets: threads only add contention

#: Uneven row chunks, one of a single row and one of a few.
CHUNKS = (70, 1, 120, 9, 100)
N = sum(CHUNKS)
RTOL = 1e-9


class MLP(torch.nn.Module):
    """5 -> 8 -> n_out, tanh: 48 + 9 * n_out parameters, in float64."""

    def __init__(self, n_out=3):
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 8, dtype=torch.float64)
        self.fc2 = torch.nn.Linear(8, n_out, dtype=torch.float64)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _data(seed, binary):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 5))
    if binary:
        return X, (X[:, 0] - X[:, 1] ** 2 + 0.5 * rng.normal(size=N) > -0.5).astype(np.float64)
    return X, np.argmax(X[:, :3] + 0.5 * rng.gumbel(size=(N, 3)), axis=1)


def _fitted(net, X, y):
    torch.manual_seed(0)
    return net.set_params(
        optimizer=torch.optim.Adam, lr=0.05, batch_size=-1, train_split=None, verbose=0
    ).fit(X, y)


@pytest.fixture(scope="module")
def multiclass():
    """Class weights in the criterion, weight decay, mean reduction; sample weights."""
    X, y = _data(0, binary=False)
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    net = NeuralNetClassifier(
        MLP, criterion=torch.nn.CrossEntropyLoss, criterion__weight=weight, max_epochs=40
    )
    net = _fitted(net.set_params(optimizer__weight_decay=1e-2), X, y)
    sw = np.random.default_rng(1).uniform(0.3, 2.0, N)
    # the weighted objective is not the one trained: damping keeps its Hessian definite
    return X, y, sw, net, {"damping": 0.02}


@pytest.fixture(scope="module")
def binary():
    """A summed loss (the L2 strength divided by S), Gauss-Newton Hessian, no damping."""
    X, y = _data(1, binary=True)
    net = NeuralNetBinaryClassifier(MLP, module__n_out=1, criterion__reduction="sum", max_epochs=40)
    net = _fitted(net.set_params(optimizer__weight_decay=0.5), X, y)
    return X, y, None, net, {"hessian": "gauss-newton"}


def _fit_both(case):
    X, y, sw, net, options = case
    kw = {} if sw is None else {"sample_weight": sw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a few dozen epochs: no optimum
        mem = InfluenceExplainer(FrozenEstimator(net), **options).fit(X, y, **kw)
        Xd = da.from_array(X, chunks=(CHUNKS, -1))
        yd = da.from_array(y, chunks=50)  # other chunks than X: rechunked to its rows
        kwd = {} if sw is None else {"sample_weight": da.from_array(sw, chunks=(CHUNKS,))}
        ex = InfluenceExplainer(FrozenEstimator(net), **options).fit(Xd, yd, **kwd)
    return mem, ex


@pytest.mark.parametrize("case", ["multiclass", "binary"])
def test_every_result_equals_the_in_memory_path(client, case, request):
    X, y = request.getfixturevalue(case)[:2]
    mem, ex = _fit_both(request.getfixturevalue(case))
    assert ex.model_family_ == "torch" and ex.solver_ == "direct"
    assert ex.n_params_ == mem.n_params_ and ex.n_train_ == N
    np.testing.assert_allclose(ex.hessian_condition_, mem.hessian_condition_, rtol=RTOL)
    np.testing.assert_allclose(ex.stationarity_, mem.stationarity_, rtol=1e-7)
    np.testing.assert_allclose(ex.removal_weights_.compute(), mem.removal_weights_, rtol=1e-13)
    Xt, yt = X[:25] + 0.1, y[:25]

    infl = ex.influence(Xt, yt)
    assert isinstance(infl, da.Array)
    assert infl.shape == (25, N) and infl.chunks[1] == CHUNKS
    ref = mem.influence(Xt, yt)
    np.testing.assert_allclose(infl.compute(), ref, rtol=RTOL, atol=1e-12 * np.abs(ref).max())

    for name in ("loss", "gradient_norms", "self_influence", "self_removal_effect"):
        lazy = getattr(ex, name)()
        assert isinstance(lazy, da.Array), name
        np.testing.assert_allclose(lazy.compute(), getattr(mem, name)(), rtol=RTOL, err_msg=name)
    # test points: on the client, by the in-memory adapter's own code
    np.testing.assert_allclose(ex.self_influence(Xt, yt), mem.self_influence(Xt, yt), rtol=RTOL)
    np.testing.assert_allclose(ex.loss(Xt, yt), mem.loss(Xt, yt), rtol=1e-13)

    for method in ("loss", "self_influence", "grad_norm", "loo_loss", "alo_loss"):
        scores = ex.mislabel_scores(method)
        assert isinstance(scores, da.Array), method
        np.testing.assert_allclose(
            scores.compute(), mem.mislabel_scores(method), rtol=RTOL, err_msg=method
        )
    for method in ("loss", "self_influence"):
        np.testing.assert_array_equal(
            ex.find_mislabeled(k=15, method=method), mem.find_mislabeled(k=15, method=method)
        )

    got, want = ex.most_influential(Xt, yt, k=6), mem.most_influential(Xt, yt, k=6)
    for key in ("helpful_indices", "harmful_indices"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("helpful_values", "harmful_values"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, err_msg=key)


def test_results_are_lazy_and_ship_the_net_once(multiclass):
    """Building a result reads no chunk; its graph holds the net (the template adapter)
    and the solved test directions under one key each, and computing it reads each
    chunk once."""
    X, y, sw, net, options = multiclass
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return X[slice(*block_info[None]["array-location"][0])]

    Xd = da.zeros((N, 5), chunks=(CHUNKS, -1)).map_blocks(load, dtype=float)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ex = InfluenceExplainer(FrozenEstimator(net), **options).fit(Xd, y, sample_weight=sw)
        assert sorted(reads) == list(range(len(CHUNKS)))  # fit: one pass
        reads.clear()
        infl = ex.influence(X[:4], y[:4])
        lazy = [infl, ex.self_influence(), ex.loss(), ex.gradient_norms()]
        assert all(isinstance(a, da.Array) for a in lazy) and reads == []
        names = [k for k in dict(infl.__dask_graph__()) if isinstance(k, str)]
        assert sum(k.startswith("TorchAdapter-") for k in names) == 1
        assert sum(k.startswith("ndarray-") for k in names) == 1
        infl.compute()
        assert sorted(reads) == list(range(len(CHUNKS)))


def test_what_the_dask_torch_path_refuses(multiclass):
    X, y, _, net, _ = multiclass
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    unfitted = NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, train_split=None)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NotFittedError, match="not fitted: fit it first"):
            InfluenceExplainer(FrozenEstimator(unfitted)).fit(Xd, y)
        with pytest.raises(NotFittedError, match=r"does not train a net.*FrozenEstimator"):
            InfluenceExplainer(unfitted).fit(Xd, y)
        with pytest.raises(ValueError, match=r"passed unfrozen \(fitted\).*FrozenEstimator"):
            InfluenceExplainer(net).fit(Xd, y)
        for solver in ("cg", "lissa"):
            with pytest.raises(ValueError, match=f"solver='{solver}' is not available"):
                InfluenceExplainer(FrozenEstimator(net), solver=solver).fit(Xd, y)
        with pytest.raises(ValueError, match="hessian_samples=50"):
            InfluenceExplainer(FrozenEstimator(net), hessian_samples=50).fit(Xd, y)
        with pytest.raises(ValueError, match="polish=True"):
            InfluenceExplainer(FrozenEstimator(net), polish=True).fit(Xd, y)
        # 75 parameters: a 0.04 MiB Hessian; restricted to fc2 (27), 0.006 MiB
        with pytest.raises(ValueError, match=r"n_params=75 .*over working_memory=0.01 MiB"):
            InfluenceExplainer(FrozenEstimator(net), working_memory=0.01).fit(Xd, y)
        small = InfluenceExplainer(FrozenEstimator(net), working_memory=0.01, params="fc2")
        assert small.fit(Xd, y, sample_weight=np.ones(N)).n_params_ == 27
        ex = InfluenceExplainer(FrozenEstimator(net), damping=0.02).fit(Xd, y)
        for call in (
            lambda: ex.mislabel_scores(),  # "auto": cross-fitted, refits the net
            lambda: ex.cross_fitted_losses(cv=3),
            lambda: ex.find_mislabeled(),
        ):
            with pytest.raises(NotImplementedError, match="does not train nets on dask data"):
                call()
        for call in (
            lambda: ex.influence_params(),
            lambda: ex.removal_effect(X[:2], y[:2]),
            lambda: ex.validate(X[:2], y[:2]),
        ):
            with pytest.raises(NotImplementedError, match="dask data"):
                call()


def test_a_chunk_view_leaves_the_template_picklable_mid_call(multiclass):
    """A worker pickles the template (to send it to another worker) while its threads
    compute on chunk views of it; ``functional_call`` swaps a module's parameters for
    vmap's wrappers during a call, so a view computing on the template's own module
    made that pickling fail (and the computation hang on the cluster)."""
    import pickle
    import threading

    from skinfluence.models.torch import TorchAdapter

    X, y, sw, net, _ = multiclass
    tpl = TorchAdapter.template(net)
    tpl.set_objective(sw.sum(), "mean")
    view = tpl.on_block(tpl.prepare(X[:10], y[:10]), sw[:10])
    assert view.module is not tpl.module and tpl.module is net.module_
    pickled = []

    def pickle_elsewhere(*_):  # as the worker's event loop does, while this call is in flight
        thread = threading.Thread(target=lambda: pickled.append(pickle.dumps(tpl)))
        thread.start()
        thread.join()

    hook = view.module.register_forward_hook(pickle_elsewhere)
    try:
        G = view.per_sample_gradients(view.train_data)
    finally:
        hook.remove()
    assert pickled, "the forward hook did not run: the view computes on another module"
    again = pickle.loads(pickled[0]).on_block(tpl.prepare(X[:10], y[:10]), sw[:10])
    np.testing.assert_array_equal(
        np.asarray(again.per_sample_gradients(again.train_data)), np.asarray(G)
    )


def test_a_pipeline_ending_in_a_net_transforms_each_chunk(client, multiclass):
    """The earlier steps are fixed feature maps applied to each chunk on its worker."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _, _, _ = multiclass
    X = 3.0 * X + 1.0  # the scaler has work to do
    net = NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, max_epochs=30)
    torch.manual_seed(0)
    pipe = make_pipeline(
        StandardScaler(),
        net.set_params(
            optimizer=torch.optim.Adam,
            lr=0.05,
            batch_size=-1,
            train_split=None,
            verbose=0,
            optimizer__weight_decay=1e-2,
        ),
    ).fit(X, y)
    Xt, yt = X[:7], y[:7]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mem = InfluenceExplainer(FrozenEstimator(pipe), damping=0.02).fit(X, y)
        ex = InfluenceExplainer(FrozenEstimator(pipe), damping=0.02).fit(
            da.from_array(X, chunks=(CHUNKS, -1)), y
        )
    np.testing.assert_allclose(ex.influence(Xt, yt).compute(), mem.influence(Xt, yt), rtol=RTOL)
    np.testing.assert_allclose(ex.self_influence().compute(), mem.self_influence(), rtol=RTOL)
