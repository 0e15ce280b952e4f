"""What every solver offers: factor or prepare once, then apply ``H^-1`` to blocks."""

import numpy as np


class SingularHessianError(ValueError):
    """The Hessian (plus damping) is singular or indefinite, so H^-1 does not exist."""


def damping_advice(min_eig, max_eig):
    """A damping that makes ``H + damping * I`` safely positive definite.

    Rounded up at three significant digits, so that the printed value works.
    """
    value = max(-min_eig, 0.0) * 1.01 + 1e-6 * max(abs(max_eig), 1e-12)
    exponent = np.floor(np.log10(value)) - 2
    return float(np.ceil(value / 10**exponent) * 10**exponent)


class HessianSolver:
    """Base class: ``fit(problem)`` then ``solve(B)`` returns ``H^-1 B``.

    ``problem`` is a model adapter (``n_params``, ``hvp``, ``hessian``,
    ``null_space``); solvers know nothing else about the model.

    Parameters
    ----------
    damping : float
        ``lambda`` in ``H + lambda * I``.
    """

    name = "base"

    def __init__(self, damping=0.0):
        self.damping = float(damping)

    def fit(self, problem):
        raise NotImplementedError

    def solve(self, B):
        raise NotImplementedError

    def _null_projector(self, problem):
        N = problem.null_space()
        self.null_basis_ = None if N is None or N.shape[1] == 0 else np.asarray(N)

    def _project(self, B):
        """Remove the exact null-space component (gradients have none)."""
        N = self.null_basis_
        if N is None:
            return B
        return B - N @ (N.T @ B)

    def summary(self):
        """Fitted facts worth showing a user (dict of name -> value)."""
        return {"damping": self.damping}
