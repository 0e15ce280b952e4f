"""
Influence inside a Pipeline
===========================

``InfluenceExplainer`` accepts a :class:`~sklearn.pipeline.Pipeline` ending in a
supported model. The earlier steps are treated as fixed feature maps (fitted
once on the training data), and influence is taken over the parameters of the
last step. Inputs are given in the original feature space, as to the Pipeline.

Here: breast cancer, ``StandardScaler -> PCA -> LogisticRegression``; which
training patients support, and which undermine, the prediction for one test
patient, and does removing them really change the test loss as predicted?
"""

# %%
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
model = make_pipeline(StandardScaler(), PCA(n_components=10), LogisticRegression(tol=1e-10))
ex = InfluenceExplainer(model).fit(X_train, y_train)
print(f"{ex.n_params_} parameters (10 PCA coefficients + intercept), solver {ex.solver_}")

# %%
# One test patient
# ----------------
# The test patient with the largest loss (the least confident correct answer, or
# a mistake).
t = int(np.argmax(ex.loss(X_test, y_test)))
print(
    f"test patient {t}: label {y_test[t]}, P(label) = "
    f"{ex.estimator_.predict_proba(X_test[t : t + 1])[0, y_test[t]]:.3f}"
)

import matplotlib.pyplot as plt

from skinfluence.plotting import InfluenceDisplay

disp = InfluenceDisplay.from_explainer(ex, X_test[t : t + 1], y_test[t : t + 1], k=6)
disp.figure_.tight_layout()
plt.show()

# %%
# Predicted against actual leave-one-out retraining
# -------------------------------------------------
# The explainer's prediction assumes the scaler and the PCA stay fixed. Refitting
# only the logistic regression on the fixed features matches it closely;
# refitting the whole Pipeline also moves the scaler and the PCA a little.
I = ex.influence(X_test[t : t + 1], y_test[t : t + 1])[0]
features = ex.estimator_[:-1]
Z_train, Z_test = features.transform(X_train), features.transform(X_test[t : t + 1])


def loss_without(i, whole_pipeline):
    keep = np.arange(len(y_train)) != i
    if whole_pipeline:
        m = clone(model).fit(X_train[keep], y_train[keep])
        p = m.predict_proba(X_test[t : t + 1])
    else:
        m = clone(model[-1]).fit(Z_train[keep], y_train[keep])
        p = m.predict_proba(Z_test)
    return -np.log(p[0, y_test[t]])


base = ex.loss(X_test[t : t + 1], y_test[t : t + 1])[0]
print(f"{'train':>6} {'predicted':>10} {'last step':>10} {'pipeline':>10}")
for i in np.argsort(-np.abs(I))[:6]:
    print(
        f"{i:>6} {-ex.removal_weights_[i] * I[i]:>+10.4f} "
        f"{loss_without(i, False) - base:>+10.4f} {loss_without(i, True) - base:>+10.4f}"
    )
