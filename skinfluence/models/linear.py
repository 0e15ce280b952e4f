"""Closed-form adapter for linear models: LogisticRegression, Ridge, LinearRegression.

Every supported model is a generalised linear model with ``K`` linear outputs
``eta_i = B x~_i`` where ``x~_i = [x_i, c]`` carries the intercept as a constant
feature ``c`` (1, ``intercept_scaling`` for liblinear, absent without an intercept).
The parameters are the rows of ``B`` (shape ``(K, d~)``) flattened class by class:
``theta[k * d~ + j] = B[k, j]``, the intercept last in each row.

For a per-sample loss with residual ``r_i = dL/deta`` and curvature
``C_i = d2L/deta2``:

- gradient ``g_i = r_i (kron) x~_i``
- Hessian of the mean objective ``(1/S) sum_i s_i C_i (kron) x~_i x~_i^T + lam * P``

with ``P`` the diagonal mask of penalised coordinates. All arithmetic is float64;
sparse CSR features stay sparse.
"""

import copy

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, logsumexp, softmax
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.utils import check_array
from sklearn.utils.class_weight import compute_class_weight

from skinfluence.models.base import ModelAdapter, as_target_array, split_pipeline

SUPPORTED_LINEAR = (LogisticRegression, Ridge, LinearRegression)


class _Block:
    """Prepared samples: float64 features (dense or CSR) and encoded targets."""

    __slots__ = ("X", "y")

    def __init__(self, X, y):
        self.X = X
        self.y = y


def _same_container(prepared, original):
    """Whether ``prepared`` can stand for ``original`` as model input (same type and dtype)."""
    if sp.issparse(original):
        return original.format == "csr" and original.dtype == prepared.dtype
    return type(original) is np.ndarray and original.dtype == prepared.dtype


def _shares_memory(prepared, original):
    if sp.issparse(prepared) or sp.issparse(original):
        a = getattr(prepared, "data", None)
        b = getattr(original, "data", None) if sp.issparse(original) else None
        return a is not None and isinstance(b, np.ndarray) and np.may_share_memory(a, b)
    try:
        return np.may_share_memory(prepared, np.asarray(original))
    except (TypeError, ValueError):
        return True


def _lr_penalty_strength(model):
    """``1/C`` for a pure L2 LogisticRegression, 0 without penalty; else raise."""
    params = model.get_params()
    penalty = params.get("penalty", "deprecated")
    l1_ratio = params.get("l1_ratio", None)
    C = float(params["C"])
    if penalty == "deprecated":
        if l1_ratio is None or l1_ratio == 0:
            penalty = "l2"
        elif l1_ratio == 1:
            penalty = "l1"
        else:
            penalty = "elasticnet"
    if penalty == "elasticnet" and (l1_ratio is None or l1_ratio == 0):
        penalty = "l2"
    if penalty in ("l1", "elasticnet"):
        raise ValueError(
            f"LogisticRegression with an {penalty!r} penalty (l1_ratio={l1_ratio}) is "
            "not supported: influence functions need a twice-differentiable "
            "objective. Use an L2 penalty (l1_ratio=0) or no penalty."
        )
    if penalty is None or penalty == "none" or np.isinf(C):
        return 0.0
    return 1.0 / C


def _class_weights(model, y, sample_weight):
    """Per-sample class weights exactly as LogisticRegression computes them."""
    if model.class_weight is None:
        return np.ones(len(y))
    classes = model.classes_
    try:
        cw = compute_class_weight(
            model.class_weight, classes=classes, y=y, sample_weight=sample_weight
        )
    except TypeError:  # scikit-learn < 1.7 has no sample_weight argument
        cw = compute_class_weight(model.class_weight, classes=classes, y=y)
    return cw[np.searchsorted(classes, y)]


