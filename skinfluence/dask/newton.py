"""Newton's method on LogisticRegression's exact objective, one map-reduce per iteration."""

import copy
import warnings

import dask
import dask.array as da
import numpy as np
import scipy.linalg as sla
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_array

from skinfluence.dask.adapter import (
    DaskLinearAdapter,
    _objective_terms,
    aligned,
    check_model,
    training_rows,
)

#: Newton iterations of :func:`newton_fit` before it gives up (with a warning).
NEWTON_MAX_ITER = 100


# -- fitting: Newton's method on LogisticRegression's exact objective --------------------
def _with_theta(model, tpl, theta, n_iter):
    """A fitted copy of ``model`` at the flat parameters ``theta``."""
    fitted = clone(model)
    B = np.asarray(theta, dtype=np.float64).reshape(tpl.n_outputs, tpl.d_tilde)
    fitted.coef_ = B[:, : tpl.n_features].copy()
    fitted.intercept_ = tpl.c * B[:, -1] if tpl.c != 0 else np.zeros(tpl.n_outputs)
    fitted.classes_ = np.array(tpl.classes_)
    fitted.n_features_in_ = tpl.n_features
    fitted.n_iter_ = np.array([n_iter], dtype=np.int32)
    if hasattr(model, "feature_names_in_"):
        fitted.feature_names_in_ = model.feature_names_in_
    return fitted


def starting_model(model, X, y, classes=None):
    """An unfitted LogisticRegression set at zero coefficients, its classes from ``y``."""
    check_model(model)
    X = training_rows(X)
    if classes is None:
        yd = aligned(y, X.chunks[0], "y")
        (classes,) = dask.compute(da.unique(yd))
    classes = np.asarray(classes)
    if classes.size < 2:
        raise ValueError(
            f"This solver needs samples of at least 2 classes in the data, but the data "
            f"contain only one class: {classes[0]!r}."
        )
    K = 1 if classes.size == 2 else classes.size
    start = clone(model)
    start.classes_ = classes
    start.coef_ = np.zeros((K, X.shape[1]))
    start.intercept_ = np.zeros(K)
    start.n_features_in_ = X.shape[1]
    return start


def newton_fit(
    model,
    X,
    y,
    sample_weight=None,
    *,
    blocking=None,
    max_iter=NEWTON_MAX_ITER,
    verbose=0,
    return_adapter=False,
):
    """LogisticRegression fitted on dask data by Newton's method: ``(fitted model, n_iter)``.

    With ``return_adapter``, also the :class:`DaskLinearAdapter` of the fitted model
    (built without another pass).

    Each iteration is one map-reduce of the objective's value, gradient and Hessian
    over the row chunks; the step is solved on the client (P x P) and halved until
    the objective decreases enough (Armijo). ``model``, fitted (its coefficients are
    the start: a polish) or not (the start is a fit on the largest chunk alone), is
    not changed. It stops when the Newton decrement ``g^T H^-1 g`` falls below 1e-20
    (times the objective, when that exceeds 1), and warns (ConvergenceWarning) after
    ``max_iter`` iterations (separable data without a penalty has no optimum).

    Parameters
    ----------
    model : LogisticRegression
        Its hyperparameters define the objective; its coefficients, when fitted,
        are the start.
    X : dask array or dask DataFrame of shape (n_samples, n_features)
        Training features, chunked by rows.
    y, sample_weight : dask array or array-like of shape (n_samples,)
        Labels and (optional) sample weights.
    blocking : skinfluence.blocking.Blocking or None, default=None
        The memory policy inside each task.
    max_iter : int, default=NEWTON_MAX_ITER
        Newton iterations before giving up.
    verbose : int, default=0
        Show each pass's progress (see :func:`skinfluence.dask.run`).
    return_adapter : bool, default=False
        Also return the adapter of the fitted model, holding its Hessian.

    Returns
    -------
    fitted : LogisticRegression
        A new fitted model at the optimum.
    n_iter : int
        Newton steps taken.
    adapter : DaskLinearAdapter
        Only with ``return_adapter=True``.
    """
    fitted = hasattr(model, "coef_")
    start = model if fitted else starting_model(model, X, y)
    adapter = DaskLinearAdapter(start, X, y, sample_weight, blocking=blocking, verbose=verbose)
    if not fitted:  # from the largest chunk's own fit: Newton's last, quadratic steps remain
        start = _chunk_start(start, adapter)
        adapter = adapter.with_model(start)
    tpl, lam, mask = adapter._tpl, adapter.lam, adapter.penalty_mask
    N = tpl.null_space()

    def terms(theta):
        f, g, H = adapter._reduce(_objective_terms, theta)
        f += 0.5 * lam * float(theta @ (mask * theta))
        g = g + lam * mask * theta
        H[np.diag_indices_from(H)] += lam * mask
        return f, g, H

    theta = np.array(adapter.theta, dtype=np.float64)
    f, g, H = terms(theta)
    eps = np.finfo(float).eps
    converged, decrement, n_iter = False, np.inf, 0
    while n_iter < max_iter:
        step = _newton_step(H, g, N)
        # g^T H^-1 g bounds ||theta - theta*||_H^2: 1e-20 is an optimum to 1e-10, and
        # from here one more step would only move theta at rounding level
        decrement = float(g @ step)
        if not decrement > 1e-20 * max(abs(f), 1.0):
            converged = True
            break
        n_iter += 1
        # near the optimum f changes below its own rounding: a full step is then taken
        # when it does not raise f beyond that rounding
        at_rounding = decrement < 1e-12 * max(abs(f), 1.0)
        t = 1.0
        while True:
            trial = theta - t * step
            f_new, g_new, H_new = terms(trial)
            if f_new <= f - 0.25 * t * decrement or (
                at_rounding and f_new <= f + 64 * eps * max(abs(f), 1.0)
            ):
                break
            if t < 1e-10:
                break
            t *= 0.5
        theta, f, g, H = trial, f_new, g_new, H_new
        if np.max(np.abs(t * step), initial=0.0) <= 4 * eps * max(1.0, np.max(np.abs(theta))):
            converged = True
            break
    if not converged:
        warnings.warn(
            f"Newton's method did not converge in {max_iter} iterations (Newton decrement "
            f"{decrement:.3g}): the data may be separable without a penalty. Use a finite C.",
            ConvergenceWarning,
            stacklevel=2,
        )
    fitted = _with_theta(start, tpl, theta, n_iter)
    if return_adapter:  # H is the Hessian at theta: the explainer's fit need not form it
        return fitted, n_iter, adapter.with_model(fitted, hessian=H)
    return fitted, n_iter


