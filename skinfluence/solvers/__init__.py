"""Ways to apply the inverse Hessian; each sees only the model adapter interface."""

from sklearn.base import clone

from skinfluence.constraints import InvalidParameterError
from skinfluence.solvers.base import HessianSolver, SingularHessianError
from skinfluence.solvers.cg import CGSolver
from skinfluence.solvers.direct import DirectSolver
from skinfluence.solvers.kfac import EKFACSolver, KFACSolver
from skinfluence.solvers.lissa import LissaSolver
from skinfluence.solvers.lowrank import LowRankSolver

#: Above this many parameters, ``solver="auto"`` avoids the dense Hessian.
AUTO_DIRECT_MAX_PARAMS = 3000

SOLVERS = {
    "direct": DirectSolver,
    "cg": CGSolver,
    "lissa": LissaSolver,
    "lowrank": LowRankSolver,
    "kfac": KFACSolver,
    "ekfac": EKFACSolver,
}


#: Above this many parameters, ``solver="auto"`` takes EK-FAC for a net whose layers
#: it covers (CG's per-query cost grows with the parameters times its iterations).
AUTO_KRONECKER_MIN_PARAMS = 1_000_000


def auto_choice(problem):
    """``(name, solver_params, reason)``: what ``solver="auto"`` takes for ``problem``.

    Up to ``AUTO_DIRECT_MAX_PARAMS`` parameters the dense Hessian (exact); a net
    above ``AUTO_KRONECKER_MIN_PARAMS`` whose parameters all sit in
    ``nn.Linear``/``nn.Conv2d`` layers EK-FAC (approximate); otherwise block CG,
    exact to its tolerance, without a preconditioner: with blocks of 64
    right-hand sides sharing one Krylov space, the lowrank preconditioner cost
    more HVPs than it saved on influence in ``bench_torch_scale.py`` (tanh MLPs of
    2,410 and 4,810 parameters and a 5,258-parameter CNN: 2.2 / 5.5 / 0.9 s
    without it, 3.3 / 7.1 / 1.3 s with rank 400 or 100); it still pays on the
    self-influence of a whole training set, where it is amortised over every row
    (``solver_params={"preconditioner": "lowrank"}``).
    """
    P = problem.n_params
    if P <= AUTO_DIRECT_MAX_PARAMS:
        return "direct", None, f"n_params={P} <= {AUTO_DIRECT_MAX_PARAMS}: dense Hessian, exact"
    if P > AUTO_KRONECKER_MIN_PARAMS and hasattr(problem, "kronecker_layers"):
        try:
            problem.kronecker_layers()
        except ValueError:
            pass
        else:
            return (
                "ekfac",
                None,
                f"n_params={P} > {AUTO_KRONECKER_MIN_PARAMS} in nn.Linear/nn.Conv2d layers: "
                "EK-FAC (approximate; solver='cg' for the exact Hessian)",
            )
    return (
        "cg",
        None,
        f"n_params={P} > {AUTO_DIRECT_MAX_PARAMS}: block conjugate gradient (exact to tol)",
    )


def resolve_name(name, n_params):
    """The solver ``"auto"`` stands for with ``n_params`` parameters (others unchanged)."""
    if name == "auto":
        return "direct" if n_params <= AUTO_DIRECT_MAX_PARAMS else "cg"
    return name


def make_solver(solver, n_params=None, *, damping=0.0, random_state=None, solver_params=None):
    """A checked, unfitted solver: built by name, or cloned from an instance.

    Parameters
    ----------
    solver : str or HessianSolver
        "auto", a key of ``SOLVERS``, or a solver instance (cloned, never changed).
    n_params : int or None
        Number of parameters, which "auto" picks by; None only when ``solver`` is not
        "auto".
    damping : float
        The damping to use; it replaces an instance's own (a solver instance with a
        different non-zero damping is refused, so that one value is in charge).
    random_state : int, RandomState or None
        Seed of a stochastic solver built by name (an instance keeps its own).
    solver_params : dict or None
        Options of a solver built by name (``tol``/``max_iter`` for cg;
        ``depth``/``scale``/``repeats``/``batch_size`` for lissa; ``rank``/``tol``
        for lowrank); each is range-checked, and an option the solver does not
        take is an error.

    Returns
    -------
    solver : HessianSolver
    """
    if isinstance(solver, HessianSolver):
        if solver_params:
            raise InvalidParameterError(
                "solver_params applies to a solver given by name; a solver instance "
                f"carries its own options, got solver={solver!r} and "
                f"solver_params={solver_params!r}."
            )
        own = solver.get_params().get("damping", 0.0)
        if own not in (0, 0.0) and own != damping:
            raise InvalidParameterError(
                f"The solver instance has damping={own!r} and the explainer damping={damping!r}:"
                " set the damping on the explainer only."
            )
        out = clone(solver).set_params(damping=damping)
        return out.check_params()
    name = resolve_name(solver, n_params)
    if name not in SOLVERS:
        raise InvalidParameterError(
            f"Unknown solver {name!r}; choose 'auto', one of {', '.join(map(repr, SOLVERS))}, "
            "or a HessianSolver instance."
        )
    cls = SOLVERS[name]
    kwargs = dict(solver_params or {})
    table = cls._parameter_table
    unknown = sorted(set(kwargs) - (set(table) - {"damping", "random_state"}))
    if unknown:
        takes = sorted(set(table) - {"damping", "random_state"})
        raise InvalidParameterError(
            f"solver_params has option(s) {unknown} that solver={name!r} does not take; "
            f"it takes {takes or 'none'} (damping and random_state are the explainer's)."
        )
    if "random_state" in table:
        kwargs["random_state"] = random_state
    return cls(damping=damping, **kwargs).check_params()


__all__ = [
    "AUTO_DIRECT_MAX_PARAMS",
    "CGSolver",
    "DirectSolver",
    "EKFACSolver",
    "HessianSolver",
    "KFACSolver",
    "LissaSolver",
    "LowRankSolver",
    "SingularHessianError",
    "auto_choice",
    "make_solver",
    "resolve_name",
]
