"""Blocked products between test directions and streamed training gradients.

Its blocks come from the one memory policy, :class:`~skinfluence.blocking.Blocking`
(which the adapters' own sweeps use too). It talks to models only through the adapter
interface and to ``H^-1`` only through a fitted solver, so it does not know which
model family it serves. Results are checked to be finite (:func:`check_finite`).

The influence matrix is ``I = -G_test H^-1 G_train^T``: the test gradients are
solved once (``A = H^-1 G_test^T``), then the training set is streamed in row
blocks, each block's gradients formed and multiplied with ``A`` in one BLAS call.
"""

import numpy as np
import scipy.sparse as sp

from skinfluence.blocking import Blocking, row_blocks
from skinfluence.exceptions import NonFiniteError

__all__ = ["Blocking", "row_blocks"]  # the policy lives in blocking.py, below the adapters

#: What to do about an overflow, appended to every NonFiniteError message.
_OVERFLOW_ADVICE = (
    "the features (or targets) are too large for the products involved: standardise them "
    "(e.g. a StandardScaler in a Pipeline), or for a net check its inputs and weights."
)


def _progress(iterable, total, desc, verbose, unit="block"):
    if not verbose:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a convenience, never a requirement
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)


def check_finite(values, what):
    """Raise :class:`NonFiniteError` naming ``what`` when ``values`` holds inf or NaN.

    Parameters
    ----------
    values : ndarray
        A computed result.
    what : str
        What it is, for the message ("the influence matrix", ...).

    Returns
    -------
    values : ndarray
        Unchanged.
    """
    data = values.data if sp.issparse(values) else np.asarray(values)
    # a finite sum proves every entry finite (inf and NaN propagate) without a mask as
    # large as the array; only an overflowing sum needs the entry-by-entry look
    with np.errstate(over="ignore", invalid="ignore"):
        finite = bool(np.isfinite(np.sum(data))) or bool(np.isfinite(data).all())
    if not finite:
        raise NonFiniteError(f"{what} overflowed to inf or NaN: {_OVERFLOW_ADVICE}")
    return values


def _check_native(adapter, values, what):
    """:func:`check_finite` for an array of the adapter's backend (no host copy)."""
    if not adapter.backend.all_finite(values):
        raise NonFiniteError(f"{what} overflowed to inf or NaN: {_OVERFLOW_ADVICE}")
    return values


def solved_test_gradients(adapter, solver, test_data, *, native=False):
    """``H^-1 g_t`` for every test sample, as rows ``(n_test, n_params)``.

    With ``native=True`` the rows stay in the adapter's backend (a net's device),
    else they come back as float64 numpy.
    """
    G = _check_native(adapter, adapter.gradients(test_data), "The test-point gradients")
    A = _check_native(adapter, solver.solve(G.T).T, "The solved test directions H^-1 g_test")
    return A if native else adapter.backend.to_numpy(A)


def _as_products(adapter, A):
    """``-A^T`` in the form :meth:`gradients_dot` multiplies with."""
    if isinstance(A, np.ndarray):
        return adapter.asarray(np.ascontiguousarray(-A.T))
    return adapter.asarray(-A.T)


def _row_bytes(adapter, n_test, output_blocks):
    # gradients in the adapter's itemsize; results come back as float64 whatever it is
    return adapter.itemsize * adapter.n_params + 8 * output_blocks * n_test


def _streamed_rows(adapter, n_test, policy, output_blocks=0):
    """Row blocks whose gradients plus ``output_blocks`` result blocks fit the budget."""
    return policy.rows(adapter.n_train, _row_bytes(adapter, n_test, output_blocks))


def gradient_products(adapter, data, M, *, policy):
    """``G M`` for the prepared rows ``data``: float64 ``(n, m)``, streamed in row blocks.

    ``M`` is ``(n_params, m)`` in the form :meth:`gradients_dot` multiplies with (the
    adapter's ``asarray``); each block's gradients and its rows of the result fit the
    policy's budget. Used where the rows are one piece of the training set (a dask
    chunk) and ``M`` is known already.
    """
    n, m = adapter.n_samples(data), M.shape[1]
    out = np.empty((n, m))
    for idx in policy.rows(n, _row_bytes(adapter, m, output_blocks=1)):
        adapter.gradients_dot(adapter.take(data, idx), M, out=out[idx])
    return out


