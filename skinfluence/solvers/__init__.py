"""Ways to apply the inverse Hessian; each sees only the model adapter interface."""

from skinfluence.solvers.base import HessianSolver, SingularHessianError
from skinfluence.solvers.cg import CGSolver
from skinfluence.solvers.direct import DirectSolver
from skinfluence.solvers.lissa import LissaSolver
from skinfluence.solvers.lowrank import LowRankSolver

#: Above this many parameters, ``solver="auto"`` avoids the dense Hessian.
AUTO_DIRECT_MAX_PARAMS = 3000

SOLVERS = {"direct": DirectSolver, "cg": CGSolver, "lissa": LissaSolver, "lowrank": LowRankSolver}


def make_solver(name, n_params, *, damping=0.0, random_state=None, **solver_params):
    """Build the solver called ``name`` ("auto" picks by parameter count).

    ``solver_params`` are the chosen solver's own options (``tol``/``max_iter`` for
    cg; ``depth``/``scale``/``repeats``/``batch_size`` for lissa; ``rank``/``tol`` for
    lowrank); an option the solver does not take is an error.
    """
    if name == "auto":
        name = "direct" if n_params <= AUTO_DIRECT_MAX_PARAMS else "cg"
    if name not in SOLVERS:
        raise ValueError(
            f"Unknown solver {name!r}; choose one of 'auto', {', '.join(map(repr, SOLVERS))}."
        )
    cls = SOLVERS[name]
    kwargs = dict(solver_params)
    if name in ("lissa", "lowrank"):
        kwargs["random_state"] = random_state
    try:
        return cls(damping=damping, **kwargs)
    except TypeError as exc:
        raise ValueError(f"Bad solver_params for solver={name!r}: {exc}") from None


__all__ = [
    "AUTO_DIRECT_MAX_PARAMS",
    "CGSolver",
    "DirectSolver",
    "HessianSolver",
    "LissaSolver",
    "LowRankSolver",
    "SingularHessianError",
    "make_solver",
]
