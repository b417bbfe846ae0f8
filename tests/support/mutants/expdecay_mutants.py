"""Mutant implementations of the schedule, each with one deliberate defect.

Every function here has the ``python:`` callable signature of the
conformance runner, ``fn(I, D, r, steps, *, staircase, dtype)``.
:func:`baseline` computes the keras order with its own code (casts, the
division, the floor and the product by exact rational rounding; ``pow``
correctly rounded) and must pass the keras profile; every other function is
the baseline with one mistake, named by the cause id the runner must give
it (:data:`MUTANTS`).  ``tests/conformance/test_conformance_mutants.py`` runs them and
``tests/support/mutants/measure.py`` measures the mutation score and the labelling
accuracy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from expdecay.fast import evaluate_array as _correct_pow_source
from expdecay.floats import Format, get_format, is_representable, next_up, round_rational

F32 = get_format("float32")
F64 = get_format("float64")

Num = int | float


def cast_to(x: Num, fmt: Format) -> float:
    """``x`` rounded to ``fmt`` once (round to nearest even)."""
    if isinstance(x, float) and (not math.isfinite(x) or x == 0):
        return x
    return round_rational(Fraction(x), fmt)


def divide(a: float, b: float, fmt: Format) -> float:
    if math.isfinite(a) and math.isfinite(b) and b != 0 and a != 0:
        return round_rational(Fraction(a) / Fraction(b), fmt)
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def multiply(a: float, b: float, fmt: Format) -> float:
    if math.isfinite(a) and math.isfinite(b) and a != 0 and b != 0:
        return round_rational(Fraction(a) * Fraction(b), fmt)
    return a * b


def power(r: float, p: float, fmt: Format) -> float:
    """``r ** p`` correctly rounded to ``fmt`` (r and p values of ``fmt``),
    with the C99 special cases: the keras order with I = 1 and D = 1."""
    out = _correct_pow_source(1.0, 1, r, np.array([p], dtype=np.float64), staircase=False,
                              dtype=fmt.name, order="keras")
    return float(out.astype(np.float64)[0])


class Config:
    """The knobs a mutant turns (one at a time)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __getattr__(self, name: str) -> Any:  # every knob is off by default
        return None


def validate(D: Num, staircase: Any, cfg: Config) -> None:
    if cfg.no_validation:
        return
    if not isinstance(staircase, bool):
        raise TypeError(f"staircase must be a bool; got {staircase!r}")
    if not (isinstance(D, (int, float)) and math.isfinite(D) and D > 0):
        raise ValueError(f"decay_steps must be finite and > 0; got {D!r}")


def _wrap32(n: int) -> int:
    w = n & 0xFFFFFFFF
    return w - 2**32 if w >= 2**31 else w


_CONSTANTS: dict[Any, Any] = {}


def _constant(x: float) -> float:
    """A constant cache keyed by value: -0.0 and 0.0 are the same key."""
    return _CONSTANTS.setdefault(x, x)  # type: ignore[no-any-return]


