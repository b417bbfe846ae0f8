"""Boundary tests of expdecay.floats: rounding, bit patterns, ulp arithmetic.

Expected values are derived by hand (exact Fractions) and, where a float64
input exists, cross-checked with numpy's own correctly rounded casts
(float64 -> float32 / float16), with CPython's correctly rounded int / int
true division for float64, and for bfloat16 with ml_dtypes' cast FROM FLOAT32.

Caveat found while writing these tests (ml_dtypes 0.6.0): the cast
float64 -> ml_dtypes.bfloat16 is NOT correctly rounded; it double-rounds
through float32 (0x1.76ffffp+53 becomes 0x1.78p+53 instead of 0x1.76p+53).
So bfloat16 is compared with numpy only for float32-representable inputs, and
with the independent integer rounding of tests/support/arb_oracle.py otherwise.
"""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expdecay.floats import (
    from_bits,
    get_format,
    next_down,
    next_up,
    round_rational,
    to_bits,
    ulp_distance,
)
from support.arb_oracle import round_fraction as oracle_round
from support.bits import pow2, same

# independent table: name -> (precision, emin, emax, width, numpy dtype, unsigned int dtype)
TABLE = {
    "float16": (11, -14, 15, 16, np.float16, np.uint16),
    "bfloat16": (8, -126, 127, 16, ml_dtypes.bfloat16, np.uint16),
    "float32": (24, -126, 127, 32, np.float32, np.uint32),
    "float64": (53, -1022, 1023, 64, np.float64, np.uint64),
}
NAMES = list(TABLE)
INF = math.inf




def np_cast_exact(x: float, name: str):
    """numpy's correctly rounded cast of the float64 x to the format, or None when
    numpy has no correctly rounded path (bfloat16 from a non-float32 input)."""
    dt = TABLE[name][4]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if name == "bfloat16":
            x32 = np.array(x, dtype=np.float64).astype(np.float32)
            if float(x32) != x or math.isinf(float(x32)) != math.isinf(x):
                return None  # not exactly a float32
            return float(x32.astype(dt))
        return float(np.array(x, dtype=np.float64).astype(dt))


def np_cast(x: float, name: str) -> float:
    """Reference rounding of a float64: numpy where exact, else the independent oracle."""
    v = np_cast_exact(x, name)
    if v is None:
        return oracle_round(Fraction(x), name)
    return v


def consts(name):
    p, emin, emax, width, _, _ = TABLE[name]
    min_sub = pow2(emin - p + 1)
    min_norm = pow2(emin)
    max_fin = ((1 << p) - 1) * pow2(emax - p + 1)
    ulp_top = pow2(emax - p + 1)
    return p, emin, emax, min_sub, min_norm, max_fin, ulp_top


