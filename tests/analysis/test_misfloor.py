"""Exact misfloor enumeration against brute force.

Two independent routes produce the expected sets:

* ``brute_numpy``: every step of the range, evaluated the way the keras order
  does it with numpy's IEEE arithmetic in the format (conversion of the step,
  one division, floor), compared with the integer quotient ``s * b // a``.
  For the 16-bit formats the division is done in float32 and rounded once to
  the format, which is exact for a quotient (float32 has 2P + 2 bits).
* ``brute_exact``: every step, with exact rationals and the project's single
  rounding routine ``round_rational`` (no numpy arithmetic at all); it also
  checks ``brute_numpy`` itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expdecay.analysis.misfloor import CELL_BUDGET, MisfloorResult, misfloors
from expdecay.floats import Format, get_format, round_rational

FORMATS = ("float16", "bfloat16", "float32", "float64")


def brute_numpy(D: Fraction | int, a: int, b: int, dtype: str) -> np.ndarray:
    """Misfloor steps of [a, b) by direct evaluation, chunked."""
    fmt = get_format(dtype)
    Dq = Fraction(D)
    Df = round_rational(Dq, fmt)
    out = []
    for lo in range(a, b, 1 << 22):
        s = np.arange(lo, min(b, lo + (1 << 22)), dtype=np.int64)
        t = (s * Dq.denominator) // Dq.numerator
        with np.errstate(all="ignore"):
            if dtype == "float64":
                p = np.floor(s.astype(np.float64) / np.float64(Df))
            else:
                sf = _steps_in_format(s, fmt)
                q = (sf / np.float32(Df)).astype(fmt.dtype)
                p = np.floor(q.astype(np.float64))
        fin = np.isfinite(p)
        pi = np.where(fin, p, 0).astype(np.int64)
        out.append(s[~(fin & (pi == t))])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _steps_in_format(s: np.ndarray, fmt: Format) -> np.ndarray:
    """``rnd(s)`` as float32 values of the format, rounded once.

    int64 -> float64 is exact below 2**53, and numpy rounds float64 -> float16
    or float32 once.  ml_dtypes may round float64 -> bfloat16 twice (through
    float32), so bfloat16 steps are rounded here with integer bit operations.
    """
    if fmt.name == "bfloat16":
        return _round_ints_bits(s, fmt.precision).astype(np.float32)
    return s.astype(np.float64).astype(fmt.dtype).astype(np.float32)


def _round_ints_bits(s: np.ndarray, precision: int) -> np.ndarray:
    """Round non-negative int64s to ``precision`` significant bits, ties to even."""
    out = s.copy()
    bl = np.zeros_like(s)
    nz = s > 0
    bl[nz] = np.floor(np.log2(s[nz].astype(np.float64))).astype(np.int64) + 1
    # log2 may be off by one near powers of two: fix exactly.
    bl = np.where((bl > 0) & ((np.int64(1) << np.maximum(bl - 1, 0)) > s), bl - 1, bl)
    bl = np.where((np.int64(1) << np.minimum(bl, 62)) <= s, bl + 1, bl)
    shift = np.maximum(bl - precision, 0)
    big = shift > 0
    sh = shift[big]
    v = s[big]
    q = v >> sh
    rem = v - (q << sh)
    half = np.int64(1) << (sh - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    out[big] = (q + up) << sh
    return out


def brute_exact(D: Fraction | int, a: int, b: int, dtype: str) -> list[int]:
    """Misfloor steps of [a, b) with exact rational arithmetic only."""
    fmt = get_format(dtype)
    Dq = Fraction(D)
    Df = round_rational(Dq, fmt)
    bad = []
    for s in range(a, b):
        sf = round_rational(Fraction(s), fmt)
        t = math.floor(Fraction(s) / Dq)  # independent of the code under test
        if math.isinf(sf) or math.isinf(Df) or Df == 0.0:
            p = 0 if (math.isinf(Df) and not math.isinf(sf)) else None
        else:
            p = math.floor(round_rational(Fraction(sf) / Fraction(Df), fmt))
            if math.isinf(p):  # pragma: no cover - quotient overflow
                p = None
        if p != t:
            bad.append(s)
    return bad


def assert_same(r: MisfloorResult, expected: np.ndarray | list[int]) -> None:
    got = r.steps()
    exp = np.asarray(expected, dtype=np.int64)
    assert r.count == exp.size
    assert np.array_equal(got, exp), (got[:10], exp[:10])
    assert r.early + r.late + r.nonfinite == r.count


# ---------------------------------------------------------------------------
# The headline numbers
# ---------------------------------------------------------------------------


def test_float32_d1000_first_2_25_steps_exact_count():
    """[0, 2**25) in float32 with D = 1000.

    Hand derivation: below 2**24 every step is a float and s/1000 rounds to an
    integer k only when it is k (the quotient's ulp is below 1/1000 there), so
    nothing goes wrong.  In [2**24, 2**25) floats are even; 1000k - 1 is odd,
    the midpoint of 1000k - 2 and 1000k, and rounds to 1000k (significand 500k
    is even), whose quotient is exactly k: one early floor per multiple
    1000k in [2**24 + 1, 2**25), i.e. k = 16778 ... 33554, 16777 of them.
    1000k + 1 rounds down to 1000k (a tie to even again): no late floor.
    """
    r = misfloors(1000, 0, 2**25, "float32")
    assert r.count == 33554 - 16778 + 1 == 16777
    assert r.first(3) == [16777999, 16778999, 16779999]
    assert r.early == 16777 and r.late == 0
    assert r.runs.tolist() == [[1000 * k - 1, 1000 * k] for k in range(16778, 33555)]
    assert r.cells_visited < 10**6  # windows around the multiples, not 2**25 steps
    # and the brute force over the whole range agrees
    assert_same(r, brute_numpy(1000, 0, 2**25, "float32"))


def test_below_2_pow_p_no_misfloor_for_integer_d():
    assert misfloors(1000, 0, 2**24, "float32").count == 0
    assert misfloors(7, 0, 2**24, "float32").count == 0


# ---------------------------------------------------------------------------
# Against brute force
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("D", [1000, 3, 7, 100000, 2**10, 2**13, 1001])
def test_float32_window_around_2_24(D):
    a, b = 2**24 - 10**5, 2**24 + 10**6
    assert_same(misfloors(D, a, b, "float32"), brute_numpy(D, a, b, "float32"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("D", [1000, 3, 7, 100000, 2**4, 2**10, Fraction(5, 2), "0.1", 65519,
                               65520, 100])
def test_16bit_formats_whole_range(dtype, D):
    # float16 overflows at 65520 (steps become inf); D = 65520 rounds to inf.
    a, b = 0, 300000
    assert_same(misfloors(D, a, b, dtype), brute_numpy(D, a, b, dtype))


@pytest.mark.parametrize("D", [1000, 3, 7, 100000, 2**20, Fraction(1, 3), "0.1"])
def test_float64_window_around_2_53(D):
    a, b = 2**53 - 10**5, 2**53 + 10**6
    assert_same(misfloors(D, a, b, "float64"), brute_numpy(D, a, b, "float64"))


@pytest.mark.parametrize("D", [Fraction(1, 3), "0.1", "2.5", "1000.3"])
def test_float32_non_integer_decay_steps(D):
    a, b = 2**24 - 10**5, 2**24 + 3 * 10**5
    assert_same(misfloors(D, a, b, "float32"), brute_numpy(D, a, b, "float32"))


@pytest.mark.parametrize("dtype,D,a,b", [
    ("float16", 3, 0, 70000),
    ("float16", 65520, 60000, 70000),
    ("bfloat16", 7, 0, 5000),
    ("bfloat16", 100, 2**20 - 3000, 2**20 + 3000),
    ("float32", 1000, 2**24 - 2000, 2**24 + 4000),
    ("float32", 3, 2**25 - 2000, 2**25 + 2000),
    ("float32", "0.1", 2**24 - 1000, 2**24 + 1000),
    ("float64", 1000, 2**53 - 2000, 2**53 + 6000),
])
def test_against_exact_rationals(dtype, D, a, b):
    """The exact route confirms the enumeration and the numpy brute force."""
    exp = brute_exact(D if not isinstance(D, str) else Fraction(D), a, b, dtype)
    Dn = Fraction(D) if isinstance(D, str) else D
    assert brute_numpy(Dn, a, b, dtype).tolist() == exp
    assert_same(misfloors(D, a, b, dtype), exp)


_P = {f: get_format(f).precision for f in FORMATS}


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(FORMATS))
    D = draw(st.one_of(st.integers(1, 10**6),
                       st.fractions(Fraction(1, 8), Fraction(10**5), max_denominator=64)
                       .filter(lambda q: q > 0)))
    P = _P[dtype]
    centre = draw(st.sampled_from([0, 2**P, 2**(P + 1), 2**(P + 3), 3 * 2**P]))
    if dtype == "float64":
        centre = max(centre, 2**53)
    a = max(0, centre + draw(st.integers(-5000, 5000)))
    n = draw(st.integers(0, 20000))
    return dtype, D, a, a + n


@settings(max_examples=60, deadline=None)
@given(cases())
@example(("float32", 1000, 2**24 - 10, 2**24 + 5000))
@example(("float16", Fraction(1, 8), 0, 9000))
@example(("bfloat16", 3, 0, 20000))
@example(("float64", Fraction(7, 3), 2**54 - 10, 2**54 + 10000))
def test_property_matches_brute_force(case):
    dtype, D, a, b = case
    assert_same(misfloors(D, a, b, dtype), brute_numpy(D, a, b, dtype))


def test_runs_are_disjoint_sorted_and_first_is_consistent():
    r = misfloors(3, 2**25 - 10**4, 2**25 + 10**4, "float32")
    assert r.count > 0
    for (a0, b0), (a1, b1) in zip(r.runs.tolist(), r.runs[1:].tolist(), strict=False):
        assert a0 < b0 < a1 < b1
    assert r.first(5) == r.steps()[:5].tolist()
    j = r.to_json(3)
    assert j["count"] == r.count and j["first"] == r.first(3)


def test_exhaustive_int32_range_float32_d1000():
    """All 2**31 non-negative int32 steps at once; windows of the result are
    checked against brute force (the whole range is the slow test below)."""
    r = misfloors(1000, 0, 2**31, "float32")
    assert r.first(1) == [16777999]
    for lo in (2**26 - 7000, 2**28 + 12345, 2**31 - 60000):
        hi = lo + 50000
        assert np.array_equal(r.steps_between(lo, hi), brute_numpy(1000, lo, hi, "float32"))


@pytest.mark.slow
def test_exhaustive_int32_range_brute_force():
    """The whole [0, 2**31) against brute force (about a minute)."""
    r = misfloors(1000, 0, 2**31, "float32")
    n = 0
    for lo in range(0, 2**31, 2**26):
        bf = brute_numpy(1000, lo, lo + 2**26, "float32")
        assert np.array_equal(r.steps_between(lo, lo + 2**26), bf)
        n += bf.size
    assert n == r.count == 87061280


# ---------------------------------------------------------------------------
# Bounded work: skipped binades, the cell budget, progress
# ---------------------------------------------------------------------------


def test_exact_binade_is_skipped_for_exact_integer_d():
    """Below 2**53 a float64 quotient s/D errs by less than 1/D: nothing to visit."""
    r = misfloors(3, 0, 2**36, "float64")
    assert r.count == 0 and r.cells_visited == 0
    r = misfloors(1000, 0, 2**24, "float32")
    assert r.count == 0 and r.cells_visited <= 2  # the binade above reaches just below 2**24


@pytest.mark.parametrize("D", [1, 3, 1000, 2**23 - 1, 2**24 - 3, 2**24])
def test_exact_binade_skip_against_brute_force_float32(D):
    a, b = 0, 2**24 + 3000
    assert_same(misfloors(D, a, b, "float32"), brute_numpy(D, a, b, "float32"))


def test_exact_binade_not_skipped_for_inexact_d():
    # 0.1 and 1/3 are not floats: the general path runs (and finds misfloors).
    for D in ("0.1", Fraction(1, 3)):
        r = misfloors(D, 0, 2**14, "float32")
        assert r.cells_visited > 0
        assert_same(r, brute_numpy(Fraction(D), 0, 2**14, "float32"))
    # 2049 is an integer float16 cannot hold (spacing 2 there): not skipped.
    r = misfloors(2049, 0, 2**11, "float16")
    assert r.cells_visited > 0
    assert_same(r, brute_numpy(2049, 0, 2**11, "float16"))


def test_cell_budget_refuses_huge_ranges():
    with pytest.raises(ValueError, match=r"\[0, 4611686018427387904\).*smaller step range"):
        misfloors(1000, 0, 2**62, "float32")
    assert CELL_BUDGET == 2**28
    with pytest.raises(ValueError, match=r"\[33554432, 67108864\)"):
        misfloors(3, 2**25, 2**26, "float32", max_cells=1000)
    # the same range within a budget that allows it
    assert misfloors(3, 2**25, 2**25 + 10**4, "float32", max_cells=10**5).count > 0


def test_progress_callback(monkeypatch):
    from expdecay.analysis import misfloor as analysis_misfloor

    calls = []
    monkeypatch.setattr(analysis_misfloor, "PROGRESS_CELLS", 0)
    r = misfloors(3, 2**25, 2**25 + 10**5, "float32", chunk=4096,
                  progress=lambda d, t, sec: calls.append((d, t)))
    assert len(calls) > 2
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1]
    assert {t for _, t in calls} == {calls[0][1]} and calls[0][1] >= r.cells_visited
    assert_same(r, brute_numpy(3, 2**25, 2**25 + 10**5, "float32"))
    # short enumerations stay quiet
    calls.clear()
    monkeypatch.setattr(analysis_misfloor, "PROGRESS_CELLS", 1 << 24)
    misfloors(3, 2**25, 2**25 + 10**5, "float32", progress=lambda *a: calls.append(a))
    assert calls == []


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,exc,text", [
    ({"decay_steps": 0}, ValueError, "decay_steps"),
    ({"decay_steps": -3}, ValueError, "decay_steps"),
    ({"decay_steps": "inf"}, ValueError, "decay_steps"),
    ({"start": -1}, ValueError, "start <= stop"),
    ({"start": 10, "stop": 5}, ValueError, "start <= stop"),
    ({"start": True}, TypeError, "start"),
    ({"stop": 2.5}, TypeError, "stop"),
    ({"dtype": "float8"}, ValueError, "dtype"),
    ({"decay_steps": Fraction(1, 10**30), "stop": 10}, ValueError, "2\\*\\*60"),
])
def test_bad_input(kwargs, exc, text):
    args = {"decay_steps": 1000, "start": 0, "stop": 100, "dtype": "float32", **kwargs}
    with pytest.raises(exc, match=text):
        misfloors(args["decay_steps"], args["start"], args["stop"], args["dtype"])
