"""Exact integer roots: the one helper the oracle's rational-power test and
the adapters' per-step rates share (``a`` is a perfect ``n``-th power or not).
"""

from __future__ import annotations

__all__ = ["exact_root"]

try:  # gmpy2 where it installs; an exact integer fallback otherwise
    from gmpy2 import iroot as _gmpy_iroot
except ImportError:  # pragma: no cover - exercised only without gmpy2
    _gmpy_iroot = None


def exact_root(a: int, n: int) -> int | None:
    """The integer ``x >= 0`` with ``x ** n == a``, or None when there is none
    (``a >= 0``, ``n >= 1``).

    >>> exact_root(3**40, 8), exact_root(2**64 + 1, 2), exact_root(0, 5)
    (243, None, 0)
    """
    if a < 2:
        return a
    if n >= a.bit_length():  # a >= 2 has an integer n-th root only if a >= 2**n
        return None
    if _gmpy_iroot is not None:
        root, exact = _gmpy_iroot(a, n)
        return int(root) if exact else None
    x = 1 << -(-a.bit_length() // n)  # >= the root
    while True:  # Newton's method on integers, decreasing to floor(a ** (1/n))
        y = ((n - 1) * x + a // x ** (n - 1)) // n
        if y >= x:
            break
        x = y
    return x if x**n == a else None
