"""The two orders of evaluation, as a type and one check (spec/exponential_decay.md, section 2).

``"exact"``: the real value of the formula with every input taken exactly as
given, rounded once to the format. ``"keras"``: Keras's sequence of
operations, each one correctly rounded in the format.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

__all__ = ["Order", "ORDERS", "check_order", "is_order"]

#: An order of evaluation.
Order = Literal["exact", "keras"]

#: Every order, in the order the documents list them.
ORDERS: tuple[Order, ...] = get_args(Order)


def is_order(value: object) -> TypeGuard[Order]:
    """Whether ``value`` names an order of evaluation."""
    return isinstance(value, str) and value in ORDERS


def check_order(value: object, name: str = "order") -> Order:
    """Return ``value`` as an :data:`Order`, or raise naming the argument ``name``.

    >>> check_order("keras")
    'keras'
    >>> check_order("Keras")
    Traceback (most recent call last):
    ...
    ValueError: order must be 'exact' or 'keras'; got 'Keras'
    >>> check_order(1, name="orders[0]")
    Traceback (most recent call last):
    ...
    TypeError: orders[0] must be a str, 'exact' or 'keras'; got 1 (int)
    """
    if is_order(value):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str, 'exact' or 'keras'; got {value!r} ({type(value).__name__})")
    raise ValueError(f"{name} must be 'exact' or 'keras'; got {value!r}")