class LinearAdapter(ModelAdapter):
    """Closed-form gradients and Hessian of a fitted linear model.

    Parameters
    ----------
    estimator : LogisticRegression, Ridge, LinearRegression or Pipeline
        The fitted model. For a Pipeline, every step but the last is a fixed
        feature map and influence is taken with respect to the last step.
    X, y : array-like
        The data the model was fitted on.
    sample_weight : array-like of shape (n_samples,) or None
        The weights the model was fitted with.
    blocking : skinfluence.blocking.Blocking or None
        The memory policy for the sweeps over the training set (Hessian, HVPs,
        objective gradient); None uses scikit-learn's ``working_memory``.
    copy_X : bool
        Copy the training features when they would otherwise share memory with
        the caller's array, so that later changes to it cannot alter results.
    X_steps : array-like or None
        ``X`` through the Pipeline's earlier steps, when the caller has it (it
        is then not transformed again).
    """

    def __init__(
        self, estimator, X, y, sample_weight=None, *, blocking=None, copy_X=True, X_steps=None
    ):
        self.transform, model = split_pipeline(estimator)
        self.model = model
        self.blocking = blocking
        self._setup_model(model)
        y_raw = np.asarray(y)
        if self.family != "squared" and y_raw.ndim == 2 and y_raw.shape[1] == 1:
            y_raw = y_raw.ravel()  # a column of labels, as prepare() accepts it
        self._train = self.prepare(X, y, X_steps=X_steps)
        if copy_X and self.transform is None and _shares_memory(self._train.X, X):
            self._train.X = self._train.X.copy()
        if self.transform is None and _same_container(self._train.X, X):
            self.train_inputs = self._train.X
        n = self._train.X.shape[0]
        s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        if self.family != "squared":
            s = s * _class_weights(model, y_raw, sample_weight)
        S = s.sum()
        if not S > 0:
            raise ValueError("The sample weights sum to zero: there is no objective.")
        self._set_weights(s, S)

    def _set_weights(self, s, total_weight):
        self.n_train = s.size
        self._s = s
        self._total_weight = float(total_weight)
        self.removal_weights = s / total_weight
        self.lam = self._penalty_per_weight / total_weight

    @classmethod
    def template(cls, model, total_weight, *, blocking=None):
        """An adapter without training data, for the objective of weight ``total_weight``.

        ``total_weight`` is ``S``, the sum of the objective weights of a training set
        held elsewhere (skinfluence.dask): the penalty is scaled by it, and
        :meth:`on_block` gives adapters over pieces of that set.
        """
        self = cls.__new__(cls)
        self.transform, inner = split_pipeline(model)
        self.model = inner
        self.blocking = blocking
        self._setup_model(inner)
        self._train = None
        self._set_weights(np.empty(0), total_weight)
        return self

    def on_block(self, data, weights):
        """A view over prepared rows ``data`` of the training set, weights ``s_i`` each.

        ``removal_weights`` and the penalty stay those of the whole objective (the
        ``S`` this adapter was built with), so the block's Hessian, gradient and
        per-sample quantities are its exact share of the full objective's.
        """
        view = copy.copy(self)
        view._train = data
        view._set_weights(np.asarray(weights, dtype=np.float64), self._total_weight)
        return view

    # -- model description -------------------------------------------------------
    def _setup_model(self, model):
        if not isinstance(model, SUPPORTED_LINEAR):
            raise TypeError(f"{type(model).__name__} is not a supported linear model.")
        # a copy: editing the fitted model's coef_ in place must not change results
        coef = np.array(model.coef_, dtype=np.float64)
        if isinstance(model, LogisticRegression):
            self._setup_logistic(model, coef)
        else:
            self._setup_regression(model, coef)
        self.coef = np.atleast_2d(coef)
        self.n_outputs, self.n_features = self.coef.shape
        self.d_tilde = self.n_features + (self.c != 0)
        B = np.zeros((self.n_outputs, self.d_tilde))
        B[:, : self.n_features] = self.coef
        if self.c != 0:
            B[:, -1] = self.intercept / self.c
        self.theta = B.ravel()
        self.n_params = self.theta.size
        mask = np.ones(self.d_tilde)
        if self.c != 0 and not self._intercept_penalised:
            mask[-1] = 0.0
        self.penalty_mask = np.tile(mask, self.n_outputs)

    def _setup_logistic(self, model, coef):
        self.classes_ = np.array(model.classes_)  # a copy, like every fitted array kept here
        n_classes = len(self.classes_)
        multi_class = getattr(model, "multi_class", "deprecated")
        if n_classes > 2 and (
            multi_class == "ovr" or (multi_class == "auto" and model.solver == "liblinear")
        ):
            raise ValueError(
                "One-vs-rest LogisticRegression is not supported: it fits K separate "
                "objectives. Use the multinomial model (the default since "
                "scikit-learn 1.5)."
            )
        if n_classes == 2 and coef.shape[0] != 1:
            raise ValueError("Binary LogisticRegression with 2 coefficient rows.")
        self.family = "binary" if n_classes == 2 else "multinomial"
        self._penalty_per_weight = _lr_penalty_strength(model)
        self._init_intercept(model, liblinear=model.solver == "liblinear")

    def _setup_regression(self, model, coef):
        self.classes_ = None
        self.family = "squared"
        if getattr(model, "positive", False):
            raise ValueError(
                f"{type(model).__name__}(positive=True) is a constrained fit: its "
                "optimum is not a stationary point, so influence functions do not "
                "apply."
            )
        if isinstance(model, Ridge):
            alpha = np.asarray(model.alpha, dtype=float)
            if alpha.size != 1:
                raise ValueError("Ridge with one alpha per target is not supported.")
            # sum-form objective sum s_i (y-yhat)^2 + alpha |w|^2 divided by S
            self._penalty_per_weight = 2.0 * float(alpha)
        else:
            self._penalty_per_weight = 0.0
        self._init_intercept(model, liblinear=False)

    def _init_intercept(self, model, liblinear):
        self._intercept_penalised = liblinear
        if model.fit_intercept:
            self.c = float(model.intercept_scaling) if liblinear else 1.0
            self.intercept = np.atleast_1d(np.array(model.intercept_, float))
        else:
            self.c = 0.0
            self.intercept = None

    family_name = "linear"

    def parameter_labels(self, feature_names):
        """Labels of the flat parameters: feature names then ``"intercept"``.

        With several outputs (multinomial classes, Ridge targets) each label is a
        pair ``(output, feature)``: the class label, or the target's position.
        """
        names = [*feature_names, *(["intercept"] if self.c != 0 else [])]
        if self.n_outputs == 1:
            return names
        outputs = self.classes_ if self.classes_ is not None else range(self.n_outputs)
        return [(out, name) for out in outputs for name in names]

    # -- data ------------------------------------------------------------------
    def prepare(self, X, y, X_steps=None):
        if X_steps is not None:
            X = X_steps
        elif self.transform is not None:
            X = self.transform.transform(X)
        X = check_array(
            X,
            accept_sparse="csr",
            dtype=np.float64,
            ensure_all_finite=True,
            input_name="X" if self.transform is None else "X after the Pipeline's steps",
        )
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"X has {X.shape[1]} features, but the model expects "
                f"{self.n_features} features as input."
            )
        return _Block(X, self._encode_y(y, X.shape[0]))

    def _encode_y(self, y, n):
        y = as_target_array(y, n)
        if self.family == "squared":
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
            y = y.reshape(n, -1)
            if y.shape[1] != self.n_outputs:
                raise ValueError(f"y has {y.shape[1]} targets, the model has {self.n_outputs}.")
            return y
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional for a classifier, got {y.shape}.")
        unseen = ~np.isin(y, self.classes_)
        if unseen.any():
            raise ValueError(
                f"y contains labels not seen during fit: {np.unique(y[unseen])[:10].tolist()}; "
                f"known classes are {self.classes_.tolist()}."
            )
        return np.searchsorted(self.classes_, y)

    def n_samples(self, data):
        return data.X.shape[0]

    def take(self, data, index):
        return _Block(data.X[index], data.y[index])

    @property
    def train_data(self):
        return self._train

    # -- building blocks ---------------------------------------------------------
    def _xt_dot(self, X, B):
        """``X~ @ B`` for ``B`` of shape ``(d~, m)`` without forming ``X~``."""
        out = np.asarray(X @ B[: self.n_features])
        if self.c != 0:
            out = out + self.c * B[-1]
        return out

    def _xtT_dot(self, X, Z):
        """``X~.T @ Z`` for ``Z`` of shape ``(n, m)``, returns ``(d~, m)``."""
        top = np.asarray(X.T @ Z)
        if self.c == 0:
            return top
        return np.vstack([top, self.c * Z.sum(axis=0, keepdims=True)])

    def _eta(self, X, coef=None, intercept=None):
        coef = self.coef if coef is None else coef
        intercept = self.intercept if intercept is None else intercept
        eta = np.asarray(X @ coef.T)
        if self.c != 0:
            eta = eta + intercept
        return eta

    def _residual(self, data, eta=None):
        """``(r, w)``: residual ``dL/deta`` and curvature data for the block.

        ``w`` is ``(n, 1)`` (scalar curvature) for binary and squared loss and the
        class probabilities ``(n, K)`` for the multinomial, whose curvature is
        ``diag(p) - p p^T``.
        """
        eta = self._eta(data.X) if eta is None else eta
        if self.family == "binary":
            p = expit(eta)
            return p - data.y[:, None], p * (1.0 - p)
        if self.family == "multinomial":
            p = softmax(eta, axis=1)
            r = p.copy()
            r[np.arange(len(r)), data.y] -= 1.0
            return r, p
        return 2.0 * (eta - data.y), np.full((eta.shape[0], 1), 2.0)

    def _apply_curvature(self, w, Z):
        """``C_i @ Z_i`` for ``Z`` of shape ``(n, K, m)``."""
        if self.family == "multinomial":
            return w[:, :, None] * (Z - np.einsum("nk,nkm->nm", w, Z)[:, None, :])
        return w[:, :, None] * Z

    # -- interface -------------------------------------------------------------
    def per_sample_losses(self, data, eta=None):
        eta = self._eta(data.X) if eta is None else eta
        if self.family == "binary":
            e = eta[:, 0]
            return -np.where(data.y == 1, log_expit(e), log_expit(-e))
        if self.family == "multinomial":
            return logsumexp(eta, axis=1) - eta[np.arange(len(eta)), data.y]
        return ((eta - data.y) ** 2).sum(axis=1)

    def per_sample_gradients(self, data):
        r, _ = self._residual(data)
        return self._kron_rows(data.X, r)

    def _kron_rows(self, X, V):
        """Rows ``v_i (kron) x~_i``, ``(n, n_params)``: ``J_i^T v_i`` of a linear model."""
        n, d = X.shape[0], self.n_features
        if sp.issparse(X):
            parts = []
            for k in range(self.n_outputs):
                parts.append(X.multiply(V[:, k : k + 1]))
                if self.c != 0:
                    parts.append(sp.csr_matrix(self.c * V[:, k : k + 1]))
            return sp.hstack(parts, format="csr")
        G = np.empty((n, self.n_outputs, self.d_tilde))
        np.multiply(X[:, None, :], V[:, :, None], out=G[:, :, :d])
        if self.c != 0:
            G[:, :, d] = self.c * V
        return G.reshape(n, self.n_params)

    # -- outputs (Newton-step removal) ---------------------------------------------
    # A multinomial model's outputs are its K - 1 logits less the last class's: the
    # softmax is blind to a shift of all K, so that shift (a flat direction) never
    # enters, and every product over outputs is a K-th smaller.
    def output_derivatives(self, data):
        eta = self._eta(data.X)
        r, w = self._residual(data, eta)
        n, K = r.shape
        if self.family == "multinomial":
            k = K - 1
            p = w[:, :k]
            C = -p[:, :, None] * p[:, None, :]
            C[:, np.arange(k), np.arange(k)] += p
            return eta[:, :k] - eta[:, k:], r[:, :k], C
        C = np.zeros((n, K, K))  # binary: p (1 - p); squared: 2 on every output
        C[:, np.arange(K), np.arange(K)] = w
        return eta, r, C

    def output_losses(self, data, eta):
        y = data.y
        if self.family == "binary":
            e = eta[..., 0]
            return -np.where(y[:, None] == 1, log_expit(e), log_expit(-e))
        if self.family == "multinomial":  # eta holds the K - 1 reduced logits
            full = np.concatenate([eta, np.zeros((*eta.shape[:2], 1))], axis=2)
            own = np.take_along_axis(full, y[:, None, None], axis=2)[..., 0]
            return logsumexp(full, axis=2) - own
        return ((eta - y[:, None, :]) ** 2).sum(axis=2)

    def output_loss_changes(self, data, eta, delta):
        if self.family == "binary":
            return self._binary_loss_changes(data, eta, delta)
        if self.family == "multinomial":
            return self._multinomial_loss_changes(data, eta, delta)
        return super().output_loss_changes(data, eta, delta)

    def _binary_loss_changes(self, data, eta, delta):
        # L = log(1 + e^-m) of the margin m = s * eta, s = +-1 the label's sign. With
        # q = expit(-m), L(m - x) - L(m) = log1p(q * expm1(x)) for x = -s * d: ufuncs in
        # place, and no cancellation between two losses; |x| > 30 takes the exact form
        sign = np.where(data.y == 1, 1.0, -1.0)
        m = sign * eta[:, 0]
        x = delta[0]
        np.multiply(x, -sign[:, None], out=x)
        big = None
        if x.size and max(float(x.max()), -float(x.min())) > 30.0:
            big = np.nonzero(np.abs(x) > 30.0)
            x_big = x[big]
        np.expm1(x, out=x)
        np.multiply(x, expit(-m)[:, None], out=x)
        np.log1p(x, out=x)
        if big is not None:
            mt = m[big[0]]
            x[big] = np.logaddexp(0.0, x_big - mt) - np.logaddexp(0.0, -mt)
        return x

    def _multinomial_loss_changes(self, data, eta, delta):
        # L = log(sum_k p_k e^d_k) - d_y over the K classes (d_K = 0): log1p of
        # sum_k<K p_k expm1(d_k), less d_y; pairs with some |d_k| > 30 take logsumexp
        y, k = data.y, eta.shape[1]
        full = np.concatenate([eta, np.zeros((eta.shape[0], 1))], axis=1)
        p = softmax(full, axis=1)
        n, m = delta[0].shape
        own = np.zeros((n, m))
        for c in range(k):
            own[y == c] = delta[c][y == c]
        big = None
        if n and m and max(max(float(d.max()), -float(d.min())) for d in delta) > 30.0:
            big = np.nonzero(np.any([np.abs(d) > 30.0 for d in delta], axis=0))
            d_big = np.stack([d[big] for d in delta], axis=1)
        for c in range(k):
            np.expm1(delta[c], out=delta[c])
            np.multiply(delta[c], p[:, c : c + 1], out=delta[c])
        out = delta[0]
        for c in range(1, k):
            out += delta[c]
        np.log1p(out, out=out)
        out -= own
        if big is not None:
            t = big[0]
            z = np.concatenate([full[t, :k] + d_big, np.zeros((t.size, 1))], axis=1)
            new = logsumexp(z, axis=1) - z[np.arange(t.size), y[t]]
            out[big] = new - (logsumexp(full[t], axis=1) - full[t, y[t]])
        return out

    def _full_outputs(self, V):
        """Coefficients on the K outputs of ``V`` given on the model's outputs."""
        V = np.asarray(V, dtype=np.float64)
        if self.family == "multinomial":  # output k is eta_k - eta_K
            return np.concatenate([V, -V.sum(axis=1, keepdims=True)], axis=1)
        return V

    def output_vjps(self, data, V):
        G = self._kron_rows(data.X, self._full_outputs(V))
        return G.toarray() if sp.issparse(G) else G

    def output_moves(self, data, V, U, out, reduced=False):
        # out[k] = sum_l v_l * (U_{l,k}^T x~): one GEMM per pair of outputs, written
        # straight into out (the product's transpose, the layout BLAS writes fastest).
        # reduced: U's rows are already per model output (multinomial: U_l - U_K)
        K, dt, n_t = len(out), self.d_tilde, out[0].shape[0]
        n_rows = self.n_outputs - 1 if reduced and self.family == "multinomial" else None
        Ur = np.asarray(U).reshape(n_rows or self.n_outputs, dt, K, n_t)
        if self.family == "multinomial" and not reduced:  # train output l is eta_l - eta_K
            Ur = Ur[:-1] - Ur[-1:]
        X = data.X
        dense = not sp.issparse(X)
        if dense and self.c != 0:  # the intercept as a feature: one GEMM, no extra pass
            X = np.hstack([X, np.full((X.shape[0], 1), self.c)])
        active = [l for l in range(Ur.shape[0]) if V[:, l].any()]  # one-hot V: one
        tmp = np.empty_like(out[0]) if len(active) > 1 else None
        for k in range(K):
            if not active:
                out[k][...] = 0.0
            for i, l in enumerate(active):
                dst = out[k] if i == 0 else tmp
                A = Ur[l, :, k, :]  # (d~, n_t)
                if dense:
                    np.matmul(A.T if self.c != 0 else A[: self.n_features].T, X.T, out=dst)
                else:
                    dst[...] = (X @ A[: self.n_features]).T
                    if self.c != 0:
                        dst += self.c * A[-1][:, None]
                dst *= V[:, l][None, :]
                if i:
                    out[k] += dst
        return out

    def output_vjp_dot(self, data, V, M):
        # sum_k v_ik (x~_i . M_k), never the (n, P) rows; computed as its transpose
        # (M_k^T X~^T), the layout BLAS writes fastest, and returned as a view
        Mr = np.asarray(M).reshape(self.n_outputs, self.d_tilde, -1)
        if self.family == "multinomial":  # v . (e_k - e_K): against M_k - M_K
            Mr = Mr[:-1] - Mr[-1:]
        out = [np.empty((Mr.shape[2], self.n_samples(data)))]
        self.output_moves(data, V, Mr.reshape(-1, Mr.shape[2]), out, reduced=True)
        return out[0].T

    def reweighted(self, weights, theta=None):
        view = copy.copy(self)
        view.removal_weights = self.removal_weights * np.asarray(weights, dtype=np.float64)
        if theta is not None:
            B = np.asarray(theta, dtype=np.float64).reshape(self.n_outputs, self.d_tilde)
            view.theta = B.ravel().copy()
            view.coef = B[:, : self.n_features].copy()
            view.intercept = self.c * B[:, -1] if self.c != 0 else None
        return view

    def hessian(self):
        K, dt = self.n_outputs, self.d_tilde
        H = np.zeros((self.n_params, self.n_params))
        sw = self.removal_weights
        for idx in self._row_slices(self.n_train, self.itemsize * (self.n_params + dt) * 2):
            blk = self.take(self._train, idx)
            _, w = self._residual(blk)
            X, s = blk.X, sw[idx]
            if self.family == "multinomial":
                for k in range(K):
                    H[k * dt : (k + 1) * dt, k * dt : (k + 1) * dt] += self._gram(X, s * w[:, k])
                M = self._xtilde_dense(X, w * np.sqrt(s)[:, None])
                H -= M.T @ M
            else:
                A = self._gram(X, s * w[:, 0])
                for k in range(K):
                    H[k * dt : (k + 1) * dt, k * dt : (k + 1) * dt] += A
        H[np.diag_indices_from(H)] += self.lam * self.penalty_mask
        return H

    def _gram(self, X, weights):
        """``X~.T diag(weights) X~`` as a dense ``(d~, d~)`` array."""
        XW = X.multiply(weights[:, None]).tocsr() if sp.issparse(X) else X * weights[:, None]
        top = X.T @ XW
        top = top.toarray() if sp.issparse(top) else top
        if self.c == 0:
            return top
        col = self.c * np.asarray(XW.sum(axis=0)).ravel()
        G = np.empty((self.d_tilde, self.d_tilde))
        G[:-1, :-1] = top
        G[:-1, -1] = G[-1, :-1] = col
        G[-1, -1] = self.c**2 * weights.sum()
        return G

    def _xtilde_dense(self, X, P):
        """Rows ``P_i (kron) x~_i`` as a dense ``(n, K * d~)`` array."""
        Xd = X.toarray() if sp.issparse(X) else X
        n = Xd.shape[0]
        M = np.empty((n, P.shape[1], self.d_tilde))
        M[:, :, : self.n_features] = Xd[:, None, :] * P[:, :, None]
        if self.c != 0:
            M[:, :, -1] = self.c * P
        return M.reshape(n, -1)

    def hvp(self, V, indices=None):
        V = np.asarray(V, dtype=np.float64)
        squeeze = V.ndim == 1
        V = V.reshape(self.n_params, -1)
        K, dt, m = self.n_outputs, self.d_tilde, V.shape[1]
        # all K outputs' columns side by side: one product with X~ each way per block
        W = V.reshape(K, dt, m).transpose(1, 0, 2).reshape(dt, K * m)
        out = np.zeros((dt, K * m))
        data, sw = self._train, self.removal_weights
        if indices is not None:  # a mini-batch Hessian (for stochastic solvers)
            data, sw = self.take(data, indices), sw[indices] * (sw.sum() / sw[indices].sum())
        for idx in self._row_slices(self.n_samples(data), self.itemsize * K * m * 3):
            blk = self.take(data, idx)
            _, w = self._residual(blk)
            Z = self._xt_dot(blk.X, W).reshape(-1, K, m)
            CZ = self._apply_curvature(w, Z)
            CZ *= sw[idx][:, None, None]
            out += self._xtT_dot(blk.X, CZ.reshape(-1, K * m))
        res = out.reshape(dt, K, m).transpose(1, 0, 2).reshape(self.n_params, m)
        res += (self.lam * self.penalty_mask)[:, None] * V
        return res[:, 0] if squeeze else res

    def null_space(self):
        if self.family != "multinomial":
            return None
        unpenalised = np.flatnonzero(self.penalty_mask[: self.d_tilde] == 0)
        if self.lam == 0:
            unpenalised = np.arange(self.d_tilde)
        if unpenalised.size == 0:
            return None
        K, dt = self.n_outputs, self.d_tilde
        N = np.zeros((self.n_params, unpenalised.size))
        for col, j in enumerate(unpenalised):
            N[np.arange(K) * dt + j, col] = 1.0 / np.sqrt(K)
        return N

    def objective_gradient(self):
        sw = self.removal_weights
        total = np.zeros((self.d_tilde, self.n_outputs))
        for idx in self._row_slices(self.n_train, self.itemsize * self.n_outputs * 4):
            blk = self.take(self._train, idx)
            r, _ = self._residual(blk)
            total += self._xtT_dot(blk.X, r * sw[idx][:, None])
        return total.T.ravel() + self.lam * self.penalty_mask * self.theta

    def perturbation_dot(self, data, U):
        """``U_t . d/dx (grad_theta L(z_i))`` for every pair, ``(m, n, n_features)``.

        ``U`` has shape ``(m, n_params)``. With ``u_t = H^-1 g_test`` this is
        ``-I_pert,loss``.
        """
        m = U.shape[0]
        K, dt, d = self.n_outputs, self.d_tilde, self.n_features
        Ur = U.reshape(m, K, dt)
        r, w = self._residual(data)
        # A[i, t, k] = u_{t,k} . x~_i
        A = self._xt_dot(data.X, Ur.reshape(m * K, dt).T).reshape(-1, m, K)
        CA = self._apply_curvature(w, A.transpose(0, 2, 1)).transpose(0, 2, 1)
        term1 = np.einsum("ntk,kd->tnd", CA, self.coef)
        term2 = np.einsum("nk,tkd->tnd", r, Ur[:, :, :d])
        return term1 + term2

    def retrained_losses(self, test_data, weights, *, tol=1e-10, max_iter=10_000):
        """Test losses of the last step refitted with training weights ``weights * s``.

        ``weights`` multiplies each point's objective weight (0 removes it); the
        regulariser is unchanged, as in a real refit of the model (sum-form
        objective ``C sum_i s_i L_i + |w|^2 / 2``). Earlier Pipeline steps stay fixed.
        """
        model = clone(self.model)
        extra = {"class_weight": None} if "class_weight" in model.get_params() else {}
        # only the options the model has (LinearRegression gained tol, never max_iter)
        own = model.get_params()
        extra.update({k: v for k, v in {"tol": tol, "max_iter": max_iter}.items() if k in own})
        model.set_params(**extra)
        keep = weights > 0
        y = self._train.y if self.family == "squared" else self.classes_[self._train.y]
        if self.family == "squared" and self.n_outputs == 1:
            y = y.ravel()
        model.fit(self._train.X[keep], y[keep], sample_weight=(self._s * weights)[keep])
        coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
        return self.per_sample_losses(test_data, eta=self._eta(test_data.X, coef, intercept))
