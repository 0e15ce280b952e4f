"""Leave-one-out on a small MLP (Basu et al.: retrain from the optimum without the point).

Run from the repository root: ``python benchmarks/loo_mlp.py``. Iris, a 4-8-3 tanh MLP with
weight decay, trained full batch; 5 test points x their 10 most influential training points,
2000 L-BFGS iterations per retraining, through ``InfluenceExplainer.validate``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

torch.set_num_threads(1)
from sklearn.datasets import load_iris
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from skinfluence import InfluenceExplainer
from tests.test_torch import MLP, train_full_batch

X, y = load_iris(return_X_y=True)
X = StandardScaler().fit_transform(X)
torch.manual_seed(0)
net = NeuralNetClassifier(
    MLP,
    criterion=torch.nn.CrossEntropyLoss,
    optimizer=torch.optim.Adam,
    optimizer__weight_decay=1e-2,
    lr=0.02,
    train_split=None,
    verbose=0,
)
train_full_batch(net, X, y, steps=3000)
for hess in ["exact", "gauss-newton"]:
    ex = InfluenceExplainer(FrozenEstimator(net), hessian=hess).fit(X, y)
    res = ex.validate(X[::30], y[::30], n_points=10, refit_steps=2000)
    print(
        hess,
        "stationarity",
        f"{ex.stationarity_:.2g}",
        "pairs",
        res.predicted.size,
        f"pearson {res.pearson:.4f} spearman {res.spearman:.4f}",
        "slope",
        f"{np.polyfit(res.predicted.ravel(), res.actual.ravel(), 1)[0]:.3f}",
    )
