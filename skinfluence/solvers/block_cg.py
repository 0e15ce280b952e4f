"""Block conjugate gradient: many right-hand sides sharing one Krylov space.

The breakdown-free block CG of Ji & Li (2017): every column of ``B`` is solved
over the *block* Krylov space that all columns generate together, so a block of
``s`` columns grows the search space by up to ``s`` directions per iteration
(one Hessian product of at most ``s`` columns) instead of one per column. On a
model of ``P`` parameters a block of ``s`` columns is solved exactly after
``ceil(P / s)`` iterations in exact arithmetic (a few more in floating point),
and the top eigenvalues that slow plain CG down are resolved by the block for
free. The block iterates until every column has reached the tolerance; columns
that reached it earlier stay in the block (dropping them would break the
conjugacy of later search directions with earlier ones) and keep improving.
Each block of search directions is orthonormalised with its numerically
dependent directions dropped, which is what keeps the method from breaking down
when columns (or the residuals of a nearly solved block) become linearly
dependent.

Started from zero, each column's iterate is the ``H``-orthogonal projection of
its solution onto the search space, so ``b^T x_k`` approaches ``b^T H^-1 b``
from below, short by ``||x_k - H^-1 b||_H^2`` (as for plain CG).
"""

import itertools

import numpy as np

from skinfluence.exceptions import NonFiniteError

#: Directions of a block whose Gram eigenvalue is below this fraction of the
#: largest are dropped as numerically dependent (singular values below 1e-6 of
#: the largest, columns scaled to unit norm first).
RANK_RTOL = 1e-12


def orthonormal_basis(xp, Z, rtol=RANK_RTOL):
    """Orthonormal columns spanning the numerically independent directions of ``Z``.

    Columns are scaled to unit norm first (so a small residual's directions count
    as much as a large one's), then orthonormalised twice through the eigenvectors
    of their Gram matrix; the second pass restores orthogonality to rounding.

    Parameters
    ----------
    xp : Backend
        The arrays' backend.
    Z : native array (n, m)
        The columns to span; zero columns are ignored.
    rtol : float, default=RANK_RTOL
        Gram eigenvalues below ``rtol`` times the largest are dropped.

    Returns
    -------
    Q : native array (n, r)
        Orthonormal columns, ``r <= m`` the numerical rank of ``Z``.
    """
    norms = xp.col_dots(Z, Z) ** 0.5
    Q = Z[:, xp.flatnonzero(norms > 0)]
    Q = Q / norms[norms > 0]
    for _ in range(2):
        if Q.shape[1] == 0:
            return Q
        e, U = xp.eigh(Q.T @ Q)
        good = xp.flatnonzero(e > rtol * e[-1])
        Q = (Q @ U[:, good]) / e[good] ** 0.5
    return Q


def block_cg(matvec, B, tol, max_iter, *, xp, on_negative, precondition=None):
    """Solve ``A X = B`` by breakdown-free block CG; returns ``(X, residuals, iterations)``.

    Parameters
    ----------
    matvec : callable
        ``V -> A V`` for a native block ``V`` (projected: the caller's operator).
    B : native array (n, m)
        Right-hand sides, one block.
    tol : float
        Relative residual ``||A x - b|| / ||b||`` every column must reach.
    max_iter : int
        Iterations at most (each one product of at most ``m`` columns).
    xp : Backend
        The arrays' backend.
    precondition : callable or None
        ``R -> M R`` for an SPD ``M`` approximating ``A^-1``.
    on_negative : callable
        Called with the smallest Rayleigh quotient ``p^T A p / p^T p`` found when
        ``A`` is not positive definite on the search space; it must raise.

    Returns
    -------
    X : native array (n, m)
    residuals : native array (m,)
        Each column's final relative residual.
    iterations : int
    """
    X = xp.zeros(B.shape)
    R = xp.copy(B)
    bnorm = xp.col_dots(B, B) ** 0.5
    bnorm[bnorm == 0] = 1.0
    rel = xp.col_dots(R, R) ** 0.5 / bnorm
    P = Q = D_inv = None
    it = 0
    while not bool((rel <= tol).all()) and it < max_iter:  # a NaN residual is not done
        Z = R if precondition is None else precondition(R)
        if P is not None:  # A-conjugate to the previous block: Z + P beta
            Z = Z - P @ D_inv(Q.T @ Z)
        P = orthonormal_basis(xp, Z)
        if P.shape[1] == 0:  # every residual is numerically zero
            break
        Q = matvec(P)
        D = P.T @ Q
        D = (D + D.T) / 2
        if not xp.all_finite(D):
            raise NonFiniteError(
                "A Hessian-vector product overflowed (inf or NaN) in conjugate gradient: "
                "standardise the features (or targets), or add damping."
            )
        e, U = xp.eigh(D)
        if xp.scalar(e[0]) <= 0:
            on_negative(xp.scalar(e[0]))

        def D_inv(Y, U=U, e=e):
            return U @ ((U.T @ Y) / e[:, None])

        Lam = D_inv(P.T @ R)
        X = X + P @ Lam
        R = R - Q @ Lam
        rel = xp.col_dots(R, R) ** 0.5 / bnorm
        if not xp.all_finite(rel):
            raise NonFiniteError(
                "Block conjugate gradient overflowed (inf or NaN residuals): the Hessian "
                "plus damping is too close to singular; add damping."
            )
        it += 1
    return X, rel, it


def split_columns(m, size):
    """Column slices of at most ``size`` (an equal split, so no block is a sliver).

    Parameters
    ----------
    m : int
        Number of columns.
    size : int
        Largest block.

    Returns
    -------
    blocks : list of slice
        Consecutive slices covering ``range(m)``, ``ceil(m / size)`` of them, whose
        lengths differ by at most one.
    """
    n_blocks = max(1, int(np.ceil(m / size)))
    edges = np.linspace(0, m, n_blocks + 1).round().astype(int)
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]
