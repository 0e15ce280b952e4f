"""The interface every model adapter offers to the rest of skinfluence.

Solvers and ``compute.py`` talk to a model only through this interface: they never
see scikit-learn or skorch objects. All parameters are flattened into one vector
of length ``n_params``; every gradient-like array uses that layout.
"""

from abc import ABC, abstractmethod

import numpy as np
from sklearn.pipeline import Pipeline


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
    """

    n_params: int
    n_train: int
    #: Model family, e.g. "linear" or "torch" (what mislabel "auto" keys on).
    family_name: str = "model"
    #: Class labels for classifiers, None for regressors.
    classes_ = None
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

    @abstractmethod
    def objective_gradient(self):
        """Gradient of the full training objective at the fitted parameters."""
