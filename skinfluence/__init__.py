"""skinfluence: influence functions as a scikit-learn meta-estimator.

Koh & Liang's influence functions trace a prediction back to the training points
most responsible for it, and rank training points by self-influence to find
mislabeled ones. The sign convention is Koh & Liang's throughout: positive
``I_up,loss`` = harmful.
"""

from skinfluence._version import __version__

__all__ = ["InfluenceExplainer", "SingularHessianError", "__version__"]

# Loaded on first use, so that the command line (``skinfluence --help``) starts without
# importing scikit-learn, scipy or torch.
_LAZY = {
    "InfluenceExplainer": "skinfluence.explainer",
    "SingularHessianError": "skinfluence.solvers",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skinfluence' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
