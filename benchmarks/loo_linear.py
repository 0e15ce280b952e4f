"""Leave-one-out figures for the linear adapter (the cases the test suite checks).

Run from the repository root: ``python benchmarks/loo_linear.py``. For each case, the 15 most
influential and 5 random training points of 3 test points are removed one at a time and the
model is refitted; prints Pearson, Spearman and the slope of actual vs predicted loss change.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, Ridge

import tests.test_loo as T
from tests.conftest import loo_pairs

orig = T._check_loo


def report(name):
    def f(ex, model, X, y, X_test, y_test, sample_weight=None, X_test_model=None):
        X_test_model = X_test if X_test_model is None else X_test_model
        from sklearn.base import clone

        def refit(mask):
            m = clone(model)
            kw = {} if sample_weight is None else {"sample_weight": sample_weight[mask]}
            m.fit(X[mask], y[mask], **kw)
            return T._per_sample_test_loss(m, X_test_model, y_test)

        p, a = loo_pairs(ex, refit, X_test, y_test)
        print(
            f"{name:28s} pairs={len(p)} pearson={pearsonr(p, a).statistic:.4f} spearman={spearmanr(p, a).statistic:.4f} slope={np.polyfit(p, a, 1)[0]:.3f}"
        )

    return f


Xb, yb = make_classification(
    n_samples=400, n_features=5, n_informative=4, n_redundant=0, flip_y=0.05, random_state=0
)
Xm, ym = make_classification(
    n_samples=450,
    n_features=5,
    n_informative=4,
    n_redundant=0,
    n_classes=3,
    flip_y=0.05,
    random_state=1,
)
Xr, yr = make_regression(n_samples=300, n_features=4, noise=5.0, random_state=0)
cases = [
    ("binary", lambda: T.test_binary_logistic_matches_leave_one_out((Xb, yb), dict(C=1.0))),
    (
        "binary no intercept",
        lambda: T.test_binary_logistic_matches_leave_one_out(
            (Xb, yb), dict(C=0.3, fit_intercept=False)
        ),
    ),
    ("multinomial", lambda: T.test_multinomial_logistic_matches_leave_one_out((Xm, ym), True)),
    (
        "multinomial no intercept",
        lambda: T.test_multinomial_logistic_matches_leave_one_out((Xm, ym), False),
    ),
    (
        "multinomial C=inf",
        lambda: T.test_multinomial_without_penalty_matches_leave_one_out((Xm, ym)),
    ),
    ("sample weights", lambda: T.test_sample_weights_match_leave_one_out((Xb, yb))),
    (
        "pipeline (multinomial)",
        lambda: T.test_pipeline_matches_leave_one_out_of_last_step((Xm, ym)),
    ),
    ("ridge", lambda: T.test_regression_matches_leave_one_out((Xr, yr), Ridge(alpha=3.0))),
    ("ols", lambda: T.test_regression_matches_leave_one_out((Xr, yr), LinearRegression())),
]
for name, fn in cases:
    T._check_loo = report(name)
    fn()
