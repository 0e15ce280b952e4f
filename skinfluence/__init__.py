"""skinfluence: influence functions as a scikit-learn meta-estimator.

Koh & Liang's influence functions trace a prediction back to the training points
most responsible for it, and rank training points by self-influence to find
mislabeled ones. The sign convention is Koh & Liang's throughout: positive
``I_up,loss`` = harmful.
"""

from skinfluence._version import __version__
from skinfluence.explainer import InfluenceExplainer
from skinfluence.solvers import SingularHessianError

__all__ = ["InfluenceExplainer", "SingularHessianError", "__version__"]
