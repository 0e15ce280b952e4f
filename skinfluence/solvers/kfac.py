"""Kronecker-factored curvature: K-FAC and eigenvalue-corrected K-FAC (EK-FAC).

For a layer with inputs ``a`` and outputs ``s = W a`` (a column of ones carries the
bias), the Gauss-Newton block of the mean objective is approximated by
``S (x) A``, in the row-major layout of ``W`` (out x inp):

- ``A = E[sum_t a_t a_t^T]``, ``S = E[sum_k sum_t g_kt g_kt^T] / T``, with ``g_kt``
  the gradient of ``c_k . eta`` in ``s_t`` and ``C = sum_k c_k c_k^T`` the loss's
  curvature in the net's outputs (Martens & Grosse 2015; ``T`` positions of a
  convolution as in Grosse & Martens 2016). ``E`` is the objective's weighted mean
  over the training rows, and ``c_k`` are exact (no sampled labels).
- K-FAC inverts ``S (x) A`` through the eigenbases ``Q_S``, ``Q_A`` of its factors
  (eigenvalues ``Lambda = lambda_S lambda_A^T``); EK-FAC keeps the
  eigenbasis ``Q_S (x) Q_A`` and replaces the eigenvalues by the exact second
  moments of the per-sample Gauss-Newton factors in that basis,
  ``Lambda[o, i] = E[sum_k ((Q_S^T G_k Q_A)[o, i])^2]`` with
  ``G_k = sum_t g_kt a_t^T`` (George et al. 2018; Grosse et al. 2023).

Blocks of different layers are independent (block-diagonal). The layer's weight
decay and the damping are added to every eigenvalue: ``H^-1 v`` per layer is
``Q_S [(Q_S^T V Q_A) / (Lambda + l2 + damping)] Q_A^T``. Everything runs in the
problem's backend (a net's device), the factors fitted in one pass over the
training rows (EK-FAC: a second pass for the eigenvalues).
"""

from typing import ClassVar

from sklearn.utils import check_random_state

from skinfluence.constraints import NONE, POSITIVE_INT, RANDOM_STATE
from skinfluence.exceptions import InvalidParameterError
from skinfluence.solvers.base import HessianSolver, SingularHessianError, damping_advice

__all__ = ["EKFACSolver", "KFACSolver"]

#: Numbers per chunk of rotated per-sample factors in the EK-FAC correction of a
#: layer with several positions (a convolution): 2**25 float64 is 256 MiB.
CORRECTION_CHUNK = 2**25


