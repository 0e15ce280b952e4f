"""Top eigenpairs of a symmetric operator from block products, in the problem's backend.

Randomized subspace iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4 with a
Rayleigh-Ritz step): every step is one product with a block of ``k + oversample``
vectors, which a net's adapter evaluates as one batched HVP on its device, where
ARPACK's Lanczos would make ``O(k)`` single-vector products through the host.
"""

#: Extra vectors carried beyond the ``k`` wanted (they sharpen the ``k``-th pair).
OVERSAMPLE = 10
#: Power steps; the top pairs of a Hessian with a decaying spectrum settle in a few.
POWER_ITERATIONS = 3


def top_eigenpairs(matmat, n, k, xp, *, seed=0, project=None, n_iter=POWER_ITERATIONS):
    """The ``k`` largest eigenpairs of a symmetric PSD-ish operator, and one more value.

    Parameters
    ----------
    matmat : callable
        ``V (n, m) -> A V`` on native arrays of ``xp``.
    n : int
        Size of the operator.
    k : int
        Pairs wanted (``k < n``).
    xp : skinfluence.backend.Backend
        The array backend.
    seed : int
        Seed of the random start.
    project : callable or None
        Applied to every block before a product (removes exact flat directions).
    n_iter : int
        Power steps.

    Returns
    -------
    w : native array (k,)
        Ritz values, largest first.
    V : native array (n, k)
        Orthonormal Ritz vectors.
    next_value : float
        The ``k+1``-th Ritz value: an estimate of the largest eigenvalue left out.
    n_products : int
        Operator-vector products spent (columns times products).
    """
    if project is None:

        def project(V):
            return V

    m = min(n, k + OVERSAMPLE)
    Q = xp.qr(project(xp.normal((n, m), seed)))
    spent = 0
    for _ in range(n_iter):
        Q = xp.qr(project(matmat(Q)))
        spent += m
    AQ = project(matmat(Q))
    spent += m
    T = Q.T @ AQ
    w, U = xp.eigh((T + T.T) / 2)
    w, U = xp.flip(w, 0), xp.flip(U, 1)  # largest first
    V = Q @ U[:, :k]
    next_value = float(w[k]) if m > k else float(w[-1])
    return w[:k], V, next_value, spent
