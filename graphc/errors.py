"""Errors: every user-facing failure is a GraphcError whose message names the culprit."""


class GraphcError(ValueError):
    """Base class of every error graphc raises on bad user input."""


class InvalidName(GraphcError):
    """A name is not an ASCII identifier, is reserved, or is used twice."""


class ShapeError(GraphcError):
    """Shapes do not broadcast, contract or index as asked."""


class DTypeError(GraphcError):
    """An input has a dtype graphc cannot compute with."""


class BindingError(GraphcError):
    """A call got an unknown, missing or malformed input."""


class UnsupportedError(GraphcError):
    """The graph uses something graphc cannot compile (yet)."""


class TargetError(GraphcError):
    """The requested target or dtype is unknown or unavailable."""


class NonFiniteLoss(GraphcError):
    """Training produced a NaN or infinite loss."""