def _needs_output_check(A, train_norm_max, itemsize=8, backend=None):
    """Whether products with the training gradients could overflow (Cauchy-Schwarz).

    ``|g_i . a_t| <= ||g_i|| ||a_t||``: with the largest training gradient norm known
    (finite, from fit) and every solved test direction finite, a bound well inside
    the range of the adapter's float type (float32 for a float32 net's products)
    proves every product finite, and the output need not be scanned.
    """
    if train_norm_max is None:
        return True
    dtype = {8: np.float64, 4: np.float32}.get(itemsize, np.float16)
    if A.shape[0] == 0:
        a_max = 0.0
    elif isinstance(A, np.ndarray):
        a_max = float(np.sqrt(np.max(np.einsum("ij,ij->i", A, A))))
    else:
        a_max = backend.scalar(backend.row_dots(A, A).max()) ** 0.5
    return not train_norm_max * a_max < 1e-8 * float(np.finfo(dtype).max)


def iter_influence_blocks(adapter, solver, test_data, *, policy, verbose=0, train_norm_max=None):
    """Yield ``(train_slice, I_block)`` with ``I_block`` of shape ``(n_test, b)``.

    ``I_block`` holds Koh & Liang's ``I_up,loss`` for the training rows in
    ``train_slice``. Peak temporary memory: one block of training gradients and
    one output block, bounded by the policy's ``working_memory``.
    """
    A = solved_test_gradients(adapter, solver, test_data, native=True)
    check = _needs_output_check(A, train_norm_max, adapter.itemsize, adapter.backend)
    M = _as_products(adapter, A)
    train = adapter.train_data
    # a consumer holds one yielded block while the next is made: two alive at once
    blocks = _streamed_rows(adapter, A.shape[0], policy, output_blocks=2)
    for idx in _progress(blocks, len(blocks), "influence", verbose):
        block = adapter.gradients_dot(adapter.take(train, idx), M).T
        if check:
            check_finite(block, "The influence values")
        yield idx, block


def _test_chunks(adapter, n_test, policy):
    """Test rows per chunk: its solved directions (gradients, solution and product
    form, float64 each) fit the policy's budget; one chunk unless the net is big."""
    return policy.rows(n_test, 3 * 8 * adapter.n_params, use_batch_size=False)


def influence_matrix(adapter, solver, test_data, *, policy, verbose=0, train_norm_max=None):
    """The full ``(n_test, n_train)`` matrix of ``I_up,loss`` (Koh & Liang sign).

    ``train_norm_max``: the largest training gradient norm, when known; with it the
    output is proven finite by a bound instead of scanned (see ``_needs_output_check``).
    Test points are taken in chunks whose solved directions (gradients, solution
    and product form, in float64) fit the policy's budget, the training set streamed
    once per chunk: one chunk unless ``n_test x n_params`` is large (a big net).
    """
    n_test = adapter.n_samples(test_data)
    # Written as (n_train, n_test) so each block lands in contiguous rows, and
    # returned as its (Fortran-ordered) transpose: no copy of the output.
    out_t = np.empty((adapter.n_train, n_test))
    train = adapter.train_data
    for cols in _test_chunks(adapter, n_test, policy):
        A = solved_test_gradients(adapter, solver, adapter.take(test_data, cols), native=True)
        check = _needs_output_check(A, train_norm_max, adapter.itemsize, adapter.backend)
        M = _as_products(adapter, A)
        del A
        blocks = _streamed_rows(adapter, M.shape[1], policy, output_blocks=1)
        for idx in _progress(blocks, len(blocks), "influence", verbose):
            adapter.gradients_dot(adapter.take(train, idx), M, out=out_t[idx, cols])
            if check:
                check_finite(out_t[idx, cols], "The influence matrix")
    return out_t.T


def self_influence(adapter, solver, data, *, policy, verbose=0):
    """``g_i^T H^-1 g_i`` for every sample of a prepared block, ``(n,)``.

    With a solver that offers a factor ``W`` (``W W^T = H^-1``: direct, lowrank)
    each block costs one product ``G W``; otherwise each block is solved.
    """
    n = adapter.n_samples(data)
    out = np.empty(n)
    W = solver.whitener()
    if W is not None:
        W = adapter.asarray(np.ascontiguousarray(W))
    blocks = policy.rows(n, adapter.itemsize * 3 * adapter.n_params)
    for idx in _progress(blocks, len(blocks), "self-influence", verbose):
        blk = adapter.take(data, idx)
        if W is not None:
            Z = adapter.gradients_dot(blk, W)
            out[idx] = np.einsum("ij,ij->i", Z, Z)
        else:  # every row of the block solved at once (block CG), in the backend
            G = adapter.gradients(blk)
            X = solver.solve_for_quadratic_forms(G.T).T
            out[idx] = adapter.backend.to_numpy(adapter.backend.row_dots(G, X))
    return check_finite(out, "Self-influence")


