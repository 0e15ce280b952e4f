"""Preconditioners of conjugate gradient, built once per fitted solver.

Each one is fitted on the CG solver's problem (its damped, projected operator)
and then applies an SPD approximation of ``(H + damping I)^-1`` to native blocks.
CG stays exact: a preconditioner only changes how many iterations it takes.
"""

import numpy as np
from sklearn.utils import check_random_state

from skinfluence.backend import DeviceState
from skinfluence.solvers.base import SingularHessianError
from skinfluence.solvers.spectral import top_eigenpairs

#: Eigenpairs deflated when ``rank=None`` (fewer for a smaller model).
DEFAULT_RANK = 50


class LowRankPreconditioner(DeviceState):
    """Spectral deflation ``V (Lambda^-1 - 1/sigma) V^T + I/sigma``.

    ``Lambda``, ``V``: the top-``rank`` eigenpairs of ``H + damping I``;
    ``sigma``: the next eigenvalue. The preconditioned operator has the top
    eigenvalues mapped to 1 and the rest scaled by ``1/sigma``, so CG's
    condition number drops from ``lambda_1/lambda_min`` to about
    ``sigma/lambda_min``.

    Parameters
    ----------
    cg : CGSolver
        The solver it serves (its damping, rank, seed and damped operator).
    """

    def __init__(self, cg):
        self.cg = cg

    def fit(self, problem):
        cg = self.cg
        xp = cg.backend
        P = problem.n_params
        n_null = 0 if cg.null_basis_ is None else cg.null_basis_.shape[1]
        limit = P - n_null - 1
        k = min(DEFAULT_RANK if cg.rank is None else int(cg.rank), limit)
        if k < 1:
            raise SingularHessianError(
                f"preconditioner='lowrank' needs at least 2 parameters outside the model's "
                f"flat directions, this model has {P - n_null}: use solver='direct'."
            )
        seed = int(check_random_state(cg.random_state).randint(2**31 - 1))
        w, V, nxt, spent = top_eigenpairs(cg._matvec, P, k, xp, seed=seed, project=cg._project)
        keep = w > 0
        w, V = w[keep], V[:, keep]
        if w.shape[0] == 0:
            raise SingularHessianError(
                "preconditioner='lowrank' found no positive eigenvalue of H + damping: the "
                "Hessian is not positive definite; add damping."
            )
        smallest = xp.scalar(w.min())
        # sigma: the largest eigenvalue left out; a non-positive estimate (indefinite H,
        # which CG itself then reports) falls back to the smallest kept one
        self.sigma_ = nxt if nxt > 0 else smallest
        self._V, self._coef = V, 1.0 / w - 1.0 / self.sigma_
        self.eigenvalues_ = xp.to_numpy(w)
        self.n_products_ = spent
        return self

    def apply(self, R):
        return self._V @ (self._coef[:, None] * (self._V.T @ R)) + R / self.sigma_

    def summary(self):
        return {
            "preconditioner rank": int(self.eigenvalues_.shape[0]),
            "preconditioner HVPs": int(self.n_products_),
            "preconditioner largest eigenvalue": float(np.max(self.eigenvalues_)),
            "preconditioner sigma": float(self.sigma_),
        }


class KroneckerPreconditioner(DeviceState):
    """The (E)K-FAC approximation of ``(H + damping I)^-1`` as a preconditioner.

    Parameters
    ----------
    cg : CGSolver
        The solver it serves (its damping).
    """

    kind = "ekfac"

    def __init__(self, cg):
        self.cg = cg

    def fit(self, problem):
        from skinfluence.solvers.kfac import EKFACSolver, KFACSolver

        cls = EKFACSolver if self.kind == "ekfac" else KFACSolver
        self.solver_ = cls(damping=self.cg.damping).fit(problem)
        return self

    def apply(self, R):
        return self.solver_.solve(R)

    def summary(self):
        return {"preconditioner passes over the data": self.solver_.n_passes_}


class KFACPreconditioner(KroneckerPreconditioner):
    kind = "kfac"


PRECONDITIONERS = {
    "lowrank": LowRankPreconditioner,
    "kfac": KFACPreconditioner,
    "ekfac": KroneckerPreconditioner,
}
