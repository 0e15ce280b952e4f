"""The arrays solvers compute in: numpy on the host, or torch on a net's device.

A model adapter names its backend (:attr:`ModelAdapter.backend`); solvers and
``compute.py`` do their vector algebra through it, so that for a net every
iteration stays on the net's device and only final results cross to the host
(:meth:`Backend.to_numpy`, the one way back, which a test can count).

Solver vectors are float64 in both backends: CG recurrences and Rayleigh
quotients lose the answer in float32 (a float32 net's HVPs are computed in its
own dtype by the adapter, then accumulated in float64 here).

This is a deliberately small backend of our own rather than the array API
standard: solvers need a dozen operations (products, column norms, QR, eigh,
Cholesky, random normals), and the two namespaces differ exactly where those
sit (``np.linalg.qr`` vs ``torch.linalg.qr`` keyword names, generators, dtypes).
"""

import numpy as np

__all__ = ["NUMPY", "Backend", "DeviceState", "NumpyBackend", "TorchBackend", "backend_of"]


class Backend:
    """Array operations solvers need, in one namespace.

    Attributes
    ----------
    name : str
        "numpy" or "torch".
    """

    name = "base"

    def asarray(self, A):
        """``A`` (numpy, scipy sparse densified, or a tensor) as a float64 native array."""
        raise NotImplementedError

    def is_native(self, A):
        """Whether ``A`` is already an array of this backend."""
        raise NotImplementedError

    def to_numpy(self, A):
        """A native array as float64 numpy (the one host transfer)."""
        raise NotImplementedError

    def zeros(self, shape):
        raise NotImplementedError

    def normal(self, shape, seed):
        """Standard normals of ``shape`` from integer ``seed`` (reproducible)."""
        raise NotImplementedError

    def col_dots(self, A, B):
        """``sum_i A[i, j] * B[i, j]`` for every column ``j``, ``(m,)``."""
        return (A * B).sum(axis=0)

    def row_dots(self, A, B):
        """``sum_j A[i, j] * B[i, j]`` for every row ``i``, ``(n,)``."""
        return (A * B).sum(axis=1)

    def all_finite(self, A):
        raise NotImplementedError

    def copy(self, A):
        raise NotImplementedError

    def norm(self, A):
        """Frobenius norm as a Python float."""
        return self.scalar((A * A).sum()) ** 0.5

    def qr(self, A):
        """Orthonormal ``Q`` of the reduced QR of ``A``."""
        raise NotImplementedError

    def eigh(self, A):
        """Eigenvalues (ascending) and eigenvectors of symmetric ``A``."""
        raise NotImplementedError

    def flatnonzero(self, mask):
        raise NotImplementedError

    def cho_solve(self, L, B):
        """``(L L^T)^-1 B`` for lower-triangular ``L``."""
        raise NotImplementedError

    def flip(self, A, axis):
        """``A`` reversed along ``axis``."""
        raise NotImplementedError

    def concatenate(self, arrays, axis):
        raise NotImplementedError

    def scalar(self, a):
        """A 0-d native value as a Python float (a device sync, no array transfer)."""
        return float(a)


class NumpyBackend(Backend):
    """float64 numpy on the host."""

    name = "numpy"

    def asarray(self, A):
        if hasattr(A, "toarray"):
            A = A.toarray()
        if hasattr(A, "detach"):
            A = A.detach().cpu().numpy()
        return np.asarray(A, dtype=np.float64)

    def is_native(self, A):
        return isinstance(A, np.ndarray)

    def to_numpy(self, A):
        return np.asarray(A, dtype=np.float64)

    def zeros(self, shape):
        return np.zeros(shape)

    def normal(self, shape, seed):
        return np.random.default_rng(seed).standard_normal(shape)

    def all_finite(self, A):
        return bool(np.isfinite(A).all())

    def copy(self, A):
        return A.copy()

    def qr(self, A):
        return np.linalg.qr(A)[0]

    def eigh(self, A):
        return np.linalg.eigh(A)

    def flatnonzero(self, mask):
        return np.flatnonzero(mask)

    def cho_solve(self, L, B):
        import scipy.linalg as sla

        return sla.cho_solve((L, True), B, check_finite=False)

    def flip(self, A, axis):
        return np.flip(A, axis)

    def concatenate(self, arrays, axis):
        return np.concatenate(arrays, axis)


class TorchBackend(Backend):
    """float64 torch tensors on one device (a net's).

    Parameters
    ----------
    device : torch.device
        Where every array lives.
    """

    name = "torch"

    def __init__(self, device):
        import torch

        self._torch = torch
        self.device = torch.device(device)

    def asarray(self, A):
        torch = self._torch
        if hasattr(A, "toarray"):
            A = A.toarray()
        if isinstance(A, torch.Tensor):
            return A.detach().to(device=self.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(A, dtype=np.float64), device=self.device)

    def is_native(self, A):
        return isinstance(A, self._torch.Tensor)

    def to_numpy(self, A):
        return A.detach().to(dtype=self._torch.float64).cpu().numpy()

    def zeros(self, shape):
        return self._torch.zeros(shape, dtype=self._torch.float64, device=self.device)

    def normal(self, shape, seed):
        # drawn on the host so that a seed gives the same numbers on every device
        return self.asarray(np.random.default_rng(seed).standard_normal(shape))

    def all_finite(self, A):
        return bool(self._torch.isfinite(A).all())

    def copy(self, A):
        return A.clone()

    def qr(self, A):
        return self._torch.linalg.qr(A, mode="reduced")[0]

    def eigh(self, A):
        return self._torch.linalg.eigh(A)

    def flatnonzero(self, mask):
        return self._torch.nonzero(mask).reshape(-1)

    def cho_solve(self, L, B):
        return self._torch.cholesky_solve(B, L, upper=False)

    def flip(self, A, axis):
        return self._torch.flip(A, (axis,))

    def concatenate(self, arrays, axis):
        return self._torch.cat(arrays, axis)

    def __getstate__(self):
        return {"device": str(self.device)}

    def __setstate__(self, state):
        self.__init__(_available(state["device"]))

    def __repr__(self):
        return f"TorchBackend(device={str(self.device)!r})"


def _available(device):
    """``device``, or "cpu" for a CUDA device this machine does not have."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "cpu"
    return str(device)


def _map_tensors(obj, fn):
    """``obj`` with ``fn`` applied to every torch tensor in its dicts, lists and tuples."""
    if hasattr(obj, "detach") and hasattr(obj, "device"):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _first_device(obj):
    found = []
    _map_tensors(obj, lambda t: found.append(str(t.device)) or t)
    return found[0] if found else None


class DeviceState:
    """Pickling that moves an object's tensors to the CPU and back to their device.

    An explainer fitted on a GPU unpickles anywhere: its tensors come back on the
    device they were on, or on the CPU where that device does not exist.
    """

    def __getstate__(self):
        state = dict(super().__getstate__() or {})
        state["_tensor_device"] = _first_device(state)
        return _map_tensors(state, lambda t: t.cpu())

    def __setstate__(self, state):
        device = state.pop("_tensor_device", None)
        if device is not None:
            target = _available(device)
            state = _map_tensors(state, lambda t: t.to(target))
        setter = getattr(super(), "__setstate__", None)
        if setter is None:
            self.__dict__.update(state)
        else:
            setter(state)


#: The host backend (the closed-form models' and every adapter's default).
NUMPY = NumpyBackend()


def backend_of(problem):
    """The backend of a model adapter (numpy for one that does not name its own)."""
    return getattr(problem, "backend", None) or NUMPY