def boundary_cases(name):
    """(input Fraction, expected Fraction-or-special, label), all derived by hand."""
    p, emin, emax, min_sub, min_norm, max_fin, ulp_top = consts(name)
    tiny = pow2(-3000)
    largest_sub = ((1 << (p - 1)) - 1) * min_sub
    cases = [
        (min_sub, min_sub, "smallest subnormal"),
        (min_sub / 2, 0, "half smallest subnormal ties to +0"),
        (min_sub / 2 * (1 + pow2(-60)), min_sub, "just above half smallest subnormal"),
        (min_sub / 2 + tiny, min_sub, "half smallest subnormal + tiny"),
        (min_sub / 2 - tiny, 0, "half smallest subnormal - tiny"),
        (min_sub / 4, 0, "quarter smallest subnormal"),
        (3 * min_sub / 2, 2 * min_sub, "1.5 quanta ties to even 2"),
        (5 * min_sub / 2, 2 * min_sub, "2.5 quanta ties to even 2"),
        (7 * min_sub / 2, 4 * min_sub, "3.5 quanta ties to even 4"),
        (largest_sub, largest_sub, "largest subnormal"),
        (largest_sub + min_sub / 2, min_norm, "largest subnormal + half quantum -> min normal"),
        (largest_sub + min_sub / 2 - tiny, largest_sub, "just below that tie"),
        (min_norm, min_norm, "smallest normal"),
        (min_norm - min_sub / 4, min_norm, "just below smallest normal"),
        (min_norm + min_sub / 2, min_norm, "min normal + half ulp ties to even (min normal)"),
        (min_norm + 3 * min_sub / 2, min_norm + 2 * min_sub, "min normal + 1.5 ulp ties up"),
        (max_fin, max_fin, "max finite"),
        (max_fin + ulp_top / 2, INF, "max + half ulp: tie to even 2**(emax+1) -> inf"),
        (max_fin + ulp_top / 2 - tiny, max_fin, "just below max + half ulp"),
        (max_fin + ulp_top / 2 + tiny, INF, "just above max + half ulp"),
        (max_fin + ulp_top / 4, max_fin, "max + quarter ulp"),
        (max_fin - ulp_top / 2, max_fin - ulp_top, "max - half ulp ties to even (down)"),
        (pow2(emax + 1), INF, "2**(emax+1)"),
        (pow2(emax + 1) - tiny, INF, "just below 2**(emax+1)"),
        (Fraction(10) ** 400, INF, "10**400"),
        (Fraction(1), Fraction(1), "one"),
        (1 + pow2(-p), Fraction(1), "1 + half ulp ties to 1"),
        (1 + 3 * pow2(-p), 1 + pow2(-(p - 2)), "1 + 1.5 ulp ties up to even"),
        (1 + pow2(-p) + tiny, 1 + pow2(-(p - 1)), "1 + half ulp + tiny"),
        (1 - pow2(-(p + 1)), Fraction(1), "1 - half ulp(below) ties to 1"),
        (1 - 3 * pow2(-(p + 1)), 1 - 2 * pow2(-p), "1 - 1.5 ulp(below) ties to even"),
        (pow2(-3000), 0, "2**-3000"),
        (Fraction(1, 3), None, "1/3 (numpy / float division only)"),
        (Fraction(1, 10), None, "1/10"),
        (Fraction(2, 3) * min_norm, None, "2/3 min normal"),
    ]
    out = []
    for x, e, label in cases:
        out.append((x, e, label))
        out.append((-x, None if e is None else -e, "-" + label))
    return out


def expected_float(e, x) -> float:
    if isinstance(e, float):
        return e
    v = float(Fraction(e))
    if e == 0:
        return -0.0 if x < 0 else 0.0
    return v


@pytest.mark.parametrize("name", NAMES)
def test_format_table(name):
    p, emin, emax, width, _, _ = TABLE[name]
    fmt = get_format(name)
    assert (fmt.name, fmt.precision, fmt.emin, fmt.emax, fmt.width) == (name, p, emin, emax, width)


@pytest.mark.parametrize("name", NAMES)
def test_boundaries_by_hand(name):
    fmt = get_format(name)
    failures = []
    checked = 0
    for x, e, label in boundary_cases(name):
        got = round_rational(x, fmt)
        if e is not None:
            exp = expected_float(e, x)
            checked += 1
            if not same(got, exp):
                failures.append(f"{label}: x={x} got {got!r} expected {exp!r}")
        # cross-check with numpy when x is exactly a float64
        try:
            xf = float(x)
        except OverflowError:
            xf = None
        exp_np = None
        if xf is not None and Fraction(xf) == x and name != "float64":
            exp_np = np_cast_exact(xf, name)
        if exp_np is not None:
            if not same(got, exp_np):
                failures.append(f"{label}: x={x} got {got!r} numpy {exp_np!r}")
        # float64: CPython int/int true division is correctly rounded (RNE, subnormals)
        if name == "float64":
            try:
                q = x.numerator / x.denominator
            except OverflowError:
                q = -INF if x < 0 else INF
            if q == 0:
                q = math.copysign(0.0, x)
            if not same(got, q):
                failures.append(f"{label}: x={x} got {got!r} int division {q!r}")
    assert checked >= 60
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", NAMES)
def test_zero_and_integers(name):
    fmt = get_format(name)
    p, emin, emax, *_ = TABLE[name]
    assert same(round_rational(Fraction(0), fmt), 0.0)
    assert same(round_rational(0, fmt), 0.0)
    # integers: 2**p + 1 is a tie between 2**p and 2**p + 2 -> 2**p (even)
    assert round_rational(2**p + 1, fmt) == float(2**p)
    assert round_rational(2**p + 3, fmt) == float(2**p + 4)
    assert round_rational(-(2**p + 3), fmt) == -float(2**p + 4)
    assert round_rational(2 ** (emax + 1), fmt) == INF
    assert round_rational(-(2 ** (emax + 1)), fmt) == -INF
    if name == "float16":
        assert round_rational(65519, fmt) == 65504.0
        assert round_rational(65520, fmt) == INF
        assert round_rational(Fraction(131039, 2), fmt) == 65504.0


