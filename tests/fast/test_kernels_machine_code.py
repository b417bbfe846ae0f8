"""The machine code of the compiled kernels, for the host CPU and for named CPUs.

The error analysis of the kernels assumes that every product and sum is
rounded on its own: no fused multiply-add.  The block kernels are written so
that LLVM vectorises them.  Both properties belong to the code LLVM emits for
a CPU, so they are checked for the host and for every target of
``kernel_asm.TARGETS`` (``generic``, ``haswell``, ``skylake-avx512``,
``znver4``), each compiled in a child process without being run: a machine of
any kind checks the code that every other kind would run.

* No FMA, in every kernel, for every target.  The control: ``a * b + c``
  compiled for the same target with contraction allowed contains an FMA
  exactly when the target has the ``fma`` feature, so the inspection can see
  one where one could appear.
* Packed products on the target's vector registers, in the block kernels.
  The width is not written here: it is read from a loop of float64 products
  compiled for the same target (the vectoriser's choice for that CPU: 128-bit
  ``xmm`` for SSE2, 256-bit ``ymm`` for AVX2 and for CPUs whose LLVM tuning
  prefers 256-bit vectors, 512-bit ``zmm`` otherwise with AVX-512), and must
  not exceed what the target's features allow.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from expdecay import fast
from expdecay.fast import dispatch
from support.kernel_asm import (
    FMA,
    TARGETS,
    host_asm,
    host_features,
    is_x86,
    kernels_for_every_size,
    packed_product_widths,
    target_asm,
    widest_register,
)

pytestmark = pytest.mark.skipif(not is_x86(), reason="reads x86-64 mnemonics and registers")

#: Every compiled kernel of the fast path.
KERNELS = ("small_kernel", "f64_kernel", "small_broadcast_kernel", "f64_broadcast_kernel",
           "bf16_block_kernel", "f32_block_kernel", "f64_block_kernel")
BLOCK_KERNELS = KERNELS[-3:]


def _call_every_kernel(mod: Any) -> None:
    """Run each kernel once on the host, so that each has its signatures."""
    with kernels_for_every_size():
        for steps in (np.arange(5000, dtype=np.int64), np.arange(5000, dtype=np.int32)):
            for name in ("float16", "bfloat16", "float32", "float64"):
                for order in ("exact", "keras"):
                    fast.evaluate_array(0.1, 1000, 0.96, steps, dtype=name, order=order)
        rates = np.linspace(0.5, 0.99, 200)  # a schedule per element
        for name in ("float32", "float64"):
            fast.evaluate_array(np.full(200, 0.1), np.full(200, 1000.0), rates,
                          np.arange(200, dtype=np.int64), dtype=name)
    missing = [k for k in KERNELS if not getattr(mod, k).signatures]
    assert not missing, f"never called: {missing}"


@pytest.fixture(scope="module")
def machine_code() -> dict[str, dict[str, Any]]:
    """``{target: {"features", "kernels": {name: asm}, "fma_control", "width_control"}}``
    for the host and every named target (the targets compiled two at a time)."""
    mod = dispatch.kernel_module()
    if mod is None:
        pytest.skip("numba is not importable: there is no machine code")
    _call_every_kernel(mod)
    kernels = [getattr(mod, k) for k in KERNELS]
    counts = [len(k.signatures) for k in kernels]

    def by_kernel(out: dict[str, Any]) -> dict[str, str]:
        asm, at = out["kernels"], 0
        named = {}
        for name, n in zip(KERNELS, counts, strict=True):
            named[name] = "\n".join(asm[at:at + n])
            at += n
        return named

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {t: pool.submit(target_asm, t, kernels) for t in TARGETS}
        result = {t: f.result() for t, f in futures.items()}
    result["host"] = host_asm(kernels)
    for target, out in result.items():
        out["features"] = host_features() if target == "host" else set(TARGETS[target])
        out["kernels"] = by_kernel(out)
    return result


ALL_TARGETS = ["host", *TARGETS]


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_no_fma_in_any_kernel(machine_code: dict[str, dict[str, Any]], target: str) -> None:
    code = machine_code[target]
    for name, asm in code["kernels"].items():
        assert "mulsd" in asm or "mulpd" in asm, (target, name)  # real arithmetic was read
        hit = FMA.search(asm)
        assert hit is None, (target, name, hit.group(0) if hit else None)
    # The control: contraction shows up exactly when the target can fuse.
    can_fuse = "fma" in code["features"]
    assert bool(FMA.search(code["fma_control"])) == can_fuse, (target, can_fuse)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_block_kernels_multiply_on_the_targets_vector_registers(
        machine_code: dict[str, dict[str, Any]], target: str) -> None:
    code = machine_code[target]
    chosen = packed_product_widths(code["width_control"])
    assert chosen, f"{target}: the control loop was not vectorised"
    width = max(chosen)  # the main loop's; a remainder loop may use narrower registers
    assert width <= widest_register(code["features"]), (target, width)
    for name in BLOCK_KERNELS:
        widths = packed_product_widths(code["kernels"][name])
        assert width in widths, (target, name, width, widths)


def test_targets_differ_where_their_registers_do(
        machine_code: dict[str, dict[str, Any]]) -> None:
    """The targets really were compiled for different CPUs: generic code has
    no VEX instruction, and only AVX-512 targets may touch 512-bit registers."""
    generic = "\n".join(machine_code["generic"]["kernels"].values())
    assert "vmul" not in generic and "mulpd" in generic
    for target in TARGETS:
        asm = "\n".join(machine_code[target]["kernels"].values())
        if widest_register(TARGETS[target]) < 512:
            assert not packed_product_widths(asm) & {512}, target
