"""
The training images behind one prediction
=========================================

Which training images made a logistic regression predict what it predicts for
one test image? Influence functions (Koh & Liang, 2017) answer without
retraining: ``I_up,loss`` of each training point on the test loss, **negative =
helpful** (the point pulled the model towards the right answer), **positive =
harmful**.

With 5% of the training labels flipped, the most harmful training points for a
misclassified test image are often the mislabeled ones.
"""

# %%
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
y_noisy, flipped = flip_labels(y_train, 0.05, random_state=1)

model = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=5000))
ex = InfluenceExplainer(model).fit(X_train, y_noisy)
pred = ex.estimator_.predict(X_test)
t = int(np.flatnonzero(pred != y_test)[0])
print(f"test image {t}: label {y_test[t]}, predicted {pred[t]}")

# %%
# The five most helpful and most harmful training images
# -------------------------------------------------------
# The display takes the images and the (noisy) labels the model was trained on
# from the explainer, which keeps them; the test panel shows the true and the
# predicted label.
import matplotlib.pyplot as plt

from skinfluence.plotting import InfluenceDisplay

disp = InfluenceDisplay.from_explainer(
    ex,
    X_test[t : t + 1],
    y_test[t : t + 1],
    k=5,
    image_shape=(8, 8),
)
plt.show()

harmful = ex.most_influential(X_test[t : t + 1], y_test[t : t + 1], k=5).harmful_indices[0]
print(f"{flipped[harmful].sum()} of the 5 most harmful training points have flipped labels")

# %%
# What the numbers mean
# ---------------------
# Removing training point ``i`` changes the test loss by about
# ``-removal_weights_[i] * I[i]`` (``-I[i] / n``). Check it against real
# retraining for the most harmful point: the test loss should fall.
from sklearn.base import clone


def test_loss(mask):
    m = clone(model).fit(X_train[mask], y_noisy[mask])
    proba = m.predict_proba(X_test[t : t + 1])[0]
    return -np.log(proba[list(m.classes_).index(y_test[t])])


i = harmful[0]
I = ex.influence(X_test[t : t + 1], y_test[t : t + 1])[0]
keep = np.arange(len(y_noisy)) != i
print(
    f"removing #{i}: predicted change {-ex.removal_weights_[i] * I[i]:+.4f}, "
    f"actual {test_loss(keep) - test_loss(np.ones_like(keep)):+.4f}"
)
