"""Declared parameter ranges, checked in one place before any work.

Every public class (and every solver) declares a table ``{name: [constraint, ...]}``;
a value is valid when it satisfies any constraint of its entry. :func:`check_params`
runs a table against values and raises :class:`InvalidParameterError` naming the
owner, the parameter, the value and what would work.

scikit-learn has the same idea in its private ``_param_validation`` module; this is
a small public one of our own so that nothing here depends on a private API.
"""

import math
import numbers

import numpy as np

from skinfluence.exceptions import InvalidParameterError


class Constraint:
    """One allowed kind of value; subclasses define ``is_satisfied_by`` and ``__str__``."""

    def is_satisfied_by(self, value):
        raise NotImplementedError


def _is_bool(value):
    return isinstance(value, bool | np.bool_)


class Interval(Constraint):
    """A finite number of a kind ("int" or "real") in a range.

    Booleans are never numbers here, and a real must be finite (``inf`` is not a
    memory budget or a tolerance).

    Parameters
    ----------
    kind : {"int", "real"}
        "int" takes integers only; "real" takes integers and floats.
    low, high : float or None
        Bounds; None means unbounded on that side.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the range.
    """

    def __init__(self, kind, low=None, high=None, *, closed="both"):
        if kind not in ("int", "real"):
            raise ValueError(f"kind must be 'int' or 'real', got {kind!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def is_satisfied_by(self, value):
        if _is_bool(value):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not right)):
            return False
        return True

    def __str__(self):
        kind = "an int" if self.kind == "int" else "a finite number"
        if self.low is not None and self.high is not None:
            lb = "[" if self.closed in ("both", "left") else "("
            rb = "]" if self.closed in ("both", "right") else ")"
            return f"{kind} in {lb}{self.low}, {self.high}{rb}"
        if self.low is not None:
            op = ">=" if self.closed in ("both", "left") else ">"
            return f"{kind} {op} {self.low}"
        if self.high is not None:
            op = "<=" if self.closed in ("both", "right") else "<"
            return f"{kind} {op} {self.high}"
        return kind


class Options(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, *options):
        self.options = tuple(options)

    def is_satisfied_by(self, value):
        return isinstance(value, str) and value in self.options

    def __str__(self):
        return "one of " + ", ".join(map(repr, self.options))


class InstanceOf(Constraint):
    """An instance of one of ``types``, described as ``text``."""

    def __init__(self, types, text):
        self.types, self.text = types, text

    def is_satisfied_by(self, value):
        return isinstance(value, self.types) and not (
            _is_bool(value) and bool not in _as_tuple(self.types)
        )

    def __str__(self):
        return self.text


class Satisfies(Constraint):
    """Whatever ``predicate(value)`` accepts, described as ``text``."""

    def __init__(self, predicate, text):
        self.predicate, self.text = predicate, text

    def is_satisfied_by(self, value):
        try:
            return bool(self.predicate(value))
        except Exception:  # a predicate that cannot judge the value rejects it
            return False

    def __str__(self):
        return self.text


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value):
        return value is None

    def __str__(self):
        return "None"


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


#: ``None`` is allowed.
NONE = _NoneConstraint()
#: A Python or numpy boolean.
BOOLEAN = InstanceOf((bool, np.bool_), "a bool")
#: What :func:`sklearn.utils.check_random_state` accepts.
RANDOM_STATE = [
    NONE,
    Interval("int", 0, 2**32 - 1),
    InstanceOf(np.random.RandomState, "a numpy RandomState"),
]
#: A positive int (>= 1).
POSITIVE_INT = Interval("int", 1, None)


def _is_str_list(value):
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )


#: A non-empty list or tuple of non-empty strings.
STR_LIST = Satisfies(_is_str_list, "a non-empty list of str")


def describe(constraints):
    """The allowed values of a table entry, in words."""
    parts = [str(c) for c in constraints]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def check_param(owner, name, value, constraints):
    """Raise :class:`InvalidParameterError` unless ``value`` satisfies one constraint.

    Parameters
    ----------
    owner : str
        Who takes the parameter (a class or function name), for the message.
    name : str
        The parameter's name.
    value : object
        Its value.
    constraints : list of Constraint
        The allowed kinds of value.

    Returns
    -------
    value : object
        ``value`` unchanged.
    """
    if any(c.is_satisfied_by(value) for c in constraints):
        return value
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {describe(constraints)}; got {value!r}."
    )


def check_params(owner, table, values):
    """Check every entry of ``values`` against the table (unknown names are errors).

    Parameters
    ----------
    owner : str
        Who takes the parameters, for the message.
    table : dict of str to list of Constraint
        The declared constraints.
    values : dict of str to object
        The values to check.
    """
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise InvalidParameterError(
            f"{owner} got unknown parameter(s) {unknown}; it takes {sorted(table)}."
        )
    for name, value in values.items():
        check_param(owner, name, value, table[name])
