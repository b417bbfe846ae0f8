"""The exact rules of the per-element kernels, against independent routes.

* ``_exact_scaled_pow`` (``x r**p`` for an integer ``p`` as an integer times
  a power of two, rounded once) against exact rationals rounded by the Arb
  module's own rounding (tests/support/arb_oracle.py), exact results and midpoints
  of every format included.
* ``_floor_checked`` (the Dekker-checked floor of ``s / D`` for a
  non-integer ``D``) against ``fractions``: never wrong, and it decides the
  steps next to multiples of ``D``.
* The per-element kernels on the hard cases of the random campaigns (exact
  midpoints, steps at multiples of ``D`` with integer and non-integer ``D``,
  tiny rates cast to 0 in the keras order, huge steps), all four formats,
  both orders, both staircase modes: the kernel decides them itself (they
  used to go one schedule at a time to the planner and the oracle), and the
  bits agree with the Arb oracle.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from expdecay import fast
from expdecay.conformance.campaign import REGIONS, draw
from expdecay.fast import constants, dispatch
from expdecay.floats import get_format, to_bits
from support.arb_oracle import arb_evaluate, round_fraction

numba = pytest.importorskip("numba")

FORMATS = ("float16", "bfloat16", "float32", "float64")


def _kernels() -> Any:
    mod = dispatch.kernel_module()
    if mod is None:
        pytest.skip("numba is not importable")
    return mod


def _bits(x: float) -> int:
    return int(np.array([x]).view(np.int64)[0])


@pytest.mark.parametrize("name", FORMATS)
def test_exact_scaled_pow_vs_rationals(name: str) -> None:
    """``x r**p`` with few-bit odd parts (so the products fit and exact
    results and midpoints are frequent), and powers of two with large
    ``|p|`` of both signs, against exact rationals."""
    mod = _kernels()
    fmt = get_format(name)
    pow2 = dispatch.kernel_tables()[4]
    rng = np.random.default_rng(11)
    computed = ties = 0
    for _ in range(4000):
        mx = int(rng.integers(1, 1 << int(rng.integers(1, 30)))) | 1
        mr = int(rng.integers(1, 1 << int(rng.integers(1, 8)))) | 1
        x = math.ldexp(mx, int(rng.integers(-60, 20)))
        r = math.ldexp(mr, int(rng.integers(-12, 3)))
        p = int(rng.integers(-3, 9))
        ok, got = mod.exact_scaled_pow(_bits(x), _bits(r), p, fmt.precision, fmt.emin,
                                        fmt.emax, pow2)
        fits = mr == 1 or (p >= 0 and mx.bit_length() + p * mr.bit_length() <= 62)
        assert bool(ok) == fits, (x, r, p)
        if not ok:
            continue
        exact = Fraction(x) * Fraction(r) ** p
        assert got == round_fraction(exact, name), (x, r, p, got)
        computed += 1
        e = exact.numerator.bit_length() - exact.denominator.bit_length()
        quantum = Fraction(2) ** (max(e, fmt.emin) - fmt.precision)
        ties += (exact / quantum).denominator == 2 or (exact / quantum).denominator == 1
    assert computed > 2500 and ties > 50
    for e in (-1074, -200, -1, 1, 3, 1023):  # powers of two, large |p|
        r = math.ldexp(1.0, e)
        for p in (-(1 << 40), -40000, -7, 5, 40000, 1 << 40):
            x = 1.5
            ok, got = mod.exact_scaled_pow(_bits(x), _bits(r), p, fmt.precision, fmt.emin,
                                            fmt.emax, pow2) if r > 0 and r >= 2.0**-1022 \
                else (False, 0.0)
            if not ok:
                continue
            assert got == round_fraction(Fraction(x) * Fraction(r) ** p, name) \
                if abs(p * e) < 5000 else got in (0.0, math.inf), (r, p, got)


def test_floor_checked_vs_fractions() -> None:
    """Steps next to ``floor(k D)`` for non-integer ``D``: an accepted floor
    is the exact one, and nearly all are accepted."""
    mod = _kernels()
    rng = np.random.default_rng(12)
    accepted = total = 0
    for _ in range(20000):
        d = math.ldexp(1.0 + float(rng.integers(1, 1 << 52)) * 2.0**-52,
                       int(rng.integers(-2, 17)))
        k = int(rng.integers(0, 1 << int(rng.integers(1, 30))))
        x = float(max(math.floor(k * d) + int(rng.integers(-1, 3)), 0))
        if x >= 2.0**53:
            continue
        ok, a = mod.floor_checked(x, d)
        total += 1
        if ok:
            assert a == math.floor(Fraction(x) / Fraction(d)), (x, d, a)
            accepted += 1
    assert accepted / total > 0.99
    # D just above or below x / k: the float64 quotient rounds to the
    # integer k while the exact one is on either side of it.
    tricky = 0
    for _ in range(4000):
        x = float(rng.integers(3, 1 << 40))
        k = int(rng.integers(2, 1 << 20))
        for d in (math.nextafter(x / k, math.inf), math.nextafter(x / k, 0.0), x / k):
            if d == math.floor(d):
                continue
            want = math.floor(Fraction(x) / Fraction(d))
            tricky += x / d == k and want == k - 1
            ok, a = mod.floor_checked(x, d)
            assert not ok or a == want, (x, d, a, want)
    assert tricky > 100
    # Exact multiples of a dyadic D: the float quotient is an integer.
    for d in (0.75, 2.5, 1.125, 3.0517578125e-05):
        for k in (1, 2, 3, 1000, 2**40 + 1):
            x = k * d
            ok, a = mod.floor_checked(x, d)
            assert ok and a == k, (x, d, a)
            ok, a = mod.floor_checked(math.nextafter(x, 0.0), d)
            assert not ok or a == k - 1, (x, d, a)


def _undecided(block: Any, rows: np.ndarray, order: str, staircase: bool, name: str,
               floats: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                      np.ndarray, int]:
    """The per-element arrays of ``rows`` and how many elements the kernel
    leaves undecided."""
    mod = _kernels()
    k = block.steps.shape[1]
    I = np.ascontiguousarray(np.repeat(block.I[rows], k))
    D = np.ascontiguousarray(np.repeat(block.D[rows], k))
    r = np.ascontiguousarray(np.repeat(block.r[rows], k))
    s = np.ascontiguousarray((block.fsteps if floats else block.steps)[rows].reshape(-1))
    n = s.size
    hi, lo, hh, hl, pow2 = dispatch.kernel_tables()
    buf = np.empty(n, np.int64)
    fmt = get_format(name)
    if fmt.precision == 53:
        out64 = np.empty(n)
        _, count = mod.f64_broadcast_kernel(I, D, r, s, out64, 0, buf, order == "keras",
                                            staircase, hi, lo, hh, hl, *constants.ln2_dd(),
                                            pow2, *constants.log2_tables())
    else:
        out = np.empty(n, np.uint16 if fmt.width == 16 else np.uint32)
        _, count = mod.small_broadcast_kernel(I, D, r, s, out, 0, buf, fmt.precision,
                                              fmt.emin, fmt.emax, 1 - fmt.emin,
                                              order == "keras", staircase, hi,
                                              constants.ln2_dd()[0], pow2)
    return I, D, r, s, buf[:count], int(count)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("order", ["exact", "keras"])
@pytest.mark.parametrize("staircase", [False, True])
def test_campaign_hard_cases_decided_and_vs_arb(name: str, order: str,
                                                staircase: bool) -> None:
    """The regions of the random campaigns that used to leave elements
    undecided (midpoints, steps at and next to multiples of integer and
    non-integer ``D``, rates near 1 and tiny rates, steps near 2**53 and
    2**63): the kernel decides all but a few hundredths of them, and a
    sample of the decided ones (the exact paths among them) agrees with the
    Arb oracle bit for bit (what is left: values within a float64 ulp of a
    midpoint, which need more than the first stage)."""
    fmt = get_format(name)
    block = draw(31, 0, 2048, (name,))
    wanted = [[x[0] for x in REGIONS].index(n)
              for n in ("boundary", "large", "rate", "midpoint", "nonint")]
    rows = np.flatnonzero(np.isin(block.region, wanted) & (block.staircase == staircase)
                          & ~block.float_steps)
    I, D, r, s, und, count = _undecided(block, rows, order, staircase, name, False)
    assert count <= 0.06 * s.size, (count, s.size)
    with np.errstate(all="ignore"):
        got = fast.evaluate_array(I, D, r, s, staircase=staircase, dtype=name, order=order)
    bits = got.view(f"u{fmt.width // 8}")
    rng = np.random.default_rng(13)
    region = np.repeat(block.region[rows], block.steps.shape[1])
    mid = np.flatnonzero(region == wanted[3])
    pick = np.concatenate([rng.choice(mid, min(40, mid.size), replace=False),
                           rng.choice(s.size, 40, replace=False)])
    for j in pick.tolist():
        Dj: int | float = int(D[j]) if float(D[j]).is_integer() else float(D[j])
        want = arb_evaluate(float(I[j]), Dj, float(r[j]), int(s[j]), staircase, name, order)
        assert to_bits(want, fmt) == int(bits[j]), (I[j], D[j], r[j], s[j], order)


def test_keras_zero_rate_decided() -> None:
    """A rate that the keras order casts to +0: ``pow(+0, p)`` is 1, +0 or
    +inf by the sign of ``p`` (0 * inf-free products of ``If``), decided by
    the kernel and equal to the Arb oracle's."""
    _kernels()
    n = 64
    rng = np.random.default_rng(14)
    for name in ("float16", "bfloat16", "float32"):
        fmt = get_format(name)
        I = rng.uniform(-2.0, 2.0, n)
        D = rng.integers(1, 50, n).astype(np.float64)
        r = np.full(n, 2.0**-160)  # below half the smallest subnormal of these three
        s = rng.integers(-40, 40, n)
        for staircase in (False, True):
            block_I, block_D, block_r, block_s = I, D, r, s
            mod = _kernels()
            hi, lo, hh, hl, pow2 = dispatch.kernel_tables()
            buf = np.empty(n, np.int64)
            out = np.empty(n, np.uint16 if fmt.width == 16 else np.uint32)
            _, count = mod.small_broadcast_kernel(block_I, block_D, block_r, block_s, out, 0,
                                                  buf, fmt.precision, fmt.emin, fmt.emax,
                                                  1 - fmt.emin, True, staircase, hi,
                                                  constants.ln2_dd()[0], pow2)
            assert count == 0
            for j in range(n):
                want = arb_evaluate(float(I[j]), int(D[j]), float(r[j]), int(s[j]), staircase,
                                    name, "keras")
                assert to_bits(want, fmt) == int(out[j]), (I[j], D[j], s[j], staircase)
