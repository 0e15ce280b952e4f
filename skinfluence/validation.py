"""Check an explainer against real retraining on the user's own model and data."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.utils import Bunch


def validate(adapter, test_data, influence, *, n_points=10, **retrain_options):
    """Predicted vs actual change of test loss when the most influential points go.

    For each test sample, the ``n_points`` training points with the largest
    ``|I_up,loss|`` are removed one at a time and the model is retrained (see the
    adapter's ``retrained_losses``); the actual change of that sample's loss is set
    against the prediction ``-removal_weights_[i] * I_up,loss``. The reference is a
    retraining with nothing removed, run the same way, so optimiser drift cancels.

    Returns a Bunch with ``train_indices``, ``predicted``, ``actual`` (each
    ``(n_test, n_points)``), ``pearson`` and ``spearman`` over all pairs.
    """
    n = adapter.n_train
    n_points = min(int(n_points), n)
    top = np.argsort(-np.abs(influence), axis=1)[:, :n_points]
    base = adapter.retrained_losses(test_data, np.ones(n), **retrain_options)
    predicted = np.empty(top.shape)
    actual = np.empty(top.shape)
    cache = {}
    for t, row in enumerate(top):
        for j, i in enumerate(row):
            if i not in cache:
                weights = np.ones(n)
                weights[i] = 0.0
                cache[i] = adapter.retrained_losses(test_data, weights, **retrain_options)
            actual[t, j] = cache[i][t] - base[t]
            predicted[t, j] = -adapter.removal_weights[i] * influence[t, i]
    flat_p, flat_a = predicted.ravel(), actual.ravel()
    enough = flat_p.size > 2 and np.ptp(flat_p) > 0 and np.ptp(flat_a) > 0
    return Bunch(
        train_indices=top,
        predicted=predicted,
        actual=actual,
        pearson=float(pearsonr(flat_p, flat_a).statistic) if enough else np.nan,
        spearman=float(spearmanr(flat_p, flat_a).statistic) if enough else np.nan,
    )