@pytest.mark.parametrize("name", NAMES)
def test_ties_between_consecutive_floats(name):
    """Random midpoints between consecutive representable values round to the even one."""
    fmt = get_format(name)
    p, emin, emax, min_sub, min_norm, max_fin, ulp_top = consts(name)
    rng = random.Random(f"ties-{name}")
    n = 0
    for _ in range(3000):
        # a random representable positive value m * 2**q (m < 2**p), normal or subnormal
        q = rng.randint(emin - p + 1, emax - p + 1)
        if q == emin - p + 1:
            m = rng.randint(1, (1 << p) - 2)
        else:
            m = rng.randint(1 << (p - 1), (1 << p) - 2)
        lo = m * pow2(q)
        hi = (m + 1) * pow2(q)
        mid = (lo + hi) / 2
        even = lo if m % 2 == 0 else hi
        for sgn in (1, -1):
            got = round_rational(sgn * mid, fmt)
            assert same(got, float(sgn * even)), (name, sgn * mid, got, float(sgn * even))
            # just off the tie
            eps = pow2(q - 80)
            assert same(round_rational(sgn * (mid - eps), fmt), float(sgn * lo))
            assert same(round_rational(sgn * (mid + eps), fmt), float(sgn * hi))
            n += 1
    assert n == 6000


@settings(max_examples=3000, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False))
def test_hypothesis_float64_inputs_match_numpy(x):
    for name in NAMES:
        fmt = get_format(name)
        got = round_rational(Fraction(x), fmt)
        exp = np_cast(x, name)
        if x == 0.0:
            exp = 0.0  # Fraction(-0.0) == 0 has no sign; exact zero -> +0.0
        assert same(got, exp), (name, x.hex(), got, exp)


@settings(max_examples=3000, deadline=None)
@given(
    m=st.integers(min_value=1, max_value=2**60),
    e=st.integers(min_value=-1200, max_value=1100),
    neg=st.booleans(),
)
def test_hypothesis_scaled_float64_inputs_match_numpy(m, e, neg):
    """Values of all magnitudes (also near each format's subnormal / overflow range)."""
    try:
        x = math.ldexp(float(m), e)  # float64 rounding of m*2**e: itself a float64 input
    except OverflowError:
        return
    if neg:
        x = -x
    if x == 0.0 or math.isinf(x):
        return
    for name in NAMES:
        got = round_rational(Fraction(x), get_format(name))
        exp = np_cast(x, name)
        assert same(got, exp), (name, x.hex(), got, exp)


def test_bfloat16_double_rounding_trap():
    """A float64 whose float32 rounding is a bfloat16 tie: numpy/ml_dtypes' direct cast
    double-rounds; the correct single rounding goes down."""
    x = float.fromhex("0x1.76ffff0000000p+53")
    fmt = get_format("bfloat16")
    assert round_rational(Fraction(x), fmt) == float.fromhex("0x1.76p+53")
    assert round_rational(Fraction(-x), fmt) == -float.fromhex("0x1.76p+53")
    # below 1: same bit pattern trick, 1 + 2**-8 - 2**-32 (float32 rounds it to the tie 1 + 2**-8)
    y = 1 + 2.0**-8 - 2.0**-32
    assert round_rational(Fraction(y), fmt) == 1.0
    assert round_rational(Fraction(1) + Fraction(1, 2**8) + Fraction(1, 2**60), fmt) == 1 + 2.0**-7


