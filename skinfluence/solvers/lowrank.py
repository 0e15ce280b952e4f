"""Low-rank inverse from the top eigenpairs of H (Lanczos on Hessian-vector products)."""

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.utils import check_random_state

from skinfluence.solvers.base import HessianSolver, SingularHessianError, damping_advice


class LowRankSolver(HessianSolver):
    """``H^-1 ~ V (Lambda + damping)^-1 V^T`` from the ``rank`` largest eigenpairs.

    The eigenpairs come from ARPACK's Lanczos iteration on HVPs (the Arnoldi
    method of Schioppa et al. for a symmetric operator). Directions outside the
    top eigenspace are dropped, which is what makes whole-training-set
    self-influence cheap: ``g^T H^-1 g ~ ||(Lambda + damping)^-1/2 V^T g||^2``.

    Parameters
    ----------
    damping : float
        ``lambda`` in ``H + lambda * I``.
    rank : int
        Number of eigenpairs kept (at most ``n_params - 1``).
    tol : float
        ARPACK's relative accuracy of the eigenvalues (0 = machine precision).
    random_state : int, RandomState or None
        Seed of the starting vector.
    """

    name = "lowrank"

    def __init__(self, damping=0.0, rank=50, tol=0.0, random_state=None):
        super().__init__(damping)
        self.rank = int(rank)
        self.tol = float(tol)
        self.random_state = random_state

    def fit(self, problem):
        self._null_projector(problem)
        P = problem.n_params
        k = min(self.rank, P - 1)
        if k < 1:
            raise ValueError(f"rank must be >= 1 and < n_params={P}, got {self.rank}.")
        op = LinearOperator(
            (P, P),
            dtype=np.float64,
            matvec=lambda v: self._project(problem.hvp(self._project(v))),
            matmat=lambda V: self._project(problem.hvp(self._project(V))),
        )
        v0 = self._project(check_random_state(self.random_state).normal(size=P))
        w, V = eigsh(op, k=k, which="LA", tol=self.tol, v0=v0)
        order = np.argsort(w)[::-1]
        w, V = w[order], V[:, order]
        shifted = w + self.damping
        if not shifted[-1] > 0:
            raise SingularHessianError(
                f"The top-{k} eigenvalues of H reach {w[-1]:.3g}: H + damping is not "
                f"positive definite on them. Pass damping>{damping_advice(w[-1], w[0]):.3g} "
                "or a smaller rank."
            )
        self.eigenvalues_ = w
        self._V = V
        self._inv = 1.0 / shifted
        return self

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        coef = self._V.T @ B
        coef = coef * (self._inv[:, None] if coef.ndim == 2 else self._inv)
        return self._V @ coef

    def whitener(self):
        """``W`` with ``W W^T`` the low-rank ``H^-1``."""
        return self._V * np.sqrt(self._inv)

    def summary(self):
        return {
            "damping": self.damping,
            "rank": len(self.eigenvalues_),
            "largest eigenvalue": float(self.eigenvalues_[0]),
            "smallest kept eigenvalue": float(self.eigenvalues_[-1]),
        }
