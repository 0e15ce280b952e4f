"""
The training images behind a CNN's prediction
=============================================

The same question as for the logistic regression, asked of a small
convolutional net trained with skorch: which training images made it predict
what it predicts for one test image? skinfluence differentiates the net with
``torch.func`` (per-sample gradients, Hessian-vector products) at the
parameters skorch trained, with the objective skorch minimised: the mean
cross-entropy plus the optimizer's ``weight_decay`` as an L2 term.

A net is never exactly at a minimum and its Hessian need not be positive
definite, so a small ``damping`` is added (and reported). How far the numbers
can be trusted is checked at the end against real retraining.
"""

# %%
# Train a small CNN on digits with a few flipped labels
# -----------------------------------------------------
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels

torch.manual_seed(0)
torch.set_num_threads(1)  # a tiny net: threads would only add overhead

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # (n, channels, height, width)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
y_noisy, flipped = flip_labels(y_train, 0.05, random_state=1)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, kernel_size=3)  # 8x8 -> 6x6
        self.fc = torch.nn.Linear(8 * 3 * 3, 10)  # after 2x2 max pooling

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.tanh(self.conv(x)), 2)
        return self.fc(x.flatten(1))


net = NeuralNetClassifier(
    SmallCNN,
    criterion=torch.nn.CrossEntropyLoss,
    optimizer=torch.optim.Adam,
    optimizer__weight_decay=1e-3,  # an L2 term of the objective: influence includes it
    lr=0.02,
    max_epochs=400,
    batch_size=-1,  # full batch: the fitted parameters are close to a minimum
    train_split=None,  # fitted on all of X_train, the data influence is measured on
    verbose=0,
)
ex = InfluenceExplainer(net, damping=0.01).fit(X_train, y_noisy)
pred = ex.estimator_.predict(X_test)
print(
    f"{ex.n_params_} parameters, solver={ex.solver_}, damping={ex.damping_}, "
    f"stationarity {ex.stationarity_:.1e}, test accuracy {np.mean(pred == y_test):.3f}"
)
t = int(np.flatnonzero(pred != y_test)[0])
print(f"test image {t}: label {y_test[t]}, predicted {pred[t]}")

# %%
# The five most helpful and most harmful training images
# -------------------------------------------------------
# ``I_up,loss`` in Koh & Liang's sign: negative = helpful (the image pulled the
# net towards the right answer), positive = harmful.
import matplotlib.pyplot as plt

from skinfluence.plotting import InfluenceDisplay

disp = InfluenceDisplay.from_explainer(
    ex,
    X_test[t : t + 1],
    y_test[t : t + 1],
    X_train=X_train,
    y_train=y_noisy,
    k=5,
    image_shape=(8, 8),
)
plt.show()

harmful = ex.most_influential(X_test[t : t + 1], y_test[t : t + 1], k=5).harmful_indices[0]
print(f"{flipped[harmful].sum()} of the 5 most harmful training images have flipped labels")

# %%
# How far to trust these numbers
# ------------------------------
# ``validate`` removes the test point's most influential training images one at a
# time, retrains (full-batch L-BFGS from the fitted parameters, keeping the L2
# term: the change the influence function predicts) and compares the predicted
# change of the test loss with the real one.
check = ex.validate(X_test[t : t + 1], y_test[t : t + 1], n_points=6, refit_steps=100)
for i, p, a in zip(check.train_indices[0], check.predicted[0], check.actual[0], strict=True):
    print(f"  without #{i:<5d} predicted {p:+.5f}   retrained {a:+.5f}")
print(f"Pearson {check.pearson:.3f}, Spearman {check.spearman:.3f}")

# %%
# Read the signs and the order first: here every sign agrees with retraining and
# the two largest predicted effects are the two largest real ones. The magnitudes
# are approximate, and the largest ones are underestimated: removing a point the
# net relied on changes it by more than a second-order model of the loss around
# the fitted parameters predicts, the net is near (not at) a minimum, and the
# damping shrinks every effect a little. See the "Influence for neural nets" page
# of the documentation for what to expect on larger nets.
