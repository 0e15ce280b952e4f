"""Every solver on the closed-form linear adapter (no torch), against the exact dense solve."""

import re

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression

from skinfluence import InfluenceExplainer, SingularHessianError
from skinfluence.exceptions import NonFiniteError
from skinfluence.models import LinearAdapter
from skinfluence.solvers import CGSolver, DirectSolver, LissaSolver, LowRankSolver, make_solver

TIGHT = {"tol": 1e-12, "max_iter": 10000}


@pytest.fixture(scope="module")
def problems():
    """A binary and a multinomial (with an exact null direction) logistic regression."""
    out = {}
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=0)
    out["binary"] = LinearAdapter(LogisticRegression(C=0.5, **TIGHT).fit(X, y), X, y)
    X, y = make_classification(
        n_samples=300, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=1
    )
    out["multinomial"] = LinearAdapter(LogisticRegression(**TIGHT).fit(X, y), X, y)
    return out


def _exact(adapter, B, damping=0.0):
    """``H^-1 B`` on the complement of the null space, from a dense pseudo-inverse."""
    H = adapter.hessian() + damping * np.eye(adapter.n_params)
    N = adapter.null_space()
    if N is not None:
        Pc = np.eye(adapter.n_params) - N @ N.T
        return Pc @ np.linalg.pinv(Pc @ H @ Pc, hermitian=True) @ Pc @ B
    return np.linalg.solve(H, B)


def _rhs(adapter, m=4):
    return np.ascontiguousarray(
        adapter.per_sample_gradients(adapter.take(adapter.train_data, slice(0, m))).T
    )


