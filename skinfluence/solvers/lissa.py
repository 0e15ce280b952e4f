"""LiSSA: a stochastic Neumann-series estimate of H^-1 B from mini-batch HVPs."""

import warnings
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from skinfluence.constraints import NONE, POSITIVE_INT, RANDOM_STATE, Interval
from skinfluence.solvers.base import HessianSolver, SingularHessianError

#: Relative change over the second half of the recursion above which LiSSA warns.
DRIFT_WARN = 0.1


class LissaSolver(HessianSolver):
    """Agarwal et al.'s recursion, as used by Koh & Liang, for all columns at once.

    ``h_0 = b``, ``h_j = b + (1 - damping/scale) h_{j-1} - H_j h_{j-1} / scale``
    with ``H_j`` the Hessian on a random mini-batch; the estimate is
    ``h_depth / scale``, averaged over ``repeats`` independent runs. It converges
    when ``scale`` exceeds the largest eigenvalue of ``H + damping I``; with
    ``scale=None`` that eigenvalue is estimated by power iteration and
    ``scale = 1.5 * lambda_max``. A growing or non-finite iterate raises; an
    iterate that still moves by more than 10% over the second half of the
    recursion (too few steps for the scale, or mini-batch noise) is a
    :class:`~sklearn.exceptions.ConvergenceWarning` with that figure.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` in ``H + lambda * I``.
    depth : int >= 1, default=1000
        Recursion steps per repeat (the series is truncated after ``depth`` terms).
    scale : float > 0 or None, default=None
        Divides ``H``; must exceed its largest eigenvalue.
    repeats : int >= 1, default=1
        Independent runs averaged.
    batch_size : int >= 1, default=64
        Training samples per mini-batch Hessian (the whole set when larger).
    random_state : int, RandomState or None, default=None
        Seed of the mini-batches.
    """

    name = "lissa"
    _parameter_table: ClassVar[dict] = {
        **HessianSolver._parameter_table,
        "depth": [POSITIVE_INT],
        "scale": [Interval("real", 0, None, closed="neither"), NONE],
        "repeats": [POSITIVE_INT],
        "batch_size": [POSITIVE_INT],
        "random_state": RANDOM_STATE,
    }

    def __init__(
        self, damping=0.0, depth=1000, scale=None, repeats=1, batch_size=64, random_state=None
    ):
        super().__init__(damping)
        self.depth = depth
        self.scale = scale
        self.repeats = repeats
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, problem):
        """Estimate the scale (when None) from ``problem``'s HVPs; returns self."""
        self.check_params()
        self._null_projector(problem)
        self._problem = problem
        self.drift_ = 0.0
        if self.scale is None:
            self.scale_ = 1.5 * (self._largest_eigenvalue(problem) + self.damping)
        else:
            self.scale_ = float(self.scale)
        if not (np.isfinite(self.scale_) and self.scale_ > 0):
            raise SingularHessianError(
                f"LiSSA's scale came out as {self.scale_!r} (the Hessian's largest eigenvalue "
                "estimate is 0, inf or NaN): pass solver_params={'scale': ...} or add damping."
            )
        return self

    def _largest_eigenvalue(self, problem, n_iter=30):
        xp = self.backend
        rng = check_random_state(self.random_state)
        v = self._project(xp.asarray(rng.normal(size=problem.n_params)))
        v = v / xp.norm(v)
        lam = 0.0
        for _ in range(n_iter):
            w = self._project(problem.hvp(v))
            lam = xp.scalar((v * w).sum())
            norm = xp.norm(w)
            if norm == 0:
                break
            v = w / norm
        return abs(lam)

    def solve(self, B):
        """The LiSSA estimate of ``H^-1 B``, all columns at once, in the problem's backend."""
        xp = self.backend
        B, host = self._native(B)
        B = self._project(B)
        squeeze = B.ndim == 1
        B = B.reshape(B.shape[0], -1)
        rng = check_random_state(self.random_state)
        n = self._problem.n_train
        scale = self.scale_
        bnorm = max(xp.norm(B), np.finfo(float).tiny)
        total = xp.zeros(B.shape)
        drift = 0.0
        for _ in range(self.repeats):
            h = xp.copy(B)
            half = h
            for step in range(self.depth):
                if step == self.depth // 2:
                    half = h
                idx = rng.choice(n, size=min(self.batch_size, n), replace=False)
                Hh = self._project(self._problem.hvp(h, indices=idx))
                h = B + (1.0 - self.damping / scale) * h - Hh / scale
                norm = xp.norm(h)
                if not np.isfinite(norm) or norm > 1e8 * bnorm:
                    raise SingularHessianError(
                        f"LiSSA diverged at step {step + 1} (iterate norm {norm:.3g} vs "
                        f"{bnorm:.3g} at the start): scale={scale:.3g} must exceed the "
                        "largest eigenvalue of the mini-batch Hessian, and H + damping I "
                        "must be positive definite. Increase scale (or leave it None to "
                        "estimate it), add damping, or use solver='cg'."
                    )
            total += h / scale
            # how far the second half of the recursion still moved the iterate: a
            # converged series (and small mini-batch noise) leaves it near 0
            drift = max(drift, xp.norm(h - half) / max(xp.norm(h), 1e-300))
        self.drift_ = max(getattr(self, "drift_", 0.0), drift)
        if drift > DRIFT_WARN:
            warnings.warn(
                f"LiSSA has not settled: the second half of the {self.depth}-step recursion "
                f"still moved the estimate by {drift:.0%} (scale={scale:.3g}), so its error is "
                "likely of that order. Increase depth (or repeats and batch_size), leave "
                "scale=None to estimate it, or use solver='cg'.",
                ConvergenceWarning,
                stacklevel=5,  # the caller of the explainer's method
            )
        X = total / self.repeats
        return self._returned(X[:, 0] if squeeze else X, host)

    def summary(self):
        """Damping and the recursion's scale, depth and repeats."""
        return {
            "damping": float(self.damping),
            "LiSSA scale": self.scale_,
            "LiSSA depth": self.depth,
            "LiSSA repeats": self.repeats,
            "LiSSA drift (2nd half)": getattr(self, "drift_", 0.0),
        }
