"""scikit-learn's own estimator checks on the explainer."""

from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from skinfluence import InfluenceExplainer

EXPECTED_FAILURES = {}


@parametrize_with_checks(
    [InfluenceExplainer(LogisticRegression()), InfluenceExplainer(Ridge())],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
