"""The small MLP classifier of the ``mislabels`` command and the mislabel benchmark.

Importing this module needs torch and skorch (the ``torch`` extra).
"""

import torch
from skorch import NeuralNetClassifier


class TabularMLP(torch.nn.Module):
    """One tanh hidden layer: ``Linear(n_in, n_hidden) -> tanh -> Linear(n_hidden, n_out)``.

    Parameters
    ----------
    n_in : int
        Number of input features.
    n_out : int
        Number of classes (logits out).
    n_hidden : int, default=32
        Width of the hidden layer.
    """

    def __init__(self, n_in, n_out, n_hidden=32):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, n_hidden), torch.nn.Tanh(), torch.nn.Linear(n_hidden, n_out)
        )

    def forward(self, X):
        return self.net(X)


def make_mlp_classifier(n_in, n_classes, *, n_hidden=32, max_epochs=500, weight_decay=1e-4):
    """An unfitted skorch classifier wrapping :class:`TabularMLP`.

    Trained full batch with Adam (learning rate 0.01) and L2 weight decay on all
    of its data (``train_split=None``), long enough to fit its training labels:
    influence then differentiates the objective the net was trained on. It
    expects float32 features and integer labels ``0 .. n_classes - 1``.

    Parameters
    ----------
    n_in : int
        Number of input features.
    n_classes : int
        Number of classes.
    n_hidden : int, default=32
        Width of the hidden layer.
    max_epochs : int, default=500
        Full-batch training epochs.
    weight_decay : float, default=1e-4
        Adam's L2 weight decay (part of the training objective).

    Returns
    -------
    net : skorch.NeuralNetClassifier
        The unfitted net.
    """
    return NeuralNetClassifier(
        TabularMLP,
        module__n_in=n_in,
        module__n_out=n_classes,
        module__n_hidden=n_hidden,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=weight_decay,
        lr=1e-2,
        max_epochs=max_epochs,
        batch_size=-1,
        train_split=None,
        verbose=0,
    )
