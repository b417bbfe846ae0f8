"""Diagnosis of a failed conformance test: which known mistake explains it.

A cause is reported only when it is *proven*: recomputing the schedule with
that mistake reproduces the observed bits of the test, and no other
explanation that is as simple does (:func:`diagnose`).  Every candidate is a
mistake from the vocabulary :data:`CAUSES` (fixed in ``spec/conformance.md``
§7), applied to the order the profile expects, or to the other order
(``keras-order`` / ``exact-order`` joins the explanation), optionally with a
``pow`` one ulp off (``pow-not-correctly-rounded`` joins it).  The
explanations that reproduce the output with the fewest mistakes are kept:
one left means a proven cause, several mean "ambiguous (A or B)", none means
"unexplained".  A few findings need no recomputation (facts): an output that
is not a value of the format, an error on a valid input, an invalid
configuration accepted.

The ulp helpers :func:`ulps_between` and :func:`same_bits` are shared with the
runner.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..fast import evaluate as fast_evaluate
from ..floats import (
    Format,
    from_bits,
    get_format,
    round_ratio,
    to_bits,
)
from ..inputs import to_exact
from ..oracle import ExactOps, RoundedOps, round_node
from .vectors import decode_number, decode_result

__all__ = ["CAUSES", "FACTS", "Diagnosis", "ulps_between", "same_bits", "diagnose",
           "classify", "fact"]

#: The vocabulary of cause ids (spec/conformance.md §7): id -> English text.
CAUSES: dict[str, str] = {
    "keras-order": "the keras order: the inputs cast to the format before the arithmetic",
    "exact-order": "the exact order: the inputs not cast to the format",
    "pow-not-correctly-rounded": "pow one ulp from its correctly rounded value (keras order): "
                                 "a faithful libm",
    "staircase-ignored": "staircase ignored: the exponent is not floored",
    "decay-steps-ignored": "decay_steps ignored (taken as 1)",
    "integer-floor-division": "the staircase exponent floor(s / D) computed exactly (integer "
                              "division), not from the rounded quotient of the keras order",
    "floor-as-round": "the staircase floor replaced by rounding to nearest",
    "floor-as-trunc": "the staircase floor replaced by truncation toward zero",
    "step-shifted": "the step shifted by one",
    "step-through-float32": "the step converted through float32 in a float64 pipeline",
    "rate-through-float32": "decay_rate (alone or with decay_steps) converted through "
                            "float32 before a float64 pipeline",
    "decay-steps-through-float32": "decay_steps converted through float32 before a float64 "
                                   "pipeline",
    "computed-in-narrower-format": "the whole pipeline run in a narrower format: the dtype "
                                   "not honoured",
    "computed-in-wider-format": "computed in a wider format, then rounded to the format",
    "chained-product": "a chained product: the rate multiplied in once per period, each "
                       "product rounded in the format",
    "decay-steps-truncated": "decay_steps converted to an integer (truncated, or wrapped to "
                             "int32)",
    "reciprocal-division": "s / D computed as s * (1 / D) with a rounded reciprocal",
    "step-wrapped-int32": "the step wrapped to int32 (two's complement) before its cast",
    "negative-step-clamped": "a negative step clamped to 0: the initial rate returned",
    "zero-rate-constant": "decay_rate 0 taken as a constant schedule",
    "negative-zero-lost": "a -0.0 input read as +0.0",
    "subnormal-flushed": "a subnormal result flushed to zero",
    "integer-arithmetic": "an integer initial_learning_rate kept as an integer: decay_rate "
                          "truncated to an integer",
    "pow-nan-propagates": "pow(NaN, 0) or pow(1, NaN) gives NaN instead of 1 (C99 Annex F)",
}

#: Findings that need no recomputation: id -> English text.
FACTS: dict[str, str] = {
    "output-not-in-format": "the output is not a value of the format (returned in a wider "
                            "format)",
    "missing-validation": "an invalid configuration was accepted",
    "raised": "an error was raised for a valid input",
}

ORDER_CAUSE = {"keras": "keras-order", "exact": "exact-order"}
POW_CAUSE = "pow-not-correctly-rounded"

#: Longest chain of products recomputed for ``chained-product``.
CHAIN_MAX = 200_000

_F32 = get_format("float32")
_F64 = get_format("float64")
_INT64 = (-2**63, 2**63 - 1)


# ---------------------------------------------------------------------------
# Bits of the values of a format, in integer arithmetic (the judging and the
# recomputations compare millions of values: no Fraction on these paths).
# Each function gives exactly what its namesake of ``expdecay.floats`` gives,
# and defers to it for a value that is not one of the format (its error).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Consts:
    precision: int
    emin: int
    emax: int
    quantum_min: int
    sign: int
    inf_bits: int
    nan_bits: int
    min_subnormal: float


_CONSTS: dict[str, _Consts] = {}


def _consts(fmt: Format) -> _Consts:
    c = _CONSTS.get(fmt.name)
    if c is None:
        c = _CONSTS[fmt.name] = _Consts(
            fmt.precision, fmt.emin, fmt.emax, fmt.quantum_min, 1 << (fmt.width - 1),
            ((1 << fmt.exponent_bits) - 1) << (fmt.precision - 1), fmt.nan_bits,
            fmt.min_subnormal)
    return c


def is_representable(x: float, fmt: Format) -> bool:
    """True when the float ``x`` is exactly a value of ``fmt``
    (:func:`expdecay.floats.is_representable`, without rationals)."""
    if x == 0.0 or not math.isfinite(x):
        return True
    c = _consts(fmt)
    m, e = math.frexp(abs(x))  # |x| = m * 2**e, 0.5 <= m < 1: top bit at e - 1
    if e - 1 > c.emax:
        return False
    n = int(m * 9007199254740992.0)  # m * 2**53, exact
    low = (n & -n).bit_length() - 1 + e - 53  # exponent of the lowest set bit
    return low >= max(c.quantum_min, e - c.precision)


def _bits(x: float, fmt: Format) -> int:
    """:func:`expdecay.floats.to_bits` of ``x``."""
    c = _consts(fmt)
    if math.isnan(x):
        return c.nan_bits
    sign = c.sign if math.copysign(1.0, x) < 0 else 0
    if math.isinf(x):
        return sign | c.inf_bits
    if x == 0.0:
        return sign
    if not is_representable(x, fmt):
        return to_bits(x, fmt)  # raises: not a value of the format
    m, e = math.frexp(abs(x))
    n = int(m * 9007199254740992.0)  # 53 bits, top bit set: |x| = n * 2**(e - 53)
    e -= 1
    frac = c.precision - 1
    if e < c.emin:  # subnormal: a multiple of 2**quantum_min
        return sign | (n >> (c.quantum_min - e + 52))
    return sign | ((e + c.emax) << frac) | ((n >> (52 - frac)) - (1 << frac))


def _key_of(x: float, fmt: Format) -> int:
    """The order key of :mod:`expdecay.floats` (ulp steps from zero, signed)."""
    if math.isnan(x):
        raise ValueError(f"ulp distance is undefined for NaN (format {fmt.name})")
    bits = _bits(x, fmt)
    sign = _consts(fmt).sign
    return -(bits & (sign - 1)) if bits & sign else bits


def _from_key(key: int, fmt: Format) -> float:
    return from_bits(key if key >= 0 else (-key) | _consts(fmt).sign, fmt)


def next_up(x: float, fmt: Format) -> float:
    """:func:`expdecay.floats.next_up`."""
    if math.isnan(x) or x == math.inf:
        return x
    if x == 0.0:
        return _consts(fmt).min_subnormal
    return _from_key(_key_of(x, fmt) + 1, fmt)


def next_down(x: float, fmt: Format) -> float:
    """:func:`expdecay.floats.next_down`."""
    return -next_up(-x, fmt)


def ulps_between(expected: float, observed: float, fmt: Format) -> float:
    """|distance| in ulps of ``fmt``; inf when one is NaN and the other not."""
    if math.isnan(expected) or math.isnan(observed):
        return 0.0 if math.isnan(expected) and math.isnan(observed) else math.inf
    if not is_representable(observed, fmt):
        return math.inf
    return float(abs(_key_of(observed, fmt) - _key_of(expected, fmt)))


def same_bits(a: float, b: float, fmt: Format) -> bool:
    """Bit equality with every NaN equal (a NaN matches any NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if not is_representable(b, fmt):
        return False
    if a == b and math.copysign(1.0, a) == math.copysign(1.0, b):
        return True  # b is a value of the format, so a is: the same bits
    return _bits(a, fmt) == _bits(b, fmt)


@dataclass
class Diagnosis:
    """The verdict on a failure's cause.

    ``status`` is ``proven`` (``ids`` is the one simplest explanation, or a
    fact), ``ambiguous`` (``alternatives`` lists the explanations that
    reproduce the output equally simply) or ``unexplained``.
    """

    status: str
    ids: list[str] = field(default_factory=list)
    alternatives: list[list[str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The class the failure is counted under (ids joined by ``+``)."""
        if self.status == "proven":
            return "+".join(self.ids)
        if self.status == "ambiguous":
            return "ambiguous (" + " or ".join("+".join(a) for a in self.alternatives) + ")"
        return "unexplained"

    @property
    def text(self) -> list[str]:
        """English sentences, one per id (plus details)."""
        if self.status == "proven":
            out = [_english(i) for i in self.ids]
        elif self.status == "ambiguous":
            out = ["ambiguous: " + " or ".join(
                "(" + "; ".join(_english(i) for i in a) + ")" for a in self.alternatives)]
        else:
            out = ["unexplained: no known mistake reproduces the output"]
        return out + self.details

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"diagnosis": self.status, "causeIds": list(self.ids),
                               "causes": self.text}
        if self.alternatives:
            out["alternatives"] = [list(a) for a in self.alternatives]
        return out


def _english(cause: str) -> str:
    return CAUSES.get(cause) or FACTS.get(cause) or cause


def fact(cause: str, detail: str = "") -> Diagnosis:
    """A finding established without recomputation (see :data:`FACTS`)."""
    return Diagnosis("proven", [cause], details=[detail] if detail else [])


def classify(d: Diagnosis) -> str:
    """The class a failure is counted under."""
    return d.label


# ---------------------------------------------------------------------------
# Recomputation
# ---------------------------------------------------------------------------

Num = int | float


def _key(x: Num) -> tuple[str, Any]:
    return ("i", x) if isinstance(x, int) else ("f", x.hex() if math.isfinite(x) else repr(x))


_CACHE: dict[tuple[Any, ...], float | None] = {}
_CACHE_MAX = 200_000


def _eval(I: Num, D: Num, r: Num, s: Num, staircase: bool, fmt: Format,
          order: str) -> float | None:
    """The schedule in ``order`` (bits of the fast path), None when the
    inputs are outside its domain (invalid decay_steps, step beyond int64)."""
    key = (_key(I), _key(D), _key(r), _key(s), staircase, fmt.name, order)
    if key in _CACHE:
        return _CACHE[key]
    out: float | None
    try:
        if isinstance(s, int) and not _INT64[0] <= s <= _INT64[1]:
            out = None
        else:
            steps = np.array([s], dtype=np.int64 if isinstance(s, int) else np.float64)
            out = float(fast_evaluate(I, D, r, steps, staircase=staircase, dtype=fmt.name,
                                      order=order).astype(np.float64)[0])
    except (ArithmeticError, ValueError, TypeError, OverflowError):
        out = None
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def _eval_many(requests: set[tuple[Num, Num, Num, Num, bool, Format, str]]) -> None:
    """Fill :func:`_eval`'s cache for many requests at once: the requests that
    differ only in the step are evaluated in one call of the fast path (its
    bits do not depend on the other elements of the array).  A call that
    raises fills nothing: those requests are then made one by one."""
    todo: dict[tuple[Any, ...], tuple[tuple[Num, Num, Num, bool, Format, str],
                                       dict[tuple[str, Any], Num]]] = {}
    for I, D, r, s, st, fmt, order in requests:
        key = (_key(I), _key(D), _key(r), _key(s), st, fmt.name, order)
        if key in _CACHE or isinstance(s, int) and not _INT64[0] <= s <= _INT64[1]:
            continue
        head = (*key[:3], st, fmt.name, order, isinstance(s, int))
        todo.setdefault(head, ((I, D, r, st, fmt, order), {}))[1][key[3]] = s
    for head, ((I, D, r, st, fmt, order), steps) in todo.items():
        if len(steps) < 2:
            continue  # as cheap one by one
        keys = list(steps)
        arr = np.array([steps[k] for k in keys], dtype=np.int64 if head[-1] else np.float64)
        try:
            got = fast_evaluate(I, D, r, arr, staircase=st, dtype=fmt.name,
                                order=order).astype(np.float64)
        except (ArithmeticError, ValueError, TypeError, OverflowError):
            continue
        if len(_CACHE) + len(keys) > _CACHE_MAX:
            _CACHE.clear()
        for k, v in zip(keys, got.tolist(), strict=True):
            _CACHE[(*head[:3], k, *head[3:6])] = float(v)


def _cast(x: Num, fmt: Format) -> float:
    return round_node(to_exact(x), fmt)


def _mul(a: float, b: float, fmt: Format) -> float:
    """``a * b`` correctly rounded to ``fmt`` (a and b values of ``fmt``)."""
    if math.isfinite(a) and math.isfinite(b) and a != 0 and b != 0:
        na, da = a.as_integer_ratio()
        nb, db = b.as_integer_ratio()
        return round_ratio(na * nb, da * db, fmt)  # the exact product, rounded once
    return a * b  # zeros, infinities and NaN: exact in float64


def _to(x: float, fmt: Format) -> float:
    """``x`` (a value of some format) rounded to ``fmt``."""
    if not math.isfinite(x) or x == 0 or is_representable(x, fmt):
        return x
    return round_ratio(*x.as_integer_ratio(), fmt)


def _neighbours(x: float, fmt: Format) -> list[float]:
    if not math.isfinite(x):
        return []
    return [next_down(x, fmt), next_up(x, fmt)]


@dataclass(frozen=True)
class _Inputs:
    I: Num
    D: Num
    r: Num
    s: Num
    staircase: bool


def _values(x: _Inputs, work: Format, order: str, fmt: Format) -> Iterator[tuple[float, bool]]:
    """The schedule on inputs ``x`` computed in ``order`` and format ``work``,
    rounded to ``fmt``: ``(value, pow_off)``, first the correctly rounded
    pipeline, then (keras order) with pow one ulp off."""
    if order == "keras":
        w = _eval(1, x.D, x.r, x.s, x.staircase, work, "keras")
        if w is None:
            return
        Ic = _cast(x.I, work)
        yield _to(_mul(Ic, w, work), fmt), False
        for w2 in _neighbours(w, work):
            yield _to(_mul(Ic, w2, work), fmt), True
    else:
        y = _eval(x.I, x.D, x.r, x.s, x.staircase, work, "exact")
        if y is None:
            return
        yield _to(y, fmt), False  # one rounding: no separate pow to be off


def _requests(x: _Inputs, work: Format, order: str
              ) -> tuple[Num, Num, Num, Num, bool, Format, str]:
    """The :func:`_eval` call :func:`_values` makes."""
    if order == "keras":
        return (1, x.D, x.r, x.s, x.staircase, work, "keras")
    return (x.I, x.D, x.r, x.s, x.staircase, work, "exact")


def _through_f32(v: Num, ftz: bool) -> float:
    y = _cast(v, _F32)
    if ftz and y != 0 and abs(y) < _F32.min_normal:
        y = math.copysign(0.0, y)
    return y


def _exponent(x: _Inputs, fmt: Format, order: str, *, reciprocal: bool = False) -> Any:
    """The exponent ``s / D`` (unfloored) as the order computes it (keras:
    each operation rounded to ``fmt``); a Fraction, a float, or None."""
    try:
        if order == "keras":
            ops = RoundedOps(fmt)
            s, D = ops.round(to_exact(x.s)), ops.round(to_exact(x.D))
            if reciprocal:
                return ops.mul(s, ops.div(Fraction(1), D))
            return ops.div(s, D)
        ex = ExactOps()
        return ex.div(to_exact(x.s), to_exact(x.D))
    except (ArithmeticError, ValueError, TypeError):
        return None


def _as_step(p: Any) -> Num | None:
    """An exponent as a step value (int when integral and within int64)."""
    if isinstance(p, Fraction):
        if p.denominator == 1:
            n = int(p)
            return n if _INT64[0] <= n <= _INT64[1] else None
        f = float(p)
        return f if Fraction(f) == p else None
    if isinstance(p, float):
        return p
    return None


def _round_half_even(p: Any, trunc: bool) -> int | None:
    if not isinstance(p, Fraction):
        return None
    if trunc:
        return math.trunc(p)
    return round(p)


def _wrap32(n: int) -> int:
    w = n & 0xFFFFFFFF
    return w - 2**32 if w >= 2**31 else w


@dataclass
class _Candidate:
    cause: str
    detail: str
    inputs: _Inputs | None = None  # recomputed in both orders
    work: Format | None = None
    orders: tuple[str, ...] = ("keras", "exact")
    direct: list[float] = field(default_factory=list)  # values computed by hand
    also: tuple[str, ...] = ()  # further causes the same recomputation makes


def _candidates(x: _Inputs, fmt: Format, base_values: dict[str, float]) -> Iterator[_Candidate]:
    """Every single mistake applicable to ``x`` (see :data:`CAUSES`)."""
    I, D, r, s, st = x.I, x.D, x.r, x.s, x.staircase

    def with_(**kw: Any) -> _Inputs:
        d: dict[str, Any] = {"I": I, "D": D, "r": r, "s": s, "staircase": st}
        d.update(kw)
        return _Inputs(**d)

    if st:
        yield _Candidate("staircase-ignored", "", with_(staircase=False))
        k = _exact_floor(s, D)
        if k is not None:  # s // D in integers, then the keras order on that exponent
            yield _Candidate("integer-floor-division", "", _Inputs(I, 1, r, k, False),
                             orders=("keras",))
    if D != 1:
        yield _Candidate("decay-steps-ignored", "", with_(D=1))
        if st:  # both dropped (a function that keeps only the rate): seen at fractional steps
            yield _Candidate("decay-steps-ignored", "", with_(D=1, staircase=False),
                             also=("staircase-ignored",))
    if isinstance(s, int) or math.isfinite(s):
        for d in (1, -1):
            t = s + d
            if not isinstance(t, int) or _INT64[0] <= t <= _INT64[1]:
                yield _Candidate("step-shifted", f"step {d:+d}", with_(s=t))
    if fmt.name == "float64":
        yield _Candidate("step-through-float32", "", with_(s=_through_f32(s, False)))
        for ftz in (False, True):
            tag = " (float32 subnormals flushed)" if ftz else ""
            r32, D32 = _through_f32(r, ftz), _through_f32(D, ftz)
            if _key(r32) != _key(float(r)):  # the rate must change for the cause to apply
                yield _Candidate("rate-through-float32", "decay_rate" + tag, with_(r=r32))
                yield _Candidate("rate-through-float32", "decay_rate and decay_steps" + tag,
                                 with_(r=r32, D=D32))
            if _key(D32) != _key(float(D)):
                yield _Candidate("decay-steps-through-float32", tag.strip(), with_(D=D32))
    for name in ("float64", "float32", "float16", "bfloat16"):
        other = get_format(name)
        if other == fmt or name == "float16" and fmt.name == "bfloat16" or (
                name == "bfloat16" and fmt.name == "float16"):
            continue
        narrower = other.precision < fmt.precision
        yield _Candidate("computed-in-narrower-format" if narrower else
                         "computed-in-wider-format", f"computed in {name}", x, work=other)
    if isinstance(D, float) and math.isfinite(D) and not D.is_integer():
        if abs(D) >= 1:
            yield _Candidate("decay-steps-truncated", "truncated", with_(D=math.trunc(D)))
        else:  # truncated to 0: s / 0 is an infinity (NaN for s = 0), then pow
            p0 = math.nan if (isinstance(s, float) and math.isnan(s)) or s == 0 else (
                math.inf if s > 0 else -math.inf)
            yield _Candidate("decay-steps-truncated", "truncated to 0",
                             _Inputs(I, 1, r, p0, st))
    if isinstance(D, int) and not -2**31 <= D < 2**31 and _wrap32(D) > 0:
        yield _Candidate("decay-steps-truncated", "wrapped to int32", with_(D=_wrap32(D)))
    if isinstance(s, int) and not -2**31 <= s < 2**31:
        yield _Candidate("step-wrapped-int32", f"step {_wrap32(s)}", with_(s=_wrap32(s)))
    if (isinstance(s, int) and s < 0) or (isinstance(s, float) and s < 0):
        yield _Candidate("negative-step-clamped", "", with_(s=0))
    if r == 0:
        yield _Candidate("zero-rate-constant", "", with_(r=1.0))
    for name, v in (("initial_learning_rate", I), ("decay_rate", r), ("step", s)):
        if isinstance(v, float) and v == 0 and math.copysign(1.0, v) < 0:
            kw = {"I": 0.0} if name == "initial_learning_rate" else (
                {"r": 0.0} if name == "decay_rate" else {"s": 0.0})
            yield _Candidate("negative-zero-lost", name, with_(**kw))
    # Exponent mistakes: the exponent recomputed, then pow with D = 1.
    for order in ("keras", "exact"):
        p = _exponent(x, fmt, order)
        if st:
            for trunc, cause in ((False, "floor-as-round"), (True, "floor-as-trunc")):
                q = _round_half_even(p, trunc)
                if q is not None and _INT64[0] <= q <= _INT64[1]:
                    yield _Candidate(cause, "", _Inputs(I, 1, r, q, False), orders=(order,))
        if order == "keras":
            pr = _exponent(x, fmt, "keras", reciprocal=True)
            if st and isinstance(pr, Fraction):
                pr = Fraction(math.floor(pr))
            step = _as_step(pr)
            if step is not None:
                yield _Candidate("reciprocal-division", "", _Inputs(I, 1, r, step, False),
                                 orders=("keras",))
        # chained product: the rate multiplied in n times.
        n = p
        if isinstance(n, Fraction) and st:
            n = Fraction(math.floor(n))
        if isinstance(n, Fraction) and n.denominator == 1 and 0 <= n <= CHAIN_MAX:
            yield _Candidate("chained-product", f"{int(n)} products",
                             direct=_chained(I, r, int(n), fmt))
    # integer arithmetic: an integer initial rate keeps the computation integral.
    if isinstance(I, int):
        p = _exponent(x, fmt, "exact")
        if isinstance(p, Fraction):
            if st:
                p = Fraction(math.floor(p))
            try:
                v = float(I * math.trunc(r) ** float(p))
                yield _Candidate("integer-arithmetic", "", direct=[_to(float(math.trunc(v)),
                                                                       fmt)])
            except (ArithmeticError, ValueError, OverflowError):
                pass
    # pow(NaN, 0) / pow(1, NaN) = NaN
    rc = _cast(r, fmt)
    pk = _exponent(x, fmt, "keras")
    if isinstance(pk, Fraction) and st:
        pk = Fraction(math.floor(pk))
    p_nan = isinstance(pk, float) and math.isnan(pk)
    if (math.isnan(rc) and pk == 0) or (rc == 1 and p_nan):
        yield _Candidate("pow-nan-propagates", "", direct=[math.nan])
    # a subnormal result flushed to zero
    for v in base_values.values():
        if v != 0 and math.isfinite(v) and abs(v) < fmt.min_normal:
            yield _Candidate("subnormal-flushed", "", direct=[math.copysign(0.0, v)])


def _exact_floor(s: Num, D: Num) -> int | None:
    """``floor(s / D)`` of the exact values, when finite and within int64."""
    if isinstance(s, float) and not math.isfinite(s) or isinstance(D, float) and not (
            math.isfinite(D)) or D == 0:
        return None
    k = math.floor(Fraction(s) / Fraction(D))
    return k if _INT64[0] <= k <= _INT64[1] else None


def _chained(I: Num, r: Num, n: int, fmt: Format) -> list[float]:
    """``I * r * r * ... * r`` (n products), each product rounded in the
    format.  (A float64 chain rounded once to a narrower format is mostly
    indistinguishable from the exact order, so it is not a candidate.)"""
    out = []
    for work in (fmt,):
        Ic, rc = _cast(I, work), _cast(r, work)
        arr = np.full(n + 1, rc, dtype=work.dtype)
        arr[0] = Ic
        with np.errstate(all="ignore"):
            y = float(np.multiply.accumulate(arr)[-1].astype(np.float64))
        out.append(_to(y, fmt))
    return out


#: One recomputed value: the ids of the mistakes made, a detail, the value.
_Row = tuple[tuple[str, ...], str, float]


def _test_inputs(test: dict[str, Any], group: dict[str, Any], fmt: Format
                 ) -> tuple[_Inputs, dict[str, float]]:
    x = _Inputs(decode_number(group["initialLearningRate"]), decode_number(group["decaySteps"]),
                decode_number(group["decayRate"]), decode_number(test["step"]),
                group["staircase"] is True)
    return x, {o: decode_result(test[o], fmt, o) for o in ("exact", "keras")}


def _plan_rows(x: _Inputs, fmt: Format, profile: str, cands: list[_Candidate]
               ) -> Iterator[tuple[tuple[str, ...], str, _Inputs | None, Format, str,
                                   bool, list[float]]]:
    """What :func:`_rows` recomputes: ``(ids, detail, inputs, work, order,
    pow_off_only, direct values)``, in the order the explanations are tried."""
    other = "keras" if profile == "exact" else "exact"
    # The other order, and each order with pow one ulp off.
    yield (ORDER_CAUSE[other],), "", x, fmt, other, False, []
    yield (), "", x, fmt, profile, True, []
    for cand in cands:
        ids = (cand.cause, *cand.also)
        if cand.direct:
            yield ids, cand.detail, None, fmt, profile, False, cand.direct
        if cand.inputs is None:
            continue
        for order in cand.orders:
            prefix = () if order == profile else (ORDER_CAUSE[order],)
            yield prefix + ids, cand.detail, cand.inputs, cand.work or fmt, order, False, []


def _rows(x: _Inputs, fmt: Format, profile: str, cands: list[_Candidate]) -> list[_Row]:
    """Every value an explanation recomputes for inputs ``x`` (none depends
    on the observed output): ``(ids, detail, value)``."""
    out: list[_Row] = []
    for ids, detail, inputs, work, order, off_only, direct in _plan_rows(x, fmt, profile,
                                                                         cands):
        out += [(ids, detail, v) for v in direct]
        if inputs is None:
            continue
        for v, pow_off in _values(inputs, work, order, fmt):
            if pow_off or not off_only:
                out.append((ids + ((POW_CAUSE,) if pow_off else ()), detail, v))
    return out


#: Recomputed values per test and profile (keyed by the identity of the test
#: and group objects, which each entry keeps alive): the diagnoses of several
#: implementations' outputs of one test share them.
_ROWS: dict[tuple[int, int, str], tuple[dict[str, Any], dict[str, Any], list[_Row]]] = {}
_ROWS_MAX = 50_000


def _rows_of(test: dict[str, Any], group: dict[str, Any], fmt: Format, profile: str
             ) -> list[_Row]:
    key = (id(test), id(group), profile)
    hit = _ROWS.get(key)
    if hit is not None and hit[0] is test and hit[1] is group:
        return hit[2]
    x, expected = _test_inputs(test, group, fmt)
    rows = _rows(x, fmt, profile, list(_candidates(x, fmt, expected)))
    if len(_ROWS) >= _ROWS_MAX:
        _ROWS.clear()
    _ROWS[key] = (test, group, rows)
    return rows


def prepare(tests: list[dict[str, Any]], group: dict[str, Any], fmt: Format,
            profile: str) -> None:
    """Recompute at once, with one call of the fast path per schedule and
    kind of step, what the diagnoses of ``tests`` (tests of ``group``) under
    ``profile`` will compare with: each diagnosis then only compares bits.
    The diagnoses are the same with or without this."""
    todo = []
    requests: set[tuple[Num, Num, Num, Num, bool, Format, str]] = set()
    for test in tests:
        key = (id(test), id(group), profile)
        hit = _ROWS.get(key)
        if hit is not None and hit[0] is test and hit[1] is group:
            continue
        x, expected = _test_inputs(test, group, fmt)
        cands = list(_candidates(x, fmt, expected))
        for *_, inputs, work, order, _off, _direct in _plan_rows(x, fmt, profile, cands):
            if inputs is not None:
                requests.add(_requests(inputs, work, order))
        todo.append((test, key, x, cands))
    _eval_many(requests)
    if len(_ROWS) + len(todo) > _ROWS_MAX:
        _ROWS.clear()
    for test, key, x, cands in todo:
        _ROWS[key] = (test, group, _rows(x, fmt, profile, cands))


def diagnose(test: dict[str, Any], group: dict[str, Any], fmt: Format, profile: str,
             observed: float) -> Diagnosis:
    """The cause of a failing output (see the module docstring)."""
    if not math.isnan(observed) and not is_representable(observed, fmt):
        return fact("output-not-in-format", f"got {observed!r}, not a {fmt.name} value")
    found: dict[tuple[str, ...], list[str]] = {}
    for ids, detail, v in _rows_of(test, group, fmt, profile):
        if same_bits(v, observed, fmt):
            found.setdefault(ids, []).append(detail)
    expected = {o: decode_result(test[o], fmt, o) for o in ("exact", "keras")}
    found.pop((), None)
    if not found:
        d = ulps_between(expected[profile], observed, fmt)
        k = ulps_between(expected["keras"], observed, fmt)
        return Diagnosis("unexplained", details=[
            f"{_fmt(d)} ulp from the expected value, {_fmt(k)} from the keras order"])
    best = min(len(set(k)) for k in found)
    simplest = sorted({tuple(_ordered(k)) for k in found if len(set(k)) == best})
    details = sorted({d for k in found if len(set(k)) == best for d in found[k] if d})
    if len(simplest) == 1:
        return Diagnosis("proven", list(simplest[0]), details=details)
    return Diagnosis("ambiguous", alternatives=[list(a) for a in simplest])


_ORDER = {c: i for i, c in enumerate([*CAUSES, *FACTS])}


def _ordered(ids: tuple[str, ...]) -> list[str]:
    """Ids without repeats, the order first, pow last (vocabulary order)."""
    return sorted(set(ids), key=lambda c: (c == POW_CAUSE, _ORDER.get(c, len(_ORDER))))


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"