@pytest.mark.parametrize("kind", ["binary", "multinomial"])
@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_direct_and_cg_match_the_dense_solve(problems, kind, damping):
    ad = problems[kind]
    B = _rhs(ad)
    exact = _exact(ad, B, damping)
    direct = DirectSolver(damping=damping).fit(ad).solve(B)
    np.testing.assert_allclose(direct, exact, rtol=1e-8, atol=1e-10)
    cg = CGSolver(damping=damping, tol=1e-12).fit(ad)
    np.testing.assert_allclose(cg.solve(B), exact, rtol=1e-6, atol=1e-8)
    assert 0 < cg.summary()["CG iterations"] <= ad.n_params + 5
    np.testing.assert_allclose(cg.solve(B[:, 0]), exact[:, 0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("block_size", [1, 2])
@pytest.mark.parametrize("kind", ["binary", "multinomial"])
def test_cg_quadratic_forms_converge_from_below_at_second_order(problems, kind, block_size):
    """Started at zero, CG's ``b^T x_k`` falls short of ``b^T H^-1 b`` by exactly
    ``||x_k - H^-1 b||_H^2``: never above it, and within ``cond(H) * quadratic_tol^2``.
    Plain CG and block CG alike (a block of 2 on these 6-7 parameter models, so that
    the block's Krylov space does not fill the parameter space at once)."""
    ad = problems[kind]
    B = _rhs(ad, m=60)
    exact = np.einsum("ij,ij->j", B, _exact(ad, B))
    H, N = ad.hessian(), ad.null_space()
    n_null = 0 if N is None else N.shape[1]
    eig = np.linalg.eigvalsh(H if N is None else (np.eye(len(H)) - N @ N.T) @ H)[n_null:]
    cond = eig[-1] / eig[0]
    gaps = {}
    for qtol in (1e-1, 1e-3):
        cg = CGSolver(tol=1e-12, quadratic_tol=qtol, block_size=block_size).fit(ad)
        got = np.einsum("ij,ij->j", B, cg.solve_for_quadratic_forms(B))
        assert np.all(got <= exact * (1 + 1e-10))
        gaps[qtol] = ((exact - got) / exact).max()
        assert gaps[qtol] <= cond * qtol**2
        assert cg.summary()["CG worst relative residual (self-influence)"] <= qtol
        assert cg.summary()["CG worst relative residual"] == 0.0  # no solve to tol yet
    assert gaps[1e-1] > 1e-8  # the loose stop is real: it stopped short of the answer
    # the default is sqrt(tol): the same stop as quadratic_tol=0.1 when tol=0.01
    default = CGSolver(tol=1e-2, block_size=block_size).fit(ad)
    explicit = CGSolver(tol=1e-12, quadratic_tol=1e-1, block_size=block_size).fit(ad)
    default, explicit = (s.solve_for_quadratic_forms(B) for s in (default, explicit))
    np.testing.assert_array_equal(default, explicit)


def test_cg_self_influence_through_the_explainer_is_within_its_bound():
    X, y = make_classification(n_samples=400, n_features=12, n_informative=8, random_state=4)
    model = LogisticRegression(C=0.3, **TIGHT).fit(X, y)
    ref = InfluenceExplainer(model, solver="direct").fit(X, y)
    ex = InfluenceExplainer(model, solver="cg").fit(X, y)  # tol 1e-8: quadratic_tol 1e-4
    s = ex.self_influence()
    assert ex.solver_summary_["CG worst relative residual (self-influence)"] <= 1e-4
    cond = ref.hessian_condition_
    np.testing.assert_array_less(s, ref.self_influence() * (1 + 1e-10))
    np.testing.assert_allclose(s, ref.self_influence(), rtol=cond * 1e-8)
    # influence (linear in the residual) still solves to tol
    Xt, yt = X[:5], y[:5]
    np.testing.assert_allclose(ex.influence(Xt, yt), ref.influence(Xt, yt), rtol=cond * 1e-8)


def test_lissa_approaches_the_dense_solve(problems):
    ad = problems["binary"]
    B = _rhs(ad, 3)
    exact = _exact(ad, B, 0.01)
    est = LissaSolver(damping=0.01, depth=3000, batch_size=300, random_state=0).fit(ad).solve(B)
    # with the full batch the recursion is deterministic: a truncated Neumann series
    np.testing.assert_allclose(est, exact, rtol=1e-4, atol=1e-6)
    noisy = LissaSolver(damping=0.01, depth=3000, batch_size=64, repeats=4, random_state=0)
    est = noisy.fit(ad).solve(B)
    cos = (est * exact).sum(0) / np.linalg.norm(est, axis=0) / np.linalg.norm(exact, axis=0)
    assert np.all(cos > 0.97)


def test_lowrank_is_the_top_eigenspace_of_the_dense_hessian(problems):
    ad = problems["binary"]
    H = ad.hessian()
    w, V = np.linalg.eigh(H)
    r = 4
    Vt, wt = V[:, -r:], w[-r:]
    B = _rhs(ad)
    expected = Vt @ ((Vt.T @ B) / (wt + 0.1)[:, None])
    solver = LowRankSolver(damping=0.1, rank=r, random_state=0).fit(ad)
    np.testing.assert_allclose(solver.solve(B), expected, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.sort(solver.eigenvalues_), wt, rtol=1e-8)
    W = solver.whitener()
    np.testing.assert_allclose(W @ W.T @ B, expected, rtol=1e-7, atol=1e-10)


def test_lowrank_full_rank_is_refused_not_clipped(problems):
    ad = problems["multinomial"]  # 18 parameters, one exact flat direction
    with pytest.raises(ValueError, match=r"'rank' option .* must be below 17 .* got rank=17"):
        LowRankSolver(rank=17).fit(ad)
    LowRankSolver(rank=16, random_state=0).fit(ad)


def test_whiteners(problems):
    ad = problems["binary"]
    W = DirectSolver().fit(ad).whitener()
    np.testing.assert_allclose(W @ W.T, np.linalg.inv(ad.hessian()), rtol=1e-8, atol=1e-10)
    assert CGSolver().fit(ad).whitener() is None
    assert LissaSolver(depth=2).fit(ad).whitener() is None


class _Toy:
    """A bare problem with a chosen Hessian: the solver interface and nothing else."""

    n_train = 10

    def __init__(self, H):
        self.H = np.asarray(H, float)
        self.n_params = len(self.H)

    def hessian(self):
        return self.H

    def hvp(self, V, indices=None):
        return self.H @ V

    def null_space(self):
        return None


INDEFINITE = np.diag([-0.7, 0.2, 1.0, 2.0, 3.0, 5.0])


def _advised(exc):
    return float(re.search(r"Pass damping=([-+.e0-9]+)", str(exc)).group(1))


@pytest.mark.parametrize("solver", [DirectSolver, CGSolver])
def test_following_the_damping_advice_works_from_any_damping(solver):
    toy = _Toy(INDEFINITE)
    B = np.ones((6, 2))
    advice = []
    for damping in (0.0, 0.3, 0.69):  # none, too little, just short
        with pytest.raises(SingularHessianError) as e:
            solver(damping=damping).fit(toy).solve(B)
        advice.append(_advised(e.value))
    # computed from the undamped spectrum: the same whole damping whatever was in use
    assert max(advice) - min(advice) <= 0.01 * max(advice)
    fitted = solver(damping=advice[-1]).fit(toy)
    X = fitted.solve(B)
    np.testing.assert_allclose(
        X, np.linalg.solve(INDEFINITE + advice[-1] * np.eye(6), B), rtol=1e-6
    )


def test_lowrank_advice_is_the_whole_damping():
    toy = _Toy(np.diag([-2.0, -1.0, 1.0, 2.0, 3.0]))
    with pytest.raises(SingularHessianError) as e:
        LowRankSolver(rank=4, random_state=0).fit(toy)
    LowRankSolver(rank=4, damping=_advised(e.value), random_state=0).fit(toy)


def test_a_singular_regression_follows_its_advice_with_damping_in_use():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X = np.hstack([X, X[:, :1]])  # a duplicated column: X^T X is singular
    y = X[:, 0] + rng.normal(size=50)
    with pytest.raises(SingularHessianError) as e:
        InfluenceExplainer(LinearRegression(), damping=1e-16).fit(X, y)
    ex = InfluenceExplainer(LinearRegression(), damping=_advised(e.value)).fit(X, y)
    assert np.isfinite(ex.influence(X[:2], y[:2])).all()


def test_an_overflowing_hessian_is_named():
    toy = _Toy(np.diag([np.inf, 1.0, 1.0]))
    with pytest.raises(NonFiniteError, match=r"Hessian .* overflowed"):
        DirectSolver().fit(toy)
    with pytest.raises(NonFiniteError, match="overflowed"):
        CGSolver().fit(toy).solve(np.ones(3))
    with pytest.raises(NonFiniteError, match="overflowed"):
        LowRankSolver(rank=1).fit(toy)


def test_a_solver_instance_is_cloned_and_gets_the_explainers_damping():
    X, y = make_classification(n_samples=200, n_features=5, random_state=3)
    template = CGSolver(tol=1e-11)
    ex = InfluenceExplainer(LogisticRegression(**TIGHT), solver=template, damping=0.01).fit(X, y)
    ref = InfluenceExplainer(LogisticRegression(**TIGHT), solver="direct", damping=0.01).fit(X, y)
    np.testing.assert_allclose(ex.influence(X[:3], y[:3]), ref.influence(X[:3], y[:3]), rtol=1e-6)
    assert ex.solver_ == "cg" and ex.solver_summary_["damping"] == 0.01
    assert template.get_params() == CGSolver(tol=1e-11).get_params()
    assert not hasattr(template, "_problem")  # never fitted itself
    assert "CG worst relative residual" in ex._repr_html_()


def test_make_solver_auto_picks_by_parameter_count():
    assert make_solver("auto", 100).name == "direct"
    assert make_solver("auto", 10_000).name == "cg"


def test_lowrank_default_rank_fits_a_small_model(problems):
    ad = problems["binary"]  # 7 parameters: the default keeps 6 eigenpairs
    solver = LowRankSolver(random_state=0).fit(ad)
    assert solver.summary()["rank"] == ad.n_params - 1
    with pytest.raises(ValueError, match="must be below 7"):
        LowRankSolver(rank=7).fit(ad)


def test_cg_an_underflowed_column_does_not_hide_an_indefinite_one():
    toy = _Toy(np.diag([-1.0, 1.0, 1.0]))
    B = np.array([[1.0, 1e-155], [0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(SingularHessianError, match="non-positive curvature"):
        CGSolver().fit(toy).solve(B)


def test_cg_advice_is_bounded_in_hessian_products():
    rng = np.random.default_rng(0)
    w = np.concatenate([[-1e-3], rng.uniform(0, 1e-3, 200), rng.uniform(1, 2, 99)])
    Q, _ = np.linalg.qr(rng.normal(size=(300, 300)))
    toy = _Toy((Q * w) @ Q.T)
    calls = []
    hvp = toy.hvp
    toy.hvp = lambda V, indices=None: calls.append(1) or hvp(V)
    with pytest.raises(SingularHessianError):
        CGSolver().fit(toy).solve(rng.normal(size=(300, 1)))
    from skinfluence.solvers.cg import ADVICE_MAX_RESTARTS, ADVICE_NCV

    assert len(calls) <= 300 + (ADVICE_MAX_RESTARTS + 1) * ADVICE_NCV


def _spd(P, cond, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(P, P)))
    return (Q * np.geomspace(1.0, cond, P)) @ Q.T


@pytest.mark.parametrize("block_size", [1, 2, 5, 64, 1000])
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_block_cg_solves_every_column_to_tol(block_size, damping):
    """Against a dense solve on a 40-parameter SPD toy of condition 1e4, 23 columns:
    blocks that split the columns unevenly, one block of all, and plain CG."""
    H = _spd(40, 1e4)
    B = np.random.default_rng(1).normal(size=(40, 23))
    exact = np.linalg.solve(H + damping * np.eye(40), B)
    cg = CGSolver(damping=damping, tol=1e-10, block_size=block_size).fit(_Toy(H))
    X = cg.solve(B)
    resid = np.linalg.norm((H + damping * np.eye(40)) @ X - B, axis=0) / np.linalg.norm(B, axis=0)
    assert resid.max() <= 1e-10
    assert cg.summary()["CG worst relative residual"] == pytest.approx(resid.max(), rel=1e-3)
    np.testing.assert_allclose(X, exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())


def test_block_cg_takes_about_p_over_block_size_iterations():
    """Block CG's search space grows by a block per iteration: a block of s columns
    spans all 40 parameters after ceil(40 / s) iterations in exact arithmetic,
    whatever the conditioning (rounding at condition 1e4 costs up to two more);
    plain CG needs far more."""
    H = _spd(40, 1e4)
    B = np.random.default_rng(2).normal(size=(40, 20))
    iters = {}
    for s in (1, 10, 20):
        cg = CGSolver(tol=1e-10, block_size=s).fit(_Toy(H))
        cg.solve(B)
        iters[s] = cg.summary()["CG iterations"]
    assert iters[20] <= 2 + 2
    assert iters[10] <= 4 + 2
    assert iters[1] > 3 * iters[10]


def test_block_cg_drops_dependent_columns():
    """Duplicated, scaled and zero right-hand sides: the block keeps only independent
    directions (no breakdown) and each column still gets its own solution."""
    H = _spd(12, 100.0)
    b, c = np.random.default_rng(3).normal(size=(2, 12))
    B = np.column_stack([b, 2 * b, np.zeros(12), b * 1e-150, c, -b, b + c])
    X = CGSolver(tol=1e-12, block_size=7).fit(_Toy(H)).solve(B)
    np.testing.assert_allclose(X, np.linalg.solve(H, B), rtol=1e-8, atol=1e-300)


def test_a_single_column_runs_plain_cg_and_non_finite_input_is_named():
    H = _spd(40, 1e4)
    b = np.random.default_rng(5).normal(size=40)
    one, plain = CGSolver(tol=1e-10), CGSolver(tol=1e-10, block_size=1)
    np.testing.assert_array_equal(one.fit(_Toy(H)).solve(b), plain.fit(_Toy(H)).solve(b))
    assert one.summary()["CG iterations"] == plain.summary()["CG iterations"]
    B = np.ones((40, 3))
    B[4, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"right-hand sides .* NaN or inf"):
        CGSolver().fit(_Toy(H)).solve(B)


def test_orthonormal_basis_spans_the_independent_columns():
    from skinfluence.backend import NUMPY
    from skinfluence.solvers.block_cg import orthonormal_basis

    rng = np.random.default_rng(4)
    A = rng.normal(size=(30, 3))
    Z = np.column_stack([A, A @ rng.normal(size=(3, 4)), np.zeros(30)])  # rank 3, 8 columns
    Q = orthonormal_basis(NUMPY, Z)
    assert Q.shape == (30, 3)
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-14)
    np.testing.assert_allclose(Q @ (Q.T @ Z), Z, atol=1e-12)


def test_block_cg_reports_non_convergence_and_indefiniteness():
    H = _spd(40, 1e6)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        CGSolver(tol=1e-10, max_iter=2, block_size=4).fit(_Toy(H)).solve(np.ones((40, 4)))
    with pytest.raises(SingularHessianError, match="non-positive curvature") as e:
        CGSolver(block_size=3).fit(_Toy(INDEFINITE)).solve(np.ones((6, 3)))
    damped = CGSolver(block_size=3, damping=_advised(e.value)).fit(_Toy(INDEFINITE))
    X = damped.solve(np.eye(6)[:, :3])
    assert np.isfinite(X).all()


def test_split_columns_covers_every_column_in_near_equal_blocks():
    from skinfluence.solvers.block_cg import split_columns

    for m, size in [(0, 64), (1, 64), (64, 64), (65, 64), (23, 5), (1257, 64)]:
        blocks = split_columns(m, size)
        covered = [i for b in blocks for i in range(m)[b]]
        assert covered == list(range(m))
        lengths = [b.stop - b.start for b in blocks]
        assert all(0 < n <= size for n in lengths)
        assert len(blocks) == -(-m // size)  # ceil(m / size)
        assert not lengths or max(lengths) - min(lengths) <= 1
