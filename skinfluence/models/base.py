"""The interface every model adapter offers to the rest of skinfluence.

Solvers and ``compute.py`` talk to a model only through this interface: they never
see scikit-learn or skorch objects. All parameters are flattened into one vector
of length ``n_params``; every gradient-like array uses that layout.
"""

from abc import ABC, abstractmethod

import numpy as np
from sklearn.pipeline import Pipeline

from skinfluence.backend import NUMPY
from skinfluence.blocking import Blocking


def as_target_array(y, n):
    """``y`` as an ndarray with one entry (or row) per sample; clear errors otherwise.

    Parameters
    ----------
    y : array-like
        Labels or targets of ``n`` samples.
    n : int
        Number of samples they belong to.

    Returns
    -------
    y : ndarray
    """
    if y is None:
        raise ValueError("y is required: influence needs the labels of the samples.")
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().cpu().numpy()
    if isinstance(y, set | frozenset | dict) or (
        hasattr(y, "__next__") and not hasattr(y, "__len__")
    ):
        raise ValueError(
            f"y must be array-like (a list, an array or a pandas Series), got a "
            f"{type(y).__name__}; e.g. y=list(...) or np.asarray(...)."
        )
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError(
            f"y must hold one label or target per sample, got the scalar {y.item()!r}; "
            f"for a single sample pass a list or array, e.g. y=[{y.item()!r}]."
        )
    if y.shape[0] != n:
        raise ValueError(f"X and y have inconsistent numbers of samples: {n} and {y.shape[0]}.")
    if y.dtype == object:
        kinds = {"string" if isinstance(v, str) else type(v).__name__ for v in y.ravel()}
        if "string" in kinds and len(kinds) > 1:
            raise ValueError(
                "y mixes string labels with other types "
                f"({', '.join(sorted(kinds))}): give every label the same type, e.g. "
                "all strings (y.astype(str))."
            )
    return y


def split_pipeline(estimator):
    """``(feature_map, model)``: a Pipeline's leading steps (or None) and its last step."""
    if isinstance(estimator, Pipeline):
        return (estimator[:-1] if len(estimator) > 1 else None), estimator[-1]
    return None, estimator


