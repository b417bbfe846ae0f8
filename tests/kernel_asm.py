"""Helpers of the kernel tests.

:func:`fresh_asm`: the x86 machine code of compiled kernels, for the tests
that read it.  Cached kernels cannot be inspected, so each kernel's Python
function is compiled afresh with the kernels' own options (no fastmath), for
every signature the kernel has been called with.

:func:`kernels_for_every_size`: the compiled kernels take even the smallest
arrays (and any number of schedules), so that tests of a few elements reach
them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from expdecay import fast


@contextmanager
def kernels_for_every_size() -> Iterator[None]:
    saved = fast.KERNEL_MIN_ELEMENTS, fast.BROADCAST_KERNEL_MIN_SCHEDULES
    fast.KERNEL_MIN_ELEMENTS = 0
    fast.BROADCAST_KERNEL_MIN_SCHEDULES = 0
    try:
        yield
    finally:
        fast.KERNEL_MIN_ELEMENTS, fast.BROADCAST_KERNEL_MIN_SCHEDULES = saved


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
