"""Diagnosis of failed conformance tests: which known mistake explains them.

A cause is reported only when it is *proven*: recomputing the schedule with
that mistake reproduces every output the implementation gave for the
schedule, the passes as well as the failures (:func:`diagnose_outputs`; the
runner gives it every group of a file with the same parameters).  One
output it does not reproduce rejects it.  Every candidate is a mistake from
the vocabulary :data:`CAUSES` (``spec/conformance.md`` sections 7 and 9),
made the same way at every step, applied to the order the profile expects
or to the other order (``keras-order`` / ``exact-order`` joins the
explanation), with ``pow`` one ulp off where an output needs it
(``pow-not-correctly-rounded`` joins it).  The explanations that reproduce
every output with the fewest ids are kept, a mistake confined to one input
preferred to a broad one it is finer than (:data:`FINER`): one left means a
proven cause, several mean "ambiguous (A or B)", none means "unexplained",
shown with the pattern of the outputs and the explanations of the failing
output alone ("consistent with", never proven).  A schedule with a single
output proves no cause.  Mistakes outside the vocabulary (:data:`RIVALS`)
are recomputed too: one that reproduces every output as simply as a cause
makes the diagnosis ambiguous; they are never proven.  A few findings
need no recomputation (facts): an output that is not a value of the
format, an error on a valid input, an invalid configuration accepted.

Bits, ulps and neighbours are those of :mod:`expdecay.floats`.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..fast import evaluate_array as fast_evaluate
from ..floats import (
    Format,
    get_format,
    is_representable,
    neighbours,
    next_down,
    next_up,
    round_ratio,
    same_bits,
    to_bits,
    ulp_distance,
)
from ..inputs import to_exact
from ..oracle import ExactOps, RoundedOps, round_node
from ..orders import Order, check_order
from .vectors import decode_number, decode_result

__all__ = ["CAUSES", "FACTS", "FINER", "RIVALS", "Diagnosis", "diagnose", "diagnose_outputs",
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
    "input-through-narrower-format": "one input (initial_learning_rate, decay_rate, "
                                     "decay_steps or the step) rounded through a narrower "
                                     "format before the pipeline",
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

#: Mistakes outside the cause vocabulary, recomputed only to block a proof:
#: when one of them reproduces every output of a schedule as simply as a
#: cause does, the outputs cannot tell the two apart and the diagnosis is
#: ambiguous; alone, it leaves the failure unexplained.  They are never
#: proven (no cause id): the vocabulary does not grow by guesses.
RIVALS: dict[str, str] = {
    "product-toward-zero": "(not a cause id) the final product rounded toward zero",
    "division-toward-zero": "(not a cause id) s / D rounded toward zero",
    "staircase-ceil": "(not a cause id) the staircase exponent rounded up",
    "negative-step-abs": "(not a cause id) a negative step taken as its absolute value",
    "rate-clamped-unit": "(not a cause id) decay_rate clamped to [0, 1]",
    "nan-as-zero": "(not a cause id) a NaN result returned as 0",
    "overflow-saturated": "(not a cause id) an infinite result saturated to the largest "
                          "finite value",
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


@dataclass
class Diagnosis:
    """The verdict on a failure's cause.

    ``status`` is ``proven`` (``ids`` is the one simplest explanation of
    every output of the schedule, or a fact), ``ambiguous``
    (``alternatives`` lists the explanations that reproduce them equally
    simply) or ``unexplained`` (``details`` shows the pattern;
    ``consistent`` lists the explanations of this output alone, which the
    schedule's other outputs refute: never proven).
    """

    status: str
    ids: list[str] = field(default_factory=list)
    alternatives: list[list[str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    consistent: list[list[str]] = field(default_factory=list)

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
            out = ["unexplained: no known mistake reproduces every output of the schedule"]
        return out + self.details

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"diagnosis": self.status, "causeIds": list(self.ids),
                               "causes": self.text}
        if self.alternatives:
            out["alternatives"] = [list(a) for a in self.alternatives]
        if self.consistent:
            out["consistentWith"] = [list(a) for a in self.consistent]
        return out


def _english(cause: str) -> str:
    return CAUSES.get(cause) or FACTS.get(cause) or RIVALS.get(cause) or cause


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
          order: Order) -> float | None:
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


def _eval_many(requests: set[tuple[Num, Num, Num, Num, bool, Format, Order]]) -> None:
    """Fill :func:`_eval`'s cache for many requests at once: the requests that
    differ only in the step are evaluated in one call of the fast path (its
    bits do not depend on the other elements of the array).  A call that
    raises fills nothing: those requests are then made one by one."""
    todo: dict[tuple[Any, ...], tuple[tuple[Num, Num, Num, bool, Format, Order],
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


@dataclass(frozen=True)
class _Inputs:
    I: Num
    D: Num
    r: Num
    s: Num
    staircase: bool


def _values(x: _Inputs, work: Format, order: Order, fmt: Format) -> Iterator[tuple[float, bool]]:
    """The schedule on inputs ``x`` computed in ``order`` and format ``work``,
    rounded to ``fmt``: ``(value, pow_off)``, first the correctly rounded
    pipeline, then (keras order) with pow one ulp off."""
    if order == "keras":
        w = _eval(1, x.D, x.r, x.s, x.staircase, work, "keras")
        if w is None:
            return
        Ic = _cast(x.I, work)
        yield _to(_mul(Ic, w, work), fmt), False
        for w2 in neighbours(w, work):
            yield _to(_mul(Ic, w2, work), fmt), True
    else:
        y = _eval(x.I, x.D, x.r, x.s, x.staircase, work, "exact")
        if y is None:
            return
        yield _to(y, fmt), False  # one rounding: no separate pow to be off


def _requests(x: _Inputs, work: Format, order: Order
              ) -> tuple[Num, Num, Num, Num, bool, Format, Order]:
    """The :func:`_eval` call :func:`_values` makes."""
    if order == "keras":
        return (1, x.D, x.r, x.s, x.staircase, work, "keras")
    return (x.I, x.D, x.r, x.s, x.staircase, work, "exact")


def _through(v: Num, fmt: Format) -> float | None:
    """``v`` rounded to ``fmt``, None when that changes nothing (or ``v`` is
    not finite)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    y = _cast(v, fmt)
    if math.isfinite(y) and Fraction(y) == Fraction(v):
        return None
    return y


def _through_f32(v: Num, ftz: bool) -> float:
    y = _cast(v, _F32)
    if ftz and y != 0 and abs(y) < _F32.min_normal:
        y = math.copysign(0.0, y)
    return y


def _exponent(x: _Inputs, fmt: Format, order: Order, *, reciprocal: bool = False) -> Any:
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
    orders: tuple[Order, ...] = ("keras", "exact")
    direct: Callable[[], list[float]] | None = None  # values computed by hand, on demand
    also: tuple[str, ...] = ()  # further causes the same recomputation makes
    #: What makes this mistake the same one at another step (``detail``
    #: unless the detail depends on the step).
    variant: str | None = None


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
    # One input rounded through a narrower format: less precision or less
    # range (float32 in float64 has its own ids above, but for the initial
    # rate).
    for name in ("float32", "float16", "bfloat16"):
        nf = get_format(name)
        if nf == fmt or nf.precision > fmt.precision and nf.emax >= fmt.emax:
            continue
        for label, field_ in (("initial_learning_rate", "I"), ("decay_rate", "r"),
                              ("decay_steps", "D"), ("step", "s")):
            if fmt.name == "float64" and name == "float32" and field_ != "I":
                continue
            v = getattr(x, field_)
            v2 = _through(v, nf)
            if v2 is not None:
                yield _Candidate("input-through-narrower-format", f"{label} through {name}",
                                 with_(**{field_: v2}))
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
        yield _Candidate("step-wrapped-int32", f"step {_wrap32(s)}", with_(s=_wrap32(s)),
                         variant="")
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
            yield _Candidate("chained-product", f"{int(n)} products", variant="",
                             direct=functools.partial(_chained, I, r, int(n), fmt))
    # integer arithmetic: an integer initial rate keeps the computation integral.
    if isinstance(I, int):
        p = _exponent(x, fmt, "exact")
        if isinstance(p, Fraction):
            if st:
                p = Fraction(math.floor(p))
            try:
                v = float(I * math.trunc(r) ** float(p))
                yield _Candidate("integer-arithmetic", "",
                                 direct=_const([_to(float(math.trunc(v)), fmt)]))
            except (ArithmeticError, ValueError, OverflowError):
                pass
    # pow(NaN, 0) / pow(1, NaN) = NaN
    rc = _cast(r, fmt)
    pk = _exponent(x, fmt, "keras")
    if isinstance(pk, Fraction) and st:
        pk = Fraction(math.floor(pk))
    p_nan = isinstance(pk, float) and math.isnan(pk)
    if (math.isnan(rc) and pk == 0) or (rc == 1 and p_nan):
        yield _Candidate("pow-nan-propagates", "", direct=_const([math.nan]))
    yield from _rivals(x, fmt, base_values)
    # a subnormal result flushed to zero
    for v in base_values.values():
        if v != 0 and math.isfinite(v) and abs(v) < fmt.min_normal:
            yield _Candidate("subnormal-flushed", "", direct=_const([math.copysign(0.0, v)]))


def _toward_zero(q: Fraction, fmt: Format) -> float:
    """``q`` rounded toward zero to ``fmt`` (the largest finite value
    rather than an infinity)."""
    y = round_ratio(q.numerator, q.denominator, fmt)
    if math.isinf(y):
        return math.copysign(fmt.max_finite, y)
    if y != 0 and abs(Fraction(y)) > abs(q):
        y = next_down(y, fmt) if y > 0 else next_up(y, fmt)
    return y


def _product_toward_zero(I: Num, D: Num, r: Num, s: Num, st: bool, fmt: Format
                         ) -> list[float]:
    w = _eval(1, D, r, s, st, fmt, "keras")
    if w is None:
        return []
    Ic = _cast(I, fmt)
    if not (math.isfinite(w) and math.isfinite(Ic)) or w == 0 or Ic == 0:
        return [_mul(Ic, w, fmt)]  # exact: no rounding to direct
    return [_toward_zero(Fraction(Ic) * Fraction(w), fmt)]


def _rivals(x: _Inputs, fmt: Format, base_values: dict[str, float]) -> Iterator[_Candidate]:
    """The mistakes of :data:`RIVALS` applicable to ``x``."""
    I, D, r, s, st = x.I, x.D, x.r, x.s, x.staircase
    yield _Candidate("product-toward-zero", "", orders=("keras",), direct=functools.partial(
        _product_toward_zero, I, D, r, s, st, fmt))
    try:
        sc, Dc = _cast(s, fmt), _cast(D, fmt)
        if math.isfinite(sc) and math.isfinite(Dc) and sc != 0 and Dc != 0:
            p = _toward_zero(Fraction(sc) / Fraction(Dc), fmt)
            if st:
                p = float(math.floor(p))
            step = _as_step(Fraction(p))
            if step is not None:
                yield _Candidate("division-toward-zero", "", _Inputs(I, 1, r, step, False),
                                 orders=("keras",))
    except (ArithmeticError, ValueError, TypeError, OverflowError):
        pass
    if st:
        for order in ("keras", "exact"):
            q = _exponent(x, fmt, order)
            if isinstance(q, Fraction):
                c = math.ceil(q)
                if _INT64[0] <= c <= _INT64[1]:
                    yield _Candidate("staircase-ceil", "", _Inputs(I, 1, r, c, False),
                                     orders=(order,))
    if not (isinstance(s, float) and math.isnan(s)) and s < 0:
        t = -s
        if not isinstance(t, int) or t <= _INT64[1]:
            yield _Candidate("negative-step-abs", "", _Inputs(I, D, r, t, st))
    if not (isinstance(r, float) and math.isnan(r)) and not 0 <= r <= 1:
        yield _Candidate("rate-clamped-unit", "", _Inputs(I, D, 0.0 if r < 0 else 1.0, s, st))
    if any(math.isnan(v) for v in base_values.values()):
        yield _Candidate("nan-as-zero", "", direct=_const([0.0]))
    for v in base_values.values():
        if math.isinf(v):
            yield _Candidate("overflow-saturated", "",
                             direct=_const([math.copysign(fmt.max_finite, v)]))
            break


def _const(values: list[float]) -> Callable[[], list[float]]:
    return lambda: values


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


def _test_inputs(test: dict[str, Any], group: dict[str, Any], fmt: Format
                 ) -> tuple[_Inputs, dict[str, float]]:
    x = _Inputs(decode_number(group["initialLearningRate"]), decode_number(group["decaySteps"]),
                decode_number(group["decayRate"]), decode_number(test["step"]),
                group["staircase"] is True)
    return x, {o: decode_result(test[o], fmt, o) for o in ("exact", "keras")}


#: An explanation of a schedule's outputs: the order it computes in, the ids
#: of the mistake it makes (none: the order alone) and the variant of that
#: mistake (``"step +1"``, ``"computed in float32"``...), the same at every
#: step.  Whether ``pow`` is one ulp off is decided output by output.
_Key = tuple[str, tuple[str, ...], str]
#: An output's bits (every NaN alike), comparable across recomputations.
_VKey = int | str


def _vkey(v: float, fmt: Format) -> _VKey:
    return "nan" if math.isnan(v) else to_bits(v, fmt)


@dataclass
class _Entry:
    """One recomputation an explanation makes at one test."""

    detail: str
    order: Order
    inputs: _Inputs | None
    work: Format
    direct: Callable[[], list[float]] | None


class ExplanationTable:
    """What every explanation predicts for one test under one profile.

    An explanation whose mistake applies to the test's inputs
    (:func:`_candidates`) has its own recomputations; one whose mistake does
    not apply predicts what its order alone gives (a negative step clamped
    to 0 changes nothing at a positive step).  Values are recomputed on
    demand and kept as bits."""

    def __init__(self, test: dict[str, Any], group: dict[str, Any], fmt: Format,
                 profile: Order) -> None:
        self.test, self.group, self.fmt = test, group, fmt
        self.x, self.expected = _test_inputs(test, group, fmt)
        first = check_order(profile, "profile")
        other: Order = "keras" if first == "exact" else "exact"
        self.entries: dict[_Key, list[_Entry]] = {}
        for order in (first, other):
            self._add((order, (), ""), _Entry("", order, self.x, fmt, None))
        for cand in _candidates(self.x, fmt, self.expected):
            mistake = (cand.cause, *cand.also)
            variant = cand.detail if cand.variant is None else cand.variant
            if cand.direct is not None:  # values of no particular order
                for order in (o for o in (profile, other) if o in cand.orders):
                    self._add((order, mistake, variant),
                              _Entry(cand.detail, order, None, fmt, cand.direct))
            if cand.inputs is not None:
                for order in cand.orders:
                    self._add((order, mistake, variant),
                              _Entry(cand.detail, order, cand.inputs, cand.work or fmt, None))
        #: key -> (bits with pow correctly rounded, bits only with pow one ulp off)
        self.values: dict[_Key, tuple[frozenset[_VKey], frozenset[_VKey]]] = {}

    def _add(self, key: _Key, entry: _Entry) -> None:
        self.entries.setdefault(key, []).append(entry)

    def acts(self, key: _Key) -> bool:
        """True when the mistake of ``key`` applies to this test."""
        return key in self.entries and bool(key[1])

    def resolve(self, key: _Key) -> _Key:
        return key if key in self.entries else (key[0], (), "")

    def requests(self, key: _Key) -> Iterator[tuple[Num, Num, Num, Num, bool, Format, Order]]:
        """The fast-path calls :meth:`level` will make for ``key``."""
        key = self.resolve(key)
        if key not in self.values:
            for e in self.entries[key]:
                if e.inputs is not None:
                    yield _requests(e.inputs, e.work, e.order)

    def level(self, key: _Key, v: _VKey) -> int | None:
        """0 when explanation ``key`` reproduces the bits ``v`` with ``pow``
        correctly rounded, 1 when only with ``pow`` one ulp off, None when
        it does not reproduce them."""
        key = self.resolve(key)
        hit = self.values.get(key)
        if hit is None:
            exact: set[_VKey] = set()
            off: set[_VKey] = set()
            for e in self.entries[key]:
                if e.direct is not None:
                    exact.update(_vkey(y, self.fmt) for y in e.direct())
                    continue
                assert e.inputs is not None
                for y, pow_off in _values(e.inputs, e.work, e.order, self.fmt):
                    (off if pow_off else exact).add(_vkey(y, self.fmt))
            hit = self.values[key] = (frozenset(exact), frozenset(off - exact))
        return 0 if v in hit[0] else 1 if v in hit[1] else None

    def details(self, key: _Key) -> list[str]:
        return [e.detail for e in self.entries.get(key, []) if e.detail]


#: The tables of the tests diagnosed in this process, keyed by the identity
#: of the test and group objects (which each table keeps alive): the
#: diagnoses of several implementations' outputs share them.
_TABLES: dict[tuple[int, int, str], ExplanationTable] = {}
_TABLES_MAX = 50_000


def clear_caches() -> None:
    """Forget every recomputed value and explanation table (the diagnoses
    are the same afterwards, only slower to make)."""
    _CACHE.clear()
    _TABLES.clear()


def explanation_table(test: dict[str, Any], group: dict[str, Any], fmt: Format,
                      profile: Order) -> ExplanationTable:
    key = (id(test), id(group), profile)
    hit = _TABLES.get(key)
    if hit is not None and hit.test is test and hit.group is group:
        return hit
    if len(_TABLES) >= _TABLES_MAX:
        _TABLES.clear()
    t = _TABLES[key] = ExplanationTable(test, group, fmt, profile)
    return t


def fill_tables(pairs: Iterator[tuple[ExplanationTable, _Key]]) -> None:
    """Recompute at once, one fast-path call per schedule, order and kind of
    step, what :meth:`ExplanationTable.level` will need for ``pairs``.  The results
    are the same without this, only slower."""
    requests: set[tuple[Num, Num, Num, Num, bool, Format, Order]] = set()
    for table, key in pairs:
        requests.update(table.requests(key))
    if len(requests) > 1:
        _eval_many(requests)


def _ids(key: _Key, profile: Order, acts: bool, pow_off: bool) -> tuple[str, ...]:
    """The cause ids of explanation ``key`` at one output."""
    prefix = (ORDER_CAUSE[key[0]],) if key[0] != profile else ()
    return tuple(_ordered(prefix + (key[1] if acts else ()) + ((POW_CAUSE,) if pow_off else ())))


#: A mistake confined to one input, finer than the broad mistake it is listed
#: under: when the outputs cannot tell them apart, the finer one is proven.
FINER: dict[str, tuple[str, ...]] = {
    "computed-in-narrower-format": ("step-through-float32", "rate-through-float32",
                                    "decay-steps-through-float32",
                                    "input-through-narrower-format"),
}


def _narrowest(keys: list[_Key]) -> list[_Key]:
    """``keys`` without those a finer mistake of the same order replaces."""
    def replaced(k: _Key) -> bool:
        return len(k[1]) == 1 and any(
            k2[0] == k[0] and len(k2[1]) == 1 and k2[1][0] in FINER.get(k[1][0], ())
            for k2 in keys)
    return [k for k in keys if not replaced(k)] or keys


def diagnose_outputs(outputs: Sequence[tuple[dict[str, Any], dict[str, Any], float]],
                     failing: Sequence[int], fmt: Format, profile: Order, *,
                     min_outputs: int = 2) -> list[Diagnosis]:
    """The causes of the failing outputs of one schedule.

    ``outputs`` are ``(test, group, value)``: every value an implementation
    gave for one schedule (one group, or several groups with the same
    parameters), the passes as well as the failures; ``failing`` indexes
    the failures to diagnose.  An explanation is *proven* only when its
    recomputation reproduces every one of ``outputs``: one output it does
    not reproduce rejects it.  Of the explanations left, those with the
    fewest ids are kept, a mistake confined to one input preferred to a
    broad one it is finer than (:data:`FINER`); several left make the
    diagnosis ambiguous (a mistake of :data:`RIVALS` among them too: it
    blocks the proof, never is proven), none, or rivals alone, leave it
    unexplained: the diagnosis then
    shows the pattern of the schedule's outputs (signed ulp distances, the
    steps wrong and right, a property of the inputs that separates them)
    and, as ``consistent``, the explanations of that output alone.  A
    schedule with fewer than ``min_outputs`` outputs proves nothing: a
    candidate that matches the failing output alone is only consistent with
    it.
    Returns one diagnosis per entry of ``failing``."""
    out: dict[int, Diagnosis] = {}
    wanted = set(failing)
    evidence = []
    for i, (_t, _g, v) in enumerate(outputs):
        if math.isnan(v) or is_representable(v, fmt):
            evidence.append(i)
        elif i in wanted:
            out[i] = fact("output-not-in-format", f"got {v!r}, not a {fmt.name} value")
    wrong = [i for i in dict.fromkeys(failing) if i not in out]
    if not wrong:
        return [out[i] for i in failing]
    wrong_set = set(wrong)
    right = [i for i in evidence if i not in wrong_set]
    tables = {i: explanation_table(outputs[i][0], outputs[i][1], fmt, profile) for i in evidence}
    vk = {i: _vkey(outputs[i][2], fmt) for i in evidence}
    fill_tables((tables[i], k) for i in wrong for k in tables[i].entries)
    survivors: dict[_Key, int] = {k: 0 for i in wrong for k in tables[i].entries}
    for group_of_outputs, fill in ((wrong, False), (right, True)):
        if fill and survivors:
            fill_tables((tables[i], k) for i in group_of_outputs for k in survivors)
        for i in group_of_outputs:
            if not survivors:
                break
            for k in list(survivors):
                lv = tables[i].level(k, vk[i])
                if lv is None:
                    del survivors[k]
                elif lv > survivors[k]:
                    survivors[k] = lv
    keys: list[_Key] = []
    if survivors:
        cost = {k: len(_ids(k, profile, True, lv == 1)) for k, lv in survivors.items()}
        best = min(cost.values())
        keys = sorted(k for k in survivors if cost[k] == best)
        # The order and a pow one ulp off are no mistakes of the code: an
        # explanation with one more of those ids but fewer mistakes is as
        # simple (keras-order+pow-not-correctly-rounded against one mistake
        # in the exact order).
        fewest = min(len(k[1]) for k in keys)
        keys += sorted(k for k in survivors if cost[k] == best + 1 and len(k[1]) < fewest)
        keys = _narrowest(keys)
    weak: set[_Key] = set(keys) if len(evidence) < min_outputs else set()
    rivals_only = bool(keys) and all(any(c in RIVALS for c in k[1]) for k in keys)
    if rivals_only:
        weak = set(keys)
    if not keys or len(weak) == len(keys):
        pattern = _pattern(outputs, evidence, wrong, tables, fmt, profile)
        if rivals_only:
            pattern.append("only mistakes outside the cause vocabulary reproduce them")
        elif keys and len(evidence) < min_outputs:
            pattern.append("a single output cannot tell one mistake from another")
        for i in wrong:
            e, o = tables[i].expected, outputs[i][2]
            here = (f"this output: {_signed(e[profile], o, fmt)} ulp from the expected value, "
                    f"{_signed(e['keras'], o, fmt)} from the keras order")
            alone = _alone(tables[i], vk[i], profile) if not keys else sorted({
                _ids(k, profile, tables[i].acts(k), tables[i].level(k, vk[i]) == 1)
                for k in keys})
            why = ("consistent with every output of the schedule, too few to prove it: "
                   if len(evidence) < min_outputs else
                   "consistent with every output of the schedule, which cannot prove it: "
                   if keys else "consistent with this output alone, refuted by the "
                   "schedule's other outputs: ")
            extra = [why + " or ".join("+".join(a) for a in alone)] if alone else []
            out[i] = Diagnosis("unexplained", details=[*pattern, here, *extra],
                               consistent=[list(a) for a in alone])
        return [out[i] for i in failing]
    n_out, n_wrong = len(evidence), len(wrong)
    why = (f"reproduces every output of this schedule ({n_out}, {n_wrong} of them wrong)"
           if n_out > 1 else "")
    for i in wrong:
        labels: dict[tuple[str, ...], set[str]] = {}
        for k in keys:
            acts = tables[i].acts(k)
            ids = _ids(k, profile, acts, tables[i].level(k, vk[i]) == 1)
            if ids:
                labels.setdefault(ids, set()).update(tables[i].details(k) if acts else ())
        if len(labels) == 1 and not weak:
            [(ids, details)] = labels.items()
            out[i] = Diagnosis("proven", list(ids),
                               details=sorted(details) + ([why] if why else []))
        else:
            out[i] = Diagnosis("ambiguous", alternatives=[list(a) for a in sorted(labels)],
                               details=[why] if why else [])
    return [out[i] for i in failing]


def _alone(table: ExplanationTable, v: _VKey, profile: Order) -> list[tuple[str, ...]]:
    """The simplest explanations of one output taken alone."""
    found = set()
    for k in table.entries:
        lv = table.level(k, v)
        if lv is not None:
            ids = _ids(k, profile, True, lv == 1)
            if ids:
                found.add(ids)
    if not found:
        return []
    best = min(len(a) for a in found)
    return sorted(a for a in found if len(a) == best)


def diagnose(test: dict[str, Any], group: dict[str, Any], fmt: Format, profile: Order,
             observed: float) -> Diagnosis:
    """The cause of one failing output, that output the only evidence
    (:func:`diagnose_outputs`; the runner gives it every output of the
    schedule)."""
    return diagnose_outputs([(test, group, observed)], [0], fmt, profile, min_outputs=1)[0]


def _signed(expected: float, observed: float, fmt: Format) -> str:
    """The signed distance in ulps from ``expected`` to ``observed``."""
    if math.isnan(expected) or math.isnan(observed):
        if math.isnan(expected) and math.isnan(observed):
            return "0"
        return "NaN for a number" if math.isnan(observed) else "a number for NaN"
    d = ulp_distance(expected, observed, fmt)
    if d == 0 and not same_bits(expected, observed, fmt):
        return "the sign of zero"
    return f"{d:+d}"


def _show(v: Num) -> str:
    return str(v) if isinstance(v, int) else repr(v)


def _list(values: list[Num], most: int = 6) -> str:
    shown = ", ".join(_show(v) for v in values[:most])
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


def _ratio(x: _Inputs) -> Fraction | None:
    try:
        if isinstance(x.s, float) and not math.isfinite(x.s) or isinstance(x.D, float) and (
                not math.isfinite(x.D)) or x.D == 0:
            return None
        return Fraction(x.s) / Fraction(x.D)
    except (ValueError, OverflowError):
        return None


def _is_step(x: _Inputs, test: Callable[[float], bool]) -> bool:
    s = x.s
    return (isinstance(s, int) or math.isfinite(s)) and test(float(s))


#: Properties of a test's inputs (and expected value) that may separate the
#: wrong outputs of a schedule from the right ones.
_PROPERTIES: list[tuple[str, Callable[[_Inputs, float, Format], bool]]] = [
    ("a negative step", lambda x, e, f: _is_step(x, lambda s: s < 0)),
    ("step 0", lambda x, e, f: _is_step(x, lambda s: s == 0)),
    ("a step that is not an integer",
     lambda x, e, f: _is_step(x, lambda s: not s.is_integer())),
    ("a step that is not finite", lambda x, e, f: not _is_step(x, lambda s: True)),
    ("a step beyond 2**24", lambda x, e, f: _is_step(x, lambda s: abs(s) > 2**24)),
    ("a step beyond 2**31", lambda x, e, f: _is_step(x, lambda s: abs(s) >= 2**31)),
    ("s / D an integer", lambda x, e, f: (q := _ratio(x)) is not None and q.denominator == 1),
    ("s / D between 0 and 1", lambda x, e, f: (q := _ratio(x)) is not None and 0 <= q < 1),
    ("an expected NaN", lambda x, e, f: math.isnan(e)),
    ("an expected infinity", lambda x, e, f: math.isinf(e)),
    ("an expected zero", lambda x, e, f: e == 0),
    ("an expected subnormal value",
     lambda x, e, f: math.isfinite(e) and 0 < abs(e) < f.min_normal),
]


def _pattern(outputs: Sequence[tuple[dict[str, Any], dict[str, Any], float]],
             evidence: list[int], wrong: list[int], tables: dict[int, ExplanationTable],
             fmt: Format, profile: Order) -> list[str]:
    """What the outputs of a schedule that no explanation reproduces show."""
    wrong_set = set(wrong)
    right = [i for i in evidence if i not in wrong_set]
    lines = [f"no known mistake reproduces every output of this schedule: {len(wrong)} of "
             f"{len(evidence)} wrong"]
    dist = Counter(_signed(tables[i].expected[profile], outputs[i][2], fmt) for i in wrong)
    lines.append("signed ulp distances of the wrong outputs from the expected values: " +
                 ", ".join(f"{d} ({n})" for d, n in dist.most_common(8)) +
                 (", ..." if len(dist) > 8 else ""))
    steps = f"wrong at steps {_list([tables[i].x.s for i in wrong])}"
    steps += f"; right at steps {_list([tables[i].x.s for i in right])}" if right else (
        "; no output right")
    lines.append(steps)
    seen = {_vkey(outputs[i][2], fmt) for i in wrong}
    if len(wrong) > 1 and len(seen) == 1:
        lines.append(f"every wrong output is {_hex(outputs[wrong[0]][2])}")
    if right:
        def has(prop: Callable[[_Inputs, float, Format], bool], i: int) -> bool:
            return prop(tables[i].x, tables[i].expected[profile], fmt)
        sep = [name for name, prop in _PROPERTIES
               if all(has(prop, i) for i in wrong) and not any(has(prop, i) for i in right)]
        if sep:
            lines.append("the wrong outputs are those with " + " or, equally, ".join(sep))
    return lines


def _hex(v: float) -> str:
    return "nan" if math.isnan(v) else v.hex() if math.isfinite(v) else repr(v)


_ORDER = {c: i for i, c in enumerate([*CAUSES, *FACTS, *RIVALS])}


def _ordered(ids: tuple[str, ...]) -> list[str]:
    """Ids without repeats, the order first, pow last (vocabulary order)."""
    return sorted(set(ids), key=lambda c: (c == POW_CAUSE, _ORDER.get(c, len(_ORDER))))


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"