def losses(adapter, data, *, policy, verbose=0):
    """Per-sample losses ``L(z, theta_hat)`` of a prepared block, ``(n,)``, streamed."""
    n = adapter.n_samples(data)
    out = np.empty(n)
    # a forward pass per block, no gradients: batch_size (a gradient block's rows) would
    # only turn this into a loop over small blocks, so the budget alone sizes it
    blocks = policy.rows(n, adapter.itemsize * adapter.n_params, use_batch_size=False)
    for idx in _progress(blocks, len(blocks), "losses", verbose):
        out[idx] = adapter.per_sample_losses(adapter.take(data, idx))
    return check_finite(out, "The per-sample losses")


def perturbation_influence(adapter, solver, test_data, train_data, *, policy, verbose=0):
    """``I_pert,loss`` for every (test, train) pair, ``(n_test, n_train_sel, n_features)``."""
    U = solved_test_gradients(adapter, solver, test_data, native=True)
    n = adapter.n_samples(train_data)
    parts = []
    per_row = adapter.itemsize * U.shape[0] * max(adapter.n_params, 1) * 2
    blocks = policy.rows(n, per_row)
    for idx in _progress(blocks, len(blocks), "perturbation", verbose):
        parts.append(-adapter.perturbation_dot(adapter.take(train_data, idx), U))
    if not parts:  # no training rows selected: an empty result of the right shape
        one = adapter.perturbation_dot(adapter.take(adapter.train_data, slice(0, 1)), U)
        return np.empty((U.shape[0], 0, one.shape[2]))
    out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return check_finite(out, "The perturbation influence")


def top_k_influence(adapter, solver, test_data, k, *, policy, verbose=0, train_norm_max=None):
    """Most negative and most positive ``k`` influences per test point, streamed.

    Returns ``(helpful_idx, helpful_val, harmful_idx, harmful_val)``, each
    ``(n_test, k)``: helpful sorted from most negative up, harmful from most
    positive down. The full matrix is never held; test points come in the chunks
    of :func:`influence_matrix`.
    """
    n_test = adapter.n_samples(test_data)
    parts = []
    for cols in _test_chunks(adapter, n_test, policy) or [slice(0, n_test)]:
        lo, hi = _RunningTopK(k, largest=False), _RunningTopK(k, largest=True)
        chunk = adapter.take(test_data, cols)
        for idx, block in iter_influence_blocks(
            adapter, solver, chunk, policy=policy, verbose=verbose, train_norm_max=train_norm_max
        ):
            lo.update(block, idx.start)
            hi.update(block, idx.start)
        parts.append((lo.idx, lo.val, hi.idx, hi.val))
    if len(parts) == 1:
        return parts[0]
    return tuple(np.vstack(arrays) for arrays in zip(*parts, strict=True))


