"""Exact solves with a dense Hessian factored once (Cholesky, eigh when ill-conditioned)."""

import warnings

import numpy as np
import scipy.linalg as sla

from skinfluence.backend import NUMPY
from skinfluence.solvers.base import (
    HessianSolver,
    NonFiniteError,
    SingularHessianError,
    damping_advice,
)

#: Reciprocal condition number below which H is treated as near-singular.
NEAR_SINGULAR_RCOND = 1e-10


class DirectSolver(HessianSolver):
    """Factor the dense Hessian once; every solve is then two triangular solves.

    Exact flat directions of the model (``problem.null_space()``) are lifted to a
    positive eigenvalue before factoring; since every gradient is orthogonal to
    them, ``H^-1 g`` is the exact solve on the complement.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` in ``H + lambda * I``.
    """

    name = "direct"

    def fit(self, problem):
        """Form and factor the damped Hessian of ``problem``; returns self."""
        self.check_params()
        damping = float(self.damping)
        self._null_projector(problem)
        H = np.array(problem.hessian(), dtype=np.float64)
        if not np.isfinite(H).all():
            raise NonFiniteError(
                "The Hessian of the training objective overflowed (it holds inf or NaN): "
                "the features (or targets) are too large for float64 products. Standardise "
                "them (e.g. a StandardScaler in a Pipeline) before fitting."
            )
        p = H.shape[0]
        H[np.diag_indices(p)] += damping
        if self.null_basis_ is not None:
            scale = max(np.trace(H) / p, np.finfo(float).tiny)
            H += scale * (self.null_basis_ @ self.null_basis_.T)
        eig = sla.eigvalsh(H)
        self.min_eigenvalue_, self.max_eigenvalue_ = float(eig[0]), float(eig[-1])
        rounding = p * np.finfo(float).eps * abs(eig[-1])
        if not eig[0] > rounding:
            # the advice is the whole damping to pass, from the undamped spectrum
            advice = damping_advice(eig[0] - damping, eig[-1] - damping)
            if eig[0] > -rounding:  # zero, or negative only by the eigensolver's rounding
                raise SingularHessianError(
                    "The Hessian of the training objective is numerically singular: its "
                    f"smallest eigenvalue ({eig[0]:.3g}) is at the rounding level of its "
                    f"largest ({eig[-1]:.3g}), beyond what float64 resolves (features on "
                    "very different scales, collinear features, or a penalty that swamps the "
                    f"data term: tiny sample weights or C). Pass damping={advice:.3g} (or "
                    "more), or standardise the features.",
                    damping=advice,
                )
            raise SingularHessianError(
                "The Hessian of the training objective is singular or indefinite "
                f"(smallest eigenvalue {eig[0] - damping:.3g}, largest "
                f"{eig[-1] - damping:.3g} before damping; damping={damping:g} in use), so "
                f"the influence function is undefined. Pass damping={advice:.3g} (or more) "
                "or use a regularised model.",
                damping=advice,
            )
        self.condition_number_ = float(eig[-1] / eig[0])
        self._chol = self._eig = None
        if 1.0 / self.condition_number_ < NEAR_SINGULAR_RCOND:
            warnings.warn(
                f"The Hessian is near-singular (condition number {self.condition_number_:.3g}); "
                "solving through its eigendecomposition. Influence values along "
                "poorly determined directions are unreliable: consider damping>0.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._eig = sla.eigh(H)
        else:
            self._chol = sla.cho_factor(H, lower=True, check_finite=False)
        self._device_factor = None
        return self

    def whitener(self):
        """``W`` with ``W W^T = H^-1``, so that ``g^T H^-1 g = ||W^T g||^2``."""
        if self._chol is not None:
            L = np.tril(self._chol[0])
            return sla.solve_triangular(L, np.eye(len(L)), lower=True).T
        w, V = self._eig
        return V / np.sqrt(w)

    def solve(self, B):
        """``H^-1 B`` by the stored factor (in the problem's backend for a native ``B``)."""
        xp = self.backend
        if xp is NUMPY or not xp.is_native(B):
            xp, B = NUMPY, NUMPY.asarray(B)
            L = self._chol[0] if self._chol is not None else None
            w, V = self._eig if self._eig is not None else (None, None)
        else:  # the factor copied to the device once, then every solve stays there
            if self._device_factor is None:
                self._device_factor = (
                    xp.asarray(np.tril(self._chol[0])) if self._chol is not None else None,
                    *(tuple(map(xp.asarray, self._eig)) if self._eig is not None else (None, None)),
                )
            L, w, V = self._device_factor
        if L is not None:
            X = xp.cho_solve(L, B.reshape(B.shape[0], -1)).reshape(B.shape)
        else:
            X = V @ ((V.T @ B) / (w[:, None] if B.ndim == 2 else w))
        return self._project(X)

    def summary(self):
        """Damping, smallest eigenvalue and condition number of the damped Hessian."""
        return {
            "damping": float(self.damping),
            "smallest eigenvalue": self.min_eigenvalue_,
            "condition number": self.condition_number_,
        }
