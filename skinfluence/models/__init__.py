"""Model adapters: how to differentiate one model family at its fitted parameters."""

from sklearn.pipeline import Pipeline

from skinfluence.models.base import ModelAdapter
from skinfluence.models.linear import SUPPORTED_LINEAR, LinearAdapter

SUPPORTED_TEXT = (
    "a LogisticRegression (L2 or no penalty), Ridge or LinearRegression, "
    "or a Pipeline whose last step is one"
)


def final_step(estimator):
    """The model that influence is taken for: the last step of a Pipeline."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def check_supported(estimator):
    """Raise a TypeError naming the problem unless an adapter exists for ``estimator``."""
    model = final_step(estimator)
    if isinstance(model, SUPPORTED_LINEAR):
        return
    raise TypeError(
        f"InfluenceExplainer cannot differentiate {type(model).__name__}: it supports "
        f"{SUPPORTED_TEXT}."
    )


def make_adapter(estimator, X, y, sample_weight=None, *, working_memory=1024, copy_X=True):
    """Build the adapter for a fitted ``estimator`` trained on ``(X, y)``."""
    check_supported(estimator)
    return LinearAdapter(
        estimator, X, y, sample_weight, working_memory=working_memory, copy_X=copy_X
    )


__all__ = ["LinearAdapter", "ModelAdapter", "check_supported", "final_step", "make_adapter"]
