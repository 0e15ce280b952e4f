"""A fitted skorch net over training rows held as dask arrays: one task per row chunk.

Each task builds the in-memory :class:`~skinfluence.models.torch.TorchAdapter` over its
chunk (:meth:`TorchAdapter.on_block` of a template without rows, on the worker's copy
of the net: its device when the worker has it, else the CPU) and runs the blocked code
of the in-memory path on it. The objective is the in-memory adapter's,

    R(theta) = (1/S) sum_i s_i L(z_i, theta) + 1/2 sum_j lambda_j theta_j^2,

with ``S`` the total weight of every chunk: fit takes one pass that sums each chunk's
``S_c``, its weighted data-term gradient and Hessian (P x P) and its squared gradient
norms, then divides by ``S`` and adds the L2 term once. The net is not trained here:
it comes fitted (the explainer takes it wrapped in ``FrozenEstimator``).
"""

from typing import ClassVar

import numpy as np
from sklearn.utils.validation import check_is_fitted

from skinfluence import compute, removal
from skinfluence.dask.adapter import (
    DaskChunks,
    _add,
    _policy,
    checked_weights,
    is_net,
    run,
    tree_reduce,
)
from skinfluence.models.base import split_pipeline
from skinfluence.models.torch import TorchAdapter


def check_net(model):
    """Raise unless ``model`` is a fitted skorch net (or a Pipeline ending in one).

    Parameters
    ----------
    model : object
        The model the explainer was given (unwrapped from ``FrozenEstimator``).

    Raises
    ------
    TypeError
        When it is no skorch net.
    sklearn.exceptions.NotFittedError
        When it is one that is not fitted: the dask path does not train nets.
    """
    if not is_net(model):
        raise TypeError(f"The dask torch path explains a skorch net, got {type(model).__name__}.")
    check_is_fitted(split_pipeline(model)[1])


# -- tasks (module level: they travel to the workers by reference) ---------------------
def _block(tpl, X, y, w):
    """The in-memory adapter over one chunk, its rows weighted as in the full objective."""
    data = tpl.prepare(X, y)
    return tpl.on_block(data, checked_weights(w, tpl.n_samples(data)))


def _fit_terms(tpl, X, y, w):
    """The chunk's share of fit, weights ``s_i`` not yet divided by ``S``, no penalty.

    ``(S_c, sum s_i g_i, sum s_i ||g_i||^2, sum s_i H_i, reductions)``: the last the
    set of ways the net reduces a batch, as checked on this chunk (none for one row,
    where a mean and a sum agree).
    """
    data = tpl.prepare(X, y)
    n = tpl.n_samples(data)
    a = tpl.on_block(data, checked_weights(w, n), total_weight=1.0, penalty=False)
    kinds = frozenset([a.check_reduction()]) if n >= 2 else frozenset()
    norms = compute.gradient_norms(a, data, policy=_policy(a))
    s = a.removal_weights
    return float(s.sum()), a.objective_gradient(), float(s @ norms**2), a.hessian(), kinds


def _add_fit_terms(*parts):
    return (*_add(*[p[:4] for p in parts]), frozenset().union(*[p[4] for p in parts]))


def _hvp(tpl, X, y, w, V):
    data = tpl.prepare(X, y)
    a = tpl.on_block(data, checked_weights(w, tpl.n_samples(data)), penalty=False)
    return a.hvp(V)


def _removal_weights(tpl, y, w):
    labels = tpl._encode_y(y, len(y))
    return checked_weights(w, len(labels)) * tpl._class_weights(labels) / tpl.total_weight


