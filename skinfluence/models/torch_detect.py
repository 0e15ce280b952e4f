"""Recognise skorch nets without importing torch or skorch when they are not loaded."""

import sys


def is_skorch_net(obj):
    """True for a skorch ``NeuralNet`` (only checked when skorch is already imported)."""
    skorch = sys.modules.get("skorch")
    return skorch is not None and isinstance(obj, skorch.NeuralNet)
