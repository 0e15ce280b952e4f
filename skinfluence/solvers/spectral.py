"""Top eigenpairs of a symmetric operator from block products, in the problem's backend.

Block Lanczos with full reorthogonalisation (a randomized block Krylov method,
Musco & Musco 2015) and one Rayleigh-Ritz step over the whole Krylov basis:
every step is one product with a block of vectors, which a net's adapter
evaluates as one batched HVP on its device (ARPACK's Lanczos would make single-
vector products through the host). On the 2,410-parameter tanh MLP of
``benchmarks/bench_torch_scale.py`` (k = 50), deflating these pairs took CG to
180 iterations for 116 HVPs, subspace iteration's to 183 for 240 HVPs, and the
exact eigenpairs to 169.
"""

#: Vectors per block product.
BLOCK = 16
#: Krylov basis size as a multiple of the pairs wanted.
BASIS_FACTOR = 2


def top_eigenpairs(matmat, n, k, xp, *, seed=0, project=None, basis=None):
    """The ``k`` largest eigenpairs of a symmetric operator, and the next value.

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
        Applied to the start and to every product (removes exact flat directions).
    basis : int or None
        Krylov basis size; None means ``BASIS_FACTOR * k + BLOCK`` (at most ``n``).

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

    size = min(n, basis or BASIS_FACTOR * k + BLOCK)
    b = min(BLOCK, size)
    Q = xp.qr(project(xp.normal((n, b), seed)))
    blocks, products = [], []
    spent = 0
    while True:
        blocks.append(Q)
        AQ = project(matmat(Q))
        products.append(AQ)
        spent += Q.shape[1]
        have = sum(B.shape[1] for B in blocks)
        if have >= size:
            break
        W = AQ
        for _ in range(2):  # full reorthogonalisation, twice is enough (Kahan)
            for B in blocks:
                W = W - B @ (B.T @ W)
        Q = xp.qr(W[:, : min(b, size - have)])
    S = xp.concatenate(blocks, 1)
    T = S.T @ xp.concatenate(products, 1)
    w, U = xp.eigh((T + T.T) / 2)
    w, U = xp.flip(w, 0), xp.flip(U, 1)  # largest first
    V = S @ U[:, :k]
    next_value = float(w[k]) if w.shape[0] > k else float(w[-1])
    return w[:k], V, next_value, spent
