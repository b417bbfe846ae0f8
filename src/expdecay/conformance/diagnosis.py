"""Diagnosis of a failed conformance test: which known mistake explains it.

The value an implementation returns is compared with the values that known
mistakes would produce (a cast of the step, of decay_rate or of decay_steps;
division by a rounded reciprocal; arithmetic in another format; subnormals
flushed to zero; integer arithmetic; a pow that is not correctly rounded;
missing validation): :func:`diagnose` lists the causes that match and
:func:`classify` names the class a failure is counted under.  The ulp
helpers :func:`ulps_between` and :func:`same_bits` are shared with the
runner.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from ..floats import Format, get_format, is_representable, to_bits
from ..floats import ulp_distance as _ulp_distance
from ..inputs import to_exact
from ..oracle import RoundedOps, evaluate_exact, round_node
from .vectors import (
    decode_number,
    decode_result,
)

__all__ = ["ulps_between", "same_bits", "diagnose", "classify"]


def ulps_between(expected: float, observed: float, fmt: Format) -> float:
    """|distance| in ulps of ``fmt``; inf when one is NaN and the other not."""
    if math.isnan(expected) or math.isnan(observed):
        return 0.0 if math.isnan(expected) and math.isnan(observed) else math.inf
    if not is_representable(observed, fmt):
        return math.inf
    return float(abs(_ulp_distance(expected, observed, fmt)))


def same_bits(a: float, b: float, fmt: Format) -> bool:
    """Bit equality with every NaN equal (a NaN matches any NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return is_representable(b, fmt) and to_bits(a, fmt) == to_bits(b, fmt)


# ---------------------------------------------------------------------------
# Diagnosis
# ---------------------------------------------------------------------------


Args = tuple[Any, Any, Any, Any]


def _keras_variant(args: Args, staircase: bool, fmt: Format, *, reciprocal: bool = False,
                   work: Format | None = None) -> float:
    """The keras order with one change: ``s * (1/D)`` instead of ``s / D``,
    or the whole pipeline in the format ``work``, rounded to ``fmt`` at the end."""
    ops = RoundedOps(work or fmt)
    I, D, r, s = (ops.round(a) for a in args)
    p = ops.mul(s, ops.div(Fraction(1), D)) if reciprocal else ops.div(s, D)
    if staircase:
        p = ops.floor(p)
    y = ops.mul(I, ops.pow(r, p))
    return round_node(y, fmt)


def _exact_with_casts(args: Args, staircase: bool, fmt: Format, which: tuple[int, ...]) -> float:
    """The exact order after casting only the inputs numbered ``which``."""
    ops = RoundedOps(fmt)
    cast = tuple(ops.round(a) if i in which else a for i, a in enumerate(args))
    return evaluate_exact(cast, staircase, fmt, "exact")  # type: ignore[arg-type]


def _wrap_int32(step: int | float) -> int | None:
    """The step after a two's-complement wrap to int32 (None if unchanged)."""
    if not isinstance(step, int) or -2**31 <= step < 2**31:
        return None
    w = step & 0xFFFFFFFF
    return w - 2**32 if w >= 2**31 else w


_INPUT_NAMES = ("initial_learning_rate", "decay_steps", "decay_rate", "step")
_CAST_FLAGS = (("step", "StepCast"), ("decay_rate", "RateCast"),
               ("decay_steps", "DecayStepsCast"), ("initial_learning_rate", "InitialCast"))


class _Case:
    """One failing output and the alternative values it is compared with."""

    def __init__(self, test: dict[str, Any], group: dict[str, Any], fmt: Format,
                 observed: float) -> None:
        self.inputs = (decode_number(group["initialLearningRate"]),
                       decode_number(group["decaySteps"]), decode_number(group["decayRate"]),
                       decode_number(test["step"]))
        self.args: Args = tuple(to_exact(x) for x in self.inputs)  # type: ignore[assignment]
        self.staircase = bool(group["staircase"])
        self.fmt = fmt
        self.observed = observed
        self.exact = decode_result(test["exact"], fmt, "exact")
        self.keras = decode_result(test["keras"], fmt, "keras")
        self.flags = set(test["flags"])

    def matches(self, x: float) -> bool:
        return same_bits(x, self.observed, self.fmt)

    def matches_variant(self, fn: Any, *a: Any, **k: Any) -> bool:
        try:
            return self.matches(fn(*a, **k))
        except (ArithmeticError, ValueError):
            return False

    def casts(self) -> str:
        """Which single input cast reproduces the output (from the flags otherwise)."""
        single = [_INPUT_NAMES[i] for i in (3, 2, 1, 0) if self.matches_variant(
            _exact_with_casts, self.args, self.staircase, self.fmt, (i,))]
        names = single or [n for n, f in _CAST_FLAGS if f in self.flags]
        text = ("input cast of " + ", ".join(names) if names
                else "each operation rounded (s / D, pow, product)")
        if "Misfloor" in self.flags:
            text += " (the staircase floors on the rounded step)"
        return text


def _through_float32(x: Any, ftz: bool) -> Any:
    """An exact input after a conversion to float32 (subnormals flushed if ``ftz``)."""
    f32 = get_format("float32")
    y = round_node(x, f32)
    if ftz and y != 0 and abs(y) < f32.min_normal:
        y = math.copysign(0.0, y)
    return to_exact(y)


def _subnormal(x: float, fmt: Format) -> bool:
    return x != 0 and abs(x) < fmt.min_normal


def _narrower_format(observed: float, expected: tuple[float, ...], fmt: Format) -> str | None:
    """The name of a much narrower format holding ``observed`` but none of
    the ``expected`` values (a sign that the arithmetic ran in it)."""
    if not math.isfinite(observed) or observed == 0:
        return None
    for name in ("bfloat16", "float16", "float32"):
        g = get_format(name)
        if g.precision + 8 > fmt.precision:
            continue
        if is_representable(observed, g) and not any(
                math.isfinite(e) and is_representable(e, g) for e in expected):
            return name
    return None


def diagnose(test: dict[str, Any], group: dict[str, Any], fmt: Format, profile: str,
             observed: float) -> list[str]:
    """Recognised causes of a failing output, most specific first (empty when
    none matches).  Each cause is a value some known mistake produces."""
    c = _Case(test, group, fmt, observed)
    causes: list[str] = []
    if not math.isnan(observed) and not is_representable(observed, fmt):
        causes.append(f"output is not a {fmt.name} value (returned in a wider format)")
    if causes:
        return causes
    I = c.inputs[0]
    special = not math.isfinite(observed) or observed == c.exact == c.keras == 0
    cast_I = round_node(c.args[0], fmt) if not isinstance(I, int) else float(I)
    if fmt.name == "float64" and not special and not c.matches(c.keras):
        for ftz in (False, True):
            through = tuple(_through_float32(a, ftz) if i in (1, 2) else a
                            for i, a in enumerate(c.args))
            if c.matches_variant(_keras_variant, through, c.staircase, fmt):
                causes.append("decay_rate and decay_steps converted through float32 first" +
                              (" (float32 subnormals flushed to zero)" if ftz else ""))
                break
    if observed in (float(I), cast_I) and observed != 0 and not special and (
            not c.matches(c.keras)) and not causes:
        causes.append("initial_learning_rate returned unchanged (case short-circuited"
                      + (", negative step clamped)" if c.inputs[3] < 0 else ")"))
    narrow = _narrower_format(observed, (c.exact, c.keras), fmt)
    if narrow is not None:
        causes.append(f"result has {narrow} precision: the dtype {fmt.name} was not honoured")
    if causes:
        return causes
    if isinstance(I, int) and float(observed).is_integer() and not c.matches(c.exact):
        causes.append("integer arithmetic (an integer initial_learning_rate kept as an int)")
    if profile == "exact" and c.matches(c.keras):
        causes.append("keras order: " + c.casts())
    if profile == "keras" and c.matches(c.exact):
        causes.append("no input casts: the exact order, not the keras order")
    wrapped = _wrap_int32(c.inputs[3])
    if wrapped is not None:
        args = (*c.args[:3], to_exact(wrapped))
        if c.matches_variant(_keras_variant, args, c.staircase, fmt):
            causes.append(f"step wrapped to int32 ({wrapped})")
    for name in ("float64", "float32", "float16", "bfloat16"):
        other = get_format(name)
        if other == fmt or c.matches(c.keras) or c.matches(c.exact) or special or causes:
            continue
        if observed == 0 and (other.precision < fmt.precision and other.name != "float32"
                              or _subnormal(c.exact, fmt) or _subnormal(c.keras, fmt)):
            continue  # a flushed subnormal, or no evidence for one narrow format
        if c.matches_variant(_keras_variant, c.args, c.staircase, fmt, work=other):
            wider = other.precision > fmt.precision
            causes.append(f"computed in {name}, then rounded to {fmt.name}" if wider else
                          f"computed in {name}: the dtype {fmt.name} was not honoured")
            break
    if not special and not c.matches(c.keras) and c.matches_variant(
            _keras_variant, c.args, c.staircase, fmt, reciprocal=True):
        causes.append("division done as multiplication by a rounded reciprocal")
    if observed == 0 and (_subnormal(c.exact, fmt) or _subnormal(c.keras, fmt)):
        causes.append("subnormal result flushed to zero")
    ref = c.keras if profile == "keras" else c.exact
    if math.isnan(observed) != math.isnan(ref) or math.isinf(observed) != math.isinf(ref) or (
            math.isinf(observed) and observed != ref):
        causes.append("special value handled differently from the C99 pow / IEEE rules")
    elif observed == 0 and ref == 0:
        causes.append("wrong sign of zero")
    elif not causes and math.isfinite(observed) and math.isfinite(c.keras) and (
            not c.matches(c.keras) and (observed < 0) == (c.keras < 0)
            and observed != 0 and c.keras != 0):
        d = int(ulps_between(c.keras, observed, fmt))
        if d <= 8:
            causes.append(f"pow not correctly rounded (libm error: {d} ulp from the keras order)")
        else:
            causes.append(f"inaccurate pow ({d} ulp from the keras order with the same casts)")
    return causes


def classify(causes: list[str]) -> str:
    """The short class of a failure (its first recognised cause)."""
    if not causes:
        return "unexplained"
    first = causes[0]
    for prefix in ("raised", "keras order", "pow not correctly rounded", "inaccurate pow",
                   "step wrapped to int32"):
        if first.startswith(prefix):
            return prefix
    return first
