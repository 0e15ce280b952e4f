"""Influence over a training set held as dask arrays: one task per row chunk.

The training rows stay on the workers. Every sweep over them (the objective's gradient
and Hessian, Newton steps, losses, gradient norms, self-influence, the Newton-step
leave-one-out, the influence matrix and its top-k) is one task per row chunk of ``X``:
the task builds an in-memory adapter over its chunk (:meth:`LinearAdapter.on_block`,
whose weights and penalty are those of the whole objective) and runs the blocked code
of the in-memory path (:mod:`skinfluence.compute`, :mod:`skinfluence.removal`) on it.
Sums come back to the client as tree reductions, P-sized or P x P; per-row results
stay lazy dask arrays chunked like the training rows. What the tasks share (the model,
the Hessian's factor, the solved test directions) enters each graph once, as one key.

Logistic regression (binary or multinomial, L2 or no penalty), whose whole problem is
a map-reduce, and fitted skorch nets (:class:`DaskTorchAdapter`, in
:mod:`skinfluence.dask.torch`: each task builds the in-memory ``TorchAdapter`` over its
chunk; the Hessian is one P x P reduction; nets are not trained here). This module
imports dask, and torch only when the torch path is used; the explainer imports it
only for dask data.
"""

from skinfluence.dask.adapter import (
    FAN_IN,
    DaskLinearAdapter,
    check_model,
    is_dask_collection,
    is_net,
    run,
    tree_reduce,
)
from skinfluence.dask.folds import cross_fitted, stratified_folds
from skinfluence.dask.newton import NEWTON_MAX_ITER, newton_fit, polish_in_memory, starting_model
from skinfluence.dask.ranking import flagged_suspects, top_suspects


def __getattr__(name):
    # the torch path imports torch: only when it is asked for
    if name == "DaskTorchAdapter":
        from skinfluence.dask import torch as torch_path

        return getattr(torch_path, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAN_IN",
    "NEWTON_MAX_ITER",
    "DaskLinearAdapter",
    "DaskTorchAdapter",
    "check_model",
    "cross_fitted",
    "flagged_suspects",
    "is_dask_collection",
    "is_net",
    "newton_fit",
    "polish_in_memory",
    "run",
    "starting_model",
    "stratified_folds",
    "top_suspects",
    "tree_reduce",
]
