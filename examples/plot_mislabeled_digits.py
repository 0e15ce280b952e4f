"""
Finding flipped labels in digits
================================

Flip 10% of the training labels of scikit-learn's digits, fit a logistic
regression, and check the training points in order of a suspicion score: how
many of the flipped labels are found after checking a fraction of the data?
This is Koh & Liang's Figure 6 experiment.

``method="auto"`` is the approximate leave-one-out loss of each point (how badly
a model that never saw the point would fit its label), which
``benchmarks/bench_mislabel.py`` finds best for linear models.
"""

# %%
# Fit on noisy labels
# -------------------
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels
from skinfluence.metrics import fraction_found, roc_auc

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
y_noisy, flipped = flip_labels(y_train, 0.1, random_state=0)

model = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=5000))
ex = InfluenceExplainer(model).fit(X_train, y_noisy)
print(f"{flipped.sum()} of {len(y_train)} training labels flipped")

# %%
# Check the most suspicious points first
# --------------------------------------
# ``find_mislabeled`` ranks training indices by suspicion, most suspicious first
# (the shape cleanlab returns), so checking the top 10% means looking at these:
suspects = ex.find_mislabeled(fraction=0.1)
print(f"{flipped[suspects].sum()} of the {len(suspects)} top suspects were flipped")
for method in ("auto", "self_influence", "loss"):
    scores = ex.mislabel_scores(method)
    found = fraction_found(flipped, scores, (0.1, 0.2))
    print(
        f"{method:>15}: found {found[0]:.2f} at 10%, {found[1]:.2f} at 20%, "
        f"ROC AUC {roc_auc(flipped, scores):.3f}"
    )

# %%
# The detection curve
# -------------------
# Random checking finds flips in proportion to the data checked (the diagonal);
# the best possible ranking finds all of them after checking 10%.
import matplotlib.pyplot as plt

from skinfluence.plotting import MislabelDisplay, SelfInfluenceDisplay

disp = MislabelDisplay.from_explainer(
    ex, flipped, methods=("auto", "self_influence", "loss", "grad_norm"), max_fraction=0.4
)
plt.show()

# %%
# Where the flipped points sit in the distribution of self-influence
# -------------------------------------------------------------------
# The flipped labels (marked) are in the long right tail: the model had to bend
# to fit them.
SelfInfluenceDisplay.from_explainer(ex, flagged=flipped, log=True)
plt.show()
