"""The dask path: training rows on workers, results equal to the in-memory path.

Ground truth: the in-memory explainer on the same model and data (itself checked
against leave-one-out retraining), scikit-learn's own optimum for the Newton fit, and
an independent numpy construction of binary logistic regression's influence for the
out-of-core run.
"""

import os
import time

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from skinfluence import InfluenceExplainer  # noqa: E402

#: Uneven row chunks (one of a single row), as data read from files arrive.
CHUNKS = (90, 1, 160, 49, 200)
N = sum(CHUNKS)


def _data(n_classes, seed=0, n=N, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    logits = X @ rng.normal(size=(d, n_classes))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return X, y, rng.uniform(0.3, 2.0, n)


def _tight(**kw):
    return LogisticRegression(tol=1e-13, max_iter=100_000, **kw)


CASES = {
    "binary": (2, {}, False),
    "binary-weighted-balanced": (2, {"class_weight": "balanced", "C": 0.3}, True),
    "multinomial": (3, {"C": 2.0}, False),
    "multinomial-weighted-no-intercept": (4, {"fit_intercept": False}, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_result_equals_the_in_memory_path(client, case):
    n_classes, options, weighted = CASES[case]
    X, y, sw = _data(n_classes)
    sw = sw if weighted else None
    kw = {} if sw is None else {"sample_weight": sw}
    model = _tight(**options).fit(X, y, **kw)
    mem = InfluenceExplainer(FrozenEstimator(model)).fit(X, y, **kw)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    yd = da.from_array(y, chunks=50)  # other chunks than X: rechunked to its rows
    kwd = {} if sw is None else {"sample_weight": da.from_array(sw, chunks=(CHUNKS,))}
    ex = InfluenceExplainer(FrozenEstimator(model)).fit(Xd, yd, **kwd)
    Xt, yt = X[:30] + 0.1, y[:30]

    infl = ex.influence(Xt, yt)
    assert isinstance(infl, da.Array)
    assert infl.shape == (30, N) and infl.chunks[1] == CHUNKS
    ref = mem.influence(Xt, yt)
    np.testing.assert_allclose(infl.compute(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())

    for name in ("loss", "gradient_norms", "self_influence", "self_removal_effect"):
        lazy = getattr(ex, name)()
        assert isinstance(lazy, da.Array), name
        np.testing.assert_allclose(lazy.compute(), getattr(mem, name)(), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(ex.removal_weights_.compute(), mem.removal_weights_, rtol=1e-13)
    np.testing.assert_allclose(ex.self_influence(Xt, yt), mem.self_influence(Xt, yt), rtol=1e-10)
    np.testing.assert_allclose(ex.loss(Xt, yt), mem.loss(Xt, yt), rtol=1e-12)

    for method in ("loss", "self_influence", "loo_loss", "alo_loss", "grad_norm"):
        scores = ex.mislabel_scores(method)
        assert isinstance(scores, da.Array)
        np.testing.assert_allclose(
            scores.compute(), mem.mislabel_scores(method), rtol=1e-10, err_msg=method
        )
        np.testing.assert_array_equal(
            ex.find_mislabeled(k=25, method=method), mem.find_mislabeled(k=25, method=method)
        )
    np.testing.assert_array_equal(
        ex.find_mislabeled(fraction=0.1, method="alo_loss"),
        mem.find_mislabeled(fraction=0.1, method="alo_loss"),
    )

    got, want = ex.most_influential(Xt, yt, k=7), mem.most_influential(Xt, yt, k=7)
    for key in ("helpful_indices", "harmful_indices"):
        np.testing.assert_array_equal(got[key], want[key])
    for key in ("helpful_values", "harmful_values"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10)
    assert ex.n_train_ == N and ex.solver_ == "direct"
    assert "dask data" in ex.solver_summary_["chosen by auto"]
    np.testing.assert_allclose(ex.hessian_condition_, mem.hessian_condition_, rtol=1e-8)


@pytest.mark.parametrize(
    ("n_classes", "options"),
    [
        (2, {}),
        (2, {"C": np.inf}),
        (2, {"class_weight": "balanced"}),
        (3, {}),
        (3, {"C": 0.05}),
        (3, {"fit_intercept": False}),
    ],
    ids=["binary", "no-penalty", "balanced", "multinomial", "strong-penalty", "no-intercept"],
)
def test_unfitted_model_is_fitted_to_sklearn_optimum(client, options, n_classes):
    X, y, sw = _data(n_classes, seed=3)
    ref = _tight(**options).fit(X, y, sample_weight=sw)
    est = LogisticRegression(**options)
    ex = InfluenceExplainer(est).fit(
        da.from_array(X, chunks=(CHUNKS, -1)), y, sample_weight=da.from_array(sw, chunks=100)
    )
    fitted = ex.estimator_
    assert type(fitted) is LogisticRegression and not hasattr(est, "coef_")
    np.testing.assert_allclose(fitted.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(fitted.intercept_, ref.intercept_, atol=1e-6)
    np.testing.assert_array_equal(fitted.classes_, ref.classes_)
    assert ex.stationarity_ < 1e-8
    np.testing.assert_array_equal(fitted.predict(X), ref.predict(X))
    # and the influence of that fit is the in-memory influence of the same coefficients
    mem = InfluenceExplainer(FrozenEstimator(fitted)).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ex.self_influence().compute(), mem.self_influence(), rtol=1e-9)


def test_cross_fitted_scores_equal_the_in_memory_refits(client):
    """Fold models by Newton steps on the cluster = scikit-learn refits on the folds."""
    X, y, sw = _data(3, seed=21)
    y = np.array([2, 0, 1])[y]  # classes appear out of sorted order: the folds see it
    model = _tight(C=0.5).fit(X, y, sample_weight=sw)
    mem = InfluenceExplainer(FrozenEstimator(model)).fit(X, y, sample_weight=sw)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    ex = InfluenceExplainer(FrozenEstimator(model)).fit(Xd, y, sample_weight=sw)
    got, want = ex.cross_fitted_losses(cv=4), mem.cross_fitted_losses(cv=4)
    folds = np.empty(N, dtype=int)
    for k, (_, test) in enumerate(StratifiedKFold(4).split(X, y)):
        folds[test] = k
    np.testing.assert_array_equal(got.folds.compute(), folds)
    for key in ("held_out", "fold_loo_mean", "held_out_proba"):
        assert isinstance(got[key], da.Array)
        # the in-memory folds are L-BFGS refits at tol=1e-13, these exact Newton optima
        np.testing.assert_allclose(got[key].compute(), want[key], rtol=1e-6, err_msg=key)
    for method in ("cv_loss", "cv_alo_loss", "cv_blend_loss", "auto"):
        np.testing.assert_allclose(
            ex.mislabel_scores(method, cv=4).compute(),
            mem.mislabel_scores(method, cv=4),
            rtol=1e-6,
            err_msg=method,
        )
        np.testing.assert_array_equal(
            ex.find_mislabeled(k=20, method=method, cv=4),
            mem.find_mislabeled(k=20, method=method, cv=4),
        )
    flagged = ex.find_mislabeled(cv=4)  # the self-sized set, by confident learning
    assert flagged.size > 0
    np.testing.assert_array_equal(flagged, mem.find_mislabeled(cv=4))


@pytest.mark.parametrize("seed", [0, 7])
def test_shuffled_folds_are_scikit_learns(client, seed):
    """With a random_state the dask folds are StratifiedKFold(shuffle=True)'s, row for row,
    and the held-out losses those of the in-memory refits on the same folds."""
    X, y, sw = _data(3, seed=22)
    y = np.array([1, 2, 0])[y]
    model = _tight(C=0.5).fit(X, y, sample_weight=sw)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    ex = InfluenceExplainer(FrozenEstimator(model), random_state=seed).fit(Xd, y, sample_weight=sw)
    got = ex.cross_fitted_losses(cv=5)
    folds = np.empty(N, dtype=int)
    split = StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y)
    for k, (_, test) in enumerate(split):
        folds[test] = k
    np.testing.assert_array_equal(got.folds.compute(), folds)
    mem = InfluenceExplainer(FrozenEstimator(model), random_state=seed).fit(X, y, sample_weight=sw)
    want = mem.cross_fitted_losses(cv=5)
    np.testing.assert_allclose(got.held_out.compute(), want.held_out, rtol=1e-6)


def test_polish_takes_a_frozen_model_to_the_optimum():
    X, y, _ = _data(2, seed=5)
    rough = LogisticRegression(max_iter=3).fit(X[:100], y[:100])  # a sample, not converged
    before = rough.coef_.copy()
    optimum = _tight().fit(X, y)
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    with dask.config.set(scheduler="synchronous"):
        with pytest.warns(RuntimeWarning, match="polish=True"):
            InfluenceExplainer(FrozenEstimator(rough)).fit(Xd, y)
        ex = InfluenceExplainer(FrozenEstimator(rough), polish=True).fit(Xd, y)
    np.testing.assert_allclose(ex.estimator_.coef_, optimum.coef_, atol=1e-6)
    assert ex.stationarity_ < 1e-8
    np.testing.assert_array_equal(rough.coef_, before)  # the frozen model is not changed
    # in memory the same Newton steps (one chunk) give the same model
    mem = InfluenceExplainer(FrozenEstimator(rough), polish=True).fit(X, y)
    np.testing.assert_allclose(mem.estimator_.coef_, ex.estimator_.coef_, atol=1e-10)
    np.testing.assert_allclose(mem.self_influence(), ex.self_influence().compute(), rtol=1e-8)
    with pytest.raises(ValueError, match="polish=True takes Newton steps from a frozen"):
        InfluenceExplainer(LogisticRegression(), polish=True).fit(X, y)


def test_results_are_lazy_and_read_each_chunk_once():
    X, y, _ = _data(2, seed=7)
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return X[slice(*block_info[None]["array-location"][0])]

    Xd = da.zeros((N, X.shape[1]), chunks=(CHUNKS, -1)).map_blocks(load, dtype=float)
    model = _tight().fit(X, y)
    with dask.config.set(scheduler="synchronous"):
        ex = InfluenceExplainer(FrozenEstimator(model)).fit(Xd, y)
        reads.clear()
        infl = ex.influence(X[:5], y[:5])
        ex.mislabel_scores("alo_loss")
        assert reads == []  # building the results read nothing
        infl.compute()
        assert sorted(reads) == list(range(len(CHUNKS)))  # one read per chunk


@pytest.mark.slow
def test_a_killed_worker_changes_nothing(tmp_path):
    """A worker process dies mid-computation; dask recomputes its blocks."""
    X, y, _ = _data(2, seed=11, n=4000)
    model = _tight().fit(X, y)

    def slow(block):
        time.sleep(0.05)  # slow storage: the kill lands while blocks are in flight
        return block

    Xd = da.from_array(X, chunks=(100, -1)).map_blocks(slow, dtype=float)
    Xt, yt = X[:40], y[:40]
    ref = InfluenceExplainer(FrozenEstimator(model)).fit(X, y).influence(Xt, yt)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        ex = InfluenceExplainer(FrozenEstimator(model)).fit(Xd, y)
        future = c.compute(ex.influence(Xt, yt))
        victim = sorted(c.scheduler_info()["workers"])[0]
        while not any(t for t in c.processing().values()):
            time.sleep(0.01)
        time.sleep(0.3)
        assert not future.done()
        # the process dies (so the call cannot answer); its nanny starts another
        c.run(os._exit, 1, workers=[victim], on_error="ignore")
        got = future.result(timeout=120)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_a_block_that_cannot_be_computed_raises():
    X, y, _ = _data(2, seed=2)
    model = _tight().fit(X, y)
    bad = X.copy()
    bad[300, 1] = np.nan
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match="NaN"):
            InfluenceExplainer(FrozenEstimator(model)).fit(da.from_array(bad, chunks=100), y)
        y_unseen = y.copy()
        y_unseen[450] = 7
        with pytest.raises(ValueError, match="labels not seen during fit"):
            InfluenceExplainer(FrozenEstimator(model)).fit(da.from_array(X, chunks=100), y_unseen)
        ex = InfluenceExplainer(FrozenEstimator(model)).fit(da.from_array(X, chunks=100), y)
        lazy = ex.influence(X[:3], y[:3])
    assert lazy.shape == (3, N)


def _independent_binary_influence(X, y, C, Xt, yt, cols):
    """``-g_t^T H^-1 g_i`` of binary logistic regression built here from scratch."""
    model = _tight(C=C).fit(X, y)
    w = np.concatenate([model.coef_[0], model.intercept_])
    Xa, Xta = np.column_stack([X, np.ones(len(X))]), np.column_stack([Xt, np.ones(len(Xt))])
    p, pt = 1 / (1 + np.exp(-Xa @ w)), 1 / (1 + np.exp(-Xta @ w))
    H = (Xa * (p * (1 - p))[:, None]).T @ Xa / len(X)
    H[:-1, :-1] += np.eye(X.shape[1]) / (C * len(X))
    Gt = (pt - yt)[:, None] * Xta
    Gi = (p[cols] - y[cols])[:, None] * Xa[cols]
    return model, -Gt @ np.linalg.solve(H, Gi.T)


@pytest.mark.slow
def test_out_of_core_influence_to_zarr(tmp_path):
    """A matrix larger than every worker's memory limit goes to zarr, block by block."""
    zarr = pytest.importorskip("zarr")
    n, d, n_test = 400_000, 3, 160  # 512 MB of influence, workers limited to 400 MB
    X, y, _ = _data(2, seed=13, n=n, d=d)
    Xt, yt = X[:n_test] * 0.9, y[:n_test]
    check = np.r_[0:5, 234_567:234_571, n - 3 : n]
    model, want = _independent_binary_influence(X, y, 0.5, Xt, yt, check)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="400MiB",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
    ):
        ex = InfluenceExplainer(FrozenEstimator(model)).fit(da.from_array(X, chunks=10_000), y)
        infl = ex.influence(Xt, yt)
        assert infl.nbytes > 400 * 2**20
        infl.to_zarr(str(tmp_path / "influence.zarr"))
    stored = zarr.open_array(str(tmp_path / "influence.zarr"), mode="r")
    assert stored.shape == (n_test, n)
    np.testing.assert_allclose(stored[:, check], want, rtol=1e-7, atol=1e-9 * np.abs(want).max())
    # block by block, the stored matrix is whole and finite
    for start in range(0, n, 100_000):
        assert np.isfinite(stored[:, start : start + 100_000]).all()


def test_what_the_dask_path_refuses():
    X, y, _ = _data(2, seed=4)
    Xd = da.from_array(X, chunks=100)
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match="solver='cg' is not available"):
            InfluenceExplainer(LogisticRegression(), solver="cg").fit(Xd, y)
        with pytest.raises(TypeError, match="explains a LogisticRegression"):
            InfluenceExplainer(make_pipeline(StandardScaler(), LogisticRegression())).fit(Xd, y)
        ex = InfluenceExplainer(LogisticRegression()).fit(Xd, y)
        with pytest.raises(ValueError, match="cv=400 stratified folds"):
            ex.cross_fitted_losses(cv=400)
        for call in (
            lambda: ex.find_mislabeled(k=3, as_frame=True),
            lambda: ex.perturbation_influence(X[:2], y[:2]),
            lambda: ex.validate(X[:2], y[:2]),
            lambda: ex.influence(X[:2], y[:2], as_frame=True),
            lambda: ex.removal_effect(X[:2], y[:2]),
            lambda: ex.influence_params(),
        ):
            with pytest.raises(NotImplementedError, match="dask data"):
                call()


def test_verbose_shows_progress_on_stderr(capsys):
    from skinfluence.dask import run

    X, y, _ = _data(2, seed=8)
    with dask.config.set(scheduler="synchronous"):
        InfluenceExplainer(LogisticRegression(), verbose=1).fit(da.from_array(X, chunks=100), y)
        err = capsys.readouterr().err
        assert f"skinfluence: pass over {len(range(0, N, 100))} chunks" in err
        InfluenceExplainer(LogisticRegression()).fit(da.from_array(X, chunks=100), y)
        assert capsys.readouterr().err == ""  # quiet by default

        def slow(block):
            time.sleep(0.3)
            return block

        run(da.ones(5, chunks=1).map_blocks(slow).sum(), desc="a slow pass", verbose=1)
        err = capsys.readouterr().err
        assert "skinfluence: a slow pass" in err and "100%" in err  # dask's bar, past 1 s


def test_on_a_distributed_client_progress_points_to_its_dashboard(client, capsys):
    X, y, _ = _data(2, seed=9)
    InfluenceExplainer(LogisticRegression(), verbose=1).fit(da.from_array(X, chunks=100), y)
    assert "progress: " in capsys.readouterr().err
