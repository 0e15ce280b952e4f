"""Ways to apply the inverse Hessian; each sees only the model adapter interface."""

from skinfluence.solvers.base import HessianSolver, SingularHessianError
from skinfluence.solvers.cg import CGSolver
from skinfluence.solvers.direct import DirectSolver

#: Above this many parameters, ``solver="auto"`` avoids the dense Hessian.
AUTO_DIRECT_MAX_PARAMS = 3000

SOLVERS = {"direct": DirectSolver, "cg": CGSolver}


def make_solver(name, n_params, *, damping=0.0, tol=1e-8, max_iter=None):
    """Build the solver called ``name`` ("auto" picks by parameter count)."""
    if name == "auto":
        name = "direct" if n_params <= AUTO_DIRECT_MAX_PARAMS else "cg"
    if name not in SOLVERS:
        raise ValueError(
            f"Unknown solver {name!r}; choose one of 'auto', {', '.join(map(repr, SOLVERS))}."
        )
    if name == "cg":
        return CGSolver(damping=damping, tol=tol, max_iter=max_iter)
    return DirectSolver(damping=damping)


__all__ = [
    "AUTO_DIRECT_MAX_PARAMS",
    "CGSolver",
    "DirectSolver",
    "HessianSolver",
    "SingularHessianError",
    "make_solver",
]
