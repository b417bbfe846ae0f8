"""Random differential campaigns: seeded cases that favour the hard regions.

``expdecay check --impl X --random N --seed S`` checks an implementation on
``N`` cases drawn from the distributions of ``spec/conformance.md`` §8, in the
manner of Berkeley TestFloat's generator: most cases come from regions where
implementations are known to go wrong (steps near ``k*D`` and near 2**24,
2**31 and 2**53; rates near 1 and tiny rates; results near the subnormal and
overflow thresholds and near rounding midpoints; non-integer ``decay_steps``),
the rest uniformly from the whole valid domain.

Cases come in *schedules*: one configuration ``(dtype, staircase, I, D, r)``
with :data:`STEPS_PER_SCHEDULE` steps, so that an implementation whose API
takes one schedule per call is called once per schedule (and with one array
shape: XLA compiles once).

**Reproducibility.**  Schedule ``j`` of seed ``S`` is built from the 64-bit
words ``WORDS*j .. WORDS*j + WORDS - 1`` of the PCG64 stream seeded with
``S`` (``numpy.random.PCG64(S).random_raw``), by integer operations (shifts,
masks, multiplications) and float64 operations that IEEE 754 defines
exactly (``+ - * /`` correctly rounded, ``nextafter``, ``floor``, ``ldexp``,
assembling a float from its bits): no ``log``, ``pow`` or other libm function, no
floating-point sampler of numpy.  The cases are therefore the same on every
machine, and the first ``M`` cases of a longer campaign are the ``M`` cases
of the shorter one.  They depend on the seed, ``N`` and the list of dtypes.

**Expected bits** come from :func:`expdecay.fast.evaluate_array` (bit-identical to
the oracle), vectorised over every schedule of a block at once.  An output
is judged as :func:`expdecay.conformance.runner.judge` judges a vector test;
the vectorised comparison settles every output that has the expected bits or
is clearly out of tolerance, and a near miss under the ``keras`` profile gets
the tolerance :func:`make_tests` would write.  Failures (the first
``max_failures``, and always the worst) are turned into vector-file tests by
the generator's own code (:func:`expdecay.conformance.vectors.make_tests`)
and summarised and diagnosed by the runner
(:func:`expdecay.conformance.runner.summarise`): the report has the form of
a vector run, and :func:`write_failures` writes them as a vector file that
``expdecay vectors validate`` accepts and ``expdecay check --vectors`` re-runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..fast import FastStats, round_int_to_format, round_to_format
from ..fast import evaluate_array as fast_evaluate
from ..fileio import atomic_write
from ..floats import Format, get_format
from ..orders import Order, check_order
from .adapters import Adapter, ImplementationLookupError, Params, get_adapter
from .adapters.base import Outcome
from .adapters.registry import label
from .runner import PROFILES, FileSummary, ImplementationReport, check_output_path, summarise
from .vectors import (
    ALGORITHM,
    ANALYSIS_NOTES,
    CAMPAIGN_THEME,
    KERAS_POW_TOLERANCE,
    NOTES,
    SCHEMA_NAME,
    Case,
    Group,
    dumps,
    encode_number,
    keras_tolerance,
    make_tests,
)

__all__ = [
    "REGIONS",
    "STEPS_PER_SCHEDULE",
    "WORDS",
    "DTYPES",
    "Block",
    "draw",
    "expected",
    "Campaign",
    "run_campaign",
    "check_random",
    "failures_document",
    "write_failures",
    "parse_dtypes",
]

#: Steps drawn per schedule (one implementation call each).
STEPS_PER_SCHEDULE = 16
#: 64-bit words of the PCG64 stream consumed per schedule.
WORDS = 64
#: Schedules drawn, evaluated and judged together.
BLOCK = 4096
#: Formats drawn from by default.
DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Most failures turned into vector tests (recorded, diagnosed, written) by default.
MAX_FAILURES = 200

#: The regions: ``(name, weight out of 64, what it draws)``; spec/conformance.md §8.
REGIONS: tuple[tuple[str, int, str], ...] = (
    ("boundary", 16, "integer D, steps k*D-1, k*D, k*D+1 (k*D below 2**24 for 3/4 of them)"),
    ("large", 8, "steps within 2**12 of 2**24, 2**31, 2**53 or 2**63-1"),
    ("rate", 8, "rates 1 +- 2**-e (e in 8..52) or tiny rates 2**-e (e in 10..1022)"),
    ("range", 8, "results near the subnormal range or the overflow threshold of the format"),
    ("midpoint", 8, "results at, or one float64 ulp of I from, a rounding midpoint"),
    ("nonint", 8, "non-integer decay_steps, steps floor(k*D) + (-1..2)"),
    ("uniform", 8, "every input log-uniform over the whole valid domain, both signs"),
)
_CUM = np.cumsum([w for _, w, _ in REGIONS])
assert _CUM[-1] == 64


# ---------------------------------------------------------------------------
# Exact helpers on the raw words
# ---------------------------------------------------------------------------

_U = np.uint64
_MANT = _U((1 << 52) - 1)


def _below(u: np.ndarray, n: Any) -> np.ndarray:
    """A number in ``[0, n)`` (``n <= 2**32``) from the top 32 bits of ``u``."""
    return ((u >> _U(32)) * np.asarray(n, dtype=np.uint64) >> _U(32)).astype(np.int64)


def _range(u: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """A number in ``[lo, hi]`` (inclusive)."""
    low = np.asarray(lo, dtype=np.int64)
    out: np.ndarray = low + _below(u, np.asarray(hi, dtype=np.int64) - low + 1)
    return out


def _bit(u: np.ndarray, k: int) -> np.ndarray:
    return ((u >> _U(k)) & _U(1)).astype(bool)


def _float(exp: np.ndarray, mant: np.ndarray, negative: np.ndarray | None = None) -> np.ndarray:
    """The float64 ``(-1)**negative * 2**exp * (1 + mant / 2**52)``, ``exp`` in
    [-1022, 1023], assembled from its bits (exact)."""
    bits = ((np.asarray(exp, dtype=np.int64) + 1023).astype(np.uint64) << _U(52)) | (
        np.asarray(mant, dtype=np.uint64) & _MANT)
    if negative is not None:
        bits |= negative.astype(np.uint64) << _U(63)
    return bits.view(np.float64)


def _keep_bits(x: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``x`` with its significand cut to ``precision`` bits (truncation, exact)."""
    drop = (53 - np.asarray(precision, dtype=np.int64)).astype(np.uint64)
    mask = ~((_U(1) << drop) - _U(1))
    return (x.view(np.uint64) & mask).view(np.float64)


