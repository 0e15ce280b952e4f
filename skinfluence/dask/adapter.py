"""The training set as dask arrays: the adapter, its tasks (one per row chunk) and `run`."""

import copy
import functools
import sys
from typing import ClassVar

import dask
import dask.array as da
import numpy as np
from dask import delayed
from sklearn.linear_model import LogisticRegression

from skinfluence import compute, removal
from skinfluence.blocking import Blocking
from skinfluence.models.base import ModelAdapter, split_pipeline
from skinfluence.models.linear import LinearAdapter, _class_weights

#: Partial results combined per task of a tree reduction.
FAN_IN = 8


def _client():
    """The ``dask.distributed`` client that a compute now would run on, or None."""
    scheduler = dask.base.get_scheduler()
    owner = getattr(scheduler, "__self__", None)  # a client's bound get
    return owner if hasattr(owner, "dashboard_link") else None


def run(*objs, desc="", verbose=0):
    """``dask.compute(*objs)``, showing progress when ``verbose``.

    With the local schedulers a progress bar on stderr (dask's ``ProgressBar``, for
    computations longer than a second); on a distributed client one line naming
    the step and the client's dashboard, where dask's own diagnostics show it.
    """
    if not verbose:
        return dask.compute(*objs)
    client = _client()
    if client is not None:
        print(f"skinfluence: {desc} (progress: {client.dashboard_link})", file=sys.stderr)
        return dask.compute(*objs)
    from dask.diagnostics import ProgressBar

    print(f"skinfluence: {desc}", file=sys.stderr)
    with ProgressBar(minimum=1.0, out=sys.stderr):
        return dask.compute(*objs)


def is_dask_collection(x):
    """Whether ``x`` is a dask collection (array, DataFrame, Series), without importing dask."""
    return callable(getattr(type(x), "__dask_graph__", None))


# -- inputs --------------------------------------------------------------------------
def _known_rows(a):
    if hasattr(a, "to_dask_array"):  # dask DataFrame or Series
        return a.to_dask_array(lengths=True)
    if any(np.isnan(c) for c in a.chunks[0]):
        return a.compute_chunk_sizes()
    return a


def training_rows(X):
    """``X`` as a 2-d dask array chunked by rows only, with known chunk sizes."""
    X = _known_rows(X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-d dask array (rows x features), got {X.ndim} dimension(s) of shape "
            f"{X.shape}."
        )
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def aligned(v, row_chunks, name):
    """``y`` or ``sample_weight`` as a 1-d dask array with ``X``'s row chunks (or None)."""
    if v is None:
        return None
    n = int(sum(row_chunks))
    if not is_dask_collection(v):
        v = np.asarray(v)
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(
                f"X and {name} have inconsistent numbers of samples: {n} and "
                f"{'a scalar' if v.ndim == 0 else v.shape[0]}."
            )
        v = da.from_array(v, chunks=(row_chunks, *v.shape[1:]))
    v = _known_rows(v)
    if v.shape[0] != n:
        raise ValueError(
            f"X and {name} have inconsistent numbers of samples: {n} and {v.shape[0]}."
        )
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}.")
    return v.rechunk({0: row_chunks})


def check_model(model):
    """Raise unless ``model`` is a LogisticRegression (what the linear dask path explains)."""
    if not isinstance(model, LogisticRegression):
        raise TypeError(
            f"With dask data, InfluenceExplainer explains a LogisticRegression (L2 or no "
            f"penalty) or a fitted skorch net, got {type(model).__name__}: their objectives "
            "are map-reduces over the row chunks. Compute the data into memory (X.compute()) "
            "for other models."
        )


def is_net(model):
    """Whether ``model`` is a skorch net, or a Pipeline ending in one (the torch path's).

    Checked without importing torch or skorch (see :mod:`skinfluence.models.torch_detect`).
    """
    from skinfluence.models.torch_detect import is_skorch_net

    return is_skorch_net(split_pipeline(model)[1])


# -- tasks (module level: they travel to the workers by reference) ---------------------
def checked_weights(w, n):
    """A chunk's sample weights as float64 (ones for None); raise on a bad one."""
    s = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    if not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("sample_weight holds negative, NaN or infinite values.")
    return s


def _weights(tpl, labels, w):
    """Each row's objective weight ``s_i``: its sample weight times its class weight."""
    s = checked_weights(w, len(labels))
    if tpl.class_weight_values is not None:
        s = s * tpl.class_weight_values[labels]
    return s


