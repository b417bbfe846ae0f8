"""The bits, ulps, neighbours and representability of :mod:`expdecay.floats`,
scalar and array, in all four formats.

The functions under test work in integer arithmetic on the float's own
significand and exponent.  Expected values come from two other routes:

* exact rationals: the reference functions below read ``x`` as a
  :class:`~fractions.Fraction` and scale it by powers of two (the way
  :mod:`expdecay.floats` computed them before its integer-arithmetic form);
* numpy and ml_dtypes: a value converts to the format's dtype unchanged
  exactly when it is a value of the format, its bits are the dtype's bits,
  and ``numpy.nextafter`` gives its neighbours;

plus hand-derived values (bit patterns written out for NaN, signed zeros,
infinities, the smallest subnormal and the largest finite value).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expdecay import floats
from expdecay.floats import FORMATS, Format

FMTS = list(FORMATS.values())
UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
INF, NAN = math.inf, math.nan


def _from64(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _bits64(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


# ---------------------------------------------------------------------------
# Reference route: exact rationals
# ---------------------------------------------------------------------------


def ref_exponent(a: Fraction) -> int:
    """floor(log2(a)) for a > 0, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    assert Fraction(2) ** e <= a < Fraction(2) ** (e + 1)
    return e


def ref_representable(x: float, fmt: Format) -> bool:
    if math.isnan(x) or math.isinf(x) or x == 0:
        return True
    a = abs(Fraction(x))
    e = ref_exponent(a)
    if e > fmt.emax:
        return False
    quantum = Fraction(2) ** (max(e, fmt.emin) - fmt.precision + 1)
    return (a / quantum).denominator == 1


def ref_to_bits(x: float, fmt: Format) -> int:
    """Sign, biased exponent and fraction, assembled from the rational value."""
    frac_bits = fmt.precision - 1
    all_ones = (1 << fmt.exponent_bits) - 1
    if math.isnan(x):
        return (all_ones << frac_bits) | (1 << (frac_bits - 1))
    sign = 1 << (fmt.width - 1) if math.copysign(1.0, x) < 0 else 0
    if math.isinf(x):
        return sign | (all_ones << frac_bits)
    if x == 0:
        return sign
    assert ref_representable(x, fmt)
    a = abs(Fraction(x))
    e = ref_exponent(a)
    if e < fmt.emin:
        m = a / Fraction(2) ** (fmt.emin - frac_bits)
        assert m.denominator == 1
        return sign | int(m)
    m = a / Fraction(2) ** (e - frac_bits)
    assert m.denominator == 1
    return sign | ((e + fmt.emax) << frac_bits) | (int(m) - (1 << frac_bits))


def ref_key(x: float, fmt: Format) -> int:
    bits = ref_to_bits(x, fmt)
    sign = 1 << (fmt.width - 1)
    return -(bits & (sign - 1)) if bits & sign else bits


# ---------------------------------------------------------------------------
# Reference route: numpy / ml_dtypes
# ---------------------------------------------------------------------------


def np_representable(x: float, fmt: Format) -> bool:
    with np.errstate(all="ignore"):
        y = np.array([x], np.float64).astype(fmt.dtype).astype(np.float64)[0]
    return bool(math.isnan(x) or y == x)


def np_bits(x: float, fmt: Format) -> int:
    return int(np.array([x], np.float64).astype(fmt.dtype).view(UINT[fmt.width])[0])


def np_next(x: float, fmt: Format, toward: float) -> float:
    a = np.array([x], np.float64).astype(fmt.dtype)
    if fmt.name == "bfloat16":  # through float32: the bfloat16 values are those
        # float32 values whose 16 low bits are zero
        b = int(a.astype(np.float32).view(np.uint32)[0])
        mag, neg = b & 0x7FFFFFFF, b >> 31
        key = -mag if neg else mag
        step = 1 << 16
        key += step if toward > x else -step
        if key == 0 and toward < x:
            return -0.0
        nb = key if key >= 0 else (-key) | (1 << 31)
        return float(np.array([nb], np.uint32).view(np.float32)[0])
    with np.errstate(over="ignore"):
        return float(np.nextafter(a, np.array([toward], fmt.dtype))[0])


# ---------------------------------------------------------------------------
# Values to try
# ---------------------------------------------------------------------------


def special_values(fmt: Format) -> list[float]:
    """Hand-picked values of ``fmt`` and float64 values near them."""
    ms, mn, mx = fmt.min_subnormal, fmt.min_normal, fmt.max_finite
    out = [0.0, -0.0, INF, -INF, NAN, -NAN, ms, -ms, 2 * ms, mn, -mn, mn - ms, mx, -mx,
           1.0, -1.0, 0.1, 1 / 3, 2.0 ** (fmt.emax + 1) if fmt.emax < 1023 else 1e308]
    for v in list(out):
        if math.isfinite(v):
            out += [math.nextafter(v, INF), math.nextafter(v, -INF)]
    out += [_from64(1), _from64(0x7FEFFFFFFFFFFFFF), _from64(0x000FFFFFFFFFFFFF)]
    return out


