"""The exceptions skinfluence raises for problems a user can fix."""


class InvalidParameterError(ValueError, TypeError):
    """A parameter value outside its declared range (a ValueError and a TypeError)."""


class SingularHessianError(ValueError):
    """The Hessian (plus damping) is singular or indefinite, so H^-1 does not exist.

    ``damping`` is the whole damping the message advises (the smallest that makes
    ``H + damping I`` positive definite, from the eigenvalues found), or None where
    the error gives none.
    """

    def __init__(self, message, damping=None):
        super().__init__(message)
        self.damping = damping


class NonFiniteError(ValueError, FloatingPointError):
    """A computed quantity overflowed to inf or NaN (the message says which, and why)."""


class OutOfRangeError(IndexError, ValueError):
    """Positions outside the points they index (an IndexError and a ValueError)."""