class _RunningTopK:
    """The ``k`` smallest (or largest) values of each row over streamed column blocks.

    Once ``k`` values per row are held, a block costs one comparison against each
    row's current ``k``-th value; only the few entries that beat it are merged.
    """

    def __init__(self, k, largest):
        self.k = k
        self.sign = -1.0 if largest else 1.0
        self.val = self.idx = None  # sorted best-first
        self._hit = None

    def update(self, block, col0):
        if self.val is None or self.val.shape[1] < self.k:
            # seed densely on enough columns that the k-th value is a tight threshold
            need = max(self.k - (0 if self.val is None else self.val.shape[1]), 64 * self.k)
            self._dense_merge(block[:, :need], col0)
            if block.shape[1] <= need:
                return
            block, col0 = block[:, need:], col0 + need
        thr = self.val[:, -1]
        # Blocks arrive as transposes of C-ordered (b, n_rows) arrays: compare and
        # search in that layout, where flatnonzero is an order of magnitude faster.
        bt = block.T
        if self._hit is None or self._hit.shape != bt.shape:
            self._hit = np.empty(bt.shape, dtype=bool)
        (np.greater if self.sign < 0 else np.less)(bt, thr[None, :], out=self._hit)
        flat = np.flatnonzero(self._hit)
        if flat.size == 0:
            return
        cols, rows = np.divmod(flat, bt.shape[1])
        n, k = self.val.shape
        all_rows = np.concatenate([np.repeat(np.arange(n), k), rows])
        all_val = np.concatenate([self.val.ravel(), bt[cols, rows]])
        all_idx = np.concatenate([self.idx.ravel(), cols + col0])
        order = np.lexsort((self.sign * all_val, all_rows))
        first = np.searchsorted(all_rows[order], np.arange(n))
        rank = np.arange(order.size) - np.repeat(first, np.bincount(all_rows, minlength=n))
        keep = order[rank < k]
        self.val = all_val[keep].reshape(n, k)
        self.idx = all_idx[keep].reshape(n, k)

    def _dense_merge(self, block, col0):
        signed = self.sign * block
        cand = np.broadcast_to(np.arange(col0, col0 + block.shape[1]), block.shape)
        if self.val is not None:
            signed = np.hstack([self.sign * self.val, signed])
            cand = np.hstack([self.idx, cand])
        kk = min(self.k, signed.shape[1])
        part = np.argpartition(signed, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(signed, part, axis=1)
        order = np.argsort(vals, axis=1, kind="stable")
        self.val = self.sign * np.take_along_axis(vals, order, axis=1)
        self.idx = np.take_along_axis(np.take_along_axis(cand, part, axis=1), order, axis=1)


def gradient_norms(adapter, data, *, policy, verbose=0):
    """``||g_i||`` of every sample's loss gradient, ``(n,)``: no Hessian involved."""
    n = adapter.n_samples(data)
    out = np.empty(n)
    blocks = policy.rows(n, adapter.itemsize * 2 * adapter.n_params)
    for idx in _progress(blocks, len(blocks), "gradient norms", verbose):
        G = adapter.per_sample_gradients(adapter.take(data, idx))
        sq = (
            np.asarray(G.multiply(G).sum(axis=1)).ravel()
            if sp.issparse(G)
            else np.einsum("ij,ij->i", G, G)
        )
        out[idx] = np.sqrt(sq)
    return check_finite(out, "The per-sample gradient norms")


#: ``stationarity`` above which the fitted parameters count as no optimum (warned about).
STATIONARITY_WARN = 1e-3


def stationarity(adapter, *, policy, norms=None):
    """``||grad R(theta_hat)||`` relative to the RMS per-sample gradient norm.

    Influence functions assume ``theta_hat`` is a stationary point; a ratio well
    above the optimiser's tolerance means the estimates are off. Overflowing
    gradients raise :class:`NonFiniteError` here, at fit, rather than giving an
    ``inf / inf`` ratio. ``norms``: the training set's :func:`gradient_norms`, when
    the caller has them already.
    """
    g = check_finite(
        np.asarray(adapter.objective_gradient()), "The gradient of the training objective"
    )
    with np.errstate(over="ignore"):
        if norms is None:
            norms = gradient_norms(adapter, adapter.train_data, policy=policy)
        mean_sq_norm = float(adapter.removal_weights @ norms**2)
    theta = np.asarray(adapter.theta, dtype=float)
    return stationarity_ratio(g, mean_sq_norm, lambda: adapter.hvp(theta))


def stationarity_ratio(gradient, mean_sq_norm, curvature_theta):
    """``||grad R||`` over the RMS per-sample gradient norm ``sqrt(mean_sq_norm)``.

    An exact fit leaves every gradient at rounding level, where the ratio of two
    rounding errors means nothing: above :data:`STATIONARITY_WARN` the ratio is
    measured against the curvature's scale as well, ``sqrt(eps) ||H theta||``, with
    ``curvature_theta()`` giving ``H theta`` (called only then). Overflowed norms
    raise :class:`NonFiniteError`.
    """
    with np.errstate(over="ignore"):
        grad_norm = float(np.linalg.norm(gradient))
        scale = float(np.sqrt(mean_sq_norm))
    if not (np.isfinite(grad_norm) and np.isfinite(scale)):
        raise NonFiniteError(
            f"The training gradients' norms overflowed (||grad R|| = {grad_norm:.3g}, RMS "
            f"per-sample norm {scale:.3g}): {_OVERFLOW_ADVICE}"
        )
    ratio = grad_norm / scale if scale > 0 else grad_norm
    if ratio > STATIONARITY_WARN:
        floor = np.sqrt(np.finfo(float).eps) * float(np.linalg.norm(curvature_theta()))
        ratio = grad_norm / max(scale, floor) if max(scale, floor) > 0 else grad_norm
    return ratio
