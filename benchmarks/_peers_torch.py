"""Influence scores from peer libraries (kronfluence, pyDVL) on a plain torch model.

The functions here take the same inputs as our own torch benchmarks (a plain
``torch.nn.Module`` producing logits, training and test tensors) and return the
peers' influence matrices converted to *our* convention, so that they can be put
in one table with skinfluence's numbers.

Convention
----------
Scores are Koh & Liang's up-weighting influence on the test loss::

    I[t, i] = - g_t^T (H + damping * I)^{-1} g_i

where ``g`` are per-sample gradients of ``cross_entropy(model(x), y)``, and
``H`` is the Hessian (or the peer's Gauss-Newton / Fisher approximation of it)
of the *mean* training loss plus the L2 term ``weight_decay / 2 * ||theta||^2``,
so that ``H = H_loss + weight_decay * I``.  Negative values mean that
up-weighting training point ``i`` lowers the loss on test point ``t``.

Each function returns ``{"scores": ndarray (n_test, n_train), "seconds": float,
"notes": str}``; ``seconds`` is end to end (factor fitting + scoring, not the
imports, not the conversion to numpy).

How each peer is mapped (checked numerically in ``__main__``):

- kronfluence 1.0.1 (``kronfluence_scores``): the Task's training loss is the
  *summed* cross entropy, as kronfluence expects; it divides its covariance
  and Lambda accumulators by the number of examples, so its factors
  approximate the Fisher of the *mean* loss, and it adds ``damping_factor``
  as an absolute constant to the eigenvalues.  We therefore pass
  ``damping_factor = damping + weight_decay`` (absolute, same scale as ours).
  Its pairwise score is ``+ g_t^T (F + lambda I)^{-1} g_i``; we negate it.
  ``damping=None`` uses kronfluence's own heuristic (0.1 x the mean eigenvalue
  of each module's factor), to which weight decay cannot be added.
  The curvature is the Fisher of the labels chosen by ``fisher``: ``"sampled"``
  (kronfluence's default, one label drawn from the model per example),
  ``"empirical"`` (true labels) or ``"expected"`` (every label, weighted, which
  is the Gauss-Newton matrix exactly; ``K`` times the fitting work).  Near an
  interpolating optimum the drawn labels are almost always the true ones, so
  "sampled" is close to "empirical" and far below the Gauss-Newton matrix.
- pyDVL 0.10 (``pydvl_cg_scores``, ``pydvl_ekfac_scores``): the loss is
  ``cross_entropy`` with mean reduction, so its Hessian operator is that of the
  mean loss (batches are averaged with equal weight, so choose a batch size
  that divides ``n_train``, or the default full batch).  Its regularization is
  an absolute ``lambda * I`` added to that operator, so we pass
  ``regularization = damping + weight_decay``.  ``influences(..., mode=Up)``
  returns ``+ g_t^T (H + lambda I)^{-1} g_i``; we negate it.

Environment
-----------
These peers are *not* dependencies of skinfluence; the benchmark venv was built
with (the constraint file keeps pip on the CPU build of torch)::

    python3 -m venv /work/benchenv
    . /work/benchenv/bin/activate
    pip install -q --upgrade pip
    pip install -q torch==2.13.0
    echo "torch==2.13.0" > /work/benchenv/constraints.txt
    pip install -q -c /work/benchenv/constraints.txt kronfluence==1.0.1 "pydvl[influence]==0.10.0"
    pip install -q -c /work/benchenv/constraints.txt -e "/work/main[test]"

and the self-check below is run with::

    /work/benchenv/bin/python benchmarks/_peers_torch.py
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import shutil
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["kronfluence_scores", "pydvl_cg_scores", "pydvl_ekfac_scores"]


def _model_dtype(model):
    return next(p.dtype for p in model.parameters())


@contextlib.contextmanager
def _default_dtype(dtype):
    """Temporarily set torch's default dtype (pyDVL's EK-FAC allocates with it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def _quiet_loggers(*names, level=logging.WARNING):
    """Raise the level of the given loggers for the duration of the block."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old, strict=True):
            lg.setLevel(lv)


# --------------------------------------------------------------------------- kronfluence


def _make_kronfluence_task(fisher, seed):
    """Build a kronfluence ``Task`` for summed cross entropy.

    Batches are ``(x, y)`` or ``(x, y, w)``; with weights the loss is
    ``sum_r w_r * CE(model(x_r), y_r)`` (used by ``fisher="expected"``).
    """
    from kronfluence.task import Task

    class _CrossEntropyTask(Task):
        def __init__(self):
            self._generator = torch.Generator().manual_seed(seed)

        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch[0], batch[1]
            logits = model(x)
            if sample and fisher == "sampled":
                with torch.no_grad():
                    probs = torch.softmax(logits.detach(), dim=-1).cpu()
                    y = torch.multinomial(probs, 1, generator=self._generator).flatten()
                    y = y.to(logits.device)
            losses = F.cross_entropy(logits, y, reduction="none")
            if len(batch) == 3:
                losses = losses * batch[2]
            return losses.sum()

        def compute_measurement(self, batch, model):
            x, y = batch[0], batch[1]
            return F.cross_entropy(model(x), y, reduction="sum")

    return _CrossEntropyTask()


def _expected_fisher_dataset(model, X):
    """Rows ``(x_i, c, sqrt(K p_ic))`` for every class ``c`` (K classes).

    kronfluence averages per-row gradient outer products over the ``n K`` rows,
    so these weights turn its factors into the exact expectation over labels
    drawn from the model, i.e. the Gauss-Newton matrix of the mean loss.
    """
    with torch.no_grad():
        probs = torch.softmax(model(X), dim=-1)
    n, k = probs.shape
    Xr = X.repeat_interleave(k, dim=0)
    yr = torch.arange(k, device=X.device).repeat(n)
    wr = torch.sqrt(k * probs.reshape(-1)).to(X.dtype if X.is_floating_point() else probs.dtype)
    return TensorDataset(Xr, yr, wr)


def kronfluence_scores(
    model,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    strategy="ekfac",
    damping=None,
    batch_size=256,
    weight_decay=0.0,
    fisher="sampled",
    seed=0,
    cpu=True,
):
    """Influence matrix from kronfluence's Analyzer (EK-FAC or K-FAC).

    Parameters
    ----------
    model : torch.nn.Module
        Plain module producing logits (CPU, float32 or float64).  It is deep-copied
        before kronfluence wraps its layers, so the caller's model is untouched.
    X_train, y_train, X_test, y_test : torch.Tensor
        Inputs and int64 labels.
    strategy : {"ekfac", "kfac"}
        kronfluence ``FactorArguments.strategy``.
    damping : float or None
        Absolute damping added to the (mean-loss) curvature, our scale.
        kronfluence gets ``damping_factor = damping + weight_decay``.  ``None``
        uses kronfluence's heuristic (0.1 x mean eigenvalue, per module), and then
        ``weight_decay`` is *not* included (a warning is issued if it is > 0).
    batch_size : int
        Batch size for factor fitting and for the training side of scoring
        (the query side uses ``min(batch_size, n_test)``).
    weight_decay : float
        Coefficient of ``weight_decay / 2 * ||theta||^2`` in the training objective.
    fisher : {"sampled", "empirical", "expected"}
        ``"sampled"`` (kronfluence's default) draws one label per example from
        the model's predictive distribution: an unbiased but noisy estimate of the
        true Fisher, which for softmax cross entropy equals the Gauss-Newton
        matrix.  ``"empirical"`` uses the true labels (``use_empirical_fisher``).
        ``"expected"`` fits the factors on ``K`` weighted copies of every example,
        one per class with weight ``sqrt(K p_c)``, which gives the exact
        expectation over labels (the Gauss-Newton matrix itself) at ``K`` times the
        fitting cost; the probabilities are computed once and timed.
    seed : int
        Seed of the label-sampling generator.
    cpu : bool
        Run kronfluence on the CPU (False: on the model's GPU).

    Returns
    -------
    dict
        ``scores`` (n_test, n_train) ndarray in our sign convention
        (``- g_t^T (F + damping I)^{-1} g_i``), ``seconds`` and ``notes``.

    Notes
    -----
    kronfluence normalises its covariance and Lambda matrices by the number of
    examples processed, so with a summed loss its factors approximate the
    Fisher of the mean loss and its ``damping_factor`` is on our absolute scale.
    Its score is ``+ g_t^T (F + lambda I)^{-1} g_i`` and is negated here.
    """
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments

    if strategy not in ("ekfac", "kfac"):
        raise ValueError(f"strategy must be 'ekfac' or 'kfac', got {strategy!r}")
    if fisher not in ("sampled", "empirical", "expected"):
        raise ValueError(f"fisher must be 'sampled', 'empirical' or 'expected', got {fisher!r}")
    dtype = _model_dtype(model)
    n_test = len(X_test)
    if damping is None:
        damping_factor = None
        if weight_decay > 0:
            warnings.warn(
                "damping=None uses kronfluence's heuristic damping; weight_decay is ignored",
                stacklevel=2,
            )
    else:
        damping_factor = float(damping) + float(weight_decay)

    factor_args = FactorArguments(
        strategy=strategy,
        use_empirical_fisher=(fisher != "sampled"),
        covariance_max_examples=None,
        lambda_max_examples=None,
        activation_covariance_dtype=dtype,
        gradient_covariance_dtype=dtype,
        eigendecomposition_dtype=torch.float64,
        per_sample_gradient_dtype=dtype,
        lambda_dtype=dtype,
    )
    score_args = ScoreArguments(
        damping_factor=damping_factor,
        per_sample_gradient_dtype=dtype,
        precondition_dtype=dtype,
        score_dtype=dtype,
        query_gradient_svd_dtype=dtype,
    )
    train_ds = TensorDataset(X_train, y_train)
    test_ds = TensorDataset(X_test, y_test)
    outdir = tempfile.mkdtemp(prefix="kronfluence_")
    try:
        with (
            _quiet_loggers("kronfluence", "kronfluence.computer.computer", level=logging.ERROR),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            task = _make_kronfluence_task(fisher, seed)
            fit_ds = _expected_fisher_dataset(model, X_train) if fisher == "expected" else train_ds
            kmodel = prepare_model(copy.deepcopy(model), task)
            analyzer = Analyzer(
                analysis_name="peer",
                model=kmodel,
                task=task,
                cpu=cpu,
                log_level=logging.ERROR,
                disable_tqdm=True,
                output_dir=outdir,
                disable_model_save=True,
            )
            analyzer.fit_all_factors(
                factors_name=strategy,
                dataset=fit_ds,
                per_device_batch_size=batch_size,
                factor_args=factor_args,
                overwrite_output_dir=True,
            )
            analyzer.compute_pairwise_scores(
                scores_name="scores",
                factors_name=strategy,
                query_dataset=test_ds,
                train_dataset=train_ds,
                per_device_query_batch_size=min(batch_size, n_test),
                per_device_train_batch_size=batch_size,
                score_args=score_args,
                overwrite_output_dir=True,
            )
            raw = analyzer.load_pairwise_scores("scores")["all_modules"]
            seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(outdir, ignore_errors=True)

    scores = -raw.detach().cpu().double().numpy()
    fisher_txt = {
        "sampled": f"true Fisher from one label per example sampled from the model (seed {seed})",
        "empirical": "empirical Fisher (true labels)",
        "expected": "exact expected Fisher = Gauss-Newton (all labels, weights sqrt(K p_c))",
    }[fisher]
    damp_txt = (
        "kronfluence heuristic damping (0.1 x mean eigenvalue per module), weight decay ignored"
        if damping_factor is None
        else f"damping_factor={damping_factor:g} (= damping {damping:g} + weight_decay "
        f"{weight_decay:g}, absolute, mean-loss scale)"
    )
    notes = f"kronfluence {strategy}; {fisher_txt}; {damp_txt}; sign flipped"
    return {"scores": scores, "seconds": seconds, "notes": notes}


# --------------------------------------------------------------------------- pyDVL


class _CgIterationLog(logging.Handler):
    """Collect CG iteration counts from pyDVL's debug messages."""

    _pattern = re.compile(r"Terminated cg after (\d+) iterations")

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.iterations = []
        self.hit_maxiter = 0

    def emit(self, record):
        msg = record.getMessage()
        m = self._pattern.search(msg)
        if m:
            self.iterations.append(int(m.group(1)))
        elif "Reached max number of iterations" in msg:
            self.hit_maxiter += 1


def _loader(X, y, batch_size):
    n = len(X)
    bs = n if batch_size is None else int(batch_size)
    return DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=False)


def _pydvl_regularization(damping, weight_decay):
    reg = float(damping) + float(weight_decay)
    return reg if reg > 0 else None


def pydvl_cg_scores(
    model,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    damping=0.0,
    rtol=1e-8,
    atol=1e-7,
    maxiter=None,
    weight_decay=0.0,
    batch_size=None,
):
    """Influence matrix from pyDVL's ``CgInfluence`` (exact Hessian, conjugate gradient).

    Parameters
    ----------
    model : torch.nn.Module
        Plain module producing logits (CPU, float32 or float64).
    X_train, y_train, X_test, y_test : torch.Tensor
        Inputs and int64 labels.
    damping : float
        Absolute damping on our (mean-loss) scale.
    rtol, atol : float
        Passed unchanged to ``CgInfluence``.  pyDVL 0.10 stops a solve when the
        residual norm drops below ``max(rtol**2 * c, atol**2)`` with ``c`` a
        column norm of the right-hand-side block, so in practice ``atol**2`` is
        the absolute residual tolerance.
    maxiter : int or None
        Maximum CG iterations per test point (pyDVL's default, ``10 * n_params``,
        when ``None``).
    weight_decay : float
        Coefficient of ``weight_decay / 2 * ||theta||^2`` in the training objective.
    batch_size : int or None
        Batch size of the training DataLoader used by the Hessian operator
        (full batch when ``None``).  pyDVL averages batches with equal weight.

    Returns
    -------
    dict
        ``scores`` (n_test, n_train) ndarray in our sign convention, ``seconds``,
        ``notes`` (includes the CG iteration counts read from pyDVL's log).

    Notes
    -----
    ``regularization = damping + weight_decay`` (absolute, added to the Hessian of
    the mean loss).  pyDVL's ``influences(..., mode=InfluenceMode.Up)`` returns
    ``+ g_t^T (H + lambda I)^{-1} g_i``; it is negated here.
    """
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import CgInfluence

    reg = _pydvl_regularization(damping, weight_decay)
    handler = _CgIterationLog()
    op_logger = logging.getLogger("pydvl.influence.torch.operator")
    old_level = op_logger.level
    op_logger.addHandler(handler)
    op_logger.setLevel(logging.DEBUG)
    try:
        t0 = time.perf_counter()
        infl = CgInfluence(
            model,
            F.cross_entropy,
            regularization=reg,
            rtol=rtol,
            atol=atol,
            maxiter=maxiter,
            progress=False,
            warn_on_max_iteration=False,
        )
        infl = infl.fit(_loader(X_train, y_train, batch_size))
        raw = infl.influences(X_test, y_test, X_train, y_train, mode=InfluenceMode.Up)
        seconds = time.perf_counter() - t0
    finally:
        op_logger.removeHandler(handler)
        op_logger.setLevel(old_level)

    scores = -raw.detach().cpu().double().numpy()
    its = handler.iterations
    it_txt = (
        f"CG iterations per test point: min {min(its)}, median {int(np.median(its))}, "
        f"max {max(its)}"
        if its
        else "CG iterations not reported"
    )
    if handler.hit_maxiter:
        it_txt += f"; {handler.hit_maxiter} solve(s) hit maxiter"
    notes = (
        f"pyDVL CgInfluence, exact Hessian of mean CE; regularization={reg} "
        f"(= damping {damping:g} + weight_decay {weight_decay:g}); rtol={rtol:g}, atol={atol:g}; "
        f"{it_txt}; sign flipped"
    )
    return {"scores": scores, "seconds": seconds, "notes": notes}


def pydvl_ekfac_scores(
    model,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    damping=0.0,
    weight_decay=0.0,
    update_diagonal=True,
    batch_size=256,
):
    """Influence matrix from pyDVL's ``EkfacInfluence``.

    Parameters
    ----------
    model : torch.nn.Module
        Plain module producing logits whose parametrised layers are all
        ``torch.nn.Linear`` (pyDVL 0.10's EK-FAC supports nothing else).
    X_train, y_train, X_test, y_test : torch.Tensor
        Inputs and int64 labels.
    damping : float
        Absolute damping on our (mean-loss) scale.
    weight_decay : float
        Coefficient of ``weight_decay / 2 * ||theta||^2`` in the training objective.
    update_diagonal : bool
        Refit the eigenvalues in the Kronecker eigenbasis (EK-FAC); ``False`` gives
        plain K-FAC eigenvalues.
    batch_size : int
        Batch size of the DataLoader used for fitting.

    Returns
    -------
    dict
        ``scores`` (n_test, n_train) ndarray in our sign convention, ``seconds``,
        ``notes``.

    Notes
    -----
    pyDVL's factors are per-example averages (summed loss over each batch,
    divided by the number of examples), i.e. a Fisher approximation of the mean
    loss; the output-side factor uses pyDVL's own label-free surrogate loss
    (``sum_c sqrt(p_c) log p_c``), not sampled labels.  ``hessian_regularization =
    damping + weight_decay`` is added to every eigenvalue, which equals adding
    that multiple of the identity because the Kronecker eigenbasis is orthogonal.
    The factors are allocated with torch's default dtype, which is set to the
    model's dtype while fitting and scoring.  Scores are negated, as for CG.
    """
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import EkfacInfluence

    dtype = _model_dtype(model)
    reg = float(damping) + float(weight_decay)
    with (
        _default_dtype(dtype),
        _quiet_loggers("pydvl", level=logging.WARNING),
        warnings.catch_warnings(),
    ):
        # pyDVL's hooks trigger torch's "full backward hook ... no inputs require
        # gradients" warning on every batch; it is harmless here.
        warnings.simplefilter("ignore", UserWarning)
        t0 = time.perf_counter()
        infl = EkfacInfluence(
            model,
            update_diagonal=update_diagonal,
            hessian_regularization=reg,
            progress=False,
        )
        infl = infl.fit(_loader(X_train, y_train, batch_size))
        raw = infl.influences(X_test, y_test, X_train, y_train, mode=InfluenceMode.Up)
        seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)  # pyDVL's fitting backpropagates into .grad

    scores = -raw.detach().cpu().double().numpy()
    notes = (
        f"pyDVL EkfacInfluence ({'EK-FAC' if update_diagonal else 'K-FAC'} eigenvalues), "
        f"surrogate-loss Fisher; hessian_regularization={reg:g} "
        f"(= damping {damping:g} + weight_decay {weight_decay:g}); sign flipped"
    )
    return {"scores": scores, "seconds": seconds, "notes": notes}


