"""Helpers of the kernel tests: machine code, CPU targets, small-array kernels.

Machine code
------------
:func:`host_asm` gives the x86 machine code of compiled kernels for the host
CPU.  Cached kernels cannot be inspected, so each kernel's Python function is
compiled afresh with the kernels' own options (no fastmath), for every
signature the kernel has been called with.

:func:`target_asm` gives the same for a *named* CPU (``generic``, ``haswell``,
``skylake-avx512``, ``znver4``, ...), whatever CPU the tests run on: a child
process compiles the kernels with ``NUMBA_CPU_NAME`` set to the target and
``NUMBA_CPU_FEATURES`` empty (LLVM then takes the target's own features, not
the host's), and never runs the code it compiled, so an AVX2 machine checks
AVX-512 code and the other way round.  The signatures come from this process,
where the kernels have been called (numba types pickle).

Register widths are never written into a test: :func:`packed_product_width`
reads, from a control loop compiled for the same target in the same process,
the vector registers the target's vectoriser chooses for float64 products
(``xmm``, ``ymm`` or ``zmm``), and the kernels must multiply on those.
``tests/fast/test_cpu_assumptions.py`` fails if any other test file names a
register.

CPU targets
-----------
:data:`TARGETS` lists the targets the machine-code and bit-identity tests
cover, each with the instruction-set features its code may use (those of
LLVM's definition of that CPU that a compiler emits for arithmetic, plus the
vendor-specific ones that keep its code off other vendors' CPUs).  A target's
code is *run* only where the host has all of them (:func:`runnable`); the tests
say which target was left out and which features were missing.

:func:`kernels_for_every_size`: the compiled kernels take even the smallest
arrays (and any number of schedules), so that tests of a few elements reach
them."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expdecay.fast import broadcast, dispatch

_SSE = ("sse", "sse2")
_SSE4 = _SSE + ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16", "sahf")
_AVX2 = _SSE4 + ("avx", "avx2", "fma", "f16c", "bmi", "bmi2", "lzcnt", "movbe", "xsave")
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")

#: The named CPUs the tests compile for, with the features their code may use.
TARGETS: dict[str, tuple[str, ...]] = {
    "generic": _SSE,
    "haswell": _AVX2,
    "skylake-avx512": _AVX2 + _AVX512 + ("adx", "rdseed", "clflushopt", "clwb", "xsavec",
                                         "xsaves"),
    "znver4": _AVX2 + _AVX512 + ("avx512ifma", "avx512vbmi", "avx512vbmi2", "avx512vnni",
                                 "avx512bitalg", "avx512vpopcntdq", "avx512bf16", "gfni",
                                 "vaes", "vpclmulqdq", "adx", "rdseed", "clflushopt", "clwb",
                                 "sha", "sse4a", "clzero", "mwaitx", "wbnoinvd", "rdpru"),
}

#: x86 vector registers by width in bits.
REGISTERS = {128: "xmm", 256: "ymm", 512: "zmm"}

#: A fused multiply-add or multiply-subtract, any form (scalar or packed,
#: negated or not, 132/213/231, addsub/subadd).
FMA = re.compile(r"\bvfn?m(add|sub)")


def is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def host_features() -> set[str]:
    """The CPU features of the host, as LLVM names them."""
    from llvmlite import binding  # type: ignore[import-untyped]

    return {k for k, v in binding.get_host_cpu_features().items() if v}


def missing_features(target: str) -> list[str]:
    """The features ``target``'s code may use that the host lacks."""
    have = host_features()
    return [f for f in TARGETS[target] if f not in have]


def runnable(target: str) -> tuple[bool, str]:
    """Whether the host can run ``target``'s code, and if not, why."""
    missing = missing_features(target)
    if missing:
        return False, f"{target}: this CPU lacks {', '.join(missing)}"
    return True, ""


def widest_register(features: Iterable[str]) -> int:
    """The widest vector register, in bits, that code with ``features`` may use."""
    fs = set(features)
    if "avx512f" in fs:
        return 512
    if "avx" in fs:
        return 256
    return 128


