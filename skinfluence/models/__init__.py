"""Model adapters: how to differentiate one model family at its fitted parameters."""

from skinfluence.models.base import ModelAdapter, split_pipeline
from skinfluence.models.linear import SUPPORTED_LINEAR, LinearAdapter

SUPPORTED_TEXT = (
    "a LogisticRegression (L2 or no penalty), Ridge or LinearRegression, a skorch "
    "NeuralNet, or a Pipeline whose last step is one of these"
)

#: Adapter options that only a torch net understands, with their defaults.
TORCH_OPTIONS = {
    "params": None,
    "hessian": "exact",
    "dtype": None,
    "device": None,
    "hessian_samples": None,
    "matmul_precision": "highest",
}


def final_step(estimator):
    """The model that influence is taken for: the last step of a Pipeline."""
    return split_pipeline(estimator)[1]


def _is_torch(model):
    from skinfluence.models.torch_detect import is_skorch_net

    return is_skorch_net(model)


def check_supported(estimator):
    """Raise a TypeError naming the problem unless an adapter exists for ``estimator``."""
    model = final_step(estimator)
    if isinstance(model, SUPPORTED_LINEAR) or _is_torch(model):
        return
    raise TypeError(
        f"InfluenceExplainer cannot differentiate {type(model).__name__}: it supports "
        f"{SUPPORTED_TEXT}."
    )


def make_adapter(
    estimator,
    X,
    y,
    sample_weight=None,
    *,
    blocking=None,
    copy_X=True,
    random_state=None,
    X_steps=None,
    **torch_options,
):
    """Build the adapter for a fitted ``estimator`` trained on ``(X, y)``.

    ``blocking`` is the memory policy (:class:`skinfluence.blocking.Blocking`) the
    adapter's sweeps over the training set use. ``X_steps``, for a linear
    Pipeline, is ``X`` already through its earlier steps (as fitting produced it).
    """
    check_supported(estimator)
    if _is_torch(final_step(estimator)):
        from skinfluence.models.torch import TorchAdapter

        return TorchAdapter(
            estimator,
            X,
            y,
            sample_weight,
            blocking=blocking,
            copy_X=copy_X,
            random_state=random_state,
            **torch_options,
        )
    set_options = [k for k, v in torch_options.items() if v != TORCH_OPTIONS.get(k)]
    if set_options:
        raise ValueError(
            f"{', '.join(set_options)} only apply to torch nets; a linear model is "
            "differentiated exactly in float64."
        )
    return LinearAdapter(
        estimator, X, y, sample_weight, blocking=blocking, copy_X=copy_X, X_steps=X_steps
    )


__all__ = [
    "SUPPORTED_LINEAR",
    "LinearAdapter",
    "ModelAdapter",
    "check_supported",
    "final_step",
    "make_adapter",
]
