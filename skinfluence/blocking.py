"""The one memory policy: how many rows of a given width make one block.

It sits below both ``compute.py`` and the model adapters, which take their row blocks
from it and from nowhere else.
"""


def row_blocks(n_rows, bytes_per_row, working_memory, batch_size=None):
    """Slices of at most ``batch_size`` rows, else as many as fit ``working_memory`` MiB."""
    if batch_size is None:
        batch_size = int(working_memory * 2**20 // max(int(bytes_per_row), 1))
    batch_size = max(1, int(batch_size))
    return [slice(s, min(s + batch_size, n_rows)) for s in range(0, n_rows, batch_size)]


class Blocking:
    """The one memory policy: how many rows of a given width make one block.

    Built by the explainer from its ``working_memory`` and ``batch_size`` and handed
    to the adapter, which uses it for its own sweeps over the training set (Hessian,
    HVPs, objective gradient); the functions of this module use it for theirs.
    Widths are in bytes, computed by the caller in the adapter's ``itemsize``, so
    that a float32 net is budgeted as float32.

    Parameters
    ----------
    working_memory : float
        Budget in MiB for the largest temporary of one block.
    batch_size : int or None, default=None
        Rows per block of the streams over samples (influence, self-influence,
        losses, gradients); None derives it from ``working_memory``.
    """

    def __init__(self, working_memory, batch_size=None):
        self.working_memory = float(working_memory)
        self.batch_size = batch_size

    @classmethod
    def from_config(cls):
        """The policy of scikit-learn's ``working_memory`` setting (what adapters default to)."""
        from sklearn import get_config

        return cls(get_config()["working_memory"])

    def rows(self, n_rows, bytes_per_row, *, use_batch_size=True):
        """Row slices of ``range(n_rows)`` whose rows of ``bytes_per_row`` fit the budget.

        ``batch_size``, when set, fixes the rows per block instead, except with
        ``use_batch_size=False`` (the adapters' sweeps for the Hessian and HVPs,
        whose width is not a gradient's).
        """
        batch = self.batch_size if use_batch_size else None
        return row_blocks(n_rows, bytes_per_row, self.working_memory, batch)

    def __repr__(self):
        return f"Blocking(working_memory={self.working_memory:g}, batch_size={self.batch_size})"
