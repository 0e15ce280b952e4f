"""InfluenceExplainer: the scikit-learn meta-estimator users meet.

It validates input, fits or adopts the wrapped model, builds the adapter and the
solver, and hands the blocked work to ``compute.py``. It does no linear algebra.
"""

import warnings
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from skinfluence import compute, crossfit, feature_map, frames, mislabel, removal
from skinfluence.compute import STATIONARITY_WARN
from skinfluence.constraints import (
    BOOLEAN,
    NONE,
    POSITIVE_INT,
    RANDOM_STATE,
    STR_LIST,
    InstanceOf,
    Interval,
    InvalidParameterError,
    Options,
    Satisfies,
    check_param,
    check_params,
)
from skinfluence.indexing import as_indices, take_rows
from skinfluence.models import SUPPORTED_LINEAR, check_supported, final_step, make_adapter
from skinfluence.models.base import as_target_array
from skinfluence.solvers import SOLVERS, HessianSolver, auto_choice, make_solver


def _is_float64_spec(value):
    if type(value).__module__ == "torch":
        return str(value) == "torch.float64"
    return np.dtype(value) == np.float64


def _is_torch_device(value):
    return type(value).__name__ == "device" and type(value).__module__ == "torch"


def _estimator_has(attr):
    """``available_if`` check: the fitted model (or, before fit, the given one) has ``attr``."""

    def check(self):
        model = self.estimator_ if hasattr(self, "estimator_") else self.estimator
        getattr(model, attr)  # AttributeError names the model and the method
        return True

    return check