def _chunk_start(start, adapter):
    """``start`` at the coefficients of a fit on the largest chunk alone (in memory).

    Its penalty is scaled to the chunk's share of the rows, so that it estimates the
    full optimum. Any start gives the same optimum; a near one saves Newton passes
    over all the chunks (measured: 6 iterations from zero, 2-3 from here). Where the
    chunk's fit fails or misses a class, ``start`` (zero) is kept.
    """
    c = int(np.argmax(adapter.row_chunks))
    X, y, w = dask.compute(adapter._xs[c], adapter._ys[c], adapter._ws[c])
    sub = clone(start).set_params(warm_start=False, max_iter=200)
    if np.isfinite(float(start.C)):
        sub.set_params(C=float(start.C) * adapter.n_train / max(len(y), 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a rough start: its convergence is not needed
            sub.fit(X, y, sample_weight=w)
    except ValueError:  # e.g. a chunk of one class
        return start
    if not np.array_equal(sub.classes_, start.classes_) or not np.all(np.isfinite(sub.coef_)):
        return start
    out = copy.copy(start)
    out.coef_ = np.array(sub.coef_, dtype=np.float64)
    out.intercept_ = np.array(sub.intercept_, dtype=np.float64)
    return out


def _newton_step(H, g, N):
    """``H^-1 g`` on the complement of the exact flat directions ``N`` (min-norm there)."""
    A = H.copy()
    if N is not None:
        scale = max(np.trace(A) / len(A), np.finfo(float).tiny)
        A += scale * (N @ N.T)
    try:
        step = sla.cho_solve(sla.cho_factor(A, lower=True), g)
    except np.linalg.LinAlgError:
        step = sla.lstsq(A, g)[0]
    if N is not None:
        step -= N @ (N.T @ step)
    return step


def polish_in_memory(model, X, y, sample_weight=None, *, blocking=None):
    """Newton steps from a fitted LogisticRegression to the optimum of in-memory data.

    Returns a polished copy; ``model`` is not changed. The data are one chunk,
    computed by dask's synchronous scheduler.
    """
    if not isinstance(model, LogisticRegression):
        raise TypeError(
            f"polish=True needs a bare LogisticRegression, got {type(model).__name__} (the "
            "Newton steps are on its exact objective); pass polish=False."
        )
    X = da.from_array(check_array(X, accept_sparse=False, dtype=np.float64), chunks=-1)
    with dask.config.set(scheduler="synchronous"):
        fitted, _ = newton_fit(model, X, np.asarray(y), sample_weight, blocking=blocking)
    return fitted
