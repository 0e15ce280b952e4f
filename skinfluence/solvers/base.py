"""What every solver offers: factor or prepare once, then apply ``H^-1`` to blocks."""

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from skinfluence.backend import NUMPY, DeviceState, backend_of
from skinfluence.constraints import Interval, check_params
from skinfluence.exceptions import NonFiniteError, SingularHessianError

__all__ = ["HessianSolver", "NonFiniteError", "SingularHessianError", "damping_advice"]


def damping_advice(min_eig, max_eig):
    """A damping that makes ``H + damping * I`` safely positive definite.

    ``min_eig`` and ``max_eig`` are eigenvalues of the *undamped* ``H``: the value
    returned is the whole damping to pass, not an increment on the one in use.
    Rounded up at three significant digits, so that the printed value works.
    """
    value = max(-min_eig, 0.0) * 1.01 + 1e-6 * max(abs(max_eig), 1e-12)
    exponent = np.floor(np.log10(value)) - 2
    return float(np.ceil(value / 10**exponent) * 10**exponent)


class HessianSolver(DeviceState, BaseEstimator):
    """Base class: ``fit(problem)`` then ``solve(B)`` returns ``H^-1 B``.

    ``problem`` is a model adapter (``n_params``, ``n_train``, ``hvp``, ``hessian``,
    ``null_space``); solvers know nothing else about the model. Each solver declares
    its options in ``_parameter_table`` and checks them in :meth:`check_params`,
    before any work. A solver instance can be passed to
    :class:`~skinfluence.InfluenceExplainer` as ``solver=``; the explainer fits a
    clone of it.

    Parameters
    ----------
    damping : float
        ``lambda`` in ``H + lambda * I``.
    """

    name = "base"
    _parameter_table: ClassVar[dict] = {"damping": [Interval("real", 0, None)]}

    def __init__(self, damping=0.0):
        self.damping = damping

    def check_params(self):
        """Raise :class:`~skinfluence.constraints.InvalidParameterError` for a bad option.

        Returns
        -------
        self : HessianSolver
        """
        owner = f"{type(self).__name__} (solver={self.name!r})"
        check_params(owner, self._parameter_table, self.get_params())
        return self

    def fit(self, problem):
        """Prepare ``H^-1`` for ``problem`` (a model adapter); returns self."""
        raise NotImplementedError

    def solve(self, B):
        """``H^-1 B`` for ``B`` of shape ``(n_params,)`` or ``(n_params, m)``."""
        raise NotImplementedError

    def solve_for_quadratic_forms(self, B):
        """``H^-1 B`` where only the forms ``b^T H^-1 b`` of its columns are needed.

        The same as :meth:`solve` unless a solver can stop earlier for them (see
        :class:`CGSolver`'s ``quadratic_tol``).
        """
        return self.solve(B)

    def whitener(self):
        """``W`` with ``W W^T = H^-1`` when the solver has one cheaply, else None.

        With it, self-influence ``g^T H^-1 g = ||W^T g||^2`` costs one product per block.
        """
        return None

    def _null_projector(self, problem):
        """Keep the problem's backend and its exact flat directions (host and native)."""
        self._xp = backend_of(problem)
        N = problem.null_space()
        self.null_basis_ = None if N is None or N.shape[1] == 0 else np.asarray(N)
        self._null_native = None if self.null_basis_ is None else self._xp.asarray(N)

    @property
    def backend(self):
        """The arrays this solver computes in (numpy, or torch on the net's device)."""
        return getattr(self, "_xp", NUMPY)

    def _project(self, B):
        """Remove the exact null-space component (gradients have none)."""
        N = self.null_basis_
        if N is None:
            return B
        if not isinstance(B, np.ndarray):
            N = self._null_native
        return B - N @ (N.T @ B)

    def _native(self, B):
        """``(B as a float64 native array, whether the caller gave a host array)``."""
        xp = self.backend
        return xp.asarray(B), not xp.is_native(B) or xp is NUMPY

    def _returned(self, X, host):
        """``X`` in the caller's kind: numpy for a host caller, else native."""
        return self.backend.to_numpy(X) if host else X

    def summary(self):
        """Fitted facts worth showing a user (dict of name -> value)."""
        return {"damping": float(self.damping)}