# --------------------------------------------------------------------------- self-check


def _train_lbfgs(model, X, y, weight_decay, gtol=1e-8, max_rounds=200):
    """Full-batch L-BFGS on mean CE + weight_decay/2 ||theta||^2 until ||grad|| < gtol."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=500,
        history_size=50,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def objective():
        loss = F.cross_entropy(model(X), y)
        return loss + 0.5 * weight_decay * sum((p**2).sum() for p in params)

    def closure():
        opt.zero_grad()
        obj = objective()
        obj.backward()
        return obj

    gnorm = float("inf")
    for _ in range(max_rounds):
        opt.step(closure)
        grads = torch.autograd.grad(objective(), params)
        gnorm = torch.sqrt(sum((g**2).sum() for g in grads)).item()
        if gnorm < gtol:
            break
    model.zero_grad(set_to_none=True)
    return gnorm


def _exact_scores(model, X_train, y_train, X_test, y_test, weight_decay, damping=0.0):
    """Reference scores with torch.func: (Hessian, Gauss-Newton) versions.

    Both are ``- g_t^T (M + (weight_decay + damping) I)^{-1} g_i`` with ``M`` the
    Hessian of the mean cross entropy, resp. its Gauss-Newton matrix
    ``mean_i J_i^T (diag(p_i) - p_i p_i^T) J_i``.
    """
    from torch.func import functional_call, grad, hessian, jacrev, vmap

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflatten(flat):
        chunks = (c.reshape(s) for c, s in zip(flat.split(sizes), shapes, strict=True))
        return dict(zip(names, chunks, strict=True))

    def mean_loss(flat):
        return F.cross_entropy(functional_call(model, unflatten(flat), (X_train,)), y_train)

    def logits_one(flat, x):
        return functional_call(model, unflatten(flat), (x.unsqueeze(0),))[0]

    def point_loss(flat, x, t):
        return F.cross_entropy(logits_one(flat, x).unsqueeze(0), t.unsqueeze(0))

    eye = torch.eye(len(theta), dtype=theta.dtype)
    shift = (weight_decay + damping) * eye
    H = hessian(mean_loss)(theta)
    J = vmap(jacrev(logits_one), in_dims=(None, 0))(theta, X_train)
    with torch.no_grad():
        p = torch.softmax(model(X_train), dim=-1)
    out_h = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    ggn = torch.einsum("nkp,nkl,nlq->pq", J, out_h, J) / len(X_train)
    per_sample = vmap(grad(point_loss), in_dims=(None, 0, 0))
    G_train = per_sample(theta, X_train, y_train)
    G_test = per_sample(theta, X_test, y_test)
    exact_h = -(G_test @ torch.linalg.solve(H + shift, G_train.T)).numpy()
    exact_ggn = -(G_test @ torch.linalg.solve(ggn + shift, G_train.T)).numpy()
    return exact_h, exact_ggn


def _main():
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)
    wd = 1e-3
    n_train, n_test = 400, 20

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    X = torch.tensor(X, dtype=torch.float64)
    y = torch.tensor(y, dtype=torch.int64)
    X_train, y_train = X[:n_train], y[:n_train]
    X_test, y_test = X[n_train : n_train + n_test], y[n_train : n_train + n_test]

    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    ).double()
    gnorm = _train_lbfgs(model, X_train, y_train, wd)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters, final gradient norm {gnorm:.2e} (wd={wd:g})")

    t0 = time.perf_counter()
    exact, exact_ggn = _exact_scores(model, X_train, y_train, X_test, y_test, wd)
    print(f"exact Hessian and GGN references (torch.func): {time.perf_counter() - t0:.2f} s")
    r0 = np.corrcoef(exact_ggn.ravel(), exact.ravel())[0, 1]
    print(
        f"GGN reference vs Hessian reference: pearson {r0:.6f}, "
        f"norm ratio {np.linalg.norm(exact_ggn) / np.linalg.norm(exact):.4f}"
    )

    args = (model, X_train, y_train, X_test, y_test)
    runs = {
        "pydvl cg": lambda: pydvl_cg_scores(*args, weight_decay=wd),
        "pydvl ekfac": lambda: pydvl_ekfac_scores(*args, weight_decay=wd),
        "kronfluence ekfac": lambda: kronfluence_scores(
            *args, strategy="ekfac", damping=0.0, weight_decay=wd
        ),
        "kronfluence kfac": lambda: kronfluence_scores(
            *args, strategy="kfac", damping=0.0, weight_decay=wd
        ),
        "kronfluence ekfac/E": lambda: kronfluence_scores(
            *args, strategy="ekfac", damping=0.0, weight_decay=wd, fisher="expected"
        ),
        "kronfluence ekfac/EF": lambda: kronfluence_scores(
            *args, strategy="ekfac", damping=0.0, weight_decay=wd, fisher="empirical"
        ),
    }
    print("pearson / norm ratio vs the exact Hessian reference (H) and the exact GGN one (G)")
    print(
        f"{'method':<20} {'r(H)':>9} {'ratio(H)':>9} {'r(G)':>9} {'ratio(G)':>9} "
        f"{'seconds':>8}  notes"
    )
    results = {}
    for name, fn in runs.items():
        res = fn()
        s = res["scores"]
        assert s.shape == exact.shape, (name, s.shape)
        r = np.corrcoef(s.ravel(), exact.ravel())[0, 1]
        ratio = np.linalg.norm(s) / np.linalg.norm(exact)
        rg = np.corrcoef(s.ravel(), exact_ggn.ravel())[0, 1]
        ratio_g = np.linalg.norm(s) / np.linalg.norm(exact_ggn)
        results[name] = (r, ratio)
        print(
            f"{name:<20} {r:>9.6f} {ratio:>9.4f} {rg:>9.6f} {ratio_g:>9.4f} "
            f"{res['seconds']:>8.2f}  {res['notes']}"
        )

    r, ratio = results["pydvl cg"]
    assert r > 0.999 and abs(ratio - 1) < 1e-3, "pyDVL CG does not match the exact scores"
    print("OK: pyDVL CG matches the exact influence (Pearson > 0.999, norm ratio ~1)")


if __name__ == "__main__":
    _main()