class InfluenceExplainer(MetaEstimatorMixin, BaseEstimator):
    """Influence functions (Koh & Liang, 2017) for a fitted scikit-learn model.

    Wraps a model, fits it (or adopts an already fitted one passed as
    :class:`sklearn.frozen.FrozenEstimator`) and answers which training points are
    responsible for a prediction and which look mislabeled.

    Parameters
    ----------
    estimator : estimator object
        A :class:`~sklearn.linear_model.LogisticRegression` (L2 or no penalty,
        binary or multinomial), :class:`~sklearn.linear_model.Ridge`,
        :class:`~sklearn.linear_model.LinearRegression`, or a
        :class:`~sklearn.pipeline.Pipeline` ending in one (earlier steps are fixed
        feature maps). It is cloned and fitted in :meth:`fit`, unless wrapped in a
        ``FrozenEstimator``, which is used as it is. ``estimator`` itself is never
        changed.
    damping : float, default=0.0
        ``lambda`` added to the Hessian: ``(H + lambda I)^-1``. Needed when the
        Hessian is singular (no penalty and collinear features, for instance).
    solver : {"auto", "direct", "cg", "lissa", "lowrank", "kfac", "ekfac"} or \
HessianSolver, default="auto"
        How ``H^-1`` is applied. "direct" factors the dense Hessian once (exact);
        "cg" runs conjugate gradient on Hessian-vector products (many parameters,
        e.g. wide sparse data or nets), optionally preconditioned, still exact to
        its tolerance; "lissa" is the stochastic series of Koh & Liang; "lowrank"
        keeps the top eigenpairs of ``H`` (cheap self-influence, approximate);
        "kfac" and "ekfac" (torch nets of ``nn.Linear``/``nn.Conv2d`` layers) use
        layer-wise Kronecker factors of the Gauss-Newton matrix, eigenvalue-
        corrected for "ekfac" (fast, approximate). "auto" picks "direct" up to 3000
        parameters, "ekfac" for a net above a million whose layers it covers, and
        otherwise "cg" (block CG, no preconditioner);
        ``solver_summary_["chosen by auto"]`` says which and why. Every solver
        computes on the net's device for a torch net.
        A solver instance (e.g. ``CGSolver(tol=1e-6)``) is cloned and fitted with
        this explainer's ``damping``.
    solver_params : dict or None, default=None
        Options of a solver given by name, each range-checked before any work:
        ``tol`` (in (0, 1), 1e-8), ``quadratic_tol`` (in (0, 1) or None: ``sqrt(tol)``
        for self-influence), ``max_iter`` (>= 1 or None), ``block_size`` (>= 1 or
        None: 64 columns per block CG; 1 is plain CG), ``preconditioner`` (None,
        "lowrank", "kfac", "ekfac") and ``rank`` (>= 1, the "lowrank"
        preconditioner's eigenpairs, 50) for "cg";
        ``depth`` (>= 1, 1000), ``scale`` (> 0 or None: 1.5 x the largest
        eigenvalue, estimated), ``repeats`` (>= 1, 1), ``batch_size`` (>= 1, 64)
        for "lissa"; ``rank`` (>= 1 and below the number of parameters, 50) and
        ``tol`` (>= 0) for "lowrank".
    params : str, list of str or None, default=None
        Torch nets only: parameter names or module prefixes (e.g. ``"fc2"``) to take
        influence over (each must match a trainable parameter); None means every
        parameter with ``requires_grad`` (freeze layers to leave them out).
    hessian : {"exact", "gauss-newton"}, default="exact"
        Torch nets only: the Hessian of the objective, or its Gauss-Newton
        approximation (positive semi-definite; useful for non-convex nets).
    dtype : None, "float64", "float32" or "bfloat16", default=None
        Torch nets only: compute in the module's dtype, or in the one named (on
        copies of the weights; the net is never changed). "float64" for checks;
        "bfloat16" halves the memory of the per-sample gradients and their
        products, but is coarse: on a 4,810-parameter MLP with solver="ekfac" its
        influence matrix had Pearson 0.984 against float64 (float32: 1.000000).
        Solver vectors and Kronecker factors stay float64 whatever the dtype.
    device : str, torch.device or None, default=None
        Torch nets only: where to compute; None uses the net's parameters' device.
    matmul_precision : {"highest", "tf32", "bfloat16"}, default="highest"
        Torch nets only: the precision of the influence products, per-sample
        gradients times solved test directions (``influence``,
        ``most_influential``, self-influence through a whitener), while the
        gradients, Hessian products and solvers keep ``dtype``. "tf32" lets a
        float32 net on CUDA use TF32 tensor cores (no effect on a CPU or a float64
        net); "bfloat16" rounds both factors to bfloat16, and each layer's
        product (accumulated in float32 by the GEMM, returned in bfloat16) is
        summed in float32: on a 4,810-parameter MLP in float32 its influence matrix had
        Pearson 0.99998 against float32 products (direct; 0.999998 with
        "ekfac"), the whole computation in bfloat16 0.868 (see docs/solvers.rst).
    hessian_samples : int >= 1 or None, default=None
        Torch nets only: estimate the Hessian on this many random training points
        (all of them when larger than the training set).
    batch_size : int >= 1 or None, default=None
        Training samples per block when streaming gradients. None derives it
        from ``working_memory``.
    working_memory : float > 0 or None, default=None
        Budget in MiB for the largest temporary (a block of gradients and its
        products), counted in the adapter's itemsize (4 bytes for a float32
        net); None uses ``sklearn.get_config()["working_memory"]``. A net's
        Gauss-Newton factor (``hessian="gauss-newton"``, ``K`` rows of
        ``n_params`` per Hessian sample) is kept for the explainer's life when it
        fits this budget, so peak memory can reach about twice it.
    copy_X : bool, default=True
        Keep private copies of the training data (the prepared features used
        for influence, and X, y themselves for the refits of the cross-fitted
        mislabel scores), so that later changes to the caller's arrays cannot
        change results. With False, only references are kept.
    random_state : int, RandomState instance or None, default=None
        Seed for the stochastic parts ("lissa" mini-batches, "lowrank" start
        vector, ``hessian_samples``).
    verbose : int, default=0
        Show progress bars (``tqdm.auto``, Jupyter-friendly) over blocks.
    polish : bool, default=False
        For a ``FrozenEstimator`` around a bare LogisticRegression: take Newton
        steps from its coefficients to the exact optimum of the training data
        passed to :meth:`fit` before explaining (``estimator_`` is then a polished
        copy; the frozen model is not changed). For a model fitted on a sample,
        or by a solver with a loose ``tol``, whose parameters are off the optimum
        that influence functions assume. With dask data, each step is one
        map-reduce over the row chunks.

    Attributes
    ----------
    estimator_ : estimator
        The fitted model that influence is computed for.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Feature names seen in :meth:`fit`, when ``X`` had them.
    classes_ : ndarray or None
        Class labels of a classifier, None for a regressor.
    n_train_ : int
        Number of training samples.
    n_params_ : int
        Number of parameters influence is taken over (see Notes for the layout).
    model_family_ : str
        "linear" (closed-form adapter) or "torch" (skorch net).
    removal_weights_ : ndarray of shape (n_train,)
        ``s_i / S``, each point's share of the training objective (``1/n_train_``
        without sample weights). Removing point ``i`` changes a test loss by about
        ``-removal_weights_[i] * influence[:, i]``. A copy: editing it changes
        nothing else.
    solver_ : str
        The solver used ("direct", "cg", ...), after resolving "auto".
    solver_summary_ : dict
        The fitted solver's own facts as of now (e.g. damping, condition number;
        CG iterations and worst residual over the solves run so far).
    damping_ : float
        The damping actually added to the Hessian.
    hessian_condition_ : float or None
        Condition number estimate of the damped Hessian ("direct" only).
    stationarity_ : float
        ``||grad R(theta_hat)||`` relative to the RMS per-sample gradient norm;
        influence functions assume it is close to 0 (a warning is raised above
        ``1e-3``). When every gradient is at rounding level (an exact fit), the
        norm is taken relative to ``sqrt(eps) * ||H theta_hat||`` instead, where
        a ratio of two rounding errors would mean nothing.

    Notes
    -----
    With training objective
    :math:`R(\\theta) = \\frac{1}{S}\\sum_i s_i L(z_i, \\theta) + \\Omega(\\theta)`
    (the one the model really minimised: LogisticRegression's
    ``(1/S) sum s_i logloss_i + ||w||^2 / (2 C S)`` with unpenalised intercept,
    Ridge's ``(1/S) sum s_i (y_i - yhat_i)^2 + alpha ||w||^2 / S``) and
    :math:`H = \\nabla^2 R(\\hat\\theta)`:

    - :math:`I_{up,loss}(z, z_t) = -\\nabla L(z_t)^T H^{-1} \\nabla L(z)`
    - :math:`I_{up,params}(z) = -H^{-1} \\nabla L(z)`
    - self-influence :math:`\\nabla L(z)^T H^{-1} \\nabla L(z) \\geq 0`

    The per-sample loss ``L`` is the log-loss for classifiers and the squared
    error for regressors. Parameters are flattened output by output (one row for
    binary or single-target models, one per class for the multinomial), each row
    holding the coefficients then the intercept; the multinomial model's exact
    flat direction (the shared intercept shift) is solved on its complement.

    When ``X`` is a dask array or DataFrame (chunked by rows; ``y`` and
    ``sample_weight`` dask or in memory), the training rows stay on the workers:
    ``fit`` (an unfitted LogisticRegression is fitted by Newton's method on its
    exact objective), the training-set ``loss``, ``gradient_norms``,
    ``self_influence``, ``self_removal_effect`` and the mislabel scores (the
    cross-fitted ones from fold models reached by Newton steps on the cluster)
    come back as lazy dask arrays, ``influence`` as a lazy
    ``(n_test, n_train)`` dask array chunked by training rows (``.compute()`` it,
    or ``.to_zarr(...)`` it out of core), and ``most_influential`` and
    ``find_mislabeled`` as arrays from tree reductions. See the "dask" page.

    References
    ----------
    Koh, P. W. and Liang, P. "Understanding Black-box Predictions via Influence
    Functions." ICML 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import InfluenceExplainer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression())
    >>> ex = InfluenceExplainer(model).fit(X[:400], y[:400])
    >>> ex.influence(X[400:], y[400:]).shape
    (169, 400)
    """

    def __init__(
        self,
        estimator,
        *,
        damping=0.0,
        solver="auto",
        solver_params=None,
        params=None,
        hessian="exact",
        dtype=None,
        device=None,
        matmul_precision="highest",
        hessian_samples=None,
        batch_size=None,
        working_memory=None,
        copy_X=True,
        random_state=None,
        verbose=0,
        polish=False,
    ):
        self.estimator = estimator
        self.damping = damping
        self.solver = solver
        self.solver_params = solver_params
        self.params = params
        self.hessian = hessian
        self.dtype = dtype
        self.device = device
        self.matmul_precision = matmul_precision
        self.hessian_samples = hessian_samples
        self.batch_size = batch_size
        self.working_memory = working_memory
        self.copy_X = copy_X
        self.random_state = random_state
        self.verbose = verbose
        self.polish = polish

    #: The declared range of every parameter, checked by ``fit`` before any work.
    _parameter_table: ClassVar[dict] = {
        "estimator": [
            Satisfies(
                lambda e: hasattr(e, "fit") and not isinstance(e, type),
                "an estimator instance with fit (e.g. LogisticRegression(), not the class)",
            )
        ],
        "damping": [Interval("real", 0, None)],
        "solver": [
            Options("auto", *SOLVERS),
            InstanceOf(HessianSolver, "a HessianSolver instance"),
        ],
        "solver_params": [InstanceOf(dict, "a dict"), NONE],
        "params": [
            Satisfies(lambda v: isinstance(v, str) and v, "a non-empty str"),
            STR_LIST,
            NONE,
        ],
        "hessian": [Options("exact", "gauss-newton")],
        "dtype": [
            NONE,
            Options("float64", "float32", "bfloat16", "model"),
            Satisfies(_is_float64_spec, "np.float64"),
        ],
        "device": [NONE, InstanceOf(str, "a str"), Satisfies(_is_torch_device, "a torch.device")],
        "matmul_precision": [Options("highest", "tf32", "bfloat16")],
        "hessian_samples": [POSITIVE_INT, NONE],
        "batch_size": [POSITIVE_INT, NONE],
        "working_memory": [Interval("real", 0, None, closed="neither"), NONE],
        "copy_X": [BOOLEAN],
        "random_state": RANDOM_STATE,
        "verbose": [Interval("int", 0, None), BOOLEAN],
        "polish": [BOOLEAN],
    }

    # -- fitting ---------------------------------------------------------------
    def _check_params(self):
        """Every parameter against the table, and the solver's options, before any work."""
        check_params(type(self).__name__, self._parameter_table, self.get_params(deep=False))
        if self.solver == "auto" and self.solver_params:
            # "auto" picks by the parameter count, known only once the model is fitted
            raise InvalidParameterError(
                f"solver_params={self.solver_params!r} needs a named solver: solver='auto' "
                "picks 'direct' (no options) or 'cg' by the number of parameters; pass "
                "solver='cg' (or 'lissa', 'lowrank') with its options."
            )
        if self.solver != "auto":  # the named solver's options, range-checked now
            make_solver(
                self.solver,
                damping=float(self.damping),
                random_state=self.random_state,
                solver_params=self.solver_params,
            )

    def _working_memory(self):
        if self.working_memory is not None:
            return float(self.working_memory)
        from sklearn import get_config

        return float(get_config()["working_memory"])

    def _validate_X(self, X, y=None, reset=False):
        """Feature-count / name checks; full numeric checks for a bare linear model."""
        model = self.estimator_ if hasattr(self, "estimator_") else self.estimator
        if isinstance(model, FrozenEstimator):
            model = model.estimator
        if not isinstance(model, SUPPORTED_LINEAR):
            # a Pipeline's steps or the net check the data they consume
            validate_data(self, X, reset=reset, skip_check_array=True)
        else:
            validate_data(
                self, X, reset=reset, accept_sparse="csr", dtype=np.float64, ensure_all_finite=True
            )
        if y is not None:
            # scalars, ragged lengths and labels of mixed types named before the model sees them
            as_target_array(y, _num_samples(X))

    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fit (or adopt) the model and factor its Hessian.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Training data: the data the model is (or was) fitted on.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Training targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights; they are passed to the model's fit and define the
            training objective. For a frozen model, pass the weights it was
            fitted with.
        **fit_params : dict
            Further parameters passed to the model's ``fit``.

        Returns
        -------
        self : InfluenceExplainer
            The fitted explainer.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        self._check_params()
        try:
            return self._fit(X, y, sample_weight, fit_params)
        except BaseException:
            # a fit that fails part-way leaves no half-old, half-new state behind
            self._forget_fit()
            raise

    def _forget_fit(self):
        for name in list(vars(self)):
            if (name.endswith("_") and not name.startswith("__")) or name in _FIT_STATE:
                delattr(self, name)

    def _fit(self, X, y, sample_weight, fit_params):
        inner = self.estimator.estimator if self._is_frozen() else self.estimator
        if _is_dask(X):
            return self._fit_dask(inner, X, y, sample_weight, fit_params)
        check_supported(inner)
        if self.polish and not self._is_frozen():
            raise ValueError(
                "polish=True takes Newton steps from a frozen model's coefficients; the "
                f"{type(inner).__name__} here is fitted by the explainer itself (to its own "
                "tol). Wrap a fitted model in FrozenEstimator, or pass polish=False."
            )
        self._validate_X(X, y, reset=True)
        last = f"{inner.steps[-1][0]}__" if isinstance(inner, Pipeline) else ""
        weights_in_params = [
            k for k in fit_params if k in ("sample_weight", last + "sample_weight")
        ]
        if weights_in_params:
            # routed to the model only, they would be left out of the influence objective
            raise ValueError(
                f"Pass the sample weights as fit(X, y, sample_weight=...), not as the fit "
                f"parameter {weights_in_params[0]!r}: the explainer needs them to build the "
                "training objective, and routes them to the model's last step itself."
            )
        sample_weight = _check_sample_weight(sample_weight, _num_samples(X))
        model, X_steps = self._fit_model(inner, X, y, sample_weight, fit_params)
        adapter = self._build_adapter(model, X, y, sample_weight, X_steps)
        stationarity, norms = self._check_stationarity(adapter)
        solver = self._fit_solver(adapter)
        # every step succeeded: only now is the fitted state replaced, all at once
        self.estimator_, self.stationarity_ = model, stationarity
        self._adapter, self._solver = adapter, solver
        self._keep_fit_inputs(adapter, X, y, sample_weight, fit_params)
        self._train_cache["grad_norm"] = norms  # computed for the stationarity check
        self._set_fitted_attributes(adapter, solver)
        return self

    def _fit_dask(self, inner, X, y, sample_weight, fit_params):
        """``fit`` for dask data: the training rows stay on the workers."""
        dask_path = _dask_module("dask data")
        is_net = dask_path.is_net(inner)
        if is_net:
            self._check_dask_net(inner)
        else:
            dask_path.check_model(inner)
        if fit_params and not is_net:
            raise ValueError(
                f"With dask data the explainer fits the model itself; the fit parameters "
                f"{sorted(fit_params)} cannot be routed to it. Fit without them."
            )
        if self.solver not in ("auto", "direct"):
            raise ValueError(
                f"With dask data the Hessian is one P x P reduction over the row chunks, "
                f"solved on the client: solver={self.solver!r} is not available there; pass "
                "solver='auto' or 'direct'."
            )
        blocking = self._blocking()
        options = {"blocking": blocking, "verbose": self.verbose}
        adapter = None
        advice = "pass polish=True to take Newton steps to it on the cluster"
        if is_net:
            model, advice = inner, "train the net further (more epochs, a smaller step)"
            adapter = dask_path.DaskTorchAdapter(
                inner,
                X,
                y,
                sample_weight,
                params=self.params,
                hessian=self.hessian,
                dtype=self.dtype,
                device=self.device,
                matmul_precision=self.matmul_precision,
                **options,
            )
        elif not self._is_frozen():
            model, _, adapter = dask_path.newton_fit(
                inner, X, y, sample_weight, **options, return_adapter=True
            )
        else:
            try:
                check_is_fitted(inner)
            except NotFittedError as exc:
                raise NotFittedError(
                    f"The {type(inner).__name__} inside FrozenEstimator is not fitted: fit "
                    "it first, or pass it unfrozen to have the explainer fit it (by Newton's "
                    "method on the dask data)."
                ) from exc
            model = inner
            if self.polish:
                model, _, adapter = dask_path.newton_fit(
                    inner, X, y, sample_weight, **options, return_adapter=True
                )
        if adapter is None:
            adapter = dask_path.DaskLinearAdapter(model, X, y, sample_weight, **options)
        ratio = adapter.stationarity()
        if not ratio <= STATIONARITY_WARN:
            warnings.warn(
                f"The fitted parameters are not a stationary point of the training "
                f"objective: ||grad R|| is {ratio:.3g} times the typical per-sample gradient "
                f"norm. Influence functions assume an optimum; {advice}.",
                RuntimeWarning,
                stacklevel=3,
            )
        solver = make_solver("direct", damping=float(self.damping)).fit(adapter)
        self._auto_reason = (
            f"dask data: the dense Hessian (one {adapter.n_params} x {adapter.n_params} "
            "reduction over the row chunks), exact"
            if self.solver == "auto"
            else None
        )
        self.estimator_, self.stationarity_ = model, ratio
        self._adapter, self._solver = adapter, solver
        self._fit_inputs = (adapter.X, adapter.y, adapter.sample_weight, {})
        self._train_index = None
        self._cross_fitted_cache, self._train_cache = {}, {}
        self.n_features_in_ = int(adapter.X.shape[1])
        names = getattr(X, "columns", None)
        if names is not None and all(isinstance(c, str) for c in names):
            self.feature_names_in_ = np.asarray(names, dtype=object)
        self._set_fitted_attributes(adapter, solver)
        return self

    def _check_dask_net(self, inner):
        """Refuse what the dask path does not do with a skorch net: train it, and more."""
        name = type(final_step(inner)).__name__
        if not self._is_frozen():
            fitted = "fitted" if _is_fitted(inner) else "not fitted"
            raise (ValueError if fitted == "fitted" else NotFittedError)(
                f"With dask data the explainer does not train a net, and this {name} is passed "
                f"unfrozen ({fitted}), which asks the explainer to fit it. Fit the net first "
                "(on the data it is to explain) and pass it as FrozenEstimator(net), which is "
                "explained as it is."
            )
        if not _is_fitted(inner):
            raise NotFittedError(
                f"The {name} inside FrozenEstimator is not fitted: fit it first (on the data "
                "it is to explain); the explainer does not train nets on dask data."
            )
        if self.polish:
            raise ValueError(
                "polish=True takes Newton steps for a LogisticRegression; a frozen net on dask "
                "data is explained as it is fitted. Pass polish=False."
            )
        if self.hessian_samples is not None:
            raise ValueError(
                f"hessian_samples={self.hessian_samples!r}: with dask data the Hessian is the "
                "full reduction over the row chunks; pass hessian_samples=None."
            )

    def _on_dask(self):
        return getattr(getattr(self, "_adapter", None), "on_dask", False)

    def _not_on_dask(self, method, advice=""):
        if self._on_dask():
            raise NotImplementedError(
                f"{method} is not available for an explainer fitted on dask data{advice}. "
                "Compute the training data into memory and fit on that for it."
            )

    def _is_frozen(self):
        return isinstance(self.estimator, FrozenEstimator)

    def _blocking(self):
        return compute.Blocking(self._working_memory(), self.batch_size)

    def _fit_model(self, inner, X, y, sample_weight, fit_params):
        """The model influence is taken for: the frozen one as it is, else a fitted clone.

        Returns ``(model, X_steps)``: ``X_steps`` is the training data through a
        linear Pipeline's earlier steps when fitting computed it (None otherwise),
        so the adapter need not transform it once more.
        """
        if self._is_frozen():
            try:
                check_is_fitted(inner)
            except NotFittedError as exc:
                raise NotFittedError(
                    f"The {type(inner).__name__} inside FrozenEstimator is not fitted: "
                    "a frozen estimator is used as it is, so fit it first (or pass it "
                    "unfrozen to have the explainer fit a clone)."
                ) from exc
            if self.polish:
                return _dask_module("polish=True").polish_in_memory(
                    inner, X, y, sample_weight, blocking=self._blocking()
                ), None
            return inner, None
        if _fits_step_by_step(inner, fit_params):
            model = clone(inner)
            # what Pipeline.fit does (fit_transform of each earlier step, then fit the
            # last), keeping the transformed training data
            X_steps = model[:-1].fit_transform(X, y)
            last_params = {} if sample_weight is None else {"sample_weight": sample_weight}
            model.steps[-1][1].fit(X_steps, y, **last_params)
            return model, X_steps
        model_fit_params = dict(fit_params)
        if sample_weight is not None:
            key = "sample_weight"
            if isinstance(inner, Pipeline):
                key = f"{inner.steps[-1][0]}__sample_weight"
            model_fit_params[key] = sample_weight
        return clone(inner).fit(X, y, **model_fit_params), None

    def _build_adapter(self, model, X, y, sample_weight, X_steps=None):
        options = {} if X_steps is None else {"X_steps": X_steps}
        return make_adapter(
            model,
            X,
            y,
            sample_weight,
            blocking=self._blocking(),
            copy_X=self.copy_X,
            random_state=self.random_state,
            params=self.params,
            hessian=self.hessian,
            dtype=self.dtype,
            device=self.device,
            matmul_precision=self.matmul_precision,
            hessian_samples=self.hessian_samples,
            **options,
        )

    def _check_stationarity(self, adapter):
        """``(ratio, norms)``: the stationarity ratio and the training gradient norms."""
        norms = compute.gradient_norms(adapter, adapter.train_data, policy=self._blocking())
        ratio = compute.stationarity(adapter, policy=self._blocking(), norms=norms)
        if not ratio <= STATIONARITY_WARN:
            warnings.warn(
                f"The fitted parameters are not a stationary point of the training "
                f"objective: ||grad R|| is {ratio:.3g} times the typical "
                "per-sample gradient norm. Influence functions assume an optimum; "
                "refit with a smaller tol or a larger max_iter.",
                RuntimeWarning,
                stacklevel=3,
            )
        norms.setflags(write=False)
        return ratio, norms

    def _fit_solver(self, adapter):
        name, params, self._auto_reason = self.solver, self.solver_params, None
        if name == "auto":
            name, params, self._auto_reason = auto_choice(adapter)
        solver = make_solver(
            name,
            adapter.n_params,
            damping=float(self.damping),
            random_state=self.random_state,
            solver_params=params,
        )
        return solver.fit(adapter)

    def _keep_fit_inputs(self, adapter, X, y, sample_weight, fit_params):
        """What the cross-fitted mislabel scores refit on (skinfluence.crossfit)."""
        if self.copy_X and sample_weight is not None:
            sample_weight = sample_weight.copy()
        shared = adapter.train_inputs  # a private copy already, for a bare linear model
        self._fit_inputs = (
            shared if shared is not None else _indexable(X, self.copy_X),
            _indexable(y, self.copy_X),
            sample_weight,
            fit_params,
        )
        self._train_index = frames.row_index(X)  # the caller's row labels, for as_frame
        self._cross_fitted_cache = {}  # cv -> Bunch, see cross_fitted_losses
        self._train_cache = {}  # training-set losses, self-influence, gradient norms

    def _set_fitted_attributes(self, adapter, solver):
        # copies: a caller editing a fitted array in place cannot change later results
        self.classes_ = None if adapter.classes_ is None else np.array(adapter.classes_)
        self.n_train_ = adapter.n_train
        self.n_params_ = adapter.n_params
        self.model_family_ = adapter.family_name
        if getattr(adapter, "on_dask", False):  # lazy, like every per-row result on dask
            self.removal_weights_ = adapter.removal_weights
        else:
            self.removal_weights_ = np.array(adapter.removal_weights, dtype=float)
        self.solver_ = solver.name
        self.damping_ = float(solver.damping)
        self.hessian_condition_ = solver.summary().get("condition number")

    @property
    def solver_summary_(self):
        """The fitted solver's facts as of now (a new dict; CG counts grow with solves)."""
        check_is_fitted(self, "_solver")
        out = self._solver.summary()
        if getattr(self, "_auto_reason", None):
            out["chosen by auto"] = self._auto_reason
        return out

    # -- queries ---------------------------------------------------------------
    def _prepare(self, X, y):
        check_is_fitted(self)
        if y is None:
            raise ValueError("y is required: influence is about the loss at (X, y).")
        self._validate_X(X, y, reset=False)
        return self._adapter.prepare(X, y)

    def _data(self, X, y):
        """Prepared samples: the training set when ``X`` is None."""
        if X is None:
            if y is not None:
                raise ValueError("y was given without X.")
            check_is_fitted(self)
            return self._adapter.train_data
        return self._prepare(X, y)

    def _budget(self):
        return {"policy": self._blocking(), "verbose": self.verbose}

    def _norm_max(self):
        """The largest training gradient norm (from fit): bounds every influence value."""
        norms = self._training_quantity("grad_norm")
        return float(norms.max()) if norms.size else 0.0

    def _training_quantity(self, name):
        """A training-set quantity (``loss``, ``self_influence``, ``grad_norm``,
        ``leverage``, ``self_removal``), computed once per fit."""
        if name not in self._train_cache and self._on_dask():
            a = self._adapter
            fn = {
                "loss": a.training_losses,
                "grad_norm": a.training_gradient_norms,
                "self_influence": lambda: a.training_self_influence(self._solver),
                "self_removal": lambda: a.training_self_removal(self._solver),
            }
            if name not in fn:
                self._not_on_dask(f"The training-set {name!r}")
            self._train_cache[name] = fn[name]()  # a lazy dask array
        if name not in self._train_cache:
            fn = {
                "loss": compute.losses,
                "self_influence": lambda a, d, **kw: compute.self_influence(
                    a, self._solver, d, **kw
                ),
                "grad_norm": compute.gradient_norms,
                "leverage": lambda a, d, **kw: removal.leverages(a, self._solver, d, **kw),
                "self_removal": lambda a, d, **kw: removal.self_removal(
                    a, self._training_quantity("leverage"), d, **kw
                ),
            }[name]
            out = fn(self._adapter, self._adapter.train_data, **self._budget())
            out.setflags(write=False)
            self._train_cache[name] = out
        return self._train_cache[name]

    def influence(self, X, y, *, as_frame=False):
        """Influence of every training point on the loss at each test sample.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,) or (n_test, n_targets)
            Their labels or targets.

        Returns
        -------
        influence : ndarray of shape (n_test, n_train) or DataFrame
            ``I_up,loss(z_train, z_test) = -grad L(z_test)^T H^-1 grad L(z_train)``.
            With ``as_frame=True``, a DataFrame whose index is the test rows'
            labels and whose columns are the training rows' (positions for
            inputs without an index).

        Notes
        -----
        Sign (Koh & Liang): positive = harmful (upweighting the training point
        raises the test loss), negative = helpful. Removing training point ``i``
        changes the test loss by about ``-removal_weights_[i] * influence[:, i]``
        (``-influence[:, i] / n_train_`` without sample weights).

        The training set is streamed in blocks; the largest temporary is bounded
        by ``working_memory``; the result itself is ``n_test * n_train`` floats.
        """
        check_param("influence", "as_frame", as_frame, [BOOLEAN])
        data = self._prepare(X, y)
        if self._on_dask():
            if as_frame:
                self._not_on_dask("influence(as_frame=True)", " (the result is a lazy dask array)")
            return self._adapter.influence(self._solver, data)
        out = compute.influence_matrix(
            self._adapter, self._solver, data, **self._budget(), train_norm_max=self._norm_max()
        )
        if not as_frame:
            return out
        test_rows = frames.labels_for(frames.row_index(X), np.arange(out.shape[0]), "influence")
        train_rows = frames.labels_for(self._train_index, np.arange(self.n_train_), "influence")
        return frames.matrix_frame(out, test_rows, train_rows, "influence")

    def self_influence(self, X=None, y=None, *, as_frame=False):
        """Self-influence ``grad L(z)^T H^-1 grad L(z)`` of each sample (>= 0).

        Large values mean the model bends to fit that sample: a mislabel suspect.
        This is ``-I_up,loss(z, z)``; removing training point ``i`` raises its own
        loss by about ``removal_weights_[i] * self_influence[i]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), default=None
            Samples to score; None scores the training set.
        y : array-like of shape (n_samples,), default=None
            Their labels; required when ``X`` is given.
        as_frame : bool, default=False
            Return a DataFrame indexed by the rows' own labels (``X``'s index, or
            the training data's; positions when it had none) with columns
            ``label``, ``prediction`` (when the model predicts) and
            ``self_influence``.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or DataFrame
            Self-influence, higher = more influential on itself.
        """
        check_param("self_influence", "as_frame", as_frame, [BOOLEAN])
        if X is None and y is None:
            check_is_fitted(self)
            scores = self._training_quantity("self_influence").copy()
            if as_frame and self._on_dask():
                self._not_on_dask("self_influence(as_frame=True)", " (the result is lazy)")
            if as_frame:
                return self._training_frame({"self_influence": scores}, "self_influence")
            return scores
        data = self._data(X, y)
        scores = compute.self_influence(self._adapter, self._solver, data, **self._budget())
        if as_frame:
            columns = {"label": np.asarray(y), **self._predictions(X), "self_influence": scores}
            return frames.rows_frame(
                frames.row_index(X), np.arange(len(scores)), columns, "self_influence"
            )
        return scores

    def _predictions(self, X):
        """``{"prediction": ...}`` when the model predicts, else nothing."""
        if not hasattr(self.estimator_, "predict"):
            return {}
        return {"prediction": np.asarray(self.estimator_.predict(X))}

    def _training_frame(self, scores, caller, positions=None):
        """Training rows (all, or ``positions`` in that order) with label, prediction, scores.

        ``scores`` are full-length; only the rows asked for are predicted.
        """
        X, y = self._fit_inputs[:2]
        if positions is None:
            positions = np.arange(self.n_train_)
        columns = {
            "label": np.asarray(y)[positions],
            **self._predictions(take_rows(X, positions)),
            **{name: np.asarray(v)[positions] for name, v in scores.items()},
        }
        return frames.rows_frame(self._train_index, positions, columns, caller)

    def most_influential(self, X, y, k=10, *, as_frame=False):
        """The ``k`` most helpful and most harmful training points for each test sample.

        The influence matrix is streamed and never held whole.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,)
            Their labels or targets.
        k : int, default=10
            How many of each to return.
        as_frame : bool, default=False
            Return one DataFrame row per (test point, helpful/harmful, rank),
            indexed by the training rows' own labels (positions for inputs
            without an index), with columns ``test`` (the test row's label),
            ``kind``, ``rank`` (1 = most), ``position`` (of the training row),
            ``label`` (its training label) and ``influence``.

        Returns
        -------
        result : Bunch or DataFrame
            ``helpful_indices``, ``helpful_values``: ``(n_test, k)`` training
            indices and their ``I_up,loss``, most negative (most helpful) first;
            ``harmful_indices``, ``harmful_values``: most positive (most harmful)
            first.
        """
        check_is_fitted(self)
        check_param("most_influential", "k", k, [Interval("int", 1, self.n_train_)])
        check_param("most_influential", "as_frame", as_frame, [BOOLEAN])
        data = self._prepare(X, y)
        if self._on_dask():
            if as_frame:
                self._not_on_dask("most_influential(as_frame=True)")
            h_idx, h_val, b_idx, b_val = self._adapter.top_k(self._solver, data, k)
        else:
            h_idx, h_val, b_idx, b_val = compute.top_k_influence(
                self._adapter,
                self._solver,
                data,
                k,
                **self._budget(),
                train_norm_max=self._norm_max(),
            )
        if as_frame:
            test_rows = frames.labels_for(
                frames.row_index(X), np.arange(h_idx.shape[0]), "most_influential"
            )
            return frames.top_k_frame(
                (h_idx, h_val, b_idx, b_val),
                test_rows,
                self._train_index,
                np.asarray(self._fit_inputs[1]),
                "most_influential",
            )
        return Bunch(
            helpful_indices=h_idx, helpful_values=h_val, harmful_indices=b_idx, harmful_values=b_val
        )

    def _train_subset(self, train_indices):
        data = self._adapter.train_data
        if train_indices is None:
            return data
        idx = as_indices(train_indices, self.n_train_, name="train_indices")
        return self._adapter.take(data, idx)

    def _selected_positions(self, train_indices):
        if train_indices is None:
            return np.arange(self.n_train_)
        return as_indices(train_indices, self.n_train_, name="train_indices")

    def _model_feature_names(self, n_features):
        """Names of the features entering the model (the Pipeline's last step)."""
        return feature_map.model_feature_names(
            self._adapter.transform, self._fit_inputs[0], n_features
        )

    def influence_params(self, train_indices=None, *, as_frame=False):
        """Influence of upweighting training points on the parameters.

        Parameters
        ----------
        train_indices : array-like of int or bool, default=None
            Training points to return; None means all of them
            (``n_train * n_params`` floats).
        as_frame : bool, default=False
            Return a DataFrame indexed by the training rows' own labels
            (positions for inputs without an index) whose columns name the
            parameters: the model's feature names (``get_feature_names_out`` of
            a Pipeline's leading steps) and ``"intercept"``, as pairs
            ``(class, feature)`` for a multinomial model (a column MultiIndex),
            ``"layer.weight[i, j]"`` for a torch net.

        Returns
        -------
        params_influence : ndarray of shape (n_selected, n_params) or DataFrame
            ``I_up,params(z) = -H^-1 grad L(z)``. Removing training point ``i``
            moves the parameters by about ``-removal_weights_[i] * row``. The
            parameter layout is described in the class Notes.
        """
        self._not_on_dask("influence_params")
        check_is_fitted(self)
        check_param("influence_params", "as_frame", as_frame, [BOOLEAN])
        positions = self._selected_positions(train_indices)
        data = self._train_subset(train_indices)
        out = -compute.solved_test_gradients(self._adapter, self._solver, data)
        if not as_frame:
            return out
        n_features = getattr(self._adapter, "n_features", 0)
        labels = self._adapter.parameter_labels(self._model_feature_names(n_features))
        return frames.matrix_frame(
            out,
            frames.labels_for(self._train_index, positions, "influence_params"),
            frames.column_labels(labels, "influence_params"),
            "influence_params",
        )

    def perturbation_influence(self, X, y, *, train_indices=None, as_frame=False):
        """Influence of perturbing training inputs on the loss at each test sample.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,)
            Their labels or targets.
        train_indices : array-like of int or bool, default=None
            Training points to return; the output has ``n_test * n_selected *
            n_features`` floats, so select a few.
        as_frame : bool, default=False
            Return a DataFrame with one row per (test row, training row) pair
            (a MultiIndex of their own labels, positions for inputs without an
            index) and one column per input column of the training data where
            the chain rule through the Pipeline's leading steps is known
            (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler,
            SimpleImputer, passthrough, inside Pipelines and ColumnTransformers):
            the derivative with respect to the caller's own column. Features
            made by any other step (e.g. one-hot categories) keep their model
            feature names. An imputed entry does not move with its input: the
            derivative there is undefined and given as NaN.

        Returns
        -------
        pert : ndarray of shape (n_test, n_selected, n_model_features) or DataFrame
            ``I_pert,loss(z, z_test) = -grad L(z_test)^T H^-1 d/dx grad L(z)``:
            moving training input ``x`` by a small ``delta`` changes the test loss
            by about ``removal_weights_[i] * pert[t, i] @ delta``. For a Pipeline
            the features are those entering the last step (``as_frame=True``
            gives the input columns, see above).
        """
        self._not_on_dask("perturbation_influence")
        check_param("perturbation_influence", "as_frame", as_frame, [BOOLEAN])
        test = self._prepare(X, y)
        positions = self._selected_positions(train_indices)
        train = self._train_subset(train_indices)
        out = compute.perturbation_influence(
            self._adapter, self._solver, test, train, **self._budget()
        )
        if not as_frame:
            return out
        X_fit = self._fit_inputs[0]
        values, names = feature_map.to_input_columns(
            self._adapter.transform,
            take_rows(X_fit, positions),
            out,
            self._model_feature_names(out.shape[2]),
            feature_map.input_names(X_fit, _n_input_columns(X_fit)),
        )
        caller = "perturbation_influence"
        test_rows = frames.labels_for(frames.row_index(X), np.arange(out.shape[0]), caller)
        train_rows = frames.labels_for(self._train_index, positions, caller)
        return frames.pair_frame(values, test_rows, train_rows, names, caller)

    def loss(self, X=None, y=None):
        """Per-sample loss ``L(z, theta_hat)`` that influence is measured in.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), default=None
            Samples; None means the training set.
        y : array-like of shape (n_samples,), default=None
            Their labels or targets.

        Returns
        -------
        loss : ndarray of shape (n_samples,)
            The log-loss for classifiers, the squared error for regressors.
        """
        check_is_fitted(self)
        if X is None and y is None:
            return self._training_quantity("loss").copy()
        return compute.losses(self._adapter, self._data(X, y), **self._budget())

    def gradient_norms(self, X=None, y=None):
        """Norm of each sample's loss gradient ``||grad_theta L(z)||`` (no Hessian).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), default=None
            Samples; None means the training set.
        y : array-like of shape (n_samples,), default=None
            Their labels or targets.

        Returns
        -------
        norms : ndarray of shape (n_samples,)
            Gradient norms; the Hessian-free cousin of self-influence.
        """
        check_is_fitted(self)
        if X is None and y is None:
            return self._training_quantity("grad_norm").copy()
        data = self._data(X, y)
        return compute.gradient_norms(self._adapter, data, **self._budget())

    # -- beyond first order: removal by a Newton step ------------------------------
    def removal_effect(self, X, y, method="newton"):
        """The change of each test loss when one training point is removed.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,) or (n_test, n_targets)
            Their labels or targets.
        method : {"newton", "first-order"}, default="newton"
            ``"newton"``: one Newton step from the fitted parameters on the
            objective without the point, its own curvature taken out of the
            Hessian by a rank-``K`` (Woodbury) update, and the test loss evaluated
            at the new parameters rather than linearised (:mod:`skinfluence.removal`).
            Exact for Ridge and LinearRegression; for logistic regression the
            step its leave-one-out refit would take first; for a net the
            point's curvature is its Gauss-Newton term and the test outputs are
            linearised in the parameters (an approximation). ``"first-order"``:
            ``-removal_weights_ * influence(X, y)``, for comparison.

        Returns
        -------
        effect : ndarray of shape (n_test, n_train)
            Predicted change of test loss ``t`` when training point ``j`` is
            removed and the model refitted: positive = the removal raises the test
            loss (the point helps that test point), negative = it lowers it.

        Notes
        -----
        Streamed in the same row blocks as :meth:`influence`, bounded by
        ``working_memory``; it costs about as much as ``influence`` with ``K``
        times as many test columns for ``K`` model outputs (classes of a
        multinomial model), plus each training point's ``K x K`` leverage
        ``J H^-1 J^T``, computed once per fit.
        """
        self._not_on_dask("removal_effect", " (self_removal_effect is)")
        check_is_fitted(self)
        check_param("removal_effect", "method", method, [Options(*removal.METHODS)])
        data = self._prepare(X, y)
        if method == "first-order":
            return removal.first_order_effect(
                self._adapter, self._solver, data, **self._budget(), train_norm_max=self._norm_max()
            )
        return removal.removal_effect_matrix(
            self._adapter, self._solver, data, self._training_quantity("leverage"), **self._budget()
        )

    def self_removal_effect(self):
        """The change of each training point's own loss when it is removed.

        One Newton step, as in :meth:`removal_effect`, evaluated at the point
        itself: its approximate leave-one-out loss less its training loss. The
        ``"alo_loss"`` mislabel score is the training loss plus this (one
        implementation). Exact for Ridge and LinearRegression (PRESS); Rad and
        Maleki's approximate leave-one-out for binary logistic regression.

        Returns
        -------
        effect : ndarray of shape (n_train,)
            ``>= 0`` for a convex model: removing a point never fits it better.
        """
        check_is_fitted(self)
        return self._training_quantity("self_removal").copy()

    def group_removal_effect(
        self, X, y, train_indices, method="newton", *, n_steps=1, tol=1e-10, return_info=False
    ):
        """The change of each test loss when a group of training points is removed at once.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,) or (n_test, n_targets)
            Their labels or targets.
        train_indices : array-like of int or bool
            The training points removed together (positions, or a mask of
            length ``n_train_``).
        method : {"newton", "first-order"}, default="newton"
            ``"newton"``: Newton's method on the objective without the group,
            from the fitted parameters; each step fits the explainer's solver
            (same options and damping) to the reduced Hessian at the current
            parameters and solves its gradient, and the test losses are evaluated
            exactly at the final parameters. ``"first-order"``: the sum of the
            points' first-order effects.
        n_steps : int >= 1, default=1
            Newton steps at most. For a convex model the iterates converge to the
            real refit without the group; one step already takes the group's own
            curvature out of the Hessian.
        tol : float >= 0, default=1e-10
            Stop before ``n_steps`` when a step moves the parameters by less than
            ``tol`` times their norm.
        return_info : bool, default=False
            Also return how the iteration went.

        Returns
        -------
        effect : ndarray of shape (n_test,)
            Predicted change of each test loss (positive = the removal raises it).
        info : Bunch
            Only with ``return_info=True``: ``n_iter`` (steps taken),
            ``converged`` (whether it stopped on ``tol``), ``step_norms``.
        """
        self._not_on_dask("group_removal_effect")
        check_is_fitted(self)
        check_param("group_removal_effect", "method", method, [Options(*removal.METHODS)])
        check_param("group_removal_effect", "n_steps", n_steps, [POSITIVE_INT])
        check_param("group_removal_effect", "tol", tol, [Interval("real", 0, None)])
        check_param("group_removal_effect", "return_info", return_info, [BOOLEAN])
        idx = np.unique(
            as_indices(train_indices, self.n_train_, name="train_indices") % self.n_train_
        )
        if idx.size == self.n_train_:
            raise ValueError(
                "train_indices selects every training point: nothing would be left to fit."
            )
        data = self._prepare(X, y)
        if idx.size == 0:  # nothing removed: nothing changes
            effect = np.zeros(self._adapter.n_samples(data))
            info = Bunch(n_iter=0, converged=True, step_norms=np.empty(0))
        elif method == "first-order":
            effect = removal.group_first_order(
                self._adapter, self._solver, data, idx, policy=self._blocking()
            )
            info = Bunch(n_iter=0, converged=False, step_norms=np.empty(0))
        else:
            res = removal.group_newton(
                self._adapter, self._solver, data, idx, n_steps=n_steps, tol=tol
            )
            effect = res.effect
            info = Bunch(n_iter=res.n_iter, converged=res.converged, step_norms=res.step_norms)
        return (effect, info) if return_info else effect

    def cross_fitted_losses(self, *, cv=5):
        """Losses of the training points under models refitted on folds without them.

        The model is refitted ``cv`` times, inside explainers with this one's
        parameters, on stratified folds of the data passed to :meth:`fit`
        (consecutive folds, or shuffled with ``random_state`` when it is set); see
        :func:`skinfluence.crossfit.cross_fitted_losses`. The refits are done once
        per ``cv`` and kept until the next :meth:`fit`. They feed the ``"cv_*"``
        scores of :meth:`mislabel_scores`.

        Parameters
        ----------
        cv : int, default=5
            Number of folds (at least 2); every class needs at least ``cv`` samples.

        Returns
        -------
        result : Bunch
            ``held_out``: each training point's loss under the fold model that did
            not see it. ``fold_loo_mean``: the mean over the fold models of the
            point's leave-one-out loss estimate (its held-out loss under the model
            that left it out, its ``"alo_loss"`` under the others). Both are
            ndarrays of shape (n_train,), copies. ``held_out_proba`` (classifiers):
            each point's class probabilities under the fold model that did not see
            it.

        Notes
        -----
        With dask data the fold models are not refits: each is the optimum of the
        objective without its fold's rows, reached by Newton steps from this
        explainer's model on the cluster; the folds are the same stratified ones
        as in memory (shuffled with ``random_state`` when it is set), and the results
        (and ``folds``, each row's fold) are lazy dask arrays.
        """
        check_is_fitted(self)
        cv = crossfit.check_n_folds(cv)
        if self._on_dask():
            if self.model_family_ == "torch":  # fold models would be refits of the net
                raise NotImplementedError(
                    "Cross-fitted scores refit the model on folds, and the explainer does not "
                    "train nets on dask data. Use a score without refits: method="
                    "'self_influence', 'loss', 'grad_norm', 'loo_loss' or 'alo_loss' (and "
                    "find_mislabeled with k or fraction)."
                )
            if cv not in self._cross_fitted_cache:
                self._cross_fitted_cache[cv] = _dask_module("dask data").cross_fitted(
                    self._adapter, cv, damping=self.damping_, random_state=self.random_state
                )
            return Bunch(**self._cross_fitted_cache[cv])  # lazy dask arrays
        if cv not in self._cross_fitted_cache:
            X, y, sample_weight, fit_params = self._fit_inputs
            if fit_params:
                raise ValueError(
                    "Cross-fitted scores refit the model on folds of the training set, which "
                    f"cannot split the fit parameters {sorted(fit_params)}; fit the explainer "
                    "without them or use a score that needs no refit (e.g. method='alo_loss')."
                )
            self._cross_fitted_cache[cv] = crossfit.cross_fitted_losses(
                self, X, y, sample_weight, cv=cv
            )
        return Bunch(**{k: v.copy() for k, v in self._cross_fitted_cache[cv].items()})

    def mislabel_scores(self, method="auto", *, cv=5, as_frame=False):
        """One suspicion score per training point, higher = more likely mislabeled.

        Parameters
        ----------
        method : str, default="auto"
            ``"auto"`` or one of the scores below. Without refitting:
            ``"self_influence"`` (Koh & Liang's score), ``"loss"`` (training loss),
            ``"grad_norm"`` (gradient norm, no Hessian), ``"loo_loss"`` (first-order
            leave-one-out loss of the point itself,
            ``loss + removal_weights_ * self_influence``) and ``"alo_loss"``
            (approximate leave-one-out loss: one Newton step with the point's own
            curvature removed). Cross-fitted, refitting the model on ``cv`` folds
            of the training set (see :meth:`cross_fitted_losses`):
            ``"cv_loss"`` (the loss under the fold model that did not see the
            point), ``"cv_alo_loss"`` (the point's leave-one-out loss estimate,
            averaged over the fold models and this one: held out by one, ``"alo_loss"``
            under the others) and ``"cv_blend_loss"`` (the mean of ``"loss"`` and
            ``"cv_alo_loss"``). ``"auto"`` is the score the study behind
            ``benchmarks/bench_mislabel.py`` found best for the model family
            (:data:`skinfluence.mislabel.AUTO`, ``"cv_blend_loss"`` for both
            logistic regression and torch nets, so it refits the model ``cv``
            times; see the "Mislabel detection" page).
        cv : int, default=5
            Number of folds of the cross-fitted scores.
        as_frame : bool, default=False
            Return a DataFrame indexed by the training rows' own labels
            (positions when the training data had none), in training order, with
            columns ``label``, ``prediction`` (when the model predicts) and
            ``score``; ``attrs["method"]`` names the score used.

        Returns
        -------
        scores : ndarray of shape (n_train,) or DataFrame
            Suspicion scores (higher = worse).
        """
        check_is_fitted(self)
        check_param("mislabel_scores", "as_frame", as_frame, [BOOLEAN])
        scores = self._mislabel_scores(method, cv)
        if as_frame and self._on_dask():
            self._not_on_dask("mislabel_scores(as_frame=True)", " (the scores are a lazy array)")
        if as_frame:
            frame = self._training_frame({"score": scores}, "mislabel_scores")
            frame.attrs["method"] = mislabel.resolve_method(method, self.model_family_)
            return frame
        return scores

    def _mislabel_scores(self, method, cv):
        name = mislabel.resolve_method(method, self.model_family_)
        needs = mislabel.NEEDS[name]
        inputs = {q: self._training_quantity(q) for q in needs if q != "cross_fitted"}
        if "cross_fitted" in needs:
            inputs["cross_fitted"] = self.cross_fitted_losses(cv=cv)
        else:
            crossfit.check_n_folds(cv)
        return mislabel.score_from_inputs(
            name,
            inputs,
            removal_weights=self._adapter.removal_weights,
            classifier=self.classes_ is not None,
            cv=cv,
        )

    def find_mislabeled(self, k=None, fraction=None, method="auto", *, cv=5, as_frame=False):
        """Training points judged mislabeled, or ranked by suspicion, most suspicious first.

        With neither ``k`` nor ``fraction`` the set sizes itself (classifiers):
        from the ``cv``-fold cross-fitted class probabilities, confident learning
        counts how many points of each class to flag (as many as cleanlab's
        ``find_label_issues`` flags there), and that many of the class's most
        suspicious points by ``method``, among those the cross-fitted model
        predicts as another class, are returned. See
        :func:`skinfluence.mislabel.flag_mislabeled` for the rule, and the
        "Mislabel detection" page for its precision and recall on real tables
        next to cleanlab's ``find_label_issues``. Pass ``fraction=1.0`` for every
        point, ranked.

        Parameters
        ----------
        k : int, default=None
            Return the ``k`` most suspicious points.
        fraction : float in (0, 1], default=None
            Return this fraction of the training set instead.
        method : str, default="auto"
            The score, as in :meth:`mislabel_scores`.
        cv : int, default=5
            Number of folds of the cross-fitted scores and probabilities.
        as_frame : bool, default=False
            Return the rows as a DataFrame indexed by the training rows' own
            labels (so ``df.loc[result.index]`` are the suspects), most
            suspicious first, with columns ``position`` (the row's position in
            the training data), ``label``, ``prediction`` (when the model
            predicts) and ``score``.

        Returns
        -------
        indices : ndarray of int or DataFrame
            Training indices (positions), most suspicious first (cleanlab's
            ranked-indices shape). The self-sized set may be empty.
        """
        check_is_fitted(self)
        mislabel.check_cut(k, fraction)
        check_param("find_mislabeled", "as_frame", as_frame, [BOOLEAN])
        if k is None and fraction is None and self.classes_ is None:
            raise ValueError(
                "find_mislabeled sizes its set from class probabilities, which a regressor "
                "does not have; pass k (e.g. k=10) or fraction (e.g. fraction=0.05)."
            )
        if self._on_dask():
            if as_frame:
                self._not_on_dask("find_mislabeled(as_frame=True)")
            scores = self._mislabel_scores(method, cv)
            dask_path = _dask_module("dask data")
            if k is None and fraction is None:
                proba = self.cross_fitted_losses(cv=cv).held_out_proba
                return dask_path.flagged_suspects(self._adapter, proba, scores)
            return dask_path.top_suspects(scores, k=k, fraction=fraction, verbose=self.verbose)
        scores = self._mislabel_scores(method, cv)
        ranked = mislabel.rank_suspects(scores, k=k, fraction=fraction)
        if k is None and fraction is None:
            flagged = mislabel.flag_mislabeled(
                np.searchsorted(self.classes_, as_target_array(self._fit_inputs[1], self.n_train_)),
                self.cross_fitted_losses(cv=cv).held_out_proba,
                scores,
            )
            ranked = ranked[flagged[ranked]]
        if as_frame:
            columns = {"position": np.arange(self.n_train_), "score": scores}
            frame = self._training_frame(columns, "find_mislabeled", positions=ranked)
            frame = frame[["position", *[c for c in frame.columns if c != "position"]]]
            frame.attrs["method"] = mislabel.resolve_method(method, self.model_family_)
            return frame
        return ranked

    def validate(self, X, y, *, n_points=10, refit_steps=100, random_state=None):
        """Check the estimates against real retraining on your own model and data.

        For each test sample, its ``n_points`` most influential training points
        (largest ``|I_up,loss|``) are removed one at a time and the model is
        retrained: a LogisticRegression / Ridge is refitted exactly (tight
        tolerance, earlier Pipeline steps fixed); a skorch net is retrained from
        its fitted parameters with full-batch L-BFGS for ``refit_steps``
        iterations (Basu et al.'s protocol). Each retraining keeps the other
        points' weights and the L2 term, which is the objective the influence
        function differentiates. Cost: ``n_test * n_points`` retrainings at most.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            A few test samples.
        y : array-like of shape (n_test,)
            Their labels or targets.
        n_points : int >= 1, default=10
            Training points removed per test sample (all of them when larger than
            the training set).
        refit_steps : int, default=100
            L-BFGS iterations per retraining (torch nets only).
        random_state : None
            Unused; retraining is deterministic. Kept for API symmetry.

        Returns
        -------
        result : Bunch
            ``train_indices``, ``predicted`` (``-removal_weights_[i] * I``) and
            ``actual`` loss changes, each ``(n_test, n_points)``, plus ``pearson``
            and ``spearman`` correlations over all pairs.
        """
        self._not_on_dask("validate")
        from skinfluence.validation import validate

        check_is_fitted(self)
        check_param("validate", "n_points", n_points, [Interval("int", 1, None)])
        check_param("validate", "refit_steps", refit_steps, [POSITIVE_INT])
        check_param("validate", "random_state", random_state, RANDOM_STATE)
        data = self._prepare(X, y)
        influence = compute.influence_matrix(self._adapter, self._solver, data, **self._budget())
        opts = {"refit_steps": refit_steps} if self.model_family_ == "torch" else {}
        return validate(self._adapter, data, influence, n_points=n_points, **opts)

    def score(self, X, y, sample_weight=None):
        """The wrapped model's own ``score`` (accuracy or R^2), unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.
        y : array-like of shape (n_samples,)
            True labels or targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            ``estimator_.score(X, y, sample_weight)``.
        """
        check_is_fitted(self)
        self._validate_X(X, y, reset=False)
        return float(self.estimator_.score(X, y, sample_weight=sample_weight))

    def _delegate(self, method, X):
        check_is_fitted(self)
        self._validate_X(X, reset=False)
        return getattr(self.estimator_, method)(X)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """The wrapped model's ``predict``, unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples, as the model takes them (a Pipeline's raw input included).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            ``estimator_.predict(X)``.
        """
        return self._delegate("predict", X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """The wrapped model's ``predict_proba``, unchanged (only when it has one).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            ``estimator_.predict_proba(X)``, columns in the order of ``classes_``.
        """
        return self._delegate("predict_proba", X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """The wrapped model's ``predict_log_proba``, unchanged (only when it has one).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``estimator_.predict_log_proba(X)``.
        """
        return self._delegate("predict_log_proba", X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """The wrapped model's ``decision_function``, unchanged (only when it has one).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            ``estimator_.decision_function(X)``.
        """
        return self._delegate("decision_function", X)

    def _repr_html_(self):
        """HTML summary for Jupyter: model, solver, damping, n_train, condition, stationarity."""
        from skinfluence._html import explainer_html

        return explainer_html(self)

    def _repr_mimebundle_(self, **kwargs):
        # BaseEstimator's bundle carries sklearn's diagram as text/html, which Jupyter
        # prefers over _repr_html_; replace it with the summary.
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        model = (
            self.estimator.estimator
            if isinstance(self.estimator, FrozenEstimator)
            else self.estimator
        )
        model_tags = get_tags(model)
        tags.input_tags.sparse = model_tags.input_tags.sparse
        tags.input_tags.allow_nan = model_tags.input_tags.allow_nan
        # predict / predict_proba delegate to the model, so it is what the model is
        tags.estimator_type = model_tags.estimator_type
        tags.classifier_tags = model_tags.classifier_tags
        tags.regressor_tags = model_tags.regressor_tags
        tags.target_tags.multi_output = model_tags.target_tags.multi_output
        return tags


#: Private attributes that belong to a fit (cleared when a fit fails part-way).
_FIT_STATE = (
    "_adapter",
    "_solver",
    "_auto_reason",
    "_fit_inputs",
    "_train_index",
    "_cross_fitted_cache",
    "_train_cache",
)


def _is_dask(x):
    """Whether ``x`` is a dask collection (checked without importing dask)."""
    return callable(getattr(type(x), "__dask_graph__", None))


def _is_fitted(model):
    try:
        check_is_fitted(final_step(model))
    except NotFittedError:
        return False
    return True


def _dask_module(what):
    """skinfluence.dask, or an ImportError saying which extra ``what`` needs."""
    try:
        from skinfluence import dask as dask_path
    except ImportError as exc:
        raise ImportError(
            f"{what} needs dask: pip install 'skinfluence[dask]' (dask[distributed])."
        ) from exc
    return dask_path


def _fits_step_by_step(model, fit_params):
    """Whether the explainer fits this Pipeline itself: one of linear models, nothing
    routed to its steps, no caching, every earlier step a transformer."""
    if not isinstance(model, Pipeline) or fit_params or model.memory is not None:
        return False
    last = model.steps[-1][1]
    if not isinstance(last, SUPPORTED_LINEAR):
        return False
    return all(
        step not in (None, "passthrough") and hasattr(step, "fit_transform")
        for _, step in model.steps[:-1]
    )


def _indexable(a, copy):
    """A fit input as something rows can be taken from (a copy when asked)."""
    if hasattr(a, "detach") and hasattr(a, "clone"):  # torch tensor
        return a.detach().clone() if copy else a
    if sp.issparse(a) or hasattr(a, "iloc"):  # sparse matrix, pandas
        return a.copy() if copy else a
    arr = np.asarray(a)  # lists and other array-likes become arrays (a copy already)
    return arr.copy() if copy and arr is a else arr


def _n_input_columns(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2:
        return shape[1]
    return len(X[0])


def _num_samples(X, name="X"):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    if shape is None and hasattr(X, "__len__") and not isinstance(X, str):
        return len(X)
    arr = np.asarray(X)
    if arr.ndim == 0:
        raise ValueError(
            f"{name} must hold one entry per sample, got the scalar {arr.item()!r}; for a "
            f"single sample pass a list or array, e.g. {name}=[{arr.item()!r}]."
        )
    return arr.shape[0]


def _check_sample_weight(sample_weight, n):
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight has shape {sw.shape}, expected ({n},).")
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight contains NaN or infinity.")
    if np.any(sw < 0):
        raise ValueError("sample_weight has negative values.")
    return sw