def _policy(a):
    """The memory policy of a chunk's sweeps: the adapter's, else scikit-learn's setting."""
    return a.blocking if a.blocking is not None else Blocking.from_config()


def _block(tpl, X, y, w, theta=None):
    """The in-memory adapter over one chunk, its rows weighted as in the full objective."""
    data = tpl.prepare(X, y)
    s = _weights(tpl, data.y, w)
    if theta is not None:
        tpl = tpl.reweighted(1.0, theta)
    return tpl.on_block(data, s)


def _class_counts(tpl, y, w):
    labels = tpl._encode_y(y, len(y))
    weights = None if w is None else np.asarray(w, dtype=np.float64)
    return np.bincount(labels, weights=weights, minlength=len(tpl.classes_)).astype(float)


def _objective_terms(tpl, X, y, w, theta):
    """The chunk's share of the data term: ``(loss, gradient, Hessian)``, no penalty."""
    a = _block(tpl, X, y, w, theta)
    a.lam = 0.0
    loss = float(a.removal_weights @ a.per_sample_losses(a.train_data))
    return loss, a.objective_gradient(), a.hessian()


def _data_hessian(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    a.lam = 0.0
    return a.hessian()


def _gradient_terms(tpl, X, y, w):
    """The chunk's data-term gradient and ``sum_i w_i ||g_i||^2`` (the stationarity check)."""
    a = _block(tpl, X, y, w)
    a.lam = 0.0
    norms = compute.gradient_norms(a, a.train_data, policy=a.blocking)
    return a.objective_gradient(), float(a.removal_weights @ norms**2)


def _fit_terms(tpl, X, y, w):
    """:func:`_gradient_terms` and the chunk's data-term Hessian: what fit needs."""
    a = _block(tpl, X, y, w)
    a.lam = 0.0
    norms = compute.gradient_norms(a, a.train_data, policy=a.blocking)
    return a.objective_gradient(), float(a.removal_weights @ norms**2), a.hessian()


def _hvp(tpl, X, y, w, V):
    a = _block(tpl, X, y, w)
    a.lam = 0.0
    return a.hvp(V)


def _removal_weights(tpl, y, w):
    return _weights(tpl, tpl._encode_y(y, len(y)), w) / tpl._total_weight


def _labels(tpl, y, w):
    return tpl._encode_y(y, len(y))


def _losses(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return compute.losses(a, a.train_data, policy=a.blocking)


def _gradient_norms(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return compute.gradient_norms(a, a.train_data, policy=a.blocking)


def _self_influence(tpl, X, y, w, factor):
    a = _block(tpl, X, y, w)
    return compute.self_influence(a, factor, a.train_data, policy=a.blocking)


def _self_removal(tpl, X, y, w, factor):
    a = _block(tpl, X, y, w)
    lev = removal.leverages(a, factor, a.train_data, policy=a.blocking)
    return removal.self_removal(a, lev, a.train_data, policy=a.blocking)


def _influence_rows(tpl, X, y, w, M):
    """``-G_chunk H^-1 g_test`` as ``(b, n_test)``: the chunk's columns of I_up,loss."""
    a = _block(tpl, X, y, w)
    out = compute.gradient_products(a, a.train_data, a.asarray(M), policy=_policy(a))
    return compute.check_finite(out, "The influence values")


def _top_k(tpl, X, y, w, M, k, col0, rows):
    """The chunk's best ``k`` per test point of ``rows(tpl, X, y, w, M).T``."""
    block = rows(tpl, X, y, w, M).T
    lo, hi = compute._RunningTopK(k, largest=False), compute._RunningTopK(k, largest=True)
    lo.update(block, col0)
    hi.update(block, col0)
    return lo.idx, lo.val, hi.idx, hi.val


def _merge_top_k(k, *parts):
    """The best ``k`` of several ``(lo_idx, lo_val, hi_idx, hi_val)`` candidates per row.

    Ties go to the smaller training index, as in the in-memory stream.
    """
    out = []
    for which, sign in ((0, 1.0), (2, -1.0)):
        idx = np.hstack([p[which] for p in parts])
        val = np.hstack([p[which + 1] for p in parts])
        order = np.lexsort((idx, sign * val), axis=1)[:, :k]
        out += [np.take_along_axis(idx, order, axis=1), np.take_along_axis(val, order, axis=1)]
    return tuple(out)


def _add(*parts):
    """Elementwise sum of arrays, floats, or tuples of them."""
    if isinstance(parts[0], tuple):
        return tuple(_add(*column) for column in zip(*parts, strict=True))
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def tree_reduce(parts, combine, fan_in=FAN_IN):
    """One delayed value: ``parts`` combined ``fan_in`` at a time, level by level."""
    parts = list(parts)
    while len(parts) > 1:
        parts = [delayed(combine)(*parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


class _Factor:
    """What the tasks need of a direct solve: ``W`` with ``W W^T = H^-1``."""

    def __init__(self, W):
        self.W = W

    def whitener(self):
        return self.W

    def solve(self, B):
        return self.W @ (self.W.T @ B)


# -- the adapters ----------------------------------------------------------------------
class DaskChunks(ModelAdapter):
    """What every dask adapter shares: the training rows as chunks, and tasks over them.

    A subclass sets ``_tpl`` (the in-memory adapter that the tasks build their chunk's
    adapter from, and that handles in-memory blocks: test points), ``blocking`` and
    ``verbose``, calls :meth:`_set_rows` with the training data, and names its
    family's per-chunk task functions in ``TASKS``.
    """

    #: The family's module-level task functions (they travel to workers by reference):
    #: ``removal_weights(tpl, y, w)``; ``losses``, ``gradient_norms`` ``(tpl, X, y, w)``;
    #: ``self_influence``, ``self_removal`` ``(tpl, X, y, w, factor)``;
    #: ``influence_rows(tpl, X, y, w, M)``, each giving one chunk's rows.
    TASKS: ClassVar[dict] = {}

    #: Training-set results are lazy dask arrays (the explainer keys on this).
    on_dask = True

    def _set_rows(self, X, y, sample_weight):
        """Keep ``X`` (rows only), ``y`` and the weights aligned to its row chunks."""
        self.X = training_rows(X)
        self.row_chunks = tuple(int(c) for c in self.X.chunks[0])
        self.offsets = np.concatenate([[0], np.cumsum(self.row_chunks)]).astype(int)
        self.y = aligned(y, self.row_chunks, "y")
        self.sample_weight = aligned(sample_weight, self.row_chunks, "sample_weight")
        self.n_train = int(self.offsets[-1])
        # unoptimised: X, y and the weights keep the keys of the chunks they share (rows
        # generated or read once per pass, not once per array derived from them)
        self._xs = list(self.X.to_delayed(optimize_graph=False).ravel())
        self._ys = list(self.y.to_delayed(optimize_graph=False).ravel())
        if self.sample_weight is None:
            self._ws = [None] * len(self._xs)
        else:
            self._ws = list(self.sample_weight.to_delayed(optimize_graph=False).ravel())

    # -- scheduling --------------------------------------------------------------
    def _tasks(self, func, *shared, tpl=None, with_x=True):
        """One delayed call of ``func(tpl, X_i, y_i, w_i, *shared)`` per chunk."""
        tpl = delayed(self._tpl if tpl is None else tpl)
        shared = [delayed(s) if isinstance(s, np.ndarray | _Factor) else s for s in shared]
        f = delayed(func, pure=True)
        if with_x:
            return [
                f(tpl, x, y, w, *shared)
                for x, y, w in zip(self._xs, self._ys, self._ws, strict=True)
            ]
        return [f(tpl, y, w, *shared) for y, w in zip(self._ys, self._ws, strict=True)]

    def _reduce(self, func, *shared, tpl=None, with_x=True):
        (total,) = run(
            tree_reduce(self._tasks(func, *shared, tpl=tpl, with_x=with_x), _add),
            desc=f"pass over {len(self._xs)} chunks ({func.__name__.strip('_')})",
            verbose=self.verbose,
        )
        return total

    def _rows(self, func, *shared, tail=(), dtype=np.float64, with_x=True):
        """A lazy dask array: ``func``'s per-row results, chunked like the training rows."""
        return self.stack(self._tasks(func, *shared, with_x=with_x), tail=tail, dtype=dtype)

    def stack(self, parts, *, tail=(), dtype=np.float64):
        """One lazy array from one delayed block per row chunk (``(n_chunk, *tail)`` each)."""
        return da.concatenate(
            [
                da.from_delayed(p, shape=(n, *tail), dtype=dtype)
                for p, n in zip(parts, self.row_chunks, strict=True)
            ],
            axis=0,
        )

    def _merged_top_k(self, rows, M, k):
        """Each chunk's best ``k`` of ``rows(tpl, X, y, w, M).T`` per test point, merged
        by a tree reduction; ``M`` and the template enter the graph once each."""
        tpl, M = delayed(self._tpl), delayed(M)
        f = delayed(functools.partial(_top_k, rows=rows), pure=True)
        parts = [
            f(tpl, x, y, w, M, k, int(c0))
            for x, y, w, c0 in zip(self._xs, self._ys, self._ws, self.offsets[:-1], strict=True)
        ]
        (out,) = run(
            tree_reduce(parts, functools.partial(_merge_top_k, k)),
            desc="top-k influence",
            verbose=self.verbose,
        )
        return out

    # -- lazy per-row results over the training set, by the family's TASKS ----------
    @property
    def removal_weights(self):
        return self._rows(self.TASKS["removal_weights"], with_x=False)

    def training_losses(self):
        """Per-row training losses, a lazy dask array ``(n_train,)``."""
        return self._rows(self.TASKS["losses"])

    def training_gradient_norms(self):
        """Per-row gradient norms, a lazy dask array ``(n_train,)``."""
        return self._rows(self.TASKS["gradient_norms"])

    def training_self_influence(self, solver):
        """Self-influence of every training row, a lazy dask array ``(n_train,)``."""
        return self._rows(self.TASKS["self_influence"], _factor(solver))

    def training_self_removal(self, solver):
        """Each row's own loss change on its removal (one Newton step), lazy ``(n_train,)``."""
        return self._rows(self.TASKS["self_removal"], _factor(solver))

    def influence(self, solver, test_data):
        """``I_up,loss`` ``(n_test, n_train)``: a lazy dask array chunked by training rows."""
        M = self._test_products(solver, test_data)
        return self._rows(self.TASKS["influence_rows"], M, tail=(M.shape[1],)).T

    def top_k(self, solver, test_data, k):
        """``(helpful_idx, helpful_val, harmful_idx, harmful_val)``, each ``(n_test, k)``.

        Each chunk's best ``k`` per test point, merged by a tree reduction.
        """
        M = self._test_products(solver, test_data)
        return self._merged_top_k(self.TASKS["influence_rows"], M, k)

    def _test_products(self, solver, test_data):
        # solved on the client (a net's in its backend); shipped as float64 numpy, once
        A = compute.solved_test_gradients(self._tpl, solver, test_data)
        return np.ascontiguousarray(-A.T)

    def null_space(self):
        return self._tpl.null_space()

    def parameter_labels(self, feature_names):
        return self._tpl.parameter_labels(feature_names)

    # -- in-memory blocks (test points): the in-memory adapter's own methods ---------
    def prepare(self, X, y):
        # test points are few: they come to the client, where their solve happens
        if is_dask_collection(X):
            X = X.compute()
        if is_dask_collection(y):
            y = np.asarray(y.compute())
        return self._tpl.prepare(X, y)

    def n_samples(self, data):
        return self._tpl.n_samples(data)

    def take(self, data, index):
        return self._tpl.take(data, index)

    @property
    def train_data(self):
        raise TypeError("The training set lives on dask workers: it has no in-memory block.")

    def per_sample_gradients(self, data):
        return self._tpl.per_sample_gradients(data)

    def per_sample_losses(self, data):
        return self._tpl.per_sample_losses(data)

    def gradients_dot(self, data, M, out=None):
        return self._tpl.gradients_dot(data, M, out=out)

    def output_derivatives(self, data):
        return self._tpl.output_derivatives(data)

    def output_losses(self, data, eta):
        return self._tpl.output_losses(data, eta)

    def output_loss_changes(self, data, eta, delta):
        return self._tpl.output_loss_changes(data, eta, delta)

    def output_vjps(self, data, V):
        return self._tpl.output_vjps(data, V)

    def output_vjp_dot(self, data, V, M):
        return self._tpl.output_vjp_dot(data, V, M)

    def perturbation_dot(self, data, U):
        return self._tpl.perturbation_dot(data, U)

    def retrained_losses(self, test_data, weights, **options):
        raise NotImplementedError("Retraining on dask data is not supported.")


class DaskLinearAdapter(DaskChunks):
    """A fitted LogisticRegression over training rows held as dask arrays.

    Sweeps over the training set run as dask tasks, one per row chunk, on whatever
    scheduler is active (a ``dask.distributed.Client`` included). In-memory blocks
    (test points) are handled as the in-memory adapter handles them.

    Parameters
    ----------
    model : LogisticRegression
        The fitted model.
    X : dask array or dask DataFrame of shape (n_samples, n_features)
        The training features, chunked by rows.
    y : dask array, dask Series or array-like of shape (n_samples,)
        The training labels (rechunked to ``X``'s rows).
    sample_weight : dask array, array-like or None
        The weights the model was (or is to be) fitted with.
    blocking : skinfluence.blocking.Blocking or None
        The memory policy of the sweeps inside each task.
    verbose : int, default=0
        Show the progress of the passes it computes itself (see :func:`run`).
    """

    family_name = "linear"
    TASKS: ClassVar[dict] = {
        "removal_weights": _removal_weights,
        "losses": _losses,
        "gradient_norms": _gradient_norms,
        "self_influence": _self_influence,
        "self_removal": _self_removal,
        "influence_rows": _influence_rows,
    }

    def __init__(self, model, X, y, sample_weight=None, *, blocking=None, verbose=0):
        check_model(model)
        self.blocking = blocking
        self.verbose = verbose
        self._set_rows(X, y, sample_weight)
        self._total_weight, self._class_weight_values = self._objective_weight(model)
        if not self._total_weight > 0:
            raise ValueError("The sample weights sum to zero: there is no objective.")
        self._set_model(model)

    def _objective_weight(self, model):
        """``(S, class weights or None)``: the objective's total weight.

        Without class weights ``S`` is the number of rows or the sum of the sample
        weights (no pass over ``X`` or ``y``); with them, one pass over the labels
        counts each class and applies LogisticRegression's own rule to the (weighted)
        counts, one observation per class.
        """
        if model.class_weight is None:
            if self.sample_weight is None:
                return float(self.n_train), None
            (total,) = run(self.sample_weight.sum(), desc="sum of weights", verbose=self.verbose)
            return float(total), None
        tpl = LinearAdapter.template(model, 1.0, blocking=self.blocking)
        counts = self._reduce(_class_counts, tpl=tpl, with_x=False)
        weights = _class_weights(model, tpl.classes_, counts)
        return float(counts @ weights), weights

    def _set_model(self, model):
        self._tpl = LinearAdapter.template(model, self._total_weight, blocking=self.blocking)
        self._tpl.class_weight_values = self._class_weight_values
        for name in ("n_params", "theta", "classes_", "lam", "penalty_mask", "n_features"):
            setattr(self, name, getattr(self._tpl, name))
        self.model = model
        self._hessian = None

    def with_model(self, model, hessian=None):
        """This adapter for another fit of the same model class on the same data and weights.

        The total weight and the class weights are kept, so no pass is needed;
        ``hessian``, the objective's Hessian at ``model``'s parameters when the caller
        has it, is kept for :meth:`hessian`.
        """
        view = copy.copy(self)
        view._set_model(model)
        view._hessian = None if hessian is None else np.array(hessian, dtype=np.float64)
        return view

    # -- the ModelAdapter interface: training sweeps as reductions ------------------
    def objective_gradient(self):
        return self.stationarity_terms()[0]

    def stationarity_terms(self):
        """``(gradient of the objective, sum_i w_i ||g_i||^2)`` in one pass over the chunks.

        The same pass forms the Hessian, kept for :meth:`hessian` (the solver's fit),
        unless it is known already (handed on by the Newton fit).
        """
        if self._hessian is not None:
            g, sq = self._reduce(_gradient_terms)
        else:
            g, sq, H = self._reduce(_fit_terms)
            H[np.diag_indices_from(H)] += self.lam * self.penalty_mask
            self._hessian = H
        return g + self.lam * self.penalty_mask * self.theta, sq

    def stationarity(self):
        """``||grad R||`` relative to the RMS per-sample gradient norm, as
        :func:`skinfluence.compute.stationarity` measures it, in one pass."""
        g, mean_sq_norm = self.stationarity_terms()
        return compute.stationarity_ratio(g, mean_sq_norm, lambda: self.hessian() @ self.theta)

    def hessian(self):
        if self._hessian is None:
            H = self._reduce(_data_hessian)
            H[np.diag_indices_from(H)] += self.lam * self.penalty_mask
            self._hessian = H
        return self._hessian.copy()

    def hvp(self, V, indices=None):
        if indices is not None:
            raise ValueError("Mini-batch Hessians of dask data are not supported.")
        V = np.asarray(V, dtype=np.float64)
        out = self._reduce(_hvp, V)
        return out + (self.lam * self.penalty_mask).reshape((-1,) + (1,) * (V.ndim - 1)) * V

    def training_labels(self):
        """Each training row's class position, a lazy int array ``(n_train,)``."""
        return self._rows(_labels, dtype=np.intp, with_x=False)


def _factor(solver):
    W = solver.whitener()
    if W is None:
        raise TypeError(f"The dask path needs a factored Hessian (solver='direct'), got {solver}.")
    return _Factor(np.ascontiguousarray(W))