class ModelAdapter(ABC):
    """How to differentiate one fitted model at its fitted parameters.

    An adapter is built from a fitted estimator and the data it was trained on.
    Samples go through :meth:`prepare` once (feature transforms, label encoding,
    validation); every other method takes prepared blocks, which can be sliced
    with :meth:`take`.

    Attributes
    ----------
    n_params : int
        Length of the flattened parameter vector.
    n_train : int
        Number of training samples.
    family_name : str
        The model family ("linear", "torch").
    removal_weights : ndarray of shape (n_train,)
        ``s_i / S``: the weight with which each training point enters the mean
        training objective. Removing point ``i`` is an upweighting by
        ``-removal_weights[i]`` (``1/n`` without sample weights).
    theta : ndarray of shape (n_params,)
        The fitted parameters, flattened (float64).
    itemsize : int
        Bytes per number of the adapter's own arrays (8 for float64, 4 for a
        float32 net): what memory budgets are counted in.
    blocking : skinfluence.blocking.Blocking
        The memory policy, handed in by the caller (scikit-learn's
        ``working_memory`` when None); the adapter's own sweeps over
        the training set (Hessian, HVPs, objective gradient) take their row blocks
        from it, never from a rule of their own.
    """

    n_params: int
    n_train: int
    itemsize: int = 8
    blocking = None
    #: Model family, e.g. "linear" or "torch" (what mislabel "auto" keys on).
    family_name: str = "model"
    #: Class labels for classifiers, None for regressors.
    classes_ = None
    #: The arrays solvers compute in (numpy here; a net's adapter: torch on its device).
    backend = NUMPY
    #: The training X exactly as passed (same values, dtype and container) when the
    #: prepared training data already holds it, else None: saves a second copy.
    train_inputs = None

    @abstractmethod
    def prepare(self, X, y):
        """Validate and convert user samples; return an opaque prepared block."""

    @abstractmethod
    def n_samples(self, data):
        """Number of samples in a prepared block."""

    @abstractmethod
    def take(self, data, index):
        """Rows ``index`` (a slice or an index array) of a prepared block."""

    @property
    @abstractmethod
    def train_data(self):
        """The prepared training set."""

    @abstractmethod
    def per_sample_gradients(self, data):
        """Gradients of the per-sample loss, ``(n, n_params)``; may be sparse."""

    def gradients(self, data):
        """Per-sample gradients as a dense float64 array of :attr:`backend`."""
        return self.backend.asarray(self.per_sample_gradients(data))

    def parameter_labels(self, feature_names):
        """One label per parameter, in the flat layout (``theta[j]`` by default).

        ``feature_names`` are the names of the features the model sees; adapters
        that know their layout use them.
        """
        return [f"theta[{j}]" for j in range(self.n_params)]

    @abstractmethod
    def per_sample_losses(self, data):
        """Per-sample loss values, ``(n,)``."""

    @abstractmethod
    def hvp(self, V, indices=None):
        """Hessian of the training objective times ``V`` of shape ``(n_params, m)``.

        With ``indices``, the Hessian of the objective restricted to those training
        points (data term renormalised, regulariser kept): a mini-batch estimate.
        """

    def hessian(self):
        """Dense Hessian of the training objective, ``(n_params, n_params)``."""
        raise NotImplementedError

    def null_space(self):
        """Orthonormal basis ``(n_params, r)`` of exact flat directions, or None.

        These are directions along which the training objective is constant and to
        which every per-sample gradient is orthogonal (an over-parametrisation, e.g.
        the softmax's shared intercept). Solvers restrict ``H`` to their complement,
        which is exact.
        """
        return None

    def asarray(self, A):
        """``A`` as the array type :meth:`gradients_dot` multiplies with (e.g. on a GPU)."""
        return A

    def gradients_dot(self, data, M, out=None):
        """``G_data @ M`` for ``M`` from :meth:`asarray` of shape ``(n_params, m)``.

        Returns a float64 numpy array ``(n, m)`` (written into ``out`` when given).
        Adapters override it to keep the product where the gradients live.
        """
        G = self.per_sample_gradients(data)
        if out is None:
            return np.asarray(G @ M)
        if isinstance(G, np.ndarray):
            return np.matmul(G, M, out=out)
        out[...] = G @ M
        return out

    # -- the model as outputs eta = f(x; theta) and a loss of the outputs -------------
    # Newton-step removal (skinfluence.removal) needs the per-sample loss as a function
    # of the model's K outputs: its gradient r_i and curvature C_i in eta, and the
    # Jacobian J_i = d eta_i / d theta only through products J_i^T v_i.

    def output_derivatives(self, data):
        """``(eta, r, C)`` of a prepared block at the fitted parameters.

        ``eta`` ``(n, K)``: the model's outputs (logits, margins, predictions);
        ``r`` ``(n, K)``: ``dL/deta``; ``C`` ``(n, K, K)``: ``d2L/deta2``. All float64
        numpy. The per-sample gradient is ``J_i^T r_i`` and the Gauss-Newton part of
        its Hessian ``J_i^T C_i J_i``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no output derivatives.")

    def output_losses(self, data, eta):
        """Losses of the block's samples at other outputs: ``eta`` ``(n, m, K)`` -> ``(n, m)``.

        Sample ``i``'s label scores each of its ``m`` candidate outputs ``eta[i, j]``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no output losses.")

    def output_loss_changes(self, data, eta, delta):
        """``L_t(eta_t + d_t) - L_t(eta_t)`` for ``m`` candidate moves of every sample.

        ``eta`` ``(n, K)``: the outputs of ``data``'s samples (from
        :meth:`output_derivatives`); ``delta``: ``K`` arrays ``(n, m)``, the moves of
        output ``k`` (this may overwrite them). Returns ``(n, m)``. Adapters override it
        with a form that does not subtract two losses (exact for small changes) and
        works in place.
        """
        moved = eta[:, None, :] + np.stack(delta, axis=2)
        return self.output_losses(data, moved) - self.output_losses(data, eta[:, None, :])

    def output_moves(self, data, V, U, out):
        """Fill ``out[k][t, j] = (J_j^T v_j) . U[:, k * n_t + t]`` for the block's rows ``j``.

        ``U`` ``(n_params, K * n_t)`` from :meth:`asarray`, its columns grouped by
        output; ``out``: ``K`` float64 arrays ``(n_t, n)``, written in place.
        """
        Q = self.output_vjp_dot(data, V, U)
        n_t = out[0].shape[0]
        for k, part in enumerate(out):
            part[...] = Q[:, k * n_t : (k + 1) * n_t].T

    def output_vjps(self, data, V):
        """Rows ``J_i^T v_i`` ``(n, n_params)`` (dense float64 numpy) for ``V`` ``(n, K)``."""
        raise NotImplementedError(f"{type(self).__name__} has no output Jacobians.")

    def output_vjp_dot(self, data, V, M):
        """``(J_i^T v_i) . M`` for every row, ``(n, m)`` float64 numpy.

        ``M`` comes from :meth:`asarray`, shape ``(n_params, m)``; adapters override
        this to keep the product where the model lives.
        """
        return np.asarray(self.output_vjps(data, V) @ M)

    def reweighted(self, weights, theta=None):
        """A view of this adapter for the objective with each point's weight times ``weights``.

        The regulariser and the normalisation stay as they are (the objective a real
        refit without the zero-weight points minimises, divided by the same constant);
        ``theta`` (flat, float64) moves the parameters. The training data are shared,
        not copied. Newton iterations on a reduced objective are built from it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be reweighted.")

    @abstractmethod
    def objective_gradient(self):
        """Gradient of the full training objective at the fitted parameters."""

    @abstractmethod
    def perturbation_dot(self, data, U):
        """``U_t . d/dx grad_theta L(z_i)`` for every pair, ``(m, n, n_input_features)``.

        ``U`` has shape ``(m, n_params)``; with ``u_t = H^-1 g_test`` this is
        ``-I_pert,loss``.
        """

    @abstractmethod
    def retrained_losses(self, test_data, weights, **options):
        """Test losses after retraining with each training point's weight times ``weights``.

        ``weights`` has shape ``(n_train,)`` (0 removes a point); the regulariser is
        unchanged. Returns ``(n_test,)`` float64 losses. The ground truth that
        :func:`skinfluence.validation.validate` checks estimates against.
        """

    def _policy(self):
        if self.blocking is None:  # an adapter built on its own: scikit-learn's budget
            self.blocking = Blocking.from_config()
        return self.blocking

    def _row_slices(self, n, bytes_per_row):
        """Row slices for one of the adapter's sweeps, from :attr:`blocking`."""
        return self._policy().rows(n, bytes_per_row, use_batch_size=False)

    def _budget_bytes(self):
        """The memory budget (``working_memory``) in bytes."""
        return self._policy().working_memory * 2**20