def packed_product_widths(asm: str) -> set[int]:
    """The widths of the registers that the packed float64 products
    (``mulpd``/``vmulpd``) of ``asm`` write."""
    names = {name: bits for bits, name in REGISTERS.items()}
    found = set()
    for line in asm.splitlines():
        m = re.match(r"\s*v?mulpd\s+(.*)$", line)
        if m:
            regs = re.findall(r"%([xyz]mm)\d+", m.group(1))
            if regs:
                found.add(names[regs[-1]])  # AT&T syntax: the destination is last
    return found


@contextmanager
def kernels_for_every_size() -> Iterator[None]:
    saved = dispatch.KERNEL_MIN_ELEMENTS, broadcast.BROADCAST_KERNEL_MIN_SCHEDULES
    dispatch.KERNEL_MIN_ELEMENTS = 0
    broadcast.BROADCAST_KERNEL_MIN_SCHEDULES = 0
    try:
        yield
    finally:
        dispatch.KERNEL_MIN_ELEMENTS, broadcast.BROADCAST_KERNEL_MIN_SCHEDULES = saved


def _work(kernels: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    work = []
    for kernel in kernels:
        assert kernel.signatures, f"{kernel.py_func.__name__} was never called"
        work.append((kernel.py_func.__name__, list(kernel.signatures)))
    return work


def _axpy(a: float, b: float, c: float) -> float:
    return a * b + c


def _product(a: Any, b: Any, out: Any) -> None:
    for i in range(a.size):
        out[i] = a[i] * b[i]


def compile_here(work: list[tuple[str, list[Any]]]) -> dict[str, Any]:
    """Compile, for the CPU this process's numba targets, the kernels of
    ``work`` (name, signatures) with the kernels' own options, and two
    controls: ``a * b + c`` with contraction allowed (``fma_control``: FMA
    where the target has it) and a loop of float64 products (``width_control``:
    the registers the target's vectoriser chooses).  Nothing is run."""
    import numba

    from expdecay.fast import kernels

    out: dict[str, Any] = {"kernels": [], "cpu": numba.core.config.CPU_NAME}
    for name, sigs in work:
        fresh = numba.njit(nogil=True, fastmath=False, error_model="numpy")(
            getattr(kernels, name).py_func)
        for sig in sigs:
            fresh.compile(sig)
            out["kernels"].append(fresh.inspect_asm(sig))
    contracted = numba.njit(fastmath=True)(_axpy)
    contracted.compile("f8(f8, f8, f8)")
    out["fma_control"] = contracted.inspect_asm(contracted.signatures[0])
    vec = numba.njit(fastmath=False, error_model="numpy")(_product)
    vec.compile("void(f8[::1], f8[::1], f8[::1])")
    out["width_control"] = vec.inspect_asm(vec.signatures[0])
    return out


def host_asm(kernels: Iterable[Any]) -> dict[str, Any]:
    """:func:`compile_here` for the host CPU, in this process."""
    return compile_here(_work(kernels))


#: The child of :func:`target_asm`: compiles for ``NUMBA_CPU_NAME``, never runs.
_CHILD = r"""
import json, pickle, sys
sys.path.insert(0, sys.argv[2])
from support.kernel_asm import compile_here
json.dump(compile_here(pickle.load(open(sys.argv[1], "rb"))), sys.stdout)
"""


def target_asm(target: str, kernels: Iterable[Any], timeout: float = 900) -> dict[str, Any]:
    """:func:`compile_here` for the named CPU ``target``, in a child process;
    ``kernels`` must have been called in this process (for their signatures)."""
    work = _work(kernels)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "work.pickle"
        path.write_bytes(pickle.dumps(work))
        env = dict(os.environ)
        env.update({"NUMBA_CPU_NAME": target, "NUMBA_CPU_FEATURES": "",
                    "NUMBA_CACHE_DIR": str(Path(tmp) / "cache")})
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path),
                               str(Path(__file__).resolve().parents[1])], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    assert out["cpu"] == target
    return out
