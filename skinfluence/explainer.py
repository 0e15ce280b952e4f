"""InfluenceExplainer: the scikit-learn meta-estimator users meet.

It validates input, fits or adopts the wrapped model, builds the adapter and the
solver, and hands the blocked work to ``compute.py``. It does no linear algebra.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch, get_tags
from sklearn.utils.validation import check_is_fitted, validate_data

from skinfluence import compute, crossfit
from skinfluence.compute import STATIONARITY_WARN
from skinfluence.models import SUPPORTED_LINEAR, check_supported, make_adapter
from skinfluence.solvers import SOLVERS, make_solver


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
    solver : {"auto", "direct", "cg", "lissa", "lowrank"}, default="auto"
        How ``H^-1`` is applied. "direct" factors the dense Hessian once (exact);
        "cg" runs conjugate gradient on Hessian-vector products (many parameters,
        e.g. wide sparse data or nets); "lissa" is the stochastic series of Koh &
        Liang; "lowrank" keeps the top eigenpairs of ``H`` (cheap self-influence,
        approximate). "auto" picks "direct" up to 3000 parameters, "cg" above.
    solver_params : dict or None, default=None
        Options of the chosen solver: ``tol`` (1e-8) and ``max_iter`` for "cg";
        ``depth`` (1000), ``scale`` (None: 1.5 x the largest eigenvalue, estimated),
        ``repeats`` (1), ``batch_size`` (64) for "lissa"; ``rank`` (50) and ``tol``
        for "lowrank".
    params : str, list of str or None, default=None
        Torch nets only: parameter names or module prefixes (e.g. ``"fc2"``) to take
        influence over; None means every parameter with ``requires_grad`` (freeze
        layers to leave them out).
    hessian : {"exact", "gauss-newton"}, default="exact"
        Torch nets only: the Hessian of the objective, or its Gauss-Newton
        approximation (positive semi-definite; useful for non-convex nets).
    dtype : None or "float64", default=None
        Torch nets only: compute in the module's dtype, or in float64 (on copies).
    device : str, torch.device or None, default=None
        Torch nets only: where to compute; None uses the net's parameters' device.
    hessian_samples : int or None, default=None
        Torch nets only: estimate the Hessian on this many random training points.
    batch_size : int or None, default=None
        Training samples per block when streaming gradients. None derives it
        from ``working_memory``.
    working_memory : float or None, default=None
        Budget in MiB for the largest temporary (a block of gradients and its
        products); None uses ``sklearn.get_config()["working_memory"]``.
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
        ``-removal_weights_[i] * influence[:, i]``.
    solver_ : str
        The solver used ("direct" or "cg"), after resolving "auto".
    damping_ : float
        The damping actually added to the Hessian.
    hessian_condition_ : float or None
        Condition number estimate of the damped Hessian ("direct" only).
    stationarity_ : float
        ``||grad R(theta_hat)||`` relative to the RMS per-sample gradient norm;
        influence functions assume it is close to 0 (a warning is raised above
        ``1e-3``).

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
        hessian_samples=None,
        batch_size=None,
        working_memory=None,
        copy_X=True,
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.damping = damping
        self.solver = solver
        self.solver_params = solver_params
        self.params = params
        self.hessian = hessian
        self.dtype = dtype
        self.device = device
        self.hessian_samples = hessian_samples
        self.batch_size = batch_size
        self.working_memory = working_memory
        self.copy_X = copy_X
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------
    def _check_params(self):
        if not (
            isinstance(self.damping, numbers.Real)
            and np.isfinite(self.damping)
            and self.damping >= 0
        ):
            raise ValueError(f"damping must be a finite number >= 0, got {self.damping!r}.")
        if self.solver_params is not None and not isinstance(self.solver_params, dict):
            raise ValueError(f"solver_params must be a dict or None, got {self.solver_params!r}.")
        if self.solver != "auto" and self.solver not in SOLVERS:
            raise ValueError(
                f"solver must be 'auto' or one of {sorted(SOLVERS)}, got {self.solver!r}."
            )
        if self.batch_size is not None and not (
            isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size must be a positive int or None, got {self.batch_size!r}.")
        if self.working_memory is not None and not (
            isinstance(self.working_memory, numbers.Real) and self.working_memory > 0
        ):
            raise ValueError(
                f"working_memory must be a positive number of MiB or None, got "
                f"{self.working_memory!r}."
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
        if y is not None and _num_samples(y) != _num_samples(X):
            raise ValueError(
                "X and y have inconsistent numbers of samples: "
                f"{_num_samples(X)} and {_num_samples(y)}."
            )

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
        est = self.estimator
        frozen = isinstance(est, FrozenEstimator)
        inner = est.estimator if frozen else est
        check_supported(inner)
        self._validate_X(X, y, reset=True)
        sample_weight = _check_sample_weight(sample_weight, _num_samples(X))
        if frozen:
            try:
                check_is_fitted(inner)
            except NotFittedError as exc:
                raise NotFittedError(
                    f"The {type(inner).__name__} inside FrozenEstimator is not fitted: "
                    "a frozen estimator is used as it is, so fit it first (or pass it "
                    "unfrozen to have the explainer fit a clone)."
                ) from exc
            model = inner
        else:
            model_fit_params = dict(fit_params)
            if sample_weight is not None:
                key = "sample_weight"
                if isinstance(inner, Pipeline):
                    key = f"{inner.steps[-1][0]}__sample_weight"
                model_fit_params[key] = sample_weight
            model = clone(inner).fit(X, y, **model_fit_params)
        self.estimator_ = model
        wm = self._working_memory()
        adapter = make_adapter(
            model,
            X,
            y,
            sample_weight,
            working_memory=wm,
            copy_X=self.copy_X,
            random_state=self.random_state,
            params=self.params,
            hessian=self.hessian,
            dtype=self.dtype,
            device=self.device,
            hessian_samples=self.hessian_samples,
        )
        self.stationarity_ = compute.stationarity(
            adapter, working_memory=wm, batch_size=self.batch_size
        )
        if not self.stationarity_ <= STATIONARITY_WARN:
            warnings.warn(
                f"The fitted parameters are not a stationary point of the training "
                f"objective: ||grad R|| is {self.stationarity_:.3g} times the typical "
                "per-sample gradient norm. Influence functions assume an optimum; "
                "refit with a smaller tol or a larger max_iter.",
                RuntimeWarning,
                stacklevel=2,
            )
        solver = make_solver(
            self.solver,
            adapter.n_params,
            damping=float(self.damping),
            random_state=self.random_state,
            **(self.solver_params or {}),
        )
        solver.fit(adapter)
        self._adapter = adapter
        self._solver = solver
        # what the cross-fitted mislabel scores refit on (skinfluence.crossfit)
        if self.copy_X and sample_weight is not None:
            sample_weight = sample_weight.copy()
        shared = adapter.train_inputs  # a private copy already, for a bare linear model
        self._fit_inputs = (
            shared if shared is not None else _indexable(X, self.copy_X),
            _indexable(y, self.copy_X),
            sample_weight,
            fit_params,
        )
        self._cross_fitted_cache = {}  # cv -> Bunch, see cross_fitted_losses
        self.classes_ = adapter.classes_
        self.n_train_ = adapter.n_train
        self.n_params_ = adapter.n_params
        self.model_family_ = adapter.family_name
        self.removal_weights_ = adapter.removal_weights
        self.solver_ = solver.name
        self.damping_ = solver.damping
        self.hessian_condition_ = getattr(solver, "condition_number_", None)
        return self

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
        return {
            "working_memory": self._working_memory(),
            "batch_size": self.batch_size,
            "verbose": self.verbose,
        }

    def influence(self, X, y):
        """Influence of every training point on the loss at each test sample.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_test, n_features)
            Test samples.
        y : array-like of shape (n_test,) or (n_test, n_targets)
            Their labels or targets.

        Returns
        -------
        influence : ndarray of shape (n_test, n_train)
            ``I_up,loss(z_train, z_test) = -grad L(z_test)^T H^-1 grad L(z_train)``.

        Notes
        -----
        Sign (Koh & Liang): positive = harmful (upweighting the training point
        raises the test loss), negative = helpful. Removing training point ``i``
        changes the test loss by about ``-removal_weights_[i] * influence[:, i]``
        (``-influence[:, i] / n_train_`` without sample weights).

        The training set is streamed in blocks; the largest temporary is bounded
        by ``working_memory``; the result itself is ``n_test * n_train`` floats.
        """
        data = self._prepare(X, y)
        return compute.influence_matrix(self._adapter, self._solver, data, **self._budget())

    def self_influence(self, X=None, y=None):
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

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Self-influence, higher = more influential on itself.
        """
        data = self._data(X, y)
        return compute.self_influence(self._adapter, self._solver, data, **self._budget())

    def most_influential(self, X, y, k=10):
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

        Returns
        -------
        result : Bunch
            ``helpful_indices``, ``helpful_values``: ``(n_test, k)`` training
            indices and their ``I_up,loss``, most negative (most helpful) first;
            ``harmful_indices``, ``harmful_values``: most positive (most harmful)
            first.
        """
        if not (isinstance(k, numbers.Integral) and k >= 1):
            raise ValueError(f"k must be a positive int, got {k!r}.")
        data = self._prepare(X, y)
        if k > self.n_train_:
            raise ValueError(f"k={k} is larger than the training set ({self.n_train_}).")
        h_idx, h_val, b_idx, b_val = compute.top_k_influence(
            self._adapter, self._solver, data, k, **self._budget()
        )
        return Bunch(
            helpful_indices=h_idx, helpful_values=h_val, harmful_indices=b_idx, harmful_values=b_val
        )

    def _train_subset(self, train_indices):
        data = self._adapter.train_data
        if train_indices is None:
            return data
        idx = np.asarray(train_indices)
        if idx.dtype == bool:
            if idx.shape != (self.n_train_,):
                raise ValueError("A boolean train_indices must have one entry per training point.")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError("train_indices must be a 1-d array of integer indices.")
        if idx.size and (idx.min() < -self.n_train_ or idx.max() >= self.n_train_):
            raise IndexError(f"train_indices out of range for {self.n_train_} training points.")
        return self._adapter.take(data, idx)

    def influence_params(self, train_indices=None):
        """Influence of upweighting training points on the parameters.

        Parameters
        ----------
        train_indices : array-like of int or bool, default=None
            Training points to return; None means all of them
            (``n_train * n_params`` floats).

        Returns
        -------
        params_influence : ndarray of shape (n_selected, n_params)
            ``I_up,params(z) = -H^-1 grad L(z)``. Removing training point ``i``
            moves the parameters by about ``-removal_weights_[i] * row``. The
            parameter layout is described in the class Notes.
        """
        check_is_fitted(self)
        data = self._train_subset(train_indices)
        return -compute.solved_test_gradients(self._adapter, self._solver, data)

    def perturbation_influence(self, X, y, *, train_indices=None):
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

        Returns
        -------
        pert : ndarray of shape (n_test, n_selected, n_model_features)
            ``I_pert,loss(z, z_test) = -grad L(z_test)^T H^-1 d/dx grad L(z)``:
            moving training input ``x`` by a small ``delta`` changes the test loss
            by about ``removal_weights_[i] * pert[t, i] @ delta``. For a Pipeline
            the features are those entering the last step.
        """
        test = self._prepare(X, y)
        train = self._train_subset(train_indices)
        U = compute.solved_test_gradients(self._adapter, self._solver, test)
        return -self._adapter.perturbation_dot(train, U)

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
        return self._adapter.per_sample_losses(self._data(X, y))

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
        data = self._data(X, y)
        return compute.gradient_norms(self._adapter, data, **self._budget())

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
            ndarrays of shape (n_train,), copies.
        """
        check_is_fitted(self)
        cv = crossfit.check_n_folds(cv)
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

    def mislabel_scores(self, method="auto", *, cv=5):
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

        Returns
        -------
        scores : ndarray of shape (n_train,)
            Suspicion scores (higher = worse).
        """
        from skinfluence.mislabel import mislabel_scores

        check_is_fitted(self)
        return mislabel_scores(self, method, family=self.model_family_, cv=cv)

    def find_mislabeled(self, k=None, fraction=None, method="auto", *, cv=5):
        """Training indices ranked by mislabel suspicion, most suspicious first.

        Parameters
        ----------
        k : int, default=None
            Return the ``k`` most suspicious points.
        fraction : float in (0, 1], default=None
            Return this fraction of the training set instead. With neither, all
            indices are returned, ranked.
        method : str, default="auto"
            The score, as in :meth:`mislabel_scores`.
        cv : int, default=5
            Number of folds of the cross-fitted scores.

        Returns
        -------
        indices : ndarray of int
            Training indices, most suspicious first (cleanlab's ranked-indices shape).
        """
        from skinfluence.mislabel import rank_suspects

        return rank_suspects(self.mislabel_scores(method, cv=cv), k=k, fraction=fraction)

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
        n_points : int, default=10
            Training points removed per test sample.
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
        from skinfluence.validation import validate

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
        tags.input_tags.sparse = get_tags(model).input_tags.sparse
        tags.input_tags.allow_nan = get_tags(model).input_tags.allow_nan
        return tags


def _indexable(a, copy):
    """A fit input as something rows can be taken from (a copy when asked)."""
    if hasattr(a, "detach") and hasattr(a, "clone"):  # torch tensor
        return a.detach().clone() if copy else a
    if sp.issparse(a) or hasattr(a, "iloc"):  # sparse matrix, pandas
        return a.copy() if copy else a
    arr = np.asarray(a)  # lists and other array-likes become arrays (a copy already)
    return arr.copy() if copy and arr is a else arr


def _num_samples(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    if hasattr(X, "__len__"):
        return len(X)
    return np.asarray(X).shape[0]


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