@st.composite
def values(draw: st.DrawFn) -> float:
    """Any float64, or a value of one of the formats, or its float64 neighbour."""
    if draw(st.booleans()):
        return _from64(draw(st.integers(0, 2**64 - 1)))
    fmt = draw(st.sampled_from(FMTS))
    x = floats.from_bits(draw(st.integers(0, 2**fmt.width - 1)), fmt)
    return math.nextafter(x, draw(st.sampled_from([INF, -INF]))) if draw(
        st.booleans()) else x


def check_one(x: float, fmt: Format) -> None:
    """Every scalar function of ``floats`` at ``x`` against both references."""
    rep = ref_representable(x, fmt)
    assert floats.is_representable(x, fmt) is rep, (x, fmt)
    assert np_representable(x, fmt) is rep, (x, fmt)
    if not rep:
        with pytest.raises(ValueError, match=f"is not a value of {fmt.name}"):
            floats.to_bits(x, fmt)
        with pytest.raises(ValueError, match=f"is not a value of {fmt.name}"):
            floats.to_hex(x, fmt)
        assert floats.ulps_between(1.0, x, fmt) == INF
        assert floats.same_bits(1.0, x, fmt) is False
        return
    bits = floats.to_bits(x, fmt)
    assert bits == ref_to_bits(x, fmt), (x, fmt)
    if not math.isnan(x):
        assert bits == np_bits(x, fmt), (x, fmt)
        back = floats.from_bits(bits, fmt)
        assert _bits64(back) == _bits64(x)
        up, down = floats.next_up(x, fmt), floats.next_down(x, fmt)
        if x == INF:
            assert up == INF and down == fmt.max_finite
        elif x == -INF:
            assert down == -INF and up == -fmt.max_finite
        else:
            assert up == np_next(x, fmt, INF) and down == np_next(x, fmt, -INF), (x, fmt)
            assert floats.neighbours(x, fmt) == [down, up]
            assert floats.ulp_distance(down, up, fmt) == ref_key(up, fmt) - ref_key(down, fmt)
            assert floats.ulp_distance(x, up, fmt) == 1 == floats.ulp_distance(down, x, fmt)
    else:
        assert floats.next_up(x, fmt) != floats.next_up(x, fmt)  # NaN stays NaN
        assert floats.neighbours(x, fmt) == []


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_hand_picked_values_agree_with_both_references(fmt: Format) -> None:
    for x in special_values(fmt):
        check_one(x, fmt)


@settings(max_examples=3000, deadline=None)
@given(values(), st.sampled_from(FMTS))
@example(5e-324, FORMATS["float64"])
@example(2.0**-149, FORMATS["float32"])
@example(65504.0, FORMATS["float16"])
@example(65520.0, FORMATS["float16"])
@example(2.0**-24, FORMATS["float16"])
@example(2.0**-25, FORMATS["float16"])
@example(2.0**-133, FORMATS["bfloat16"])
@example(2.0**-134, FORMATS["bfloat16"])
def test_random_values_agree_with_both_references(x: float, fmt: Format) -> None:
    check_one(x, fmt)


@settings(max_examples=2000, deadline=None)
@given(values(), values(), st.sampled_from(FMTS))
def test_ulps_between_and_same_bits(x: float, y: float, fmt: Format) -> None:
    """The judging measures: NaN matches NaN, the distance of two values is
    the difference of their keys, a non-value of the format never matches."""
    if not ref_representable(x, fmt):
        return
    if not ref_representable(y, fmt):
        assert floats.ulps_between(x, y, fmt) == INF and not floats.same_bits(x, y, fmt)
        return
    if math.isnan(x) or math.isnan(y):
        both = math.isnan(x) and math.isnan(y)
        assert floats.ulps_between(x, y, fmt) == (0.0 if both else INF)
        assert floats.same_bits(x, y, fmt) is both
        return
    d = ref_key(y, fmt) - ref_key(x, fmt)
    assert floats.ulp_distance(x, y, fmt) == d
    assert floats.ulps_between(x, y, fmt) == float(abs(d))
    assert floats.same_bits(x, y, fmt) is (ref_to_bits(x, fmt) == ref_to_bits(y, fmt))


def test_judging_measures_by_hand() -> None:
    f16, f64 = FORMATS["float16"], FORMATS["float64"]
    assert floats.same_bits(NAN, -NAN, f16) and floats.ulps_between(-NAN, NAN, f16) == 0.0
    assert not floats.same_bits(NAN, 1.0, f16) and floats.ulps_between(1.0, NAN, f16) == INF
    assert not floats.same_bits(0.0, -0.0, f16)  # the sign of zero is in the bits
    assert floats.ulps_between(0.0, -0.0, f16) == 0.0  # but they are one point
    assert floats.ulps_between(2.0**-24, -(2.0**-24), f16) == 2.0
    assert floats.ulps_between(65504.0, INF, f16) == 1.0
    assert floats.ulps_between(1.0, 1.0 + 2.0**-11, f16) == INF  # not a float16
    assert not floats.same_bits(1.0, 1.0 + 2.0**-11, f16)
    # -max to +max in float64: 2 * 0x7fefffffffffffff steps, exact as a float
    assert floats.ulps_between(-f64.max_finite, f64.max_finite, f64) == float(
        2 * 0x7FEFFFFFFFFFFFFF)
    with pytest.raises(ValueError, match="undefined for NaN"):
        floats.ulp_distance(NAN, 1.0, f16)


