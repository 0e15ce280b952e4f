"""Exact solves with a dense Hessian factored once (Cholesky, eigh when ill-conditioned)."""

import warnings

import numpy as np
import scipy.linalg as sla
from scipy.linalg.lapack import dpocon

from skinfluence.solvers.base import HessianSolver, SingularHessianError, damping_advice

#: Reciprocal condition number below which H is treated as near-singular.
NEAR_SINGULAR_RCOND = 1e-10


class DirectSolver(HessianSolver):
    """Factor the dense Hessian once; every solve is then two triangular solves.

    Exact flat directions of the model (``problem.null_space()``) are lifted to a
    positive eigenvalue before factoring; since every gradient is orthogonal to
    them, ``H^-1 g`` is the exact solve on the complement.
    """

    name = "direct"

    def fit(self, problem):
        self._null_projector(problem)
        H = np.array(problem.hessian(), dtype=np.float64)
        p = H.shape[0]
        H[np.diag_indices(p)] += self.damping
        if self.null_basis_ is not None:
            scale = max(np.trace(H) / p, np.finfo(float).tiny)
            H += scale * (self.null_basis_ @ self.null_basis_.T)
        anorm = np.abs(H).sum(axis=0).max()
        try:
            c, lower = sla.cho_factor(H, lower=True, check_finite=True)
            rcond, _ = dpocon(c, anorm, uplo="L")
        except sla.LinAlgError:
            rcond = 0.0
        if rcond <= p * np.finfo(float).eps:
            eig = sla.eigvalsh(H)
            raise SingularHessianError(
                "The Hessian of the training objective is singular or indefinite "
                f"(smallest eigenvalue {eig[0]:.3g}, largest {eig[-1]:.3g}, with "
                f"damping={self.damping:g}), so the influence function is undefined. "
                f"Pass damping>0 (e.g. damping={damping_advice(eig[0], eig[-1]):.3g}) "
                "or use a regularised model."
            )
        self.condition_number_ = 1.0 / rcond
        if rcond < NEAR_SINGULAR_RCOND:
            warnings.warn(
                f"The Hessian is near-singular (condition number about {1 / rcond:.3g}); "
                "solving through its eigendecomposition. Influence values along "
                "poorly determined directions are unreliable: consider damping>0.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._eig = sla.eigh(H)
            self._chol = None
        else:
            self._chol = (c, lower)
            self._eig = None
        return self

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        if self._chol is not None:
            X = sla.cho_solve(self._chol, B, check_finite=False)
        else:
            w, V = self._eig
            X = V @ ((V.T @ B) / (w[:, None] if B.ndim == 2 else w))
        return self._project(X)

    def summary(self):
        return {"damping": self.damping, "condition number": self.condition_number_}