def _one(I: Num, D: Num, r: Num, s: Num, staircase: bool, fmt: Format, cfg: Config) -> float:
    if cfg.exact_order:  # no casts at all: the exact order
        steps = np.array([s], dtype=np.int64 if isinstance(s, int) else np.float64)
        out = _correct_pow_source(I, D, r, steps, staircase=staircase, dtype=fmt.name,
                                  order="exact")
        return float(out.astype(np.float64)[0])
    work = fmt
    if cfg.computed_in_float32 and fmt.name == "float64":
        work = F32
    if cfg.computed_in_float64 and fmt.name != "float64":
        work = F64
    if cfg.raises and s > 10**6:
        raise ValueError("steps beyond 10**6 are not supported")
    if cfg.crash and isinstance(s, float) and math.isnan(s):
        os._exit(3)  # a crash of the whole process
    if cfg.negative_zero_lost:
        I, r, s = (0.0 if isinstance(v, float) and v == 0 else v for v in (I, r, s))
    if cfg.process_state and isinstance(I, float):
        I = _constant(I)
    if cfg.decay_steps_ignored:
        D = 1
    if cfg.decay_steps_and_staircase_ignored:  # what a function keeping only the rate does
        D, staircase = 1, False
    if cfg.decay_steps_truncated and isinstance(D, float) and not D.is_integer():
        D = math.trunc(D)
    if cfg.step_plus_one:
        s = s + 1
    if cfg.step_wrapped_int32 and isinstance(s, int) and not -2**31 <= s < 2**31:
        s = _wrap32(s)
    if cfg.negative_step_clamped and s < 0:
        s = 0
    if cfg.step_through_float32 and fmt.name == "float64":
        s = cast_to(s, F32)
    if cfg.rate_through_float32 and fmt.name == "float64":
        r = cast_to(r, F32)
    if cfg.decay_steps_through_float32 and fmt.name == "float64":
        D = cast_to(D, F32)
    if cfg.zero_rate_constant and r == 0:
        return cast_to(I, fmt)
    Ic, Dc, rc, sc = (cast_to(x, work) for x in (I, D, r, s))
    if cfg.integer_arithmetic and isinstance(I, int):
        p_exact = Fraction(s) / Fraction(D)
        if staircase:
            p_exact = Fraction(math.floor(p_exact))
        return float(math.trunc(I * math.trunc(r) ** float(p_exact)))
    if cfg.integer_floor_division and staircase and isinstance(s, int) and isinstance(
            D, int) and D > 0:
        p = cast_to(s // D, work)  # the floor in integers, as s // D on int counts
    elif cfg.reciprocal_division:
        p = multiply(sc, divide(1.0, Dc, work), work)
    else:
        p = divide(sc, Dc, work)
    if staircase and not cfg.staircase_ignored and math.isfinite(p):
        if cfg.floor_as_round:
            p = float(round(p))
        elif cfg.floor_as_trunc:
            p = float(math.trunc(p))
        else:
            p = float(math.floor(p))
    if cfg.chained_product and math.isfinite(p) and p.is_integer() and 0 <= p <= 200_000:
        arr = np.full(int(p) + 1, rc, dtype=work.dtype)
        arr[0] = Ic
        with np.errstate(all="ignore"):
            y = float(np.multiply.accumulate(arr)[-1])
        return cast_to(y, fmt)
    if cfg.pow_nan_propagates and (math.isnan(rc) or math.isnan(p)):
        w = math.nan
    else:
        w = power(rc, p, work)
    if cfg.pow_one_ulp and math.isfinite(w) and w != 0:
        w = next_up(w, work)
    y = multiply(Ic, w, work)
    if cfg.output_float64 and fmt.name != "float64":
        # the product computed in float64 and returned without the rounding
        y = float(np.float64(Ic) * np.float64(w))
        return y
    if cfg.subnormal_flushed and y != 0 and math.isfinite(y) and abs(y) < work.min_normal:
        y = math.copysign(0.0, y)
    if work is not fmt:
        y = cast_to(y, fmt)
    return y


def _make(cfg: Config) -> Callable[..., Any]:
    def fn(I: Num, D: Num, r: Num, steps: Any, *, staircase: Any = False,
           dtype: str = "float32") -> np.ndarray:
        validate(D, staircase, cfg)
        fmt = get_format(dtype)
        out = []
        for s in np.asarray(steps).tolist():
            out.append(_one(I, D, r, s, bool(staircase), fmt, cfg))
        arr = np.array(out, dtype=np.float64)
        if cfg.output_float64:
            return arr
        assert all(math.isnan(v) or is_representable(v, fmt) for v in out)
        return arr

    return fn


#: mutant name -> (its knob, the cause id the runner must prove).
MUTANTS: dict[str, tuple[str, str]] = {
    "exact_order": ("exact_order", "exact-order"),
    "staircase_ignored": ("staircase_ignored", "staircase-ignored"),
    "decay_steps_ignored": ("decay_steps_ignored", "decay-steps-ignored"),
    "floor_as_round": ("floor_as_round", "floor-as-round"),
    "floor_as_trunc": ("floor_as_trunc", "floor-as-trunc"),
    "step_plus_one": ("step_plus_one", "step-shifted"),
    "step_through_float32": ("step_through_float32", "step-through-float32"),
    "rate_through_float32": ("rate_through_float32", "rate-through-float32"),
    "decay_steps_through_float32": ("decay_steps_through_float32",
                                    "decay-steps-through-float32"),
    "computed_in_float32": ("computed_in_float32", "computed-in-narrower-format"),
    "computed_in_float64": ("computed_in_float64", "computed-in-wider-format"),
    "chained_product": ("chained_product", "chained-product"),
    "decay_steps_truncated": ("decay_steps_truncated", "decay-steps-truncated"),
    "reciprocal_division": ("reciprocal_division", "reciprocal-division"),
    "step_wrapped_int32": ("step_wrapped_int32", "step-wrapped-int32"),
    "negative_step_clamped": ("negative_step_clamped", "negative-step-clamped"),
    "zero_rate_constant": ("zero_rate_constant", "zero-rate-constant"),
    "negative_zero_lost": ("negative_zero_lost", "negative-zero-lost"),
    "subnormal_flushed": ("subnormal_flushed", "subnormal-flushed"),
    "integer_arithmetic": ("integer_arithmetic", "integer-arithmetic"),
    "pow_nan_propagates": ("pow_nan_propagates", "pow-nan-propagates"),
    "pow_one_ulp": ("pow_one_ulp", "pow-not-correctly-rounded"),
    "output_float64": ("output_float64", "output-not-in-format"),
    "no_validation": ("no_validation", "missing-validation"),
    "raises": ("raises", "raised"),
}

baseline = _make(Config())
for _name, (_knob, _cause) in MUTANTS.items():
    globals()[_name] = _make(Config(**{_knob: True}))

#: Two causes at once (``decay-steps-ignored`` and ``staircase-ignored``), as
#: Paddle's legacy ``exponential_decay`` function: only a fractional step of a
#: staircase group tells it from ``decay-steps-ignored`` alone.
decay_steps_and_staircase_ignored = _make(Config(decay_steps_and_staircase_ignored=True))
#: The staircase floor computed in integers (``s // D``), the rest in the
#: keras order (MLX's ``step_decay``): mostly the bits of the exact order or a
#: shifted step, so it needs its own cases (tests/conformance/test_adapters_other_frameworks.py).
integer_floor_division = _make(Config(integer_floor_division=True))
#: Not a cause: a worker that dies on NaN steps (its tests must be "not run").
crash = _make(Config(crash=True))
#: Not a cause: a value-keyed constant cache (-0.0 after 0.0 gives +0.0), a
#: failure that depends on process state.
process_state = _make(Config(process_state=True))