def _bit_length(n: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64s, exactly (no float log)."""
    n = np.asarray(n, dtype=np.int64).copy()
    out = np.zeros(n.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = n >= (1 << shift)
        out[big] += shift
        n[big] >>= shift
    return out + (n > 0)


def _sized(u: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """A number with exactly ``bits`` bits (0 when ``bits`` is 0), ``bits <= 63``."""
    bits = np.asarray(bits, dtype=np.int64)
    top = np.where(bits > 0, np.left_shift(1, np.maximum(bits - 1, 0)), 0)
    low = (u & ((_U(1) << np.maximum(bits - 1, 0).astype(np.uint64)) - _U(1))).astype(np.int64)
    return top + np.where(bits > 1, low, 0)


def _log2_estimate(x: np.ndarray) -> np.ndarray:
    """log2 of positive finite float64s to about 1e-4, by the exponent field
    and a short atanh series in ``+ - * /`` only (the same bits everywhere)."""
    bits = x.view(np.uint64)
    e = ((bits >> _U(52)) & _U(0x7FF)).astype(np.int64) - 1023
    m = ((bits & _MANT) | _U(1023 << 52)).view(np.float64)  # in [1, 2)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    series = t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0))))
    out: np.ndarray = e + series * 2.8853900817779268  # 2 / ln 2
    return out


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------


@dataclass
class Block:
    """Schedules ``first .. first + len - 1`` of a campaign, as arrays.

    ``steps`` is an int64 array ``(schedules, STEPS_PER_SCHEDULE)``, or
    float64 where ``float_steps`` (those are in ``fsteps``).  ``D`` holds every
    ``decay_steps`` as a float64 (exact: integers below 2**53), ``D_int`` says
    which are integers handed over as ints.
    """

    first: int
    dtype: np.ndarray  # index into dtypes
    dtypes: tuple[str, ...]
    staircase: np.ndarray
    I: np.ndarray
    D: np.ndarray
    D_int: np.ndarray
    r: np.ndarray
    steps: np.ndarray
    fsteps: np.ndarray
    float_steps: np.ndarray
    region: np.ndarray

    def __len__(self) -> int:
        return int(self.dtype.size)

    def params(self, i: int) -> Params:
        D: int | float = int(self.D[i]) if self.D_int[i] else float(self.D[i])
        return Params(float(self.I[i]), D, float(self.r[i]), bool(self.staircase[i]),
                      self.dtypes[int(self.dtype[i])])

    def step_list(self, i: int) -> list[int | float]:
        if self.float_steps[i]:
            return [float(s) for s in self.fsteps[i]]
        return [int(s) for s in self.steps[i]]

    def case(self, i: int, k: int) -> dict[str, Any]:
        """A readable description of case ``k`` of schedule ``i``."""
        p = self.params(i)
        return {"schedule": self.first + i, "region": REGIONS[int(self.region[i])][0],
                "dtype": p.dtype, "staircase": p.staircase,
                "initial_learning_rate": p.initial_learning_rate, "decay_steps": p.decay_steps,
                "decay_rate": p.decay_rate, "step": self.step_list(i)[k]}


def _raw(seed: int, first: int, count: int) -> np.ndarray:
    bg = np.random.PCG64(seed)
    if first:
        bg.advance(first * WORDS)
    return np.asarray(bg.random_raw(count * WORDS), dtype=np.uint64).reshape(count, WORDS)


def draw(seed: int, first: int, count: int, dtypes: Sequence[str] = DTYPES) -> Block:
    """Schedules ``first .. first + count - 1`` of the campaign of ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**128:
        raise ValueError(f"seed must be an int in [0, 2**128); got {seed!r}")
    dtypes = tuple(dtypes)
    for d in dtypes:
        get_format(d)
    if not dtypes:
        raise ValueError("dtypes must name at least one format")
    R = _raw(seed, first, count)
    K = STEPS_PER_SCHEDULE
    region = np.searchsorted(_CUM, (R[:, 0] >> _U(58)).astype(np.int64), side="right")
    dtype = _below(R[:, 1], len(dtypes))
    fmts = [get_format(d) for d in dtypes]
    prec = np.array([f.precision for f in fmts])[dtype]
    emin = np.array([f.emin for f in fmts])[dtype]
    emax = np.array([f.emax for f in fmts])[dtype]
    n = count
    SA, SB = R[:, 16:32], R[:, 32:48]

    # Defaults (typical values), overwritten per region below.
    staircase = _bit(R[:, 2], 0)
    # I in [2**-14, 1): half of them values of the format.
    I = _float(_range(R[:, 3], -14, -1), R[:, 4])
    I = np.where(_bit(R[:, 5], 0), _keep_bits(I, prec), I)
    # D: an integer of 1..20 bits.
    D_int = np.ones(n, dtype=bool)
    Dn = _sized(R[:, 6], _range(R[:, 7], 1, 20))
    # r in [0.5, 1), full float64 mantissa (a quarter cut to the format).
    r = _float(np.full(n, -1), R[:, 8])
    r = np.where(_below(R[:, 9], 4) == 0, _keep_bits(r, prec), r)
    steps = _sized(SA, _range(SB, 0, 31))
    fsteps = np.zeros((n, K))
    float_steps = np.zeros(n, dtype=bool)
    D = Dn.astype(np.float64)

    # boundary: integer D (1..14 bits), steps k*D + (-1, 0, +1).
    m = region == 0
    if m.any():
        Db = _sized(R[m, 6], _range(R[m, 7], 1, 14))
        small = _below(R[m, 11], 4) != 0  # k*D below 2**24
        limit = np.where(small, 24, 40) - _bit_length(Db)
        kb = _sized(SA[m], _range(SB[m], 0, np.maximum(limit, 0)[:, None]))
        delta = _below(SB[m] & _U(0xFFFFFFFF), 3) - 1
        steps[m] = np.maximum(kb * Db[:, None] + delta, 0)
        D[m] = Db
        staircase[m] = _below(R[m, 2], 4) != 0
    # large: steps within 2**12 of an anchor.
    m = region == 1
    if m.any():
        anchors = np.array([1 << 24, 1 << 31, 1 << 53, (1 << 63) - 1 - (1 << 12)], np.int64)
        a = anchors[_below(R[m, 11], 4)]
        off = _sized(SA[m], _range(SB[m], 0, 12)) * np.where(_bit(SB[m], 5), -1, 1)
        steps[m] = a[:, None] + off
    # rate: near 1 or tiny.
    m = region == 2
    if m.any():
        near = _bit(R[m, 11], 0)
        e_near = _range(R[m, 10], 8, 52)
        x = _float(-e_near, R[m, 8])
        one = np.where(_bit(R[m, 11], 1), 1.0 + x, 1.0 - x)
        tiny = _float(-_range(R[m, 10], 10, 1022), R[m, 8])
        r[m] = np.where(near, one, tiny)
    # range: results near the subnormal range (rates below 1) or the
    # overflow threshold (rates above 1).
    m = region == 3
    if m.any():
        over = _bit(R[m, 11], 0)
        rr = _float(np.where(over, 0, -1), R[m, 8])  # [1, 2) or [0.5, 1)
        Dr = D[m]
        p0 = _range(R[m, 12], 0, 64)  # a whole number of periods
        s0 = p0 * Dr.astype(np.int64) + _range(R[m, 13], 0, 255)
        steps[m] = np.maximum(s0[:, None] + _range(SA[m], -64, 64), 0)
        staircase[m] = False
        logw = (s0 / Dr) * _log2_estimate(rr)  # log2 of r ** (s0 / D), roughly
        target = np.where(over, emax[m] + 1 - _range(R[m, 14], 0, 2),
                          emin[m] - _range(R[m, 14], -2, prec[m]))
        e_I = np.clip(target - np.floor(logw).astype(np.int64), -1022, 1023)
        r[m] = rr
        I[m] = _float(e_I, R[m, 4])
    # midpoint: I * (a * 2**-c) ** k with few bits, at an integer exponent k.
    m = region == 4
    if m.any():
        a_bits = _range(R[m, 10], 2, 6)
        a = _sized(R[m, 8], a_bits) | 1
        k = _range(R[m, 11], 1, 3)
        ak = a ** k
        b_ak = _bit_length(ak)
        t_bits = np.maximum(prec[m] + 1 - b_ak, 1)
        # The first of four candidates whose product has exactly p + 1 bits.
        t = _sized(R[m, 48], t_bits) | 1
        for col in (49, 50, 51):
            bad = _bit_length(t * ak) != prec[m] + 1
            t = np.where(bad, _sized(R[m, col], t_bits) | 1, t)
        b_prod = _bit_length(t * ak)
        c = _bit_length(a)
        E = np.clip(_range(R[m, 12], -20, 5), emin[m], emax[m])  # exponent of the result
        j = E - (b_prod - 1) + c * k
        Im = np.ldexp(t.astype(np.float64), j)  # exact (t has at most 52 bits)
        nudge = _below(R[m, 13], 4)  # 0, 1: exact midpoint; 2: one ulp up; 3: down
        Im = np.where(nudge == 2, np.nextafter(Im, np.inf), Im)
        Im = np.where(nudge == 3, np.nextafter(Im, -np.inf), Im)
        I[m] = Im
        r[m] = np.ldexp(a.astype(np.float64), -c)
        Dm = D[m].astype(np.int64)
        within = _below(SA[m], 1 << 20) % Dm[:, None]
        st = _bit(R[m, 2], 0)
        steps[m] = k[:, None] * Dm[:, None] + np.where(st[:, None], within, 0)
        staircase[m] = st
    # nonint: non-integer D.
    m = region == 5
    if m.any():
        Dx = _float(_range(R[m, 10], -2, 16), R[m, 6])
        Dx = np.where(np.floor(Dx) == Dx, Dx + 0.5, Dx)
        D[m] = Dx
        D_int[m] = False
        kx = _sized(SA[m], _range(SB[m], 0, 16)).astype(np.float64)
        steps[m] = np.maximum(np.floor(kx * Dx[:, None]).astype(np.int64)
                              + _range(SB[m] & _U(0xFFFFFFFF), -1, 2), 0)
        staircase[m] = _below(R[m, 2], 4) != 0
    # uniform: the whole valid domain.
    m = region == 6
    if m.any():
        neg_I = _below(R[m, 11], 16) == 0
        I[m] = _float(_range(R[m, 3], emin[m] - prec[m] + 1, emax[m]), R[m, 4], neg_I)
        int_D = _bit(R[m, 12], 0)
        D_int[m] = int_D
        D[m] = np.where(int_D, _sized(R[m, 6], _range(R[m, 7], 1, 53)).astype(np.float64),
                        _float(_range(R[m, 10], -16, 62), R[m, 9]))
        neg_r = _below(R[m, 13], 8) == 0
        r[m] = _float(_range(R[m, 14], -64, 8), R[m, 8], neg_r)
        mag = _sized(SA[m], _range(SB[m], 0, 62))
        steps[m] = np.where(_below(SB[m] & _U(0xFFFFFFFF), 16) == 0, -mag, mag)
        fl = _below(R[m, 15], 4) == 0
        float_steps[m] = fl
        fx = _float(_range(SA[m], -4, 62), SB[m])
        fsteps[m] = np.where(fl[:, None], fx, 0.0)
    return Block(first, dtype, dtypes, staircase, I, D, D_int, r, steps, fsteps, float_steps,
                 region)


# ---------------------------------------------------------------------------
# Expected values
# ---------------------------------------------------------------------------


def expected(block: Block, order: Order, stats: FastStats | None = None) -> np.ndarray:
    """The expected outputs (float64, exact) of every case of ``block`` in
    ``order``: :func:`expdecay.fast.evaluate_array`, one vectorised call per dtype,
    staircase mode and kind of step (its counters added to ``stats``)."""
    out = np.empty(block.steps.shape)
    for d, name in enumerate(block.dtypes):
        for st in (False, True):
            for fl in (False, True):
                idx = np.flatnonzero((block.dtype == d) & (block.staircase == st)
                                     & (block.float_steps == fl))
                if idx.size == 0:
                    continue
                steps = block.fsteps[idx] if fl else block.steps[idx]
                with np.errstate(all="ignore"):
                    got = fast_evaluate(block.I[idx, None], block.D[idx, None],
                                        block.r[idx, None], steps, staircase=st, dtype=name,
                                        order=order, stats=stats)
                out[idx] = got.astype(np.float64)
    return out


# ---------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------


def _ordinal(x: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """``(key, representable)``: a key whose differences count ulps of ``fmt``
    (+0 and -0 one point, the largest finite value next to infinity)."""
    with np.errstate(all="ignore"):
        y = x.astype(fmt.dtype)
    rep = (y.astype(np.float64) == x) | np.isnan(x)
    width = {16: np.uint16, 32: np.uint32, 64: np.uint64}[fmt.width]
    u = y.view(width).astype(np.uint64)
    sign = (u >> _U(fmt.width - 1)) != 0
    mag = (u & _U((1 << (fmt.width - 1)) - 1)).astype(np.int64)
    return np.where(sign, -mag, mag), rep


def keras_tolerances(block: Block, i: np.ndarray, k: np.ndarray, fmt: Format) -> np.ndarray:
    """:func:`expdecay.conformance.vectors.keras_tolerance` of the cases
    ``(i, k)`` of ``block``, vectorised; -1 where it has to be asked.

    ``keras_tolerance`` is 0 when ``w = rf**p`` (``rf = rnd(r)``, ``p =
    rnd(rnd(s) / rnd(D))``, floored when staircase) is not a power in the
    oracle's sense (``p`` zero, infinite or NaN; ``rf`` zero, infinite, NaN
    or ``+-1``; ``rf < 0`` with ``p`` not an integer: the table of spec
    §8.1) or is a finite non-zero value of the format, else
    :data:`KERAS_POW_TOLERANCE`.

    ``rf``, ``rnd(s)`` and ``rnd(D)`` are rounded exactly
    (:func:`expdecay.fast.round_to_format`), and the float64 quotient rounded
    to the format is the correctly rounded quotient (for ``prec <= 24``,
    ``53 >= 2 prec + 2``: a quotient of two ``prec``-bit numbers is either a
    number of at most ``prec + 1`` bits or farther than ``2**-(2 prec + 1)``
    relatively from every one, so the float64 rounding, within ``2**-53``,
    cannot move it onto or across a midpoint): ``p`` is exact.

    For a power, write ``|rf| = M 2**E`` with ``M`` odd.  An integer ``p``:
    ``|rf|**p = M**p 2**(E p)`` is computed exactly when ``M = 1`` or ``M**p``
    fits in 62 bits, and is a finite non-zero value of the format exactly
    when ``M**p`` has at most ``prec`` bits, ``E p >= emin - prec + 1`` (the
    quantum of the subnormals) and its top bit is at most ``emax``.
    Otherwise, with ``M >= 3``, suppose ``|rf|**p = x = X 2**G`` with ``X``
    odd, ``X < 2**prec``.  ``p`` is a dyadic rational ``a / b`` in lowest
    terms; raising to the power ``b``, ``M**a 2**(E a) = X**b 2**(G b)``, and
    the odd parts agree: ``M**a = X**b``.  ``a < 0`` is impossible (the left
    side below 1, the right one at least 1), so ``p >= 0``, and ``a > 0``
    gives ``X = M**p >= 2**((bits(M) - 1) p)``, so ``(bits(M) - 1) p <
    prec``.  A negative ``p``, or one with ``(bits(M) - 1) p >= prec``, is
    not exact.  When ``p`` is not an integer, ``b >= 2`` is even and ``gcd(a,
    b) = 1``, so ``M**a = X**b`` makes ``M`` a ``b``-th power, a square in
    particular: an ``M`` that is not a perfect square is not exact either.
    What is left (``M = 1`` with ``p`` not an integer, rare roots) is asked.
    """
    prec = fmt.precision
    out = np.full(i.size, -1, dtype=np.int64)
    with np.errstate(all="ignore"):
        sf = np.where(block.float_steps[i], round_to_format(block.fsteps[i, k], fmt),
                      round_int_to_format(block.steps[i, k], fmt))
        p = round_to_format(sf / round_to_format(block.D[i], fmt), fmt)
        p = np.where(block.staircase[i], np.floor(p), p)
        rf = round_to_format(block.r[i], fmt)
        a = np.abs(rf)
        integral = p == np.floor(p)
        nonpower = (~np.isfinite(p) | (p == 0) | ~np.isfinite(rf) | (a == 0) | (a == 1)
                    | ((rf < 0) & ~integral))
        out[nonpower] = 0
        power = ~nonpower
        bits = np.where(power, a, 3.0).view(np.uint64)
        mant = ((bits & _MANT) | _U(1 << 52)).astype(np.int64)
        low = mant & -mant
        odd = mant // low
        # |rf| = odd * 2**E
        E = ((bits >> _U(52)).astype(np.int64) - 1075
             + np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1)
        b_odd = np.frexp(odd.astype(np.float64))[1].astype(np.int64)
        pi = np.where(power & integral & (np.abs(p) < 2.0**40), p, 0).astype(np.int64)
        G = E * pi
        # Integer p, M**p computed exactly.
        direct = power & integral & (np.abs(p) < 2.0**40) & (
            (odd == 1) | ((pi >= 1) & (b_odd * pi <= 62)))
        X = np.ones(i.size, dtype=np.int64)
        todo = direct & (odd > 1)
        left = np.where(todo, pi, 0)
        while (left > 0).any():
            X = np.where(left > 0, X * odd, X)
            left -= 1
        b_X = np.frexp(X.astype(np.float64))[1].astype(np.int64)
        fits = (b_X <= prec) & (G >= fmt.emin - prec + 1) & (b_X - 1 + G <= fmt.emax)
        out[direct] = np.where(fits[direct], 0, KERAS_POW_TOLERANCE)
        huge = power & integral & ~(np.abs(p) < 2.0**40) & (odd == 1)
        out[huge] = KERAS_POW_TOLERANCE  # |E p| >= 2**40: far out of range
        root = np.floor(np.sqrt(odd.astype(np.float64))).astype(np.int64)
        square = ((root * root == odd) | ((root + 1) * (root + 1) == odd)
                  | ((root - 1) * (root - 1) == odd))
        ruled_out = power & ~direct & (odd >= 3) & (
            (p < 0) | ((b_odd - 1) * p >= prec) | (~integral & ~square))
        out[ruled_out] = KERAS_POW_TOLERANCE
    return out


@dataclass
class _Verdicts:
    """Per-case verdicts of one profile on one block."""

    status: np.ndarray  # 0 pass, 1 fail, 2 n/a, 3 not run
    within: np.ndarray  # passed within tolerance
    ulps: np.ndarray  # distance in ulps (inf when undefined), 0 when same bits


def _judge(block: Block, outcome: list[Outcome], values: np.ndarray, want: np.ndarray,
           profile: Order) -> _Verdicts:
    n, K = block.steps.shape
    status = np.zeros((n, K), dtype=np.int8)
    within = np.zeros((n, K), dtype=bool)
    ulps = np.zeros((n, K))
    err = np.zeros((n, K), dtype=bool)
    for i, o in enumerate(outcome):
        for k in o.not_applicable:
            status[i, k] = 2
        for k in o.crashed:
            status[i, k] = 3
        for k in o.errors:
            err[i, k] = True
    steps_neg = np.where(block.float_steps[:, None],
                         (block.fsteps < 0) | np.signbit(block.fsteps) | ~np.isfinite(
                             block.fsteps), block.steps < 0)
    plain = (status == 0) & ~err
    failed = (status == 0) & err & ~steps_neg  # an error on a valid test
    status[failed] = 1
    ulps[failed] = np.inf  # no distance; an error on an invalid step passes with 0
    for d, name in enumerate(block.dtypes):
        fmt = get_format(name)
        rows = block.dtype == d
        sel = plain & rows[:, None]
        if not sel.any():
            continue
        v, w = values[sel], want[sel]
        kv, rep = _ordinal(v, fmt)
        kw, _ = _ordinal(w, fmt)
        nan_v, nan_w = np.isnan(v), np.isnan(w)
        same = (nan_v & nan_w) | (rep & ~nan_v & ~nan_w & (
            np.where(np.isnan(v), 0, v).astype(fmt.dtype).view(
                {16: np.uint16, 32: np.uint32, 64: np.uint64}[fmt.width])
            == w.astype(fmt.dtype).view({16: np.uint16, 32: np.uint32,
                                         64: np.uint64}[fmt.width])))
        # Opposite signs: the int64 difference could wrap, and the sum of the
        # magnitudes (each below 2**63) is the distance.
        opp = (kv < 0) != (kw < 0)
        gap = np.where(opp, np.abs(kv).astype(np.float64) + np.abs(kw).astype(np.float64),
                       np.abs(np.where(opp, 0, kv - kw)).astype(np.float64))
        dist = np.where(rep & ~nan_v & ~nan_w, gap, np.inf)
        dist[same] = 0.0
        near = ~same & np.isfinite(v) & np.isfinite(w) & ~((v == 0) & (w == 0)) & (dist <= 2)
        st = np.where(same, 0, 1).astype(np.int8)
        if profile == "keras" and near.any():
            where = np.argwhere(sel)
            cand = np.flatnonzero(near)
            ci, ck = where[cand, 0], where[cand, 1]
            tol = keras_tolerances(block, ci, ck, fmt)
            known = tol >= 0
            st[cand[known & (dist[cand] <= tol)]] = 0
            for j in cand[~known]:
                i, k = where[j]
                p = block.params(int(i))
                g = Group(p.dtype, p.staircase, as_number(p.initial_learning_rate),
                          as_number(p.decay_steps), as_number(p.decay_rate))
                if dist[j] <= keras_tolerance(g, block.step_list(int(i))[int(k)]):
                    st[j] = 0
        status[sel] = st
        within[sel] = (st == 0) & ~same
        ulps[sel] = dist
    return _Verdicts(status, within, ulps)


# ---------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------


@dataclass
class _Recorded:
    """A failing case kept for the report and the vector file."""

    schedule: int
    k: int
    params: Params
    step: int | float
    region: str
    output: tuple[Any, Any, Any, Any]  # value, error, n/a, not run


@dataclass
class Campaign:
    """Everything a campaign measured (one implementation, its profiles)."""

    name: str
    version: str
    seed: int
    cases: int
    profiles: tuple[Order, ...]
    dtypes: tuple[str, ...]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    max_ulps: dict[str, float] = field(default_factory=dict)
    recorded: list[_Recorded] = field(default_factory=list)
    first_failure: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0
    implementation_seconds: float = 0.0
    expected_seconds: float = 0.0
    #: Counters of the expected values' fast path (elements, deferred to
    #: per-schedule evaluation, sent to the oracle).
    expected_stats: FastStats = field(default_factory=FastStats)
    vectorised: bool = False
    broken: str | None = None
    regions: dict[str, int] = field(default_factory=dict)
    _doc: tuple[int, dict[str, Any]] | None = field(default=None, repr=False)

    def document(self) -> dict[str, Any]:
        """The recorded failures as a vector document (:func:`failures_document`)."""
        if self._doc is None or self._doc[0] != len(self.recorded):
            self._doc = (len(self.recorded), failures_document(self))
        return self._doc[1]

    def reports(self) -> list[ImplementationReport]:
        """One report per profile, in the form of a vector run: the counts of
        every case, the recorded failures summarised and diagnosed by the
        runner (:func:`expdecay.conformance.runner.summarise`), the failures
        beyond ``max_failures`` counted as not diagnosed."""
        doc = self.document()
        tests = [t for g in doc["testGroups"] for t in g["tests"]]
        outputs = {t["tcId"]: rec.output for t, rec in zip(tests, self.recorded, strict=True)}
        fname = f"random(seed={self.seed}, cases={self.cases})"
        out = []
        for p in self.profiles:
            if self.broken is not None:
                out.append(ImplementationReport(self.name, "unavailable", p, False, [],
                                                self.seconds, self.broken, unavailable=True))
                continue
            s = summarise(fname, doc, outputs, p) if tests else FileSummary(fname)
            c = self.counts[p]
            rest = c["fail"] - s.failed
            s.passed, s.failed, s.na, s.not_run = c["pass"], c["fail"], c["na"], c["notrun"]
            s.within_tolerance = c["within"]
            s.max_ulps = max(s.max_ulps, self.max_ulps.get(p, 0.0))
            if rest > 0:
                s.classes[f"not diagnosed (beyond the first {len(self.recorded)} failures)"] \
                    += rest
            out.append(ImplementationReport(self.name, self.version, p, self.vectorised, [s],
                                            self.seconds))
        return out


def _by_output(o: Outcome, k: int) -> tuple[Any, Any, Any, Any]:
    return (float(o.values[k]), o.errors.get(k), o.not_applicable.get(k), o.crashed.get(k))


def _check_counts(cases: Any, max_failures: Any) -> None:
    """``ValueError`` unless ``cases`` is an int >= 1 and ``max_failures`` an int >= 0."""
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ValueError(f"cases must be an int >= 1; got {cases!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be an int >= 0; got {max_failures!r}")


def run_campaign(adapter: Adapter, cases: int, seed: int = 0, *,
                 profiles: Sequence[str] = PROFILES, dtypes: Sequence[str] = DTYPES,
                 max_failures: int = MAX_FAILURES,
                 progress: Callable[[str], object] | None = None,
                 name: str | None = None) -> Campaign:
    """Check ``adapter`` on the first ``cases`` cases of the campaign ``seed``.

    Every case is evaluated by the implementation (one call per schedule),
    judged under each of ``profiles``; the failures (at most
    ``max_failures``, plus the worst of each profile) are recorded with their
    outputs.  ``progress``, if given, gets one line per block of
    :data:`BLOCK` schedules and at the end.
    """
    _check_counts(cases, max_failures)
    checked = tuple(check_order(p, "profiles") for p in profiles)
    dtypes = tuple(dtypes)
    draw(seed, 0, 1, dtypes)  # checks the seed and the dtypes
    K = STEPS_PER_SCHEDULE
    camp = Campaign(name or adapter.name, getattr(adapter, "version", "unknown"), seed, cases,
                    checked, dtypes, vectorised=bool(getattr(adapter, "vectorised", False)))
    camp.counts = {p: {"pass": 0, "fail": 0, "na": 0, "notrun": 0, "within": 0}
                   for p in checked}
    camp.max_ulps = dict.fromkeys(checked, 0.0)
    camp.first_failure = dict.fromkeys(checked)
    if getattr(adapter, "broken", None):
        camp.broken = str(adapter.broken)[:300]
        return camp
    t0 = time.monotonic()
    schedules = -(-cases // K)
    worst: dict[str, tuple[float, _Recorded]] = {}
    per_bucket: dict[tuple[str, int], int] = {}
    bucket_cap = max(1, -(-max_failures // (len(checked) * len(REGIONS))))
    def prepare(first: int) -> tuple[int, Block, dict[Order, np.ndarray], float]:
        """Block ``first`` drawn, with its expected values per profile."""
        count = min(BLOCK, schedules - first)
        block = draw(seed, first, count, dtypes)
        t1 = time.monotonic()
        want = {p: expected(block, check_order(p, "profiles"), camp.expected_stats)
                for p in checked}
        return count, block, want, time.monotonic() - t1

    # The next block is drawn and its expected values computed in a second
    # thread while the implementation evaluates this one and it is judged
    # (the compiled kernels release the GIL); the blocks are still taken in
    # order, so the result does not depend on the timing.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="expdecay-campaign") as pool:
        ahead = pool.submit(prepare, 0)
        for first in range(0, schedules, BLOCK):
            count, block, want, seconds = ahead.result()
            if first + BLOCK < schedules:
                ahead = pool.submit(prepare, first + BLOCK)
            camp.expected_seconds += seconds
            _check_block(camp, adapter, block, want, first, count, cases, schedules,
                         worst, per_bucket, bucket_cap, max_failures)
            if progress:
                done = min(cases, (first + count) * K)
                fails_txt = ", ".join(f"{camp.counts[p]['fail']} failed ({p})"
                                      for p in checked)
                progress(f"  random: {done}/{cases} cases ({100 * done // cases}%), "
                         f"{fails_txt}, {time.monotonic() - t0:.1f} s")
    # The worst failure of each profile is always recorded.
    keys = {(r.schedule, r.k) for r in camp.recorded}
    for _, rec in worst.values():
        if (rec.schedule, rec.k) not in keys:
            camp.recorded.append(rec)
            keys.add((rec.schedule, rec.k))
    camp.recorded.sort(key=lambda r: (r.schedule, r.k))
    camp.seconds = time.monotonic() - t0
    return camp


def _check_block(camp: Campaign, adapter: Adapter, block: Block, want: dict[Order, np.ndarray],
                 first: int, count: int, cases: int, schedules: int,
                 worst: dict[str, tuple[float, _Recorded]],
                 per_bucket: dict[tuple[str, int], int], bucket_cap: int,
                 max_failures: int) -> None:
    """Evaluate one block with the implementation, judge it under every
    profile and record its failures into ``camp``."""
    K = STEPS_PER_SCHEDULE
    profiles = camp.profiles
    last = cases - (first + count - 1) * K  # cases used of the last schedule
    outcomes: list[Outcome] = []
    values = np.full(block.steps.shape, np.nan)
    t1 = time.monotonic()
    for i in range(count):
        n_steps = K if first + i < schedules - 1 else last
        steps = block.step_list(i)[:n_steps]
        o = adapter.evaluate_outcome(block.params(i), steps)
        if n_steps < K:  # the campaign ends inside this schedule
            o = Outcome(np.concatenate([o.values, np.full(K - n_steps, np.nan)]),
                        o.errors, {**o.not_applicable,
                                   **dict.fromkeys(range(n_steps, K), "-")}, o.crashed)
        outcomes.append(o)
        values[i] = o.values
    camp.implementation_seconds += time.monotonic() - t1
    # Cases per schedule: K, but only `last` in the campaign's last schedule.
    used = np.full(count, K, dtype=np.int64)
    used[-1] = min(last, K)
    tally = np.bincount(block.region[:count], weights=used, minlength=len(REGIONS))
    for j, (rname, _, _) in enumerate(REGIONS):
        camp.regions[rname] = camp.regions.get(rname, 0) + int(tally[j])
    excluded = np.zeros(block.steps.shape, dtype=bool)
    if last < K:
        excluded[count - 1, last:] = True
    failing: list[tuple[Order, int, int]] = []
    for p in profiles:
        v = _judge(block, outcomes, values, want[p], p)
        st = np.where(excluded, 4, v.status)
        c = camp.counts[p]
        c["pass"] += int((st == 0).sum())
        c["fail"] += int((st == 1).sum())
        c["na"] += int((st == 2).sum())
        c["notrun"] += int((st == 3).sum())
        c["within"] += int((v.within & (st == 0)).sum())
        fails = np.argwhere(st == 1)
        if fails.size and camp.first_failure[p] is None:
            i0, k0 = fails[0]
            camp.first_failure[p] = int((first + i0) * K + k0 + 1)
        counted = (st == 0) | (st == 1)
        if counted.any():
            camp.max_ulps[p] = max(camp.max_ulps[p], float(v.ulps[counted].max()))
        if fails.size:
            uf = v.ulps[st == 1]
            j = int(np.argmax(uf))
            if p not in worst or uf[j] > worst[p][0]:
                i, k = int(fails[j][0]), int(fails[j][1])
                worst[p] = (float(uf[j]), _record(block, outcomes, i, k))
        failing += [(p, int(i), int(k)) for i, k in fails]
    # Recorded: at most max_failures, shared out over profiles and regions
    # so that every kind of failure is seen.
    seen = {(r.schedule, r.k) for r in camp.recorded}
    for p, i, k in failing:
        key, bucket = (first + i, k), (p, int(block.region[i]))
        if key in seen or len(camp.recorded) >= max_failures or \
                per_bucket.get(bucket, 0) >= bucket_cap:
            continue
        seen.add(key)
        per_bucket[bucket] = per_bucket.get(bucket, 0) + 1
        camp.recorded.append(_record(block, outcomes, i, k))


def _record(block: Block, outcomes: list[Outcome], i: int, k: int) -> _Recorded:
    return _Recorded(block.first + i, k, block.params(i), block.step_list(i)[k],
                     REGIONS[int(block.region[i])][0], _by_output(outcomes[i], k))


# ---------------------------------------------------------------------------
# Failures as a vector file
# ---------------------------------------------------------------------------

def failures_document(camp: Campaign) -> dict[str, Any]:
    """The recorded failures of ``camp`` as a vector document (theme
    ``random_campaign``): one test group per schedule, the tests built by
    :func:`make_tests` and numbered in the order of ``camp.recorded`` (sorted
    by schedule and step)."""
    groups: list[dict[str, Any]] = []
    runs: list[list[_Recorded]] = []
    for rec in camp.recorded:
        if runs and runs[-1][0].schedule == rec.schedule:
            runs[-1].append(rec)
        else:
            runs.append([rec])
    tc = 0
    for recs in runs:
        p, sched = recs[0].params, recs[0].schedule
        cases = [Case(r.step, f"random campaign seed {camp.seed}, schedule {sched}, step #{r.k}"
                              f", region {r.region}", ("RandomCampaign",)) for r in recs]
        g = Group(p.dtype, bool(p.staircase), as_number(p.initial_learning_rate),
                  as_number(p.decay_steps), as_number(p.decay_rate), cases)
        tests = make_tests(g, range(tc + 1, tc + 1 + len(recs)))
        tc += len(recs)
        groups.append({"type": "ExponentialDecayTest",
                       "comment": f"random campaign seed {camp.seed}, schedule {sched}",
                       "dtype": p.dtype, "staircase": bool(p.staircase),
                       "initialLearningRate": encode_number(as_number(p.initial_learning_rate)),
                       "decaySteps": encode_number(as_number(p.decay_steps)),
                       "decayRate": encode_number(as_number(p.decay_rate)),
                       "tests": tests})
    used = {f for g in groups for t in g["tests"] for f in t["flags"]}
    notes_src = {**NOTES, **ANALYSIS_NOTES}
    return {
        "algorithm": ALGORITHM,
        "schema": SCHEMA_NAME,
        "generatorVersion": __version__,
        "theme": CAMPAIGN_THEME,
        "numberOfTests": tc,
        "header": [f"Failures of {camp.name} ({camp.version}) in the random campaign of seed "
                   f"{camp.seed} ({camp.cases} cases, dtypes {', '.join(camp.dtypes)}, "
                   f"profiles {', '.join(camp.profiles)}): expdecay check --random.",
                   "Each test is a case the implementation failed; re-run them with "
                   "expdecay check --vectors FILE."],
        "notes": {n: {"bugType": b, "description": d, "effect": e}
                  for n, (b, d, e) in notes_src.items() if n in used},
        "testGroups": groups,
    }


def as_number(x: int | float | str) -> int | float:
    assert not isinstance(x, str)
    return x


def write_failures(camp: Campaign, path: Path | str) -> int:
    """Write the recorded failures of ``camp`` as a vector file (atomically);
    returns the number of tests written."""
    doc = failures_document(camp)
    try:
        atomic_write(Path(path), dumps(doc), encoding="ascii")
    except OSError as e:  # named by the caller's path, not the temporary file's
        raise ValueError(f"write: cannot write {str(path)!r}: "
                         f"{e.strerror or type(e).__name__}") from None
    return int(doc["numberOfTests"])


# ---------------------------------------------------------------------------
# The command line's entry point
# ---------------------------------------------------------------------------


def parse_dtypes(items: Sequence[str] | None) -> tuple[str, ...] | None:
    """``dtype`` values (each a comma-separated list of format names) as a
    tuple of format names; ``ValueError`` naming ``dtype`` otherwise."""
    if not items:
        return None
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            name = part.strip()
            if name not in DTYPES:
                raise ValueError(f"dtype must be among {', '.join(DTYPES)}; got {name!r}")
            if name not in out:
                out.append(name)
    return tuple(out)


def _applicable_dtypes(adapter: Adapter, dtypes: tuple[str, ...]) -> tuple[str, ...]:
    """The formats the implementation expresses (one plain schedule asked each)."""
    ok = tuple(d for d in dtypes if adapter.applicable(Params(0.1, 1000, 0.96, False, d)) is None)
    return ok or dtypes


def check_random(name: str, options: dict[str, Any], cases: int, seed: int,
                 profiles: tuple[str, ...], dtypes: tuple[str, ...] | None = None, *,
                 timeout: float = 60.0, max_failures: int = MAX_FAILURES,
                 write: str | None = None,
                 progress: Callable[[str], object] | None = None
                 ) -> tuple[list[ImplementationReport], list[Campaign]]:
    """A campaign against implementation ``name`` (as ``expdecay check`` names
    it), one report per profile; ``expdecay`` is checked once per order, as
    the runner does.  Without ``dtypes``, the formats the implementation
    cannot express are left out (asked once per format).  ``write``: the
    failures of every campaign are written there as one vector file."""
    _check_counts(cases, max_failures)  # before any worker starts
    draw(seed, 0, 1, dtypes or DTYPES)
    if write is not None:  # a file that cannot be written is refused before the campaign
        check_output_path(write, "write")
    checked = tuple(check_order(p, "profiles") for p in profiles)
    orders: tuple[Order | None, ...] = checked if name == "expdecay" else (None,)
    reports: list[ImplementationReport] = []
    camps: list[Campaign] = []
    for order in orders:
        opts = dict(options)
        if order is not None:
            opts["order"] = order
        shown = label(name, options) if order in (None, "exact") else f"{name}[order=keras]"
        mine = checked if order is None else (order,)
        try:
            adapter = get_adapter(name, isolated=True, timeout=timeout, **opts)
        except ImplementationLookupError:
            raise  # a bad argument, not a property of the implementation
        except Exception as e:  # noqa: BLE001 - reported as the implementation's error
            camp = Campaign(shown, "unavailable", seed, cases, mine, dtypes or DTYPES,
                            broken=f"{type(e).__name__}: {e}"[:300])
            camps.append(camp)
            reports += camp.reports()
            continue
        try:
            chosen = dtypes or _applicable_dtypes(adapter, DTYPES)
            if progress:
                progress(f"random campaign: {shown}, {cases} cases, seed {seed}, "
                         f"dtypes {', '.join(chosen)}")
            camp = run_campaign(adapter, cases, seed, profiles=mine, dtypes=chosen,
                                max_failures=max_failures, progress=progress, name=shown)
        finally:
            close = getattr(adapter, "close", None)
            if close:
                close()
        camps.append(camp)
        reports += camp.reports()
    if write is not None:
        merged = camps[0]
        if len(camps) > 1:  # expdecay, once per order: each failing case once
            seen: dict[tuple[int, int], _Recorded] = {}
            for c in camps:
                for r in c.recorded:
                    seen.setdefault((r.schedule, r.k), r)
            merged = Campaign(name, camps[0].version, seed, cases, checked, camps[0].dtypes,
                              recorded=sorted(seen.values(), key=lambda r: (r.schedule, r.k)))
        n = write_failures(merged, write)
        if progress:
            progress(f"wrote {n} failing cases to {write}")
    return reports, camps


def iter_cases(seed: int, cases: int, dtypes: Sequence[str] = DTYPES
               ) -> Iterator[dict[str, Any]]:
    """The cases of a campaign, one dict each (for inspection and tests)."""
    K = STEPS_PER_SCHEDULE
    schedules = -(-cases // K)
    n = 0
    for first in range(0, schedules, BLOCK):
        block = draw(seed, first, min(BLOCK, schedules - first), dtypes)
        for i in range(len(block)):
            for k in range(K):
                if n == cases:
                    return
                yield block.case(i, k)
                n += 1
