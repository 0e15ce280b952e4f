"""Conjugate gradient on Hessian-vector products, all right-hand sides at once."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skinfluence.solvers.base import HessianSolver, SingularHessianError, damping_advice


class CGSolver(HessianSolver):
    """Matrix-free ``H^-1 B`` by conjugate gradient, one CG per column, vectorised.

    Every column of ``B`` runs its own CG recursion, but each iteration costs a
    single Hessian product with all columns together. Columns stop updating once
    their relative residual is below ``tol``; non-convergence after ``max_iter``
    iterations is a :class:`~sklearn.exceptions.ConvergenceWarning` that gives the
    worst residual, and negative curvature is an error.

    Parameters
    ----------
    damping : float
        ``lambda`` in ``H + lambda * I``.
    tol : float
        Relative residual ``||H x - b|| / ||b||`` at which a column has converged.
    max_iter : int or None
        Iterations at most; None means ``10 * n_params``.
    """

    name = "cg"

    def __init__(self, damping=0.0, tol=1e-8, max_iter=None):
        super().__init__(damping)
        self.tol = float(tol)
        self.max_iter = max_iter

    def fit(self, problem):
        self._null_projector(problem)
        self._problem = problem
        self.residual_ = 0.0
        self.n_iter_ = 0
        return self

    def _matvec(self, V):
        return self._problem.hvp(V) + self.damping * V

    def solve(self, B):
        B = self._project(np.asarray(B, dtype=np.float64))
        squeeze = B.ndim == 1
        B = B.reshape(B.shape[0], -1)
        max_iter = self.max_iter or 10 * B.shape[0]
        X = np.zeros_like(B)
        R = B.copy()
        P = R.copy()
        bnorm = np.linalg.norm(B, axis=0)
        bnorm[bnorm == 0] = 1.0
        rs = (R * R).sum(axis=0)
        active = np.sqrt(rs) / bnorm > self.tol
        it = 0
        while active.any() and it < max_iter:
            cols = np.flatnonzero(active)
            HP = self._project(self._matvec(P[:, cols]))
            curv = (P[:, cols] * HP).sum(axis=0)
            if np.any(curv <= 0):
                q = curv / np.maximum((P[:, cols] ** 2).sum(axis=0), 1e-300)
                raise SingularHessianError(
                    "Conjugate gradient met non-positive curvature "
                    f"(p^T H p / p^T p = {q.min():.3g}): the Hessian plus "
                    f"damping={self.damping:g} is not positive definite. Pass "
                    f"damping>{damping_advice(q.min(), 0):.3g}."
                )
            alpha = rs[cols] / curv
            X[:, cols] += alpha * P[:, cols]
            R[:, cols] -= alpha * HP
            rs_new = (R[:, cols] ** 2).sum(axis=0)
            P[:, cols] = R[:, cols] + (rs_new / rs[cols]) * P[:, cols]
            rs[cols] = rs_new
            active[cols] = np.sqrt(rs_new) / bnorm[cols] > self.tol
            it += 1
        worst = float(np.max(np.sqrt(rs) / bnorm)) if rs.size else 0.0
        self.n_iter_ = max(self.n_iter_, it)
        self.residual_ = max(self.residual_, worst)
        if active.any():
            warnings.warn(
                f"Conjugate gradient did not converge in {max_iter} iterations: "
                f"worst relative residual {worst:.3g} > tol={self.tol:g}. Increase "
                "max_iter, add damping, or use solver='direct'.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X[:, 0] if squeeze else X

    def summary(self):
        return {
            "damping": self.damping,
            "CG iterations": self.n_iter_,
            "CG worst relative residual": self.residual_,
        }
