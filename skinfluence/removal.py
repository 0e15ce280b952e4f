"""Beyond first order: the effect of removing training points by a Newton step.

Removing training point ``j`` from the objective ``R`` leaves ``R - w_j L_j``. One
Newton step from the fitted ``theta`` on that reduced objective moves the
parameters by ``(H - w_j H_j)^-1 w_j g_j``. With the model written as outputs
``eta_i = f(x_i; theta)`` (``K`` of them: logits, margins, predictions), a
per-sample gradient is ``g_j = J_j^T r_j`` and the point's curvature
``H_j = J_j^T C_j J_j`` (exact for linear models, the Gauss-Newton term for nets),
so the Woodbury identity gives the step without a new factorisation::

    delta_j = w_j H^-1 J_j^T v_j,   v_j = (I - w_j C_j M_j)^-1 r_j,
    M_j = J_j H^-1 J_j^T            (K x K: the point's leverage)

A test point's outputs move by ``J_t delta_j`` (exact for linear models,
linearised for nets) and its loss is evaluated there, not linearised:
``removal_effect[t, j] = L_t(eta_t + w_j J_t H^-1 J_j^T v_j) - L_t(eta_t)``. For
every pair this is one product of the solved test Jacobians with the training
rows ``J_j^T v_j``: a GEMM as large as the influence matrix's (``K`` times wider
for ``K`` outputs), streamed in the same row blocks.

Removing a group, and iterating, is Newton's method on the reduced objective, each
step a solve with the explainer's own solver fitted to the reduced Hessian
(:func:`group_newton`).

Nothing here knows the model family: adapters offer ``output_derivatives``,
``output_losses``, ``output_vjps`` / ``output_vjp_dot`` and ``reweighted``.
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch

from skinfluence.compute import _progress, check_finite, influence_matrix
from skinfluence.exceptions import NonFiniteError, SingularHessianError

#: ``removal_effect`` methods.
METHODS = ("newton", "first-order")

#: Smallest eigenvalue (real part) kept in ``I - w_j C_j M_j``. Below it the rest of the
#: data cannot hold the fit (the reduced Hessian is singular or indefinite) and the step
#: is capped there instead of diverging: a very large, finite effect.
EIG_FLOOR = 1e-12


def _output_jacobians_t(adapter, data, K, by_output=False):
    """``J_i^T e_k`` for every sample and output, as rows ``(n * K, n_params)``.

    Rows run sample by sample (``i * K + k``), or output by output (``k * n + i``)
    with ``by_output``.
    """
    n = adapter.n_samples(data)
    rows = np.empty((K, n, adapter.n_params) if by_output else (n, K, adapter.n_params))
    for k in range(K):
        onehot = np.zeros((n, K))
        onehot[:, k] = 1.0
        rows[k if by_output else (slice(None), k)] = adapter.output_vjps(data, onehot)
    return rows.reshape(n * K, adapter.n_params)


def _n_outputs(adapter, data):
    return adapter.output_derivatives(adapter.take(data, slice(0, 1)))[1].shape[1]


def leverages(adapter, solver, data, *, policy, verbose=0):
    """``M_i = J_i H^-1 J_i^T`` for every sample of a prepared block, ``(n, K, K)``.

    With a solver that has a factor ``W`` (``W W^T = H^-1``) each block costs ``K``
    products ``(J^T e_k) . W``; otherwise the block's ``K`` Jacobian rows are solved.
    ``r_i^T M_i r_i`` is the sample's self-influence.
    """
    n = adapter.n_samples(data)
    K = _n_outputs(adapter, data) if n else 1
    out = np.empty((n, K, K))
    W = solver.whitener()
    if W is not None:
        W = adapter.asarray(np.ascontiguousarray(W))
    blocks = policy.rows(n, adapter.itemsize * (K + 2) * adapter.n_params)
    for idx in _progress(blocks, len(blocks), "leverages", verbose):
        blk = adapter.take(data, idx)
        b = idx.stop - idx.start
        if W is not None:
            Z = np.empty((K, b, W.shape[1]))
            for k in range(K):
                onehot = np.zeros((b, K))
                onehot[:, k] = 1.0
                Z[k] = adapter.output_vjp_dot(blk, onehot, W)
            out[idx] = np.einsum("kbp,lbp->bkl", Z, Z)
        else:
            Jt = _output_jacobians_t(adapter, blk, K)  # (b*K, P)
            S = solver.solve(Jt.T).T.reshape(b, K, -1)
            out[idx] = np.einsum("bkp,blp->bkl", Jt.reshape(b, K, -1), S)
            out[idx] = 0.5 * (out[idx] + out[idx].transpose(0, 2, 1))
    return check_finite(out, "The leverages J H^-1 J^T")


def newton_directions(r, C, M, w):
    """``v_j = (I - w_j C_j M_j)^-1 r_j`` for a block, ``(n, K)``.

    Where ``I - w_j C_j M_j`` has an eigenvalue below :data:`EIG_FLOOR` (removing
    the point leaves a singular or indefinite Hessian) it is shifted up to the floor:
    the step is capped, and for a single output this is ``r / max(1 - w c h, floor)``.
    """
    n, K = r.shape
    A = np.eye(K)[None] - w[:, None, None] * np.einsum("nkl,nlm->nkm", C, M)
    if K == 1:
        den = np.maximum(A[:, 0, 0], EIG_FLOOR)
        return r / den[:, None]
    low = np.linalg.eigvals(A).real.min(axis=1)
    shift = np.where(low < EIG_FLOOR, EIG_FLOOR - low, 0.0)
    A = A + shift[:, None, None] * np.eye(K)[None]
    return np.linalg.solve(A, r[:, :, None])[:, :, 0]


def self_removal(adapter, leverage, data=None, *, policy, verbose=0):
    """Each training point's own loss change on its removal, ``(n_train,)``.

    ``L_j(eta_j + w_j M_j v_j) - L_j(eta_j)``: the point's leave-one-out loss (one
    Newton step) less its training loss. For binary logistic regression this is Rad
    and Maleki's approximate leave-one-out; for Ridge and LinearRegression it is the
    exact leave-one-out (PRESS). ``leverage``: :func:`leverages` of the training set.
    """
    data = adapter.train_data if data is None else data
    n = adapter.n_samples(data)
    w = np.asarray(adapter.removal_weights, dtype=float)
    out = np.empty(n)
    K = leverage.shape[1]
    blocks = policy.rows(n, 8 * 4 * K * K + adapter.itemsize * adapter.n_params)
    for idx in _progress(blocks, len(blocks), "self-removal", verbose):
        blk = adapter.take(data, idx)
        eta, r, C = adapter.output_derivatives(blk)
        M = leverage[idx]
        v = newton_directions(r, C, M, w[idx])
        move = w[idx, None] * np.einsum("nkl,nl->nk", M, v)
        out[idx] = adapter.output_loss_changes(blk, eta, [move[:, k : k + 1] for k in range(K)])[
            :, 0
        ]
    return check_finite(out, "The self-removal effects")


def removal_effect_matrix(
    adapter, solver, test_data, leverage, *, policy, verbose=0, train_indices=None
):
    """``(n_test, n_train)``: each test loss's change when one training point is removed.

    Positive = removing the point raises the test loss. See the module docstring
    for the step; ``leverage`` is :func:`leverages` of the training set.
    """
    n_test = adapter.n_samples(test_data)
    train = adapter.train_data
    w = np.asarray(adapter.removal_weights, dtype=float)
    every = train_indices is None
    cols = np.arange(adapter.n_train) if every else np.asarray(train_indices)
    K = leverage.shape[1]
    out = np.empty((n_test, cols.size))
    if n_test == 0 or cols.size == 0:
        return out
    eta_t, _, _ = adapter.output_derivatives(test_data)
    Jt = _output_jacobians_t(adapter, test_data, K, by_output=True)  # (K*n_test, P)
    check_finite(Jt, "The test-point output Jacobians")
    U = check_finite(np.asarray(solver.solve(Jt.T)), "The solved test Jacobians H^-1 J_test^T")
    U = adapter.asarray(np.ascontiguousarray(U))
    # per training row: its J^T v row and K output moves (the first written in place
    # into the result, where the loss changes then land)
    per_row = adapter.itemsize * adapter.n_params + 8 * n_test * (2 * K + 1)
    blocks = policy.rows(cols.size, per_row)
    spare = [np.empty((n_test, blocks[0].stop - blocks[0].start)) for _ in range(K - 1)]
    for pos in _progress(blocks, len(blocks), "removal effect", verbose):
        idx = pos if every else cols[pos]
        blk = adapter.take(train, idx)
        _, r, C = adapter.output_derivatives(blk)
        v = newton_directions(r, C, leverage[idx], w[idx])
        b = pos.stop - pos.start
        delta = [out[:, pos]] + [a[:, :b] for a in spare]
        adapter.output_moves(blk, v * w[idx, None], U, delta)
        res = adapter.output_loss_changes(test_data, eta_t, delta)
        if res is not delta[0]:
            out[:, pos] = res
    return check_finite(out, "The removal effects")


def first_order_effect(adapter, solver, test_data, *, policy, verbose=0, train_norm_max=None):
    """``-removal_weights * I_up,loss``: the linearised change of each test loss."""
    I = influence_matrix(
        adapter, solver, test_data, policy=policy, verbose=verbose, train_norm_max=train_norm_max
    )
    return -I * np.asarray(adapter.removal_weights, dtype=float)[None, :]


def group_newton(adapter, solver, test_data, train_indices, *, n_steps=1, tol=1e-10):
    """Newton's method on the objective without ``train_indices``, from the fit.

    Each step fits a clone of ``solver`` to the reduced objective's Hessian at the
    current parameters (with the solver's own damping) and solves its gradient.
    Stops after ``n_steps`` steps, or earlier when a step moves the parameters by
    less than ``tol`` times their norm (converged).

    The fit's own residual gradient ``grad R(theta_hat)`` (an optimiser's tolerance)
    is held fixed, as the first-order and Woodbury estimates assume: the effect is
    the removal's alone, not the removal's plus a polish of the fit, and one step for
    one point is the Woodbury step of :func:`removal_effect_matrix`.

    Returns
    -------
    result : Bunch
        ``effect`` ``(n_test,)``: the change of each test loss (positive = the
        removal raises it), evaluated exactly at the new parameters;
        ``n_iter``: steps taken; ``converged``: whether the last step was below
        ``tol``; ``step_norms``: ``||delta||`` of every step; ``theta``: the final
        parameters.
    """
    weights = np.ones(adapter.n_train)
    weights[np.asarray(train_indices)] = 0.0
    theta0 = np.asarray(adapter.theta, dtype=np.float64)
    theta = theta0.copy()
    before = np.asarray(adapter.per_sample_losses(test_data), dtype=float)
    residual = np.asarray(adapter.objective_gradient(), dtype=np.float64)
    step_norms, converged = [], False
    for step in range(n_steps):
        view = adapter.reweighted(weights, theta=theta)
        g = np.asarray(view.objective_gradient(), dtype=np.float64) - residual
        check_finite(g, "The gradient of the objective without the group")
        try:
            step_solver = clone(solver).fit(view)
        except SingularHessianError as exc:
            raise SingularHessianError(
                f"Newton step {step + 1} on the objective without the "
                f"{int((weights == 0).sum())} removed points: {exc} (For a net, "
                "hessian='gauss-newton' keeps every step's Hessian positive semi-definite.)",
                damping=exc.damping,
            ) from exc
        delta = -np.asarray(step_solver.solve(g), dtype=np.float64)
        if not np.all(np.isfinite(delta)):
            raise NonFiniteError(
                "A Newton step on the reduced objective overflowed: the remaining points "
                "cannot hold the fit; raise damping."
            )
        theta = theta + delta
        step_norms.append(float(np.linalg.norm(delta)))
        if step_norms[-1] <= tol * max(float(np.linalg.norm(theta)), 1.0):
            converged = True
            break
    after = adapter.reweighted(np.ones(adapter.n_train), theta=theta).per_sample_losses(test_data)
    effect = check_finite(np.asarray(after, dtype=float) - before, "The group removal effect")
    return Bunch(
        effect=effect,
        n_iter=len(step_norms),
        converged=converged,
        step_norms=np.array(step_norms),
        theta=theta,
    )


def group_first_order(adapter, solver, test_data, train_indices, *, policy):
    """Sum of the first-order effects of the points in ``train_indices``, ``(n_test,)``."""
    from skinfluence.compute import solved_test_gradients

    idx = np.asarray(train_indices)
    A = solved_test_gradients(adapter, solver, test_data)  # (n_test, P)
    w = np.asarray(adapter.removal_weights, dtype=float)[idx]
    G = adapter.per_sample_gradients(adapter.take(adapter.train_data, idx))
    g_sum = np.asarray(G.T @ w).ravel()
    return check_finite(A @ g_sum, "The first-order group effect")
