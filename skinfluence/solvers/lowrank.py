"""Low-rank inverse from the top eigenpairs of H (Lanczos on Hessian-vector products)."""

from typing import ClassVar

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.utils import check_random_state

from skinfluence.backend import NUMPY
from skinfluence.constraints import NONE, POSITIVE_INT, RANDOM_STATE, Interval
from skinfluence.exceptions import InvalidParameterError
from skinfluence.solvers.base import (
    HessianSolver,
    NonFiniteError,
    SingularHessianError,
    damping_advice,
)

#: Eigenpairs kept when ``rank=None`` (fewer for a model with fewer parameters).
DEFAULT_RANK = 50


class LowRankSolver(HessianSolver):
    """``H^-1 ~ V (Lambda + damping)^-1 V^T`` from the ``rank`` largest eigenpairs.

    The eigenpairs come from ARPACK's Lanczos iteration on HVPs (the Arnoldi
    method of Schioppa et al. for a symmetric operator). Directions outside the
    top eigenspace are dropped, which is what makes whole-training-set
    self-influence cheap: ``g^T H^-1 g ~ ||(Lambda + damping)^-1/2 V^T g||^2``.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` in ``H + lambda * I``.
    rank : int or None, default=None
        Number of eigenpairs kept: at least 1 and below the number of parameters
        less the model's exact flat directions (a full rank is solver="direct").
        None keeps 50, or one less than that limit for a smaller model.
    tol : float >= 0, default=0.0
        ARPACK's relative accuracy of the eigenvalues (0 = machine precision).
    random_state : int, RandomState or None, default=None
        Seed of the starting vector.
    """

    name = "lowrank"
    _parameter_table: ClassVar[dict] = {
        **HessianSolver._parameter_table,
        "rank": [POSITIVE_INT, NONE],
        "tol": [Interval("real", 0, None)],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, damping=0.0, rank=None, tol=0.0, random_state=None):
        super().__init__(damping)
        self.rank = rank
        self.tol = tol
        self.random_state = random_state

    def fit(self, problem):
        """Top ``rank`` eigenpairs of ``problem``'s Hessian by Lanczos; returns self."""
        self.check_params()
        self._null_projector(problem)
        P = problem.n_params
        n_null = 0 if self.null_basis_ is None else self.null_basis_.shape[1]
        limit = P - n_null
        k = min(DEFAULT_RANK, limit - 1) if self.rank is None else int(self.rank)
        if k < 1:
            raise InvalidParameterError(
                f"solver='lowrank' needs at least 2 parameters outside the model's flat "
                f"directions, this model has {limit}: use solver='direct'."
            )
        if k >= limit:
            raise InvalidParameterError(
                f"The 'rank' option of solver='lowrank' must be below {P - n_null} (the "
                f"{P} parameters less {n_null} exact flat directions), got rank={k}: a "
                "full-rank inverse is solver='direct' (or 'cg'); pick a smaller rank."
            )
        op = LinearOperator(
            (P, P),
            dtype=np.float64,
            matvec=lambda v: self._project(problem.hvp(self._project(v))),
            matmat=lambda V: self._project(problem.hvp(self._project(V))),
        )
        v0 = self._project(check_random_state(self.random_state).normal(size=P))
        if not np.isfinite(problem.hvp(v0)).all():
            raise NonFiniteError(
                "A Hessian-vector product overflowed (inf or NaN): standardise the features "
                "(or targets), or for a net check its inputs and weights."
            )
        w, V = eigsh(op, k=k, which="LA", tol=float(self.tol), v0=v0)
        order = np.argsort(w)[::-1]
        w, V = w[order], V[:, order]
        shifted = w + float(self.damping)
        if not shifted[-1] > 0:
            advice = damping_advice(w[-1], w[0])
            raise SingularHessianError(
                f"The top-{k} eigenvalues of H reach {w[-1]:.3g}: H + damping (damping="
                f"{float(self.damping):g} in use) is not positive definite on them. Pass "
                f"damping={advice:.3g} (or more) or a smaller rank.",
                damping=advice,
            )
        self.eigenvalues_ = w
        self._V = V
        self._inv = 1.0 / shifted
        self._device_pairs = None
        return self

    def solve(self, B):
        """The low-rank ``H^-1`` applied to ``B`` (in the problem's backend for a native ``B``)."""
        xp = self.backend
        if xp is NUMPY or not xp.is_native(B):
            V, inv, B = self._V, self._inv, np.asarray(B, dtype=np.float64)
        else:  # the eigenvectors copied to the device once
            if self._device_pairs is None:
                self._device_pairs = (xp.asarray(self._V), xp.asarray(self._inv))
            V, inv = self._device_pairs
        coef = V.T @ B
        coef = coef * (inv[:, None] if coef.ndim == 2 else inv)
        return V @ coef

    def whitener(self):
        """``W`` with ``W W^T`` the low-rank ``H^-1``."""
        return self._V * np.sqrt(self._inv)

    def summary(self):
        """Damping, rank, and the largest and smallest kept eigenvalues."""
        return {
            "damping": float(self.damping),
            "rank": len(self.eigenvalues_),
            "largest eigenvalue": float(self.eigenvalues_[0]),
            "smallest kept eigenvalue": float(self.eigenvalues_[-1]),
        }
