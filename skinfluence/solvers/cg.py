"""Conjugate gradient on Hessian-vector products, all right-hand sides at once."""

import warnings
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skinfluence.constraints import NONE, POSITIVE_INT, Interval
from skinfluence.solvers.base import (
    HessianSolver,
    NonFiniteError,
    SingularHessianError,
    damping_advice,
)

#: Bounds of the Lanczos run behind the damping advice (restarts, and vectors each).
ADVICE_MAX_RESTARTS = 20
ADVICE_NCV = 20


class CGSolver(HessianSolver):
    """Matrix-free ``H^-1 B`` by conjugate gradient, one CG per column, vectorised.

    Every column of ``B`` runs its own CG recursion, but each iteration costs a
    single Hessian product with all columns together. Columns stop updating once
    their relative residual is below ``tol``; non-convergence after ``max_iter``
    iterations is a :class:`~sklearn.exceptions.ConvergenceWarning` that gives the
    worst residual, and negative curvature is an error.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` in ``H + lambda * I``.
    tol : float in (0, 1), default=1e-8
        Relative residual ``||H x - b|| / ||b||`` at which a column has converged
        (``tol >= 1`` would accept the zero start as the answer; below machine
        precision it acts as machine precision).
    max_iter : int >= 1 or None, default=None
        Iterations at most; None means ``10 * n_params``.
    """

    name = "cg"
    _parameter_table: ClassVar[dict] = {
        **HessianSolver._parameter_table,
        "tol": [Interval("real", 0, 1, closed="neither")],
        "max_iter": [POSITIVE_INT, NONE],
    }

    def __init__(self, damping=0.0, tol=1e-8, max_iter=None):
        super().__init__(damping)
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, problem):
        """Keep ``problem`` for its Hessian-vector products; returns self."""
        self.check_params()
        self._null_projector(problem)
        self._problem = problem
        self.residual_ = 0.0
        self.n_iter_ = 0
        return self

    def _matvec(self, V):
        return self._problem.hvp(V) + self.damping * V

    def _advice(self, rayleigh):
        """A damping that makes ``H + damping I`` positive definite, from undamped ``H``.

        A Rayleigh quotient only bounds the smallest eigenvalue from above, so the
        extreme eigenvalues are estimated by a short Lanczos run (at most
        ``ADVICE_MAX_RESTARTS`` ARPACK restarts of ``ADVICE_NCV`` vectors, so a bounded
        number of HVPs); when it does not converge the quotient is the fallback,
        and the advice is then only a lower bound.
        """
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

        P = self._problem.n_params
        lowest, largest = rayleigh - self.damping, abs(rayleigh - self.damping)
        if P >= 3:
            op = LinearOperator(
                (P, P),
                dtype=np.float64,
                matvec=lambda v: self._project(self._problem.hvp(self._project(v))),
            )
            try:
                ncv = min(P, ADVICE_NCV)
                w = eigsh(op, k=2, which="BE", tol=1e-3, ncv=ncv, maxiter=ADVICE_MAX_RESTARTS)[0]
                lowest, largest = min(lowest, float(w.min())), float(w.max())
            except (ArpackNoConvergence, ValueError):
                pass
        return damping_advice(lowest, largest)

    def solve(self, B):
        """``H^-1 B`` by conjugate gradient, all columns at once."""
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
        # a tol below machine precision cannot be reached: it acts as machine precision
        tol = max(float(self.tol), np.finfo(float).eps)
        # a column whose residual is exactly 0 is solved (its direction would be 0 too)
        active = (np.sqrt(rs) / bnorm > tol) & (rs > 0)
        it = 0
        while active.any() and it < max_iter:
            cols = np.flatnonzero(active)
            HP = self._project(self._matvec(P[:, cols]))
            curv = (P[:, cols] * HP).sum(axis=0)
            if not np.all(np.isfinite(curv)):
                raise NonFiniteError(
                    "A Hessian-vector product overflowed (inf or NaN) in conjugate gradient: "
                    "standardise the features (or targets), or add damping."
                )
            pp = (P[:, cols] ** 2).sum(axis=0)
            bad = (curv <= 0) & (pp > np.finfo(float).tiny)  # real, not underflowed
            if bad.any():
                q = curv[bad] / pp[bad]
                raise SingularHessianError(
                    "Conjugate gradient met non-positive curvature "
                    f"(p^T H p / p^T p = {q.min():.3g} with damping={self.damping:g}): the "
                    "Hessian plus damping is not positive definite. Pass "
                    f"damping={self._advice(q.min()):.3g} (or more)."
                )
            if np.any(curv <= 0):  # directions underflowed to 0: those columns are solved
                stalled = cols[curv <= 0]
                active[stalled] = False
                keep = curv > 0
                cols, HP, curv = cols[keep], HP[:, keep], curv[keep]
                if cols.size == 0:
                    break
            alpha = rs[cols] / curv
            X[:, cols] += alpha * P[:, cols]
            R[:, cols] -= alpha * HP
            rs_new = (R[:, cols] ** 2).sum(axis=0)
            P[:, cols] = R[:, cols] + (rs_new / rs[cols]) * P[:, cols]
            rs[cols] = rs_new
            active[cols] = (np.sqrt(rs_new) / bnorm[cols] > tol) & (rs_new > 0)
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
                stacklevel=5,  # the caller of the explainer's method
            )
        return X[:, 0] if squeeze else X

    def summary(self):
        """Damping, iterations run and the worst relative residual."""
        return {
            "damping": float(self.damping),
            "CG iterations": self.n_iter_,
            "CG worst relative residual": self.residual_,
        }
