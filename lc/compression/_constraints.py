"""Hyperparameter constraints, declared once per class (as scikit-learn's ``_parameter_constraints``).

A compression lists, in a class attribute ``constraints``, each field with the values it allows and a phrase that
says what it means; :func:`validate` (called by ``Compression.check(shape)``) checks every field and writes the
message, which names the class, the field, its value, what is allowed and what the field means::

    constraints = {"kappa": (Integer(0, WEIGHTS), "is the number of weights to keep")}
    # ConstraintL0Pruning(kappa=11) on a tensor of shape (10,): kappa must be an integer between 0 and 10, the
    # number of weights; kappa is the number of weights to keep

The phrase completes a sentence that starts with the field's name. A range's end may be a :class:`Bound`, a
number computed from the shape of the tensor the view gives (``WEIGHTS``: how many weights it holds).
Integers are any ``numbers.Integral`` (a numpy integer too) and reals any ``numbers.Real``, never a bool; a real
is never NaN, and never ±inf unless ``finite=False``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .._errors import CompressionError

__all__ = ["Constraint", "Bound", "WEIGHTS", "Integer", "Real", "Boolean", "Options", "InstanceOf", "OrNone",
           "validate"]


@dataclass(frozen=True)
class Bound:
    """An end of a range that depends on the input: ``of(shape)``, described as ``what`` in messages."""

    of: Callable[[tuple], float]
    what: str


WEIGHTS = Bound(math.prod, "the number of weights")


def _value(end, shape):
    return end.of(tuple(shape)) if isinstance(end, Bound) else end


def _show(end, shape) -> str:
    return f"{_value(end, shape)}, {end.what}" if isinstance(end, Bound) else f"{end}"


class Constraint:
    """What values a field allows: ``allows(value, shape)``, and ``describe(shape)``, a noun phrase that follows
    "must be" (``shape`` is the input's shape, or None where there is no input)."""

    def allows(self, value, shape) -> bool:
        raise NotImplementedError

    def describe(self, shape) -> str:
        raise NotImplementedError

    def uses_shape(self) -> bool:
        """Whether ``allows`` depends on the shape (the message then says the shape)."""
        return False


@dataclass(frozen=True)
class _Range(Constraint):
    """low ≤ value ≤ high: an end None is unbounded, an end a :class:`Bound` is computed from the shape."""

    low: Any = None
    high: Any = None

    def uses_shape(self):
        return isinstance(self.low, Bound) or isinstance(self.high, Bound)

    def _in_range(self, v, shape, left=True, right=True) -> bool:
        lo, hi = _value(self.low, shape), _value(self.high, shape)
        return ((lo is None or (v >= lo if left else v > lo)) and
                (hi is None or (v <= hi if right else v < hi)))

    def _ends(self, shape, left=True, right=True) -> str:
        """"≥ low and ≤ high" (either end left out where it is None)."""
        return " and ".join(([f"{'≥' if left else '>'} {_show(self.low, shape)}"] if self.low is not None else [])
                            + ([f"{'≤' if right else '<'} {_show(self.high, shape)}"] if self.high is not None
                               else []))


@dataclass(frozen=True)
class Integer(_Range):
    """An integer (``numbers.Integral``, not a bool) from ``low`` to ``high``, both included. Described as "an
    integer from 1 to 16", "an integer ≥ 1", or, when an end depends on the shape, "an integer between 0 and 10,
    the number of weights"."""

    def allows(self, value, shape):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and self._in_range(value, shape)

    def describe(self, shape):
        if self.low is None or self.high is None:
            return f"an integer {self._ends(shape)}".rstrip()
        if self.uses_shape():
            return f"an integer between {_show(self.low, shape)} and {_show(self.high, shape)}"
        return f"an integer from {self.low} to {self.high}"


@dataclass(frozen=True)
class Real(_Range):
    """A real number (``numbers.Real``, not a bool, never NaN; finite unless ``finite=False``) from ``low`` to
    ``high``; ``closed`` says which ends are included: "both", "left", "right" or "neither"."""

    closed: str = "both"
    finite: bool = True

    def allows(self, value, shape):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
            return False
        return not (self.finite and math.isinf(value)) and self._in_range(value, shape, *self._closed())

    def describe(self, shape):
        return f"{'a finite number' if self.finite else 'a number'} {self._ends(shape, *self._closed())}".rstrip()

    def _closed(self) -> tuple[bool, bool]:
        return self.closed in ("both", "left"), self.closed in ("both", "right")


@dataclass(frozen=True)
class Boolean(Constraint):
    """True or False (a bool, not 0 or 1)."""

    def allows(self, value, shape):
        return isinstance(value, bool)

    def describe(self, shape):
        return "True or False"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a few values (compared with ==)."""

    values: tuple

    def allows(self, value, shape):
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self, shape):
        return f"one of {self.values}"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``cls``, described as ``what`` (e.g. "an lc.RankBudget(ratio=...)"). ``cls`` may also be a
    function that returns the class, for a class defined further down the module (``lambda: RankBudget``)."""

    cls: type | Callable[[], type]
    what: str

    def allows(self, value, shape):
        return isinstance(value, self.cls if isinstance(self.cls, type) else self.cls())

    def describe(self, shape):
        return self.what


@dataclass(frozen=True)
class OrNone(Constraint):
    """None, or what ``constraint`` allows: an optional field."""

    constraint: Constraint

    def allows(self, value, shape):
        return value is None or self.constraint.allows(value, shape)

    def describe(self, shape):
        return f"{self.constraint.describe(shape)}, or None"

    def uses_shape(self):
        return self.constraint.uses_shape()


def validate(obj, constraints: Mapping[str, tuple[Constraint, str]], shape=None) -> None:
    """Raise :class:`lc.CompressionError` for the first field of ``obj`` that its constraint refuses (in the order
    declared), saying the class, the field, its value, what is allowed and what the field means."""
    for name, (constraint, meaning) in constraints.items():
        value = getattr(obj, name)
        if not constraint.allows(value, shape):
            on = f" on a tensor of shape {tuple(shape)}" if constraint.uses_shape() else ""
            raise CompressionError(f"{type(obj).__name__}({name}={value!r}){on}: {name} must be "
                                   f"{constraint.describe(shape)}; {name} {meaning}")
