"""The root of every exception class expdecay defines.

``except expdecay.ExpdecayError`` catches any error of the library's own kind
(a precision cap reached, a vector file refused, an implementation that could
not be loaded, a conformance failure...). Each class also derives from the
built-in exception a caller would expect (``ValueError`` for rejected input,
``RuntimeError`` for a failing implementation, ``AssertionError`` for a
conformance failure), so code written against the built-ins keeps working.

Arguments that are simply wrong (a bad type, an out-of-range value) raise the
plain built-in ``TypeError`` or ``ValueError``, naming the argument and the
value, as every Python library does.
"""

from __future__ import annotations

__all__ = ["ExpdecayError"]


class ExpdecayError(Exception):
    """Base class of the exceptions defined by expdecay."""