def test_bits_by_hand() -> None:
    f16, bf16, f32, f64 = (FORMATS[n] for n in ("float16", "bfloat16", "float32", "float64"))
    assert floats.to_bits(NAN, f16) == 0x7E00 and floats.to_bits(-NAN, bf16) == 0x7FC0
    assert floats.to_bits(-0.0, f32) == 0x80000000 and floats.to_bits(0.0, f32) == 0
    assert floats.to_bits(-INF, f16) == 0xFC00 and floats.to_bits(INF, f64) == 0x7FF << 52
    assert floats.to_bits(2.0**-24, f16) == 1 and floats.to_bits(65504.0, f16) == 0x7BFF
    assert floats.to_bits(2.0**-133, bf16) == 1 and floats.to_bits(-1.0, bf16) == 0xBF80
    assert floats.to_bits(5e-324, f64) == 1 and floats.to_bits(2.0**-1022, f64) == 1 << 52
    assert floats.next_up(0.0, f16) == 2.0**-24 == floats.next_up(-0.0, f16)
    assert floats.next_down(2.0**-24, f16) == 0.0
    assert floats.next_up(65504.0, f16) == INF and floats.next_down(-65504.0, f16) == -INF
    assert floats.neighbours(1.0, f16) == [1.0 - 2.0**-11, 1.0 + 2.0**-10]
    assert floats.neighbours(-INF, f16) == [] and floats.neighbours(NAN, f16) == []


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FMTS), st.data())
def test_array_measures_agree_with_the_scalar_ones(fmt: Format, data: st.DataObject) -> None:
    """``ulp_keys``, ``ulp_diff`` and ``abs_ulp_distances`` on arrays of
    non-NaN values: the keys and distances of the rational reference."""
    finite_or_inf = st.integers(0, 2**fmt.width - 1).filter(
        lambda b: not math.isnan(floats.from_bits(b, fmt)))
    pairs = data.draw(st.lists(st.tuples(finite_or_inf, finite_or_inf), min_size=1,
                               max_size=20))
    u = UINT[fmt.width]
    a = np.array([p[0] for p in pairs], u).view(fmt.dtype)
    b = np.array([p[1] for p in pairs], u).view(fmt.dtype)
    xa = [floats.from_bits(p[0], fmt) for p in pairs]
    xb = [floats.from_bits(p[1], fmt) for p in pairs]
    ka, kb = floats.ulp_keys(a, fmt), floats.ulp_keys(b, fmt)
    assert ka.dtype == np.int64
    assert ka.tolist() == [ref_key(x, fmt) for x in xa]
    want = [ref_key(y, fmt) - ref_key(x, fmt) for x, y in zip(xa, xb, strict=True)]
    dist = floats.abs_ulp_distances(a, b, fmt)
    assert dist.dtype == np.uint64
    assert [int(d) for d in dist] == [abs(w) for w in want]
    lim = (1 << 63) - 1
    assert floats.ulp_diff(kb, ka).tolist() == [max(-lim, min(lim, w)) for w in want]


def test_array_measures_at_the_extremes() -> None:
    f64, bf16 = FORMATS["float64"], FORMATS["bfloat16"]
    a = np.array([-np.inf, -f64.max_finite, -0.0, 5e-324])
    b = np.array([np.inf, f64.max_finite, 0.0, -5e-324])
    # hand-derived: the keys are -(bits & 0x7fff...) for negatives, the bits otherwise
    assert floats.ulp_keys(a, f64).tolist() == [-(0x7FF << 52), -0x7FEFFFFFFFFFFFFF, 0, 1]
    assert [int(d) for d in floats.abs_ulp_distances(a, b, f64)] == [
        2 * (0x7FF << 52), 2 * 0x7FEFFFFFFFFFFFFF, 0, 2]  # beyond int64 for the first two
    assert floats.ulp_diff(floats.ulp_keys(b, f64), floats.ulp_keys(a, f64)).tolist() == [
        (1 << 63) - 1, (1 << 63) - 1, 0, -2]  # saturated
    x = np.array([0x3F80, 0x3F81, 0x8001], np.uint16).view(bf16.dtype)
    assert floats.ulp_keys(x, bf16).tolist() == [0x3F80, 0x3F81, -1]
    assert [int(d) for d in floats.abs_ulp_distances(x, x[::-1].copy(), bf16)] == [
        0x3F81, 0, 0x3F81]


def test_array_measures_refuse_another_width() -> None:
    with pytest.raises(TypeError, match="float32.*float64"):
        floats.ulp_keys(np.zeros(3), FORMATS["float32"])
    with pytest.raises(TypeError, match="float16"):
        floats.abs_ulp_distances(np.zeros(3, np.float32), np.zeros(3, np.float32),
                                 FORMATS["float16"])
