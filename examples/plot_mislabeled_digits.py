"""
Finding flipped labels in digits with self-influence
=====================================================

Flip 10% of the training labels of scikit-learn's digits, fit a logistic
regression, and check training points in order of self-influence: how many of
the flipped labels are found after checking a fraction of the data?
"""

from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels
from skinfluence.metrics import detection_curve

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
y_noisy, flipped = flip_labels(y_train, 0.1, random_state=0)

model = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=5000))
ex = InfluenceExplainer(model).fit(X_train, y_noisy)

checked, found_si = detection_curve(flipped, ex.self_influence())
_, found_loss = detection_curve(flipped, ex.loss())

import matplotlib.pyplot as plt

fig, ax = plt.subplots()
ax.plot(checked, found_si, label="self-influence")
ax.plot(checked, found_loss, label="training loss", linestyle="--")
ax.plot(checked, checked, label="random (expected)", linestyle=":")
ax.set_xlim(0, 0.4)
ax.set_xlabel("fraction of training data checked")
ax.set_ylabel("fraction of flipped labels found")
ax.legend()
plt.show()