def _losses(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return compute.losses(a, a.train_data, policy=_policy(a))


def _gradient_norms(tpl, X, y, w):
    a = _block(tpl, X, y, w)
    return compute.gradient_norms(a, a.train_data, policy=_policy(a))


def _self_influence(tpl, X, y, w, factor):
    a = _block(tpl, X, y, w)
    return compute.self_influence(a, factor, a.train_data, policy=_policy(a))


def _self_removal(tpl, X, y, w, factor):
    a = _block(tpl, X, y, w)
    lev = removal.leverages(a, factor, a.train_data, policy=_policy(a))
    return removal.self_removal(a, lev, a.train_data, policy=_policy(a))


def _influence_rows(tpl, X, y, w, M):
    """``-G_chunk H^-1 g_test`` as ``(b, n_test)``, in row blocks of the memory budget."""
    a = _block(tpl, X, y, w)
    out = compute.gradient_products(a, a.train_data, a.asarray(M), policy=_policy(a))
    return compute.check_finite(out, "The influence values")


# -- the adapter -----------------------------------------------------------------------
class DaskTorchAdapter(DaskChunks):
    """A fitted skorch net over training rows held as dask arrays.

    Sweeps over the training set run as dask tasks, one per row chunk, on whatever
    scheduler is active (a ``dask.distributed.Client`` included); each builds the
    in-memory :class:`~skinfluence.models.torch.TorchAdapter` over its chunk. In-memory
    blocks (test points) are handled on the client by that adapter's own methods.
    The dense Hessian is formed at construction (one pass over the chunks).

    Parameters
    ----------
    model : skorch.NeuralNet or Pipeline ending in one
        The fitted net (it is not trained here).
    X : dask array or dask DataFrame of shape (n_samples, n_features)
        The training features, chunked by rows: the data the net was trained on.
    y : dask array, dask Series or array-like of shape (n_samples,)
        The training labels or targets (rechunked to ``X``'s rows).
    sample_weight : dask array, array-like or None
        The per-sample weights of the training objective.
    params, hessian, dtype, device
        As for :class:`~skinfluence.models.torch.TorchAdapter` (``device`` on every
        worker that has it; a worker without a GPU computes on its CPU).
    blocking : skinfluence.blocking.Blocking or None
        The memory policy of the sweeps inside each task.
    verbose : int, default=0
        Show the progress of the passes it computes itself (see
        :func:`skinfluence.dask.run`).
    """

    family_name = "torch"
    TASKS: ClassVar[dict] = {
        "removal_weights": _removal_weights,
        "losses": _losses,
        "gradient_norms": _gradient_norms,
        "self_influence": _self_influence,
        "self_removal": _self_removal,
        "influence_rows": _influence_rows,
    }

    def __init__(
        self,
        model,
        X,
        y,
        sample_weight=None,
        *,
        params=None,
        hessian="exact",
        dtype=None,
        device=None,
        blocking=None,
        verbose=0,
        matmul_precision="highest",
    ):
        check_net(model)
        self.blocking, self.verbose, self.model = blocking, verbose, model
        self._set_rows(X, y, sample_weight)
        self._tpl = TorchAdapter.template(
            model, params=params, hessian=hessian, dtype=dtype, device=device, blocking=blocking
        )
        self._tpl.matmul_precision = matmul_precision
        for name in ("n_params", "theta", "classes_", "param_names", "device", "dtype"):
            setattr(self, name, getattr(self._tpl, name))
        hessian_mib = 8 * self.n_params**2 / 2**20
        budget = _policy(self._tpl).working_memory
        if hessian_mib > budget:
            raise ValueError(
                f"With dask data the net's Hessian is formed whole (each chunk's P x P share, "
                f"summed): n_params={self.n_params} makes it {hessian_mib:.0f} MiB, over "
                f"working_memory={budget:g} MiB. Explain fewer parameters (params=['fc2'], "
                "the last layers) or raise working_memory if every worker has the memory."
            )
        (terms,) = run(
            tree_reduce(self._tasks(_fit_terms), _add_fit_terms),
            desc=f"pass over {len(self._xs)} chunks (gradient and Hessian)",
            verbose=verbose,
        )
        S, g, sq, H, kinds = terms
        if not S > 0:
            raise ValueError("The sample weights sum to zero: there is no objective.")
        if len(kinds) > 1:
            raise ValueError(
                "The net's loss is not per-sample decomposable: it reduces the batches of "
                f"different chunks differently ({sorted(kinds)}). Influence functions need "
                "R = mean (or sum) of L(z_i)."
            )
        self._tpl.set_objective(S, min(kinds, default="mean"))
        self.lam = self._tpl.lam
        self._gradient = g / S + self.lam * self.theta
        self._mean_sq_norm = sq / S
        H = H / S
        H[np.diag_indices_from(H)] += self.lam
        self._hessian = (H + H.T) / 2

    # -- the ModelAdapter interface: training sweeps as reductions ------------------
    def objective_gradient(self):
        return self._gradient.copy()

    def stationarity(self):
        """``||grad R||`` relative to the RMS per-sample gradient norm, as
        :func:`skinfluence.compute.stationarity` measures it (from the fit's pass)."""
        return compute.stationarity_ratio(
            self._gradient, self._mean_sq_norm, lambda: self._hessian @ self.theta
        )

    def hessian(self):
        return self._hessian.copy()

    def hvp(self, V, indices=None):
        if indices is not None:
            raise ValueError("Mini-batch Hessians of dask data are not supported.")
        V = np.asarray(V, dtype=np.float64)
        out = self._reduce(_hvp, V)
        return out + self.lam.reshape((-1,) + (1,) * (V.ndim - 1)) * V

    # -- in-memory blocks: the net's arrays (torch on its device) --------------------
    @property
    def backend(self):
        return self._tpl.backend

    @property
    def itemsize(self):
        return self._tpl.itemsize

    def asarray(self, A):
        return self._tpl.asarray(A)

    def gradients(self, data):
        return self._tpl.gradients(data)
