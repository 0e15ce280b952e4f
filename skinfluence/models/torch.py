"""Adapter for torch modules wrapped by skorch: per-sample gradients with torch.func.

Per-sample losses go through the net's own ``get_loss`` (so ``NLLLoss`` on
probabilities, ``BCEWithLogitsLoss`` and user overrides behave as in training),
evaluated on one sample at a time under ``vmap``. The objective is

    R(theta) = (1/S) sum_i s_i L(z_i, theta) + 1/2 sum_j lambda_j theta_j^2

with ``s_i`` the sample weight times the criterion's class weight and
``lambda_j`` the L2 weight decay the optimizer applied to parameter ``j``.
Heavy products stay on the net's device; the solver-facing interface speaks
float64 numpy.
"""

import copy
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_array, check_random_state
from torch.func import functional_call, grad, jvp, vjp, vmap

from skinfluence.backend import TorchBackend
from skinfluence.models.base import ModelAdapter, as_target_array, split_pipeline

HESSIAN_KINDS = ("exact", "gauss-newton")
#: Identity columns per HVP when the dense Hessian is formed.
HESSIAN_CHUNK = 64


class _Block:
    __slots__ = ("X", "y")

    def __init__(self, X, y):
        self.X = X
        self.y = y


@contextmanager
def _eval_mode(module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _select(names, params):
    if params is None:
        return names
    prefixes = (params,) if isinstance(params, str) else tuple(params)

    def matches(n, p):
        return n == p or n.startswith(p + ".")

    unmatched = [p for p in prefixes if not any(matches(n, p) for n in names)]
    if unmatched:
        raise ValueError(
            f"params={params!r}: {', '.join(map(repr, unmatched))} matches no trainable "
            f"parameter (give a name or a module prefix such as 'fc2'); the trainable ones "
            f"are {names}."
        )
    return [n for n in names if any(matches(n, p) for p in prefixes)]


def _check_device(device):
    """``device`` as a torch.device that exists on this machine, else a ValueError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device ({exc}); use e.g. 'cpu' or 'cuda'."
        ) from None
    if dev.type == "meta":
        raise ValueError(f"device={device!r} holds no data (a meta device); use 'cpu' or 'cuda'.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but torch.cuda.is_available() is False on this machine "
                "(no GPU, or a CPU build of torch); use device='cpu' or None."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s)."
            )
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device={device!r} but MPS is not available; use device='cpu'.")
    return dev


class TorchAdapter(ModelAdapter):
    """Gradients, Hessian-vector products and the Hessian of a fitted skorch net.

    Parameters
    ----------
    estimator : skorch.NeuralNet or Pipeline ending in one
        The fitted (initialised) net.
    X, y : array-like
        The data the net was trained on.
    sample_weight : array-like of shape (n_samples,) or None
        Per-sample weights of the training objective.
    params : str, sequence of str or None
        Parameter names (or module prefixes such as ``"fc2"``) to take influence
        over; None means every parameter with ``requires_grad``.
    hessian : {"exact", "gauss-newton"}
        The Hessian of the objective, or its Gauss-Newton approximation
        ``J^T H_out J`` (positive semi-definite for convex losses).
    dtype : None, "float64", "float32" or "bfloat16"
        None computes in the module's dtype; the others in that dtype (on
        copies: the net is never changed).
    device : str, torch.device or None
        Where to compute; None uses the device of the module's parameters.
    hessian_samples : int or None
        Estimate the Hessian on a random subset of this many training points.
    random_state : int, RandomState or None
        Seed of that subset.
    blocking : skinfluence.blocking.Blocking or None
        The memory policy for the sweeps over the training set (HVPs, Hessian
        columns, objective gradient); None uses scikit-learn's ``working_memory``.
    copy_X : bool
        Keep private copies of the training tensors.
    matmul_precision : {"highest", "tf32", "bfloat16"}
        Precision of the products of per-sample gradients with solved directions
        (:meth:`gradients_dot`): the net's dtype, under torch's global matmul
        settings; TF32 tensor cores for a float32 net on CUDA (torch's global flag,
        switched on for the product and restored: not for threads sharing the
        process); or both factors rounded to bfloat16, each layer's product
        accumulated in float32 by the GEMM, returned in bfloat16 and the layers
        summed in float32. Solvers, HVPs and the gradients themselves are
        unaffected.
    """

    family_name = "torch"
    matmul_precision = "highest"

    def __init__(
        self,
        estimator,
        X,
        y,
        sample_weight=None,
        *,
        params=None,
        hessian="exact",
        dtype=None,
        device=None,
        hessian_samples=None,
        random_state=None,
        blocking=None,
        copy_X=True,
        matmul_precision="highest",
    ):
        self._setup_net(estimator, params, hessian, dtype, device, blocking)
        self.matmul_precision = matmul_precision
        self._train = self.prepare(X, y)
        if copy_X:  # torch.as_tensor shares memory with a matching numpy array
            self._train = _Block(self._train.X.clone(), self._train.y.clone())
        n = self.n_samples(self._train)
        self.n_train = n
        s = self._sample_weights(self._train, sample_weight)
        S = s.sum()
        if not S > 0:
            raise ValueError("The sample weights sum to zero: there is no objective.")
        self.removal_weights = s / S
        self._w = torch.as_tensor(self.removal_weights, dtype=self.dtype, device=self.device)
        self._reduction = self._check_decomposable()
        self.lam = self._l2_strengths(S)
        self._lam_t = torch.as_tensor(self.lam, dtype=self.dtype, device=self.device)
        self._warn_about_training_split()
        self._hessian_idx = None
        if hessian_samples is not None and hessian_samples < n:
            rng = check_random_state(random_state)
            self._hessian_idx = np.sort(rng.choice(n, size=int(hessian_samples), replace=False))

    @property
    def module(self):
        """The net's module (a property, so that pickling goes through skorch).

        A block view (:meth:`on_block`) has a module of its own: ``functional_call``
        swaps a module's parameters for the duration of a call, and ``_eval_mode``
        flips its training flag, so a module shared between a dask worker's threads
        (tasks, and the pickling of the template for another worker) would be seen
        mid-swap.
        """
        own = self.__dict__.get("_own_module")
        return self.net.module_ if own is None else own

    # -- training rows held elsewhere (skinfluence.dask) ---------------------------
    @classmethod
    def template(
        cls, estimator, *, params=None, hessian="exact", dtype=None, device=None, blocking=None
    ):
        """The adapter of a fitted net without training rows, for rows held elsewhere.

        What needs no data is set up as :class:`TorchAdapter` sets it up (the
        parameters, device, dtype, classes); :meth:`set_objective` then fixes the
        whole objective's total weight and reduction, and :meth:`on_block` gives
        adapters over pieces of the training set (a dask chunk each).

        Parameters
        ----------
        estimator : skorch.NeuralNet or Pipeline ending in one
            The fitted (initialised) net.
        params, hessian, dtype, device, blocking
            As for :class:`TorchAdapter`.

        Returns
        -------
        template : TorchAdapter
            An adapter with no training rows (``train_data`` is None).
        """
        self = cls.__new__(cls)
        self._setup_net(estimator, params, hessian, dtype, device, blocking)
        self._train, self.n_train, self._hessian_idx, self._reduction = None, 0, None, None
        self.total_weight = None  # set_objective fixes it
        self.removal_weights = np.empty(0)
        self._w = torch.zeros(0, dtype=self.dtype, device=self.device)
        self.lam = np.zeros(self.n_params)
        self._lam_t = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        return self

    def set_objective(self, total_weight, reduction):
        """Fix the whole objective's total weight ``S`` and the net's reduction.

        The L2 strengths follow from both, as in :class:`TorchAdapter`, which warns
        here as it does about AdamW's decay and a net whose ``train_split`` held
        rows out.

        Parameters
        ----------
        total_weight : float
            ``S``: the sum over all training rows of sample weight times class weight.
        reduction : {"mean", "sum"}
            How the net reduces a batch's losses (what :class:`TorchAdapter` checks on
            its rows).
        """
        self._reduction = reduction
        self.total_weight = float(total_weight)
        self.lam = self._l2_strengths(self.total_weight)
        self._lam_t = torch.as_tensor(self.lam, dtype=self.dtype, device=self.device)
        self._warn_about_training_split()

    def on_block(self, data, sample_weight=None, *, total_weight=None, penalty=True):
        """This adapter over the prepared rows ``data``, as a share of the whole objective.

        Each row's objective weight is ``s_i / S``: ``s_i`` its sample weight times
        the criterion's class weight, ``S`` the whole objective's total weight, so
        that the block's sums are its share of the whole objective's. The view
        computes on a module of its own (see :attr:`module`).

        Parameters
        ----------
        data : prepared block
            The rows, as :meth:`prepare` gives them.
        sample_weight : array-like of shape (n_rows,) or None
            Their sample weights (ones for None).
        total_weight : float or None, default=None
            ``S``; None means the one :meth:`set_objective` fixed.
        penalty : bool, default=True
            Keep the whole objective's L2 term, or drop it (the block's data term
            alone: what a sum over blocks adds once).

        Returns
        -------
        view : TorchAdapter
        """
        s = self._sample_weights(data, sample_weight)
        view = copy.copy(self)
        # the parameters and buffers come from _params and _consts at every call: the
        # copy's own tensors are never read, it is only what functional_call swaps into
        view._own_module = copy.deepcopy(self.net.module_)
        if not penalty:
            view.lam = np.zeros(self.n_params)
            view._lam_t = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        view._train = data
        view.n_train = self.n_samples(data)
        S = self.total_weight if total_weight is None else float(total_weight)
        view.removal_weights = s / S
        view._w = torch.as_tensor(view.removal_weights, dtype=self.dtype, device=self.device)
        view._hessian_idx = None
        return view

    def _sample_weights(self, data, sample_weight):
        n = self.n_samples(data)
        s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        return s * self._class_weights(data.y)

    def check_reduction(self):
        """``"mean"`` or ``"sum"``: how the net reduces its rows' losses (else raise)."""
        return self._check_decomposable()

    # -- setup -------------------------------------------------------------------
    def _setup_net(self, estimator, params, hessian, dtype, device, blocking):
        """What needs the net only: its parameters, device, dtype and classes."""
        self.transform, net = split_pipeline(estimator)
        if not getattr(net, "initialized_", False):
            raise NotFittedError(f"The {type(net).__name__} is not initialized: fit it first.")
        if hessian not in HESSIAN_KINDS:
            raise ValueError(f"hessian must be one of {HESSIAN_KINDS}, got {hessian!r}.")
        self.net = net
        self.hessian_kind = hessian
        self.blocking = blocking
        self._setup_params(params, dtype, device)
        mro = [c.__name__ for c in type(net).__mro__]
        self._binary = "NeuralNetBinaryClassifier" in mro
        self._classifier = "NeuralNetClassifier" in mro
        self.classes_ = self._classes()

    def _setup_params(self, params, dtype, device):
        module = self.module
        named = dict(module.named_parameters())
        trainable = [n for n, p in named.items() if p.requires_grad]
        if not trainable:
            raise ValueError(
                f"{type(module).__name__} has no parameter with requires_grad=True: there "
                "is nothing to take influence over."
            )
        self.param_names = _select(trainable, params)
        first = named[self.param_names[0]]
        self.device = _check_device(device) if device is not None else first.device
        tensors = [*named.items(), *module.named_buffers()]
        bad = [n for n, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise ValueError(
                f"The net's weights contain NaN or infinity ({', '.join(bad[:5])}): training "
                "diverged or the weights were edited. Retrain it (a smaller learning rate, "
                "standardised inputs) before explaining it."
            )
        if dtype in (None, "model"):
            self.dtype = first.dtype
        elif dtype in ("float64", np.float64, torch.float64):
            self.dtype = torch.float64
        elif dtype in ("float32", "bfloat16"):
            self.dtype = getattr(torch, dtype)
        else:
            raise ValueError(
                f"dtype must be None, 'float64', 'float32' or 'bfloat16', got {dtype!r}."
            )

        def cast(t):
            # a copy always: editing the net's weights later must not change results
            t = t.detach().to(self.device, copy=True)
            return t.to(self.dtype) if t.is_floating_point() else t

        self._params = {n: cast(named[n]) for n in self.param_names}
        consts = {n: cast(p) for n, p in named.items() if n not in self._params}
        consts.update({n: cast(b) for n, b in module.named_buffers()})
        self._consts = consts
        self._shapes = [self._params[n].shape for n in self.param_names]
        self._numels = [self._params[n].numel() for n in self.param_names]
        self.n_params = int(sum(self._numels))
        self.theta = self._flat(self._params).double().cpu().numpy()

    def parameter_labels(self, feature_names):
        """Labels of the flat parameters: ``"fc1.weight[2, 0]"`` (name, element)."""
        labels = []
        for name, shape in zip(self.param_names, self._shapes, strict=True):
            for element in np.ndindex(*shape):
                labels.append(f"{name}[{', '.join(map(str, element))}]" if shape else name)
        return labels

    def _classes(self):
        if self._binary:
            return np.array([0, 1])
        try:
            classes = self.net.classes_
        except AttributeError:
            return None
        return None if classes is None else np.asarray(classes)

    def _class_weights(self, y):
        weight = getattr(self.net.criterion_, "weight", None)
        if weight is None or self._binary:
            return np.ones(len(y))
        return weight.detach().double().cpu().numpy()[y.cpu().numpy()]

    def _l2_strengths(self, S):
        """Per-parameter L2 coefficient in the mean-form objective."""
        opt = getattr(self.net, "optimizer_", None)
        lam = np.zeros(self.n_params)
        if opt is None:
            return lam
        decay = {}
        for group in opt.param_groups:
            for p in group["params"]:
                decay[id(p)] = float(group.get("weight_decay", 0.0) or 0.0)
        named = dict(self.module.named_parameters())
        if isinstance(opt, torch.optim.AdamW) and any(decay.values()):
            warnings.warn(
                "The net was trained with AdamW, whose decoupled weight decay is not an "
                "L2 term of any objective: it is left out of the Hessian. Influence "
                "assumes an optimum; pass damping>0 or train with SGD/Adam weight_decay.",
                UserWarning,
                stacklevel=4,
            )
            return lam
        # a summed loss, sum_i s_i L_i + wd/2 |theta|^2, is S times the mean form
        scale = 1.0 if self._reduction == "mean" else 1.0 / S
        start = 0
        for name, size in zip(self.param_names, self._numels, strict=True):
            lam[start : start + size] = scale * decay.get(id(named[name]), 0.0)
            start += size
        return lam

    def _warn_about_training_split(self):
        split = getattr(self.net, "train_split", None)
        if split is not None:
            warnings.warn(
                f"The net has train_split={split!r}: skorch held out part of the data "
                "it was fitted on for validation, so its parameters are not fitted to "
                "all of X. Train with train_split=None, or give the explainer exactly "
                "the samples the net was trained on.",
                UserWarning,
                stacklevel=4,
            )

    # -- data --------------------------------------------------------------------
    def prepare(self, X, y):
        if self.transform is not None:
            X = self.transform.transform(X)
        if isinstance(X, torch.Tensor):
            Xt = X.detach().to(self.device)
        else:
            X = check_array(
                X,
                allow_nd=True,
                dtype=None,
                ensure_all_finite=True,
                input_name="X" if self.transform is None else "X after the Pipeline's steps",
            )
            Xt = torch.as_tensor(np.asarray(X), device=self.device)
        if Xt.is_floating_point():
            Xt = Xt.to(self.dtype)
            if not torch.isfinite(Xt).all():
                raise ValueError("Input X contains NaN or infinity.")
        return _Block(Xt, self._encode_y(y, Xt.shape[0]))

    def _encode_y(self, y, n):
        y = as_target_array(y, n)
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        classifier = self._classifier or self.classes_ is not None
        if classifier and not self._binary and y.dtype.kind in "fc":
            # a classifier's criterion takes class indices: integral floats are cast,
            # anything else is not a label
            if not np.all(y == np.round(y)):
                raise ValueError(
                    "y holds non-integer values, but the net is a classifier whose criterion "
                    "takes class indices; pass integer labels."
                )
            y = y.astype(np.int64)
        if self.classes_ is not None:
            unseen = ~np.isin(y, self.classes_)
            if unseen.any():
                raise ValueError(
                    f"y contains labels not seen during fit: {np.unique(y[unseen])[:10].tolist()}"
                    f"; known classes are {self.classes_.tolist()}."
                )
        if self._binary or np.issubdtype(y.dtype, np.floating):
            return torch.as_tensor(y, device=self.device).to(self.dtype)
        return torch.as_tensor(y.astype(np.int64), device=self.device)

    def n_samples(self, data):
        return int(data.X.shape[0])

    def take(self, data, index):
        if not isinstance(index, slice):
            index = torch.as_tensor(np.asarray(index), device=self.device)
        return _Block(data.X[index], data.y[index])

    @property
    def train_data(self):
        return self._train

    # -- functional model ----------------------------------------------------------
    def _forward(self, p, x):
        out = functional_call(self.module, {**p, **self._consts}, (x,))
        if isinstance(out, tuple):
            out = out[0]
        if self._binary:
            out = out.reshape(-1)
        return out

    def _loss_from_out(self, out, y):
        return self.net.get_loss(out, y, X=None, training=False)

    def _loss_one(self, p, x, y):
        out = self._forward(p, x.unsqueeze(0))
        return self._loss_from_out(out, y.unsqueeze(0)).reshape(())

    def _losses(self, p, data):
        # one batched forward (native kernels), per-sample losses of its rows
        out = self._forward(p, data.X)
        return vmap(self._loss_of_row)(out, data.y)

    def _loss_of_row(self, out, y):
        return self._loss_from_out(out.unsqueeze(0), y.unsqueeze(0)).reshape(())

    def _check_decomposable(self):
        """ "mean" or "sum": how the net reduces per-sample losses; else raise.

        Checked on two batches of different sizes (the first 16 rows, and up to 256
        rows spread over the whole training set), which must agree.
        """
        n = self.n_train
        first = np.arange(min(n, 16))
        spread = np.unique(np.linspace(0, n - 1, num=min(n, 256)).round().astype(int))
        kinds = {self._reduction_on(self.take(self._train, idx)) for idx in (first, spread)}
        if len(kinds) > 1:
            raise ValueError(
                "The net's loss is not per-sample decomposable: it reduces a batch of "
                f"{len(first)} rows and one of {len(spread)} rows differently ({sorted(kinds)})."
                " Influence functions need R = mean (or sum) of L(z_i)."
            )
        return kinds.pop()

    def _run_forward(self, fn):
        """Call ``fn()``, naming a failure of the net's forward pass on the user's data."""
        try:
            return fn()
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            X, y = self._train.X, self._train.y

            def name(t):
                return str(t.dtype).replace("torch.", "")

            raise ValueError(
                f"The net failed on the training data (X of dtype {name(X)}, shape "
                f"{tuple(X.shape)}; y of dtype {name(y)}; the net computes in "
                f"{str(self.dtype).replace('torch.', '')}): {' '.join(str(exc).split())[:300]}. "
                "Pass X and y with the dtypes and shapes the net was trained on (e.g. "
                "X.astype(np.float32))."
            ) from exc

    def _reduction_on(self, blk):
        with _eval_mode(self.module), torch.no_grad():
            per = self._run_forward(lambda: self._losses(self._params, blk))
            batch = self._run_forward(
                lambda: self._loss_from_out(self._forward(self._params, blk.X), blk.y)
            )
        if not (torch.isfinite(per).all() and torch.isfinite(batch).all()):
            raise ValueError(
                "The net's loss is inf or NaN on the training data (at the fitted weights): "
                "check the inputs' scale and the labels, or retrain the net."
            )
        if batch.numel() != 1:
            raise ValueError(
                "net.get_loss does not return a scalar for a batch: influence needs the "
                "training objective as a mean (or sum) of per-sample losses."
            )
        s = torch.as_tensor(self._class_weights(blk.y), dtype=self.dtype, device=self.device)
        mean = (per * s).sum() / s.sum()
        # rounding of the batch reduction in the net's dtype (bf16 keeps 8 bits)
        tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(self.dtype, 5e-2)
        if torch.allclose(batch.reshape(()), mean, rtol=tol, atol=tol):
            return "mean"
        if torch.allclose(batch.reshape(()), (per * s).sum(), rtol=tol, atol=tol):
            return "sum"
        raise ValueError(
            "The net's loss is not per-sample decomposable: the loss of a batch "
            f"({batch.item():.6g}) is neither the mean ({mean.item():.6g}) nor the sum of "
            "the per-sample losses. Influence functions need R = mean of L(z_i)."
        )

    # -- flat <-> dict -------------------------------------------------------------
    def _flat(self, d, batch=False):
        if batch:
            first = d[self.param_names[0]]
            return torch.cat([d[n].reshape(first.shape[0], -1) for n in self.param_names], 1)
        return torch.cat([d[n].reshape(-1) for n in self.param_names])

    def _unflat(self, v, batch=False):
        out, start = {}, 0
        for name, shape, size in zip(self.param_names, self._shapes, self._numels, strict=True):
            piece = v[..., start : start + size]
            out[name] = piece.reshape(*v.shape[:-1], *shape) if batch else piece.reshape(shape)
            start += size
        return out

    def asarray(self, A):
        """A float array (numpy or a tensor) in the adapter's device and dtype."""
        if isinstance(A, torch.Tensor):
            return A.detach().to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(A), dtype=self.dtype, device=self.device)

    @property
    def backend(self):
        """float64 torch on the net's device: what solvers iterate in."""
        if getattr(self, "_backend", None) is None or self._backend.device != self.device:
            self._backend = TorchBackend(self.device)
        return self._backend

    def gradients(self, data):
        """Per-sample gradients ``(n, n_params)`` as a float64 tensor on the device."""
        with _eval_mode(self.module):
            return self._grads(data).to(torch.float64)

    @property
    def itemsize(self):
        """Bytes per number in the net's compute dtype (4 for float32)."""
        return torch.finfo(self.dtype).bits // 8

    def _blocks(self, data, bytes_per_row):
        for idx in self._row_slices(self.n_samples(data), bytes_per_row):
            yield self.take(data, idx), idx

    def _row_bytes(self, factor=3):
        return factor * self.n_params * self.itemsize

    # -- interface -------------------------------------------------------------------
    def per_sample_losses(self, data):
        with _eval_mode(self.module), torch.no_grad():
            return self._losses(self._params, data).double().cpu().numpy()

    def _grad_dict(self, blk):
        return vmap(grad(self._loss_one), in_dims=(None, 0, 0))(self._params, blk.X, blk.y)

    def _grads(self, blk):
        return self._flat(self._grad_dict(blk), batch=True)

    def per_sample_gradients(self, data):
        with _eval_mode(self.module):
            return self._grads(data).double().cpu().numpy()

    def _product(self, A, B):
        """``A @ B`` at :attr:`matmul_precision`.

        A bfloat16 product comes back in float32 (or the net's dtype when wider), so
        that the layers' parts add up in it.
        """
        if self.matmul_precision == "bfloat16":
            wide = torch.promote_types(self.dtype, torch.float32)
            return (A.to(torch.bfloat16) @ B.to(torch.bfloat16)).to(wide)
        if self.matmul_precision == "tf32" and A.device.type == "cuda":
            flags = torch.backends.cuda.matmul
            before, flags.allow_tf32 = flags.allow_tf32, True
            try:
                return A @ B
            finally:
                flags.allow_tf32 = before
        return A @ B

    def gradients_dot(self, data, M, out=None):
        # parameter by parameter: the (n, n_params) gradient matrix is never
        # concatenated, which would copy it once more
        with _eval_mode(self.module):
            g = self._grad_dict(data)
            res, start = None, 0
            for name, size in zip(self.param_names, self._numels, strict=True):
                part = self._product(g[name].reshape(g[name].shape[0], -1), M[start : start + size])
                res = part if res is None else res + part
                start += size
            res = res.double().cpu().numpy()
        if out is None:
            return res
        out[...] = res
        return out

    def _hessian_data(self):
        if self._hessian_idx is None:
            return self._train, self._w
        w = self._w[torch.as_tensor(self._hessian_idx, device=self.device)]
        # the subset stands for the whole data term (weight sum 1, less for a reweighted view)
        return self.take(self._train, self._hessian_idx), w * (self._w.sum() / w.sum())

    def _block_objective(self, blk, w):
        return lambda p: (self._losses(p, blk) * w).sum()

    def _hvp_block(self, blk, w, Vd):
        """Data part of H @ V for one block; ``Vd`` is a batched dict (m, ...)."""
        if self.hessian_kind == "gauss-newton":
            return self._gnvp_block(blk, w, Vd)
        f = self._block_objective(blk, w)
        try:
            return vmap(lambda v: jvp(grad(f), (self._params,), (v,))[1])(Vd)
        except (RuntimeError, NotImplementedError):
            return self._hvp_double_backward(f, Vd)

    def _hvp_double_backward(self, f, Vd):
        """Reverse-over-reverse fallback for modules without forward-mode support."""
        params = {n: t.detach().clone().requires_grad_(True) for n, t in self._params.items()}
        loss = f(params)
        gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        m = next(iter(Vd.values())).shape[0]
        cols = []
        for j in range(m):
            hv = torch.autograd.grad(
                gs,
                list(params.values()),
                grad_outputs=[Vd[n][j] for n in params],
                retain_graph=j < m - 1,
            )
            cols.append(dict(zip(params, hv, strict=True)))
        return {n: torch.stack([c[n] for c in cols]) for n in params}

    def _gnvp_block(self, blk, w, Vd):
        def out_fn(p):
            return self._forward(p, blk.X)

        def one(v):
            out, jv = jvp(out_fn, (self._params,), (v,))
            h = vmap(lambda o, y, t: jvp(grad(lambda o_: self._loss_of_row(o_, y)), (o,), (t,))[1])(
                out, blk.y, jv
            )
            h = h * w.reshape(-1, *([1] * (h.dim() - 1)))
            _, pull = vjp(out_fn, self._params)
            return pull(h)[0]

        return vmap(one)(Vd)

    def _gauss_newton_factor(self):
        """``(F, s)`` with ``F^T diag(s) F`` the data part of the Gauss-Newton matrix.

        One row per Hessian sample ``i`` and net output ``k``:
        ``sqrt(w_i |e_ik|) u_ik^T J_i``, where ``C_i = sum_k e_ik u_ik u_ik^T`` is
        the loss's curvature in the sample's ``K`` outputs and ``J_i`` the outputs'
        Jacobian; ``s`` holds the signs of ``e_ik``. Built once (``K`` backward
        passes per sample, vectorised) and kept while the parameters, weights and
        rows stay the ones it was built for, so that every later Gauss-Newton
        product is two GEMMs instead of a forward, a JVP and a backward pass per
        vector. None when it would not fit ``working_memory`` (or a weight is
        negative): products are then streamed.
        """
        key = (self._params, self._w, self._train, self._hessian_idx)
        cached = getattr(self, "_gn_cache", None)
        if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)):
            return cached[1]
        data, w = self._hessian_data()
        K, loss_flat = self._flat_output_loss()
        width = K * self.n_params * self.itemsize
        if self.n_samples(data) * width > self._budget_bytes() or bool((w < 0).any()):
            self._gn_cache = (key, None)
            return None

        def rows_of(p, x, cot):  # the K rows of one sample: u^T J for each cotangent u
            _, pull = vjp(lambda p_: self._forward(p_, x.unsqueeze(0)).reshape(-1), p)
            return vmap(pull)(cot)[0]

        n = self.n_samples(data)
        F = torch.empty(n * K, self.n_params, dtype=self.dtype, device=self.device)
        sign = torch.empty(n * K, dtype=self.dtype, device=self.device)
        with _eval_mode(self.module):
            for blk, idx in self._blocks(data, 3 * width):
                b, start = self.n_samples(blk), idx.start * K
                with torch.no_grad():
                    eta = self._forward(self._params, blk.X).reshape(b, K)
                C = vmap(torch.func.hessian(loss_flat))(eta, blk.y).double()
                e, U = torch.linalg.eigh((C + C.transpose(1, 2)) / 2)
                scale = (e.abs() * w[idx].double()[:, None]).sqrt()  # (b, K)
                cot = (U * scale[:, None, :]).transpose(1, 2).to(self.dtype)  # (b, K, K)
                g = vmap(rows_of, in_dims=(None, 0, 0))(self._params, blk.X, cot)
                col = 0
                for name, size in zip(self.param_names, self._numels, strict=True):
                    F[start : start + b * K, col : col + size] = g.pop(name).reshape(b * K, -1)
                    col += size
                sign[start : start + b * K] = torch.sign(e).reshape(-1)
        self._gn_cache = (key, (F, sign))
        return F, sign

    def hvp(self, V, indices=None):
        """``H V``; a tensor ``V`` (float64, on the device) gives a tensor back, unmoved.

        numpy in, float64 numpy out (the host interface); the native form is what
        solvers iterate with, so their vectors never leave the device. A
        Gauss-Newton product over the Hessian's rows uses the cached factor of
        :meth:`_gauss_newton_factor` where it fits the memory budget.
        """
        native = isinstance(V, torch.Tensor)
        if not native:
            V = np.asarray(V, dtype=np.float64)
        squeeze = V.ndim == 1
        V = V.reshape(self.n_params, -1)
        Vt = self.asarray(V.T)  # (m, P) in the net's dtype
        Vd = self._unflat(Vt, batch=True)
        factor = None
        if indices is None and self.hessian_kind == "gauss-newton":
            factor = self._gauss_newton_factor()
        if factor is not None:
            F, sign = factor
            total = ((F @ Vt.T) * sign[:, None]).T @ F
        else:
            if indices is None:
                data, w = self._hessian_data()
            else:  # a mini-batch Hessian (for stochastic solvers)
                data = self.take(self._train, indices)
                w = self._w[torch.as_tensor(np.asarray(indices), device=self.device)]
                w = w * (self._w.sum() / w.sum())
            total = torch.zeros_like(Vt)
            m = Vt.shape[0]
            with _eval_mode(self.module):
                for blk, idx in self._blocks(data, self._row_bytes(4) * max(m, 1)):
                    total += self._flat(self._hvp_block(blk, w[idx], Vd), batch=True)
        total += self._lam_t * Vt
        res = total.T.to(torch.float64)
        if not native:
            res = res.cpu().numpy()
        return res[:, 0] if squeeze else res

    # -- Kronecker-factored curvature (solver="kfac"/"ekfac") ----------------------
    def kronecker_layers(self):
        """The selected parameters as layers for Kronecker-factored curvature.

        Every selected parameter must be the weight or bias of an ``nn.Linear`` or
        an ``nn.Conv2d`` (zero padding, one group); anything else is refused with
        the parameters named.

        Returns
        -------
        layers : list of dict
            ``name`` (module path), ``kind``, ``weight`` and ``bias`` (slices of
            the flat vector; ``bias`` None when absent or not selected), ``out`` and
            ``inp`` (the weight as an ``out x inp`` matrix) and ``l2`` (the weight
            decay on the layer's weight).
        """
        ends = np.cumsum(self._numels)
        where = {
            n: slice(int(e - size), int(e))
            for n, size, e in zip(self.param_names, self._numels, ends, strict=True)
        }
        modules = dict(self.module.named_modules())
        layers, seen, refused = [], set(), []
        for name in self.param_names:
            path, _, leaf = name.rpartition(".")
            mod = modules.get(path)
            ok = isinstance(mod, torch.nn.Linear) or (
                isinstance(mod, torch.nn.Conv2d)
                and mod.groups == 1
                and mod.padding_mode == "zeros"
                and not isinstance(mod.padding, str)
            )
            if not ok or leaf not in ("weight", "bias"):
                refused.append(f"{name} ({type(mod).__name__})")
                continue
            if path in seen:
                continue
            seen.add(path)
            prefix = f"{path}." if path else ""
            if prefix + "weight" not in where:
                refused.append(f"{name} (its layer's weight is not selected)")
                continue
            w = where[prefix + "weight"]
            out = mod.weight.shape[0]
            layers.append(
                {
                    "name": path,
                    "kind": "conv2d" if isinstance(mod, torch.nn.Conv2d) else "linear",
                    "weight": w,
                    "bias": where.get(prefix + "bias"),
                    "out": out,
                    "inp": (w.stop - w.start) // out,
                    "l2": float(self.lam[w.start]),
                }
            )
        if refused:
            raise ValueError(
                "Kronecker-factored curvature covers the weights and biases of nn.Linear and "
                "nn.Conv2d (zero padding, groups=1) only; these selected parameters are not: "
                f"{', '.join(refused[:6])}{' ...' if len(refused) > 6 else ''}. Select the "
                "supported layers with params=[...] or use solver='cg'."
            )
        return layers

    def kronecker_batches(self, layers, n_samples=None, seed=0):
        """Layer inputs and backpropagated output-curvature factors, block by block.

        For each block of the Hessian's training rows yields ``(w, stats)``: ``w``
        ``(b,)`` the rows' objective weights and, per layer, ``(a, s)`` with ``a``
        ``(b, T, inp [+1])`` the layer's inputs at its ``T`` positions (a column of
        ones appended when the bias is selected) and ``s`` ``(b, K, T, out)`` the
        gradients of ``c_ik . eta_i`` with respect to the layer's outputs, where
        ``C_i = sum_k c_ik c_ik^T`` is the loss's curvature in the net's ``K``
        outputs. ``sum_k J^T c c^T J`` is then exactly the Gauss-Newton matrix of
        the sample. With ``n_samples``, ``K`` becomes ``n_samples`` random
        combinations ``C_i^(1/2) xi / sqrt(n_samples)``, ``xi ~ N(0, I)`` (seeded
        by ``seed``): an unbiased estimate at ``n_samples`` backward passes per
        block instead of ``K``. float64 tensors on the device.
        """
        import torch.nn.functional as F

        modules = dict(self.module.named_modules())
        data, w_all = self._hessian_data()
        K, loss_flat = self._flat_output_loss()

        width = max(ly["out"] * K + ly["inp"] for ly in layers)
        gen = None if n_samples is None else np.random.default_rng(seed)
        for blk, idx in self._blocks(data, 8 * width * 4):
            inputs, probes, handles = {}, {}, []

            def hook(name, inputs=inputs, probes=probes):
                # the layer's output plus a zero leaf: d eta / d probe is d eta / d output
                def fn(mod, args, output):
                    inputs[name] = args[0].detach()
                    probes[name] = torch.zeros_like(output, requires_grad=True)
                    return output + probes[name]

                return fn

            for ly in layers:
                handles.append(modules[ly["name"]].register_forward_hook(hook(ly["name"])))
            try:
                with _eval_mode(self.module), torch.enable_grad():
                    eta = self._forward(self._params, blk.X).reshape(blk.X.shape[0], K)
                    Cm = vmap(torch.func.hessian(loss_flat))(eta.detach(), blk.y).double()
                    e, U = torch.linalg.eigh((Cm + Cm.transpose(1, 2)) / 2)
                    roots = U * e.clamp(min=0).sqrt()[:, None, :]  # (b, K, K): columns c_ik
                    if gen is not None:
                        xi = gen.standard_normal((roots.shape[0], K, n_samples))
                        roots = roots @ torch.as_tensor(xi, device=self.device) / n_samples**0.5
                    roots = roots.to(eta.dtype)
                    names = [ly["name"] for ly in layers]
                    n_cols = roots.shape[2]
                    grads = [
                        torch.autograd.grad(
                            (eta * roots[:, :, k]).sum(),
                            [probes[n] for n in names],
                            retain_graph=k < n_cols - 1,
                        )
                        for k in range(n_cols)
                    ]
            finally:
                for h in handles:
                    h.remove()
            stats = []
            for j, ly in enumerate(layers):
                mod, x = modules[ly["name"]], inputs[ly["name"]]
                g = torch.stack([gk[j] for gk in grads], 1)  # (b, K, *out_shape)
                b = x.shape[0]
                if ly["kind"] == "conv2d":
                    a = F.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride)
                    a = a.transpose(1, 2)  # (b, T, inp)
                    g = g.flatten(3).transpose(2, 3)  # (b, K, T, out)
                else:
                    a = x.reshape(b, -1, x.shape[-1])
                    g = g.reshape(b, g.shape[1], -1, g.shape[-1])
                a = a.to(torch.float64)
                if ly["bias"] is not None:
                    a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], 2)
                stats.append((a, g.to(torch.float64)))
            yield w_all[idx].to(torch.float64), stats

    def hessian(self):
        P = self.n_params
        factor = self._gauss_newton_factor() if self.hessian_kind == "gauss-newton" else None
        if factor is not None:  # F^T diag(s) F in one product, in the net's dtype
            F, sign = factor
            H = ((F.T * sign) @ F).cpu().double().numpy()
            H[np.diag_indices(P)] += self._lam_t.double().cpu().numpy()
            return (H + H.T) / 2
        # columns of H as HVPs with chunks of the identity, built on the device; a
        # chunk of HESSIAN_CHUNK columns keeps each HVP's row blocks large (an HVP's
        # row block shrinks as its columns grow)
        eye = torch.eye(P, dtype=torch.float64, device=self.device)
        cols = [self.hvp(eye[:, s : s + HESSIAN_CHUNK]) for s in range(0, P, HESSIAN_CHUNK)]
        H = torch.cat(cols, 1).cpu().numpy()
        return (H + H.T) / 2

    def objective_gradient(self):
        total = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        with _eval_mode(self.module):
            for blk, idx in self._blocks(self._train, self._row_bytes(2)):
                g = grad(self._block_objective(blk, self._w[idx]))(self._params)
                total += self._flat(g)
        total += self._lam_t * self._flat(self._params)
        return total.double().cpu().numpy()

    def perturbation_dot(self, data, U):
        """``u_t . d/dx grad_theta L(z_i)`` for every pair, ``(m, n, n_input_features)``."""
        Ud = self._unflat(self.asarray(U), batch=True)

        def directional(x, y, u):
            return jvp(lambda p: self._loss_one(p, x, y), (self._params,), (u,))[1]

        per_u = vmap(grad(directional), in_dims=(None, None, 0))  # over test directions
        per_xu = vmap(per_u, in_dims=(0, 0, None))  # over training samples
        with _eval_mode(self.module):
            res = per_xu(data.X, data.y, Ud)  # (n, m, *x_shape)
        n, m = res.shape[:2]
        return res.reshape(n, m, -1).transpose(0, 1).double().cpu().numpy()

    def retrained_losses(self, test_data, weights, *, refit_steps=100):
        """Test losses after retraining from theta_hat with training weights ``weights * s``.

        Full-batch L-BFGS (strong Wolfe line search) for ``refit_steps`` iterations
        on the training objective with each point's weight multiplied by
        ``weights`` (0 removes it), the L2 term unchanged: Basu et al.'s
        "retrain from the optimum" protocol. Only the selected parameters move.
        """
        w = self._w * torch.as_tensor(weights, dtype=self.dtype, device=self.device)
        flat = self._flat(self._params).clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [flat],
            lr=1.0,
            max_iter=int(refit_steps),
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            p = self._unflat(flat)
            total = 0.5 * (self._lam_t * flat * flat).sum()
            for blk, idx in self._blocks(self._train, self._row_bytes(2)):
                total = total + (self._losses(p, blk) * w[idx]).sum()
            total.backward()
            return total

        with _eval_mode(self.module):
            opt.step(closure)
            with torch.no_grad():
                p = self._unflat(flat.detach())
                out = [self._losses(p, blk) for blk, _ in self._blocks(test_data, 1)]
        return torch.cat(out).double().cpu().numpy()

    # -- outputs (Newton-step removal) -----------------------------------------------
    def _out_shape(self):
        with _eval_mode(self.module), torch.no_grad():
            one = self._forward(self._params, self._train.X[:1])
        return tuple(one.shape[1:])

    def _flat_output_loss(self):
        """``(K, loss_flat)``: the number of outputs and a row's loss of its flat outputs."""
        shape = self._out_shape()

        def loss_flat(o, y):
            return self._loss_of_row(o.reshape(shape), y)

        return int(np.prod(shape, dtype=int)), loss_flat

    def output_derivatives(self, data):
        K, loss_flat = self._flat_output_loss()
        with _eval_mode(self.module), torch.no_grad():
            out = self._forward(self._params, data.X).reshape(-1, K)
        with _eval_mode(self.module):
            r = vmap(grad(loss_flat))(out, data.y)
            C = vmap(torch.func.hessian(loss_flat))(out, data.y)

        def host(t):
            return t.detach().double().cpu().numpy()

        return host(out), host(r), host(C)

    def output_losses(self, data, eta):
        shape = self._out_shape()
        E = torch.as_tensor(np.asarray(eta), dtype=self.dtype, device=self.device)
        n, m = E.shape[:2]

        def one(o, y):
            return self._loss_of_row(o.reshape(shape), y)

        per_point = vmap(vmap(one, in_dims=(0, None)), in_dims=(0, 0))
        with _eval_mode(self.module), torch.no_grad():
            L = per_point(E, data.y)
        return L.reshape(n, m).double().cpu().numpy()

    def _vjp_dict(self, data, V):
        """``J_i^T v_i`` of every row as a batched parameter dict."""
        Vt = torch.as_tensor(np.asarray(V), dtype=self.dtype, device=self.device)

        def dot(p, x, v):
            return (self._forward(p, x.unsqueeze(0)).reshape(-1) * v).sum()

        return vmap(grad(dot), in_dims=(None, 0, 0))(self._params, data.X, Vt)

    def output_vjps(self, data, V):
        with _eval_mode(self.module):
            return self._flat(self._vjp_dict(data, V), batch=True).double().cpu().numpy()

    def output_vjp_dot(self, data, V, M):
        with _eval_mode(self.module):
            g = self._vjp_dict(data, V)
            res, start = None, 0
            for name, size in zip(self.param_names, self._numels, strict=True):
                part = g[name].reshape(g[name].shape[0], -1) @ M[start : start + size]
                res = part if res is None else res + part
                start += size
        return res.double().cpu().numpy()

    def reweighted(self, weights, theta=None):
        view = copy.copy(self)
        w = self.removal_weights * np.asarray(weights, dtype=np.float64)
        view.removal_weights = w
        view._w = torch.as_tensor(w, dtype=self.dtype, device=self.device)
        if theta is not None:
            flat = torch.as_tensor(np.asarray(theta), dtype=self.dtype, device=self.device)
            view._params = {n: t.clone() for n, t in self._unflat(flat).items()}
            view.theta = np.asarray(theta, dtype=np.float64).copy()
        return view

    def __getstate__(self):
        # tensors travel on the CPU, so an explainer fitted on a GPU unpickles anywhere
        state = self.__dict__.copy()
        state.pop("_own_module", None)  # a block view's: rebuilt by on_block where needed
        state.pop("_gn_cache", None)  # rebuilt on the first product that needs it
        for key in ("_params", "_consts"):
            state[key] = {n: t.cpu() for n, t in state[key].items()}
        for key in ("_w", "_lam_t"):
            state[key] = state[key].cpu()
        if self._train is not None:  # a template (on_block) has no rows
            state["_train"] = _Block(self._train.X.cpu(), self._train.y.cpu())
        state["device"] = str(self.device)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        device = torch.device(state["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        self.device = device
        for key in ("_params", "_consts"):
            setattr(self, key, {n: t.to(device) for n, t in getattr(self, key).items()})
        self._w, self._lam_t = self._w.to(device), self._lam_t.to(device)
        if self._train is not None:
            self._train = _Block(self._train.X.to(device), self._train.y.to(device))
