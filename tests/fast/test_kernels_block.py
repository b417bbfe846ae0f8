"""The block kernels (bfloat16, float32 and float64, int64 steps): bits against the Arb
oracle of ``tests/support/arb_oracle.py`` and against the per-element kernels (their
machine code is read by ``tests/fast/test_kernels_machine_code.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from expdecay import fast
from expdecay.fast import dispatch
from expdecay.floats import get_format
from support.arb_oracle import arb_evaluate

numba = pytest.importorskip("numba")

SCHEDULES = ((0.1, 100000, 0.96), (-3e-3, 7, 0.999), (1e30, 1000, 0.5), (2.5, 3, 1.5))
#: bfloat16 near its limits: overflow of w in the keras order (found so),
#: subnormal results and exponents, a subnormal I.
BF16_SCHEDULES = ((1e-38, 5, 0.7), (-2.0**-130, 3, 1.01), (3e38, 1, 0.9), (1.0, 1e-30, 0.99),
                  (7.0, 1e30, 1.3))


def _steps() -> np.ndarray:
    rng = np.random.default_rng(14)
    parts = [np.arange(-3000, 3000, dtype=np.int64),
             np.arange(0, 10**7, 1000, dtype=np.int64)[:3000],  # multiples of D
             rng.integers(-2**40, 2**40, 3000),
             rng.integers(-2**62, 2**62, 200)]  # beyond 2**51: the per-element pass
    return np.concatenate(parts)


@pytest.mark.parametrize("order", ["exact", "keras"])
@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("fmt,schedule", [(f, s) for f in ("bfloat16", "float32", "float64")
                                          for s in SCHEDULES]
                         + [("bfloat16", s) for s in BF16_SCHEDULES])
def test_block_kernels_against_arb(fmt: str, order: str, staircase: bool,
                                   schedule: tuple[float, float, float],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    steps = _steps()
    I, D, r = schedule
    got = fast.evaluate_array(I, D, r, steps, staircase=staircase, dtype=fmt, order=order)
    monkeypatch.setenv("EXPDECAY_BLOCK_KERNELS", "0")
    per_element = fast.evaluate_array(I, D, r, steps, staircase=staircase, dtype=fmt, order=order)
    width = get_format(fmt).width // 8
    gb, pb = got.view(f"u{width}"), per_element.view(f"u{width}")
    assert np.array_equal(gb, pb)
    rng = np.random.default_rng(len(steps))
    for i in rng.choice(len(steps), 60, replace=False):
        want = arb_evaluate(I, D, r, int(steps[i]), staircase, fmt, order)
        w = np.array([want], dtype=get_format(fmt).dtype)
        assert w.view(f"u{width}")[0] == gb[i], (i, int(steps[i]), want, got[i])


@pytest.mark.parametrize("order", ["exact", "keras"])
@pytest.mark.parametrize("staircase", [False, True])
def test_float64_fallback_through_power_tables(order: str, staircase: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """float64, a large array: the elements the double-double bound leaves
    undecided go through the power tables, not the oracle (fallback 0 here,
    about 2e-5 of the elements without the tables), with the Arb oracle's
    bits."""
    if dispatch.kernel_module() is None:
        pytest.skip("numba is not importable")
    I, D, r = 0.1, 100000, 0.96
    n = dispatch.TABLE_MIN_ELEMENTS + 40000
    steps = np.linspace(0, 10**7, n).astype(np.int64)
    seen: list[np.ndarray] = []
    original = dispatch.regular_chunk

    def recording(chunk: np.ndarray, plan: Any) -> Any:
        seen.append(chunk.copy())
        return original(chunk, plan)

    monkeypatch.setattr(dispatch, "regular_chunk", recording)
    stats = fast.FastStats()
    got = fast.evaluate_array(I, D, r, steps, staircase=staircase, dtype="float64", order=order,
                        stats=stats)
    assert stats.oracle == 0
    rescued = np.concatenate(seen) if seen else np.empty(0, np.int64)
    if not staircase:  # the continuous modes do leave elements to the tables
        assert rescued.size > 0
    index = {int(s): i for i, s in enumerate(steps.tolist())}
    for s in rescued.tolist():
        want = arb_evaluate(I, D, r, int(s), staircase, "float64", order)
        assert got[index[int(s)]] == want, (s, want, got[index[int(s)]])
