"""The x86 machine code of compiled kernels, for the tests that read it.

Cached kernels cannot be inspected, so each kernel's Python function is
compiled afresh with the kernels' own options (no fastmath), for every
signature the kernel has been called with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def fresh_asm(kernels: Iterable[Any]) -> str:
    """The assembly of ``kernels`` recompiled for their used signatures."""
    import numba

    parts: list[str] = []
    for kernel in kernels:
        assert kernel.signatures, f"{kernel.py_func.__name__} was never called"
        fresh = numba.njit(nogil=True, fastmath=False, error_model="numpy")(kernel.py_func)
        for sig in kernel.signatures:
            fresh.compile(sig)
            parts.append(fresh.inspect_asm(sig))
    return "\n".join(parts)