@settings(max_examples=3000, deadline=None)
@given(x=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_hypothesis_float32_inputs_match_ml_dtypes_bfloat16(x):
    with np.errstate(over="ignore"):
        exp = float(np.float32(x).astype(ml_dtypes.bfloat16))
    if x == 0.0:
        exp = 0.0
    got = round_rational(Fraction(x), get_format("bfloat16"))
    assert same(got, exp), (x.hex(), got, exp)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_bits_round_trip_exhaustive_16bit(name):
    fmt = get_format(name)
    _, _, _, width, dt, udt = TABLE[name]
    pats = np.arange(1 << 16, dtype=np.uint32).astype(udt)
    with np.errstate(invalid="ignore"):
        vals = pats.view(dt).astype(np.float64)
    p = TABLE[name][0]
    nan_bits = ((1 << (width - p)) - 1) << (p - 1) | (1 << (p - 2))
    for bits in range(1 << 16):
        v = from_bits(bits, fmt)
        ref = float(vals[bits])
        assert same(v, ref), (name, hex(bits), v, ref)
        back = to_bits(v, fmt)
        if math.isnan(ref):
            assert back == nan_bits, (name, hex(bits), hex(back))
        else:
            assert back == bits, (name, hex(bits), hex(back))


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_bits_round_trip_random(name):
    fmt = get_format(name)
    _, _, _, width, dt, udt = TABLE[name]
    p = TABLE[name][0]
    nan_bits = ((1 << (width - p)) - 1) << (p - 1) | (1 << (p - 2))
    rng = random.Random(f"bits-{name}")
    pats = [rng.getrandbits(width) for _ in range(20000)]
    # special patterns
    pats += [0, 1 << (width - 1), 1, (1 << (p - 1)) - 1, 1 << (p - 1)]
    pats += [((1 << (width - p)) - 1) << (p - 1), (((1 << (width - p)) - 1) << (p - 1)) - 1]
    pats += [x | (1 << (width - 1)) for x in pats[-7:]]
    with np.errstate(invalid="ignore"):
        arr = np.array(pats, dtype=udt).view(dt).astype(np.float64)
    for bits, ref in zip(pats, arr, strict=True):
        ref = float(ref)
        v = from_bits(bits, fmt)
        assert same(v, ref), (name, hex(bits), v, ref)
        back = to_bits(v, fmt)
        if math.isnan(ref):
            assert back == nan_bits
        else:
            assert back == bits, (name, hex(bits), hex(back))


@pytest.mark.parametrize("name", NAMES)
def test_to_bits_known_values(name):
    fmt = get_format(name)
    p, emin, emax, width, *_ = TABLE[name]
    ebits = width - p
    bias = (1 << (ebits - 1)) - 1
    assert to_bits(0.0, fmt) == 0
    assert to_bits(-0.0, fmt) == 1 << (width - 1)
    assert to_bits(1.0, fmt) == bias << (p - 1)
    assert to_bits(INF, fmt) == ((1 << ebits) - 1) << (p - 1)
    assert to_bits(-INF, fmt) == (1 << (width - 1)) | (((1 << ebits) - 1) << (p - 1))
    assert to_bits(math.nan, fmt) == (((1 << ebits) - 1) << (p - 1)) | (1 << (p - 2))
    assert to_bits(math.ldexp(1.0, emin - p + 1), fmt) == 1
    assert to_bits(float(consts(name)[5]), fmt) == (((1 << ebits) - 1) << (p - 1)) - 1
    if name == "float16":
        assert to_bits(0.375, fmt) == 0x3600
        assert to_bits(65504.0, fmt) == 0x7BFF
    if name == "bfloat16":
        assert to_bits(1.0, fmt) == 0x3F80
    if name == "float64":
        assert to_bits(0.1, fmt) == struct.unpack("<Q", struct.pack("<d", 0.1))[0]


@pytest.mark.parametrize("name", NAMES)
def test_next_up_down_and_ulp_distance(name):
    fmt = get_format(name)
    p, emin, emax, min_sub, min_norm, max_fin, ulp_top = consts(name)
    ms, mn, mx = float(min_sub), float(min_norm), float(max_fin)
    # across zero
    assert same(next_up(-0.0, fmt), ms)
    assert same(next_up(0.0, fmt), ms)
    assert same(next_down(0.0, fmt), -ms)
    assert same(next_down(-0.0, fmt), -ms)
    assert next_up(-ms, fmt) == 0.0  # sign of that zero: unspecified here, value is zero
    assert next_down(ms, fmt) == 0.0
    assert ulp_distance(0.0, -0.0, fmt) == 0
    assert ulp_distance(-0.0, 0.0, fmt) == 0
    assert ulp_distance(-ms, ms, fmt) == 2
    assert ulp_distance(ms, -ms, fmt) == -2
    assert ulp_distance(0.0, ms, fmt) == 1
    assert ulp_distance(-0.0, ms, fmt) == 1
    assert ulp_distance(-ms, 0.0, fmt) == 1
    # subnormal / normal boundary
    assert next_up(float(min_norm - min_sub), fmt) == mn
    assert next_down(mn, fmt) == float(min_norm - min_sub)
    assert ulp_distance(0.0, mn, fmt) == 1 << (p - 1)
    assert ulp_distance(-mn, mn, fmt) == 2 << (p - 1)
    # powers of two: ulp changes
    assert next_down(1.0, fmt) == float(1 - pow2(-p))
    assert next_up(1.0, fmt) == float(1 + pow2(-(p - 1)))
    assert ulp_distance(1.0, 2.0, fmt) == 1 << (p - 1)
    assert ulp_distance(0.5, 2.0, fmt) == 2 << (p - 1)
    assert ulp_distance(2.0, 0.5, fmt) == -(2 << (p - 1))
    # overflow end
    assert next_up(mx, fmt) == INF
    assert next_down(INF, fmt) == mx
    assert next_up(-INF, fmt) == -mx
    assert next_down(-mx, fmt) == -INF
    assert next_up(INF, fmt) == INF
    assert ulp_distance(mx, INF, fmt) == 1
    assert ulp_distance(INF, mx, fmt) == -1
    assert ulp_distance(-INF, -mx, fmt) == 1
    assert ulp_distance(next_down(mx, fmt), mx, fmt) == 1
    assert next_down(mx, fmt) == float(max_fin - ulp_top)
    # total count: all finite values plus the two infinities, zeros counted once
    n_pos_finite = (((1 << (TABLE[name][3] - p)) - 1) << (p - 1)) - 1  # bit patterns 1..max
    assert ulp_distance(-INF, INF, fmt) == 2 * n_pos_finite + 2
    assert ulp_distance(0.0, mx, fmt) == n_pos_finite


@pytest.mark.parametrize("name", NAMES)
def test_next_up_down_random_vs_bits(name):
    """next_up/next_down/ulp_distance agree with bit-pattern arithmetic (sign-magnitude)."""
    fmt = get_format(name)
    p, emin, emax, width, dt, udt = TABLE[name]
    max_bits = (((1 << (width - p)) - 1) << (p - 1)) - 1
    rng = random.Random(f"next-{name}")

    def key(bits):  # order key: +0 and -0 both map to 0
        mag = bits & ((1 << (width - 1)) - 1)
        return -mag if bits >> (width - 1) else mag

    def val(k):
        if k >= 0:
            return float(np.array(k, dtype=udt).view(dt))
        return float(np.array(-k | (1 << (width - 1)), dtype=udt).view(dt))

    for _ in range(3000):
        k = rng.randint(-max_bits, max_bits)
        x = val(k)
        up = next_up(x, fmt)
        dn = next_down(x, fmt)
        kup = k + 1
        kdn = k - 1
        exp_up = INF if kup > max_bits else val(kup)
        exp_dn = -INF if kdn < -max_bits else val(kdn)
        assert up == exp_up, (name, x, up, exp_up)
        assert dn == exp_dn, (name, x, dn, exp_dn)
        k2 = rng.randint(-max_bits, max_bits)
        y = val(k2)
        assert ulp_distance(x, y, fmt) == k2 - k
        assert key(to_bits(x, fmt)) == k
