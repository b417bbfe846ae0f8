"""Every path choice of the vectorised evaluation, at its boundaries.

The fast path picks, per array, between the staircase gather (integer arrays
of at least ``GATHER_MIN_ELEMENTS`` elements), the float64 power tables (at
least ``TABLE_MIN_ELEMENTS``), the double-double exponential and the oracle.
A wrong choice once gave ``inf`` for ``2**63 - 1`` steps in an array of 4096
where an array of 4095 gave 0.  Here each threshold is crossed (size - 1,
size, size + 1) with the extreme exponents, and the expected values are
hand-derived (``I * r**q`` underflows to +0 or overflows to inf for huge
``|q|``, and is ``I`` rounded for ``q = 0``) or come from the Arb oracle.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from expdecay.fast import dispatch
from expdecay.schedule import ExponentialDecay
from support.arb_oracle import FORMATS, arb_evaluate, round_fraction
from support.bits import same

FMT_NAMES = ["float16", "bfloat16", "float32", "float64"]
ORDERS = ["exact", "keras"]
BIG = 2**63 - 1


def _run(sch: ExponentialDecay, steps: np.ndarray, order: str) -> list[float]:
    out = sch(steps) if order == "keras" else sch.exact(steps)
    return out.astype(np.float64).tolist()


def _sizes(threshold: int) -> list[int]:
    return [threshold - 1, threshold, threshold + 1]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
@pytest.mark.parametrize("size", _sizes(dispatch.GATHER_MIN_ELEMENTS))
def test_gather_threshold_with_int64_extremes(size, fmt, order):
    """``0.1 * 0.96**q`` with ``q`` up to 2**63 - 1 (D = 1): +0 for the huge
    positive exponents, inf for the huge negative ones, 0.1 rounded at 0."""
    sch = ExponentialDecay(0.1, 1, 0.96, staircase=True, dtype=fmt)
    i0 = round_fraction(Fraction(1, 10), FORMATS[fmt])
    cases = {
        "all max": (np.full(size, BIG, np.int64), [0.0] * size),
        "zeros then max": (np.r_[np.zeros(size - 1, np.int64), BIG], [i0] * (size - 1) + [0.0]),
        "mixed signs": (np.r_[np.full(size - 1, -(2**62)), BIG], [np.inf] * (size - 1) + [0.0]),
        "int64 ends": (np.r_[np.full(size - 1, -(2**63)), BIG], [np.inf] * (size - 1) + [0.0]),
    }
    for name, (steps, want) in cases.items():
        got = _run(sch, steps, order)
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), name


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("size", _sizes(dispatch.GATHER_MIN_ELEMENTS))
def test_gather_threshold_tiny_decay_steps(size, order):
    """D = 1e-6: ``floor(s / D)`` is about 10**19 > 2**63 for s = 10**13."""
    sch = ExponentialDecay(0.1, 1e-6, 0.5, staircase=True)
    steps = np.arange(10**13, 10**13 + size, dtype=np.int64)
    got = _run(sch, steps, order)
    assert all(same(g, 0.0) for g in got)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FMT_NAMES)
@pytest.mark.parametrize("size", _sizes(dispatch.GATHER_MIN_ELEMENTS))
def test_gather_threshold_ordinary_steps_vs_arb(size, fmt, order):
    """Ordinary staircase steps on both sides of the gather threshold: every
    distinct exponent checked against the Arb oracle."""
    I, D, r = Fraction(3, 4), 7, Fraction(15, 16)
    sch = ExponentialDecay(0.75, D, 0.9375, staircase=True, dtype=fmt)
    steps = (np.arange(size, dtype=np.int64) * 37) % 1500 - 200
    got = _run(sch, steps, order)
    want = {s: arb_evaluate(I, Fraction(D), r, Fraction(s), True, fmt, order)
            for s in set(steps.tolist())}
    bad = [(s, g, want[s]) for s, g in zip(steps.tolist(), got, strict=True)
           if not same(g, want[s])]
    assert not bad, bad[:5]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("size", _sizes(dispatch.TABLE_MIN_ELEMENTS))
def test_table_threshold_float64_vs_arb(size, staircase, order):
    """float64 integer exponents on both sides of the power-table threshold,
    including exponents past the tables' 2**36 range; a sample of the
    elements (both ends and the extremes) is checked against Arb."""
    D = 3
    sch = ExponentialDecay(np.float64(0.1), D, 0.96, staircase=staircase)
    steps = np.arange(size, dtype=np.int64) * 3 + 1
    steps[-3:] = [2**36 * 3 + 5, -(2**20), BIG]
    got = _run(sch, steps, order)
    picks = [0, 1, 2, size // 2, size - 4, size - 3, size - 2, size - 1]
    for i in picks:
        s = int(steps[i])
        if s == BIG:
            want = 0.0
        else:
            want = arb_evaluate(Fraction(0.1), Fraction(D), Fraction(0.96), Fraction(s),
                                staircase, "float64", order)
        assert same(got[i], want), (i, s, got[i], want)


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_oracle_fallback_elements_in_large_array(fmt):
    """Non-finite and huge float steps inside a large array go to the oracle
    element by element and keep their hand-derived values."""
    sch = ExponentialDecay(0.5, 2, 0.5, dtype=fmt)
    steps = np.zeros(dispatch.GATHER_MIN_ELEMENTS + 1)
    steps[:4] = [np.nan, np.inf, -np.inf, 2.0**1000]
    got = sch.exact(steps).astype(np.float64).tolist()
    assert np.isnan(got[0]) and same(got[1], 0.0) and same(got[2], np.inf)
    assert same(got[3], 0.0) and same(got[4], 0.5)