class KFACSolver(HessianSolver):
    """``H^-1`` from layer-wise Kronecker factors of the Gauss-Newton matrix (K-FAC).

    For nets whose selected parameters are all weights and biases of
    ``nn.Linear`` and ``nn.Conv2d`` layers (others are refused: select the
    supported layers with ``params=`` or use ``solver="cg"``). It approximates the
    Gauss-Newton Hessian whatever the explainer's ``hessian`` option, and is
    exact for a single linear layer with squared error.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` added to every eigenvalue (``H + lambda * I``).
    n_samples : int >= 1 or None, default=None
        None builds the factors from the exact Gauss-Newton curvature of the loss
        in the net's ``K`` outputs (``K`` backward passes per block); an int uses
        that many random combinations of it per sample (an unbiased estimate, as
        kronfluence's sampled labels are for cross entropy, at ``n_samples``
        backward passes): 1 is ``K`` times cheaper for large nets.
    random_state : int, RandomState or None, default=None
        Seed of those combinations.

    Attributes
    ----------
    layers_ : list of dict
        The layers covered (see ``TorchAdapter.kronecker_layers``).
    factors_ : list of tuple
        ``(A, S)`` per layer, float64 on the net's device.
    eigenvalues_ : list of tensor
        ``Lambda`` per layer, shape ``(out, inp [+1])``, without l2 and damping.
    n_passes_ : int
        Passes over the training rows the fit made.
    """

    name = "kfac"
    corrected = False
    _parameter_table: ClassVar[dict] = {
        **HessianSolver._parameter_table,
        "n_samples": [POSITIVE_INT, NONE],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, damping=0.0, n_samples=None, random_state=None):
        super().__init__(damping)
        self.n_samples = n_samples
        self.random_state = random_state

    def _batches(self, problem, layers):
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        return problem.kronecker_batches(layers, self.n_samples, seed)

    def fit(self, problem):
        """Kronecker factors, their eigenbases and eigenvalues; returns self."""
        self.check_params()
        self._null_projector(problem)
        if not hasattr(problem, "kronecker_layers"):
            raise InvalidParameterError(
                f"solver={self.name!r} needs a torch net (skorch) with nn.Linear/nn.Conv2d "
                f"layers; this model is {getattr(problem, 'family_name', 'unknown')!r}: use "
                "solver='direct' or 'cg'."
            )
        try:
            layers = problem.kronecker_layers()
        except ValueError as exc:
            raise InvalidParameterError(f"solver={self.name!r}: {exc}") from None
        self.layers_ = layers
        sums = [None] * len(layers)
        for w, stats in self._batches(problem, layers):
            for j, (a, g) in enumerate(stats):
                T = a.shape[1]
                A = (a * w[:, None, None]).flatten(0, 1).T @ a.flatten(0, 1)
                gs = g * w.sqrt()[:, None, None, None]
                S = gs.flatten(0, 2).T @ gs.flatten(0, 2) / T
                sums[j] = (A, S) if sums[j] is None else (sums[j][0] + A, sums[j][1] + S)
        self.n_passes_ = 1
        xp = self.backend
        self.factors_ = sums
        self._bases, self.eigenvalues_ = [], []
        for A, S in sums:
            eA, QA = xp.eigh((A + A.T) / 2)
            eS, QS = xp.eigh((S + S.T) / 2)
            self._bases.append((QA, QS))
            self.eigenvalues_.append(eS.clamp(min=0)[:, None] * eA.clamp(min=0)[None, :])
        if self.corrected:
            self._correct(problem, layers)
        self._check_definite()
        return self

    def _correct(self, problem, layers):
        """EK-FAC: eigenvalues from the per-sample Gauss-Newton factors in the eigenbasis."""
        lam = [None] * len(layers)
        for w, stats in self._batches(problem, layers):
            for j, (a, g) in enumerate(stats):
                QA, QS = self._bases[j]
                aq, gq = a @ QA, g @ QS  # (b, T, inp), (b, K, T, out)
                if a.shape[1] == 1:
                    # one position: G_k = g_k a^T, so sum_k rotated G_k^2 is an outer product
                    gk = (gq[:, :, 0] ** 2).sum(1) * w[:, None]  # (b, out)
                    part = gk.T @ aq[:, 0] ** 2
                else:
                    part = 0
                    # rotated G_k = sum_t (Q_S^T g_kt)(Q_A^T a_t)^T: (b, K, out, inp) per chunk
                    step = max(1, CORRECTION_CHUNK // (gq.shape[1] * gq.shape[3] * aq.shape[2]))
                    for s in range(0, a.shape[0], step):
                        R = gq[s : s + step].transpose(2, 3) @ aq[s : s + step, None]
                        part = part + ((R * R).sum(1) * w[s : s + step, None, None]).sum(0)
                lam[j] = part if lam[j] is None else lam[j] + part
        self.eigenvalues_ = lam
        self.n_passes_ = 2

    def _check_definite(self):
        low = min(
            float(lam.min()) + ly["l2"]
            for lam, ly in zip(self.eigenvalues_, self.layers_, strict=True)
        )
        high = max(
            float(lam.max()) + ly["l2"]
            for lam, ly in zip(self.eigenvalues_, self.layers_, strict=True)
        )
        if not low + float(self.damping) > 1e-12 * max(high, 1e-300):
            advice = damping_advice(low, high)
            raise SingularHessianError(
                f"The {self.name.upper()} curvature is singular: its smallest eigenvalue "
                f"(weight decay included) is {low:.3g} and damping={float(self.damping):g}. "
                f"Pass damping={advice:.3g} (or more); a damping of about "
                f"1e-3 times the mean eigenvalue ({self._mean_eigenvalue():.3g}) is usual.",
                damping=advice,
            )

    def _mean_eigenvalue(self):
        total = sum(float(lam.sum()) for lam in self.eigenvalues_)
        return total / sum(lam.numel() for lam in self.eigenvalues_)

    def _apply(self, B):
        """``H^-1 B`` for a native ``B`` ``(n_params, m)``, layer by layer."""
        import torch  # (E)K-FAC exists for torch nets only

        out = B.new_zeros(B.shape)
        m = B.shape[1]
        for ly, lam, (QA, QS) in zip(self.layers_, self.eigenvalues_, self._bases, strict=True):
            ws, bs, o = ly["weight"], ly["bias"], ly["out"]
            G = B[ws].reshape(o, ly["inp"], m)
            if bs is not None:  # the bias as the last input column
                G = torch.cat([G, B[bs][:, None]], 1)
            G = G.permute(2, 0, 1)  # (m, out, inp [+1])
            rot = QS.T @ G @ QA
            rot = rot / (lam + ly["l2"] + float(self.damping))
            back = (QS @ rot @ QA.T).permute(1, 2, 0)
            out[ws] = back[:, : ly["inp"]].reshape(-1, m)
            if bs is not None:
                out[bs] = back[:, ly["inp"]]
        return out

    def solve(self, B):
        """The (E)K-FAC ``H^-1`` applied to ``B`` (numpy in, numpy out; native stays)."""
        B, host = self._native(B)
        squeeze = B.ndim == 1
        X = self._apply(B.reshape(B.shape[0], -1))
        return self._returned(X[:, 0] if squeeze else X, host)

    def summary(self):
        """Damping, layers covered, passes over the data and the eigenvalue range."""
        return {
            "damping": float(self.damping),
            "layers": len(self.layers_),
            "passes over the data": self.n_passes_,
            "largest eigenvalue": max(float(lam.max()) for lam in self.eigenvalues_),
            "mean eigenvalue": self._mean_eigenvalue(),
        }


class EKFACSolver(KFACSolver):
    """``H^-1`` by eigenvalue-corrected K-FAC (EK-FAC).

    The eigenbasis of :class:`KFACSolver`, with the eigenvalues replaced by the
    exact diagonal of the Gauss-Newton matrix in that basis (one more pass over
    the training rows). Same layers, damping and refusals as K-FAC.

    Parameters
    ----------
    damping : float, default=0.0
        ``lambda`` added to every eigenvalue (``H + lambda * I``).
    n_samples : int >= 1 or None, default=None
        As for :class:`KFACSolver` (both passes).
    random_state : int, RandomState or None, default=None
        Seed of the sampled combinations.
    """

    name = "ekfac"
    corrected = True
