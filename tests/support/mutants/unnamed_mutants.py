"""Mutants whose defect has no cause id: the diagnosis must not prove one.

Every function here has the ``python:`` callable signature of the
conformance runner, ``fn(I, D, r, steps, *, staircase, dtype)``, and is the
keras order of :mod:`expdecay_mutants`'s baseline (casts, division, floor
and product by exact rational rounding, ``pow`` correctly rounded) with one
defect of the kind real implementations have had: a cast through a narrower
format, a special value mishandled, an input clamped, a rounding mode other
than round-to-nearest, a value computed once per batch.  None of these
defects is in the vocabulary of :data:`expdecay.conformance.diagnosis.CAUSES`,
so a failure of these mutants may be unexplained or ambiguous, or proven
with a cause from :data:`MUTANTS` (a finer cause that does describe the
defect), never proven with another cause.  ``tests/conformance/test_causes.py`` runs
them and ``tests/support/mutants/measure.py --set unnamed`` measures them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from expdecay_mutants import Config, cast_to, divide, multiply, power, validate

from expdecay.floats import Format, get_format, next_down, next_up

F16 = get_format("float16")
BF16 = get_format("bfloat16")

Num = int | float

#: Steps per batch of :func:`staircase_stale_chunk` (the period is computed
#: once per batch, from its first step).
CHUNK = 4


def _toward_zero(q: Fraction, fmt: Format) -> float:
    """``q`` rounded toward zero to ``fmt`` (no overflow to infinity)."""
    y = cast_to(q, fmt) if q.denominator != 1 else cast_to(int(q), fmt)
    if math.isinf(y):
        return math.copysign(fmt.max_finite, y)
    if y != 0 and abs(Fraction(y)) > abs(q):
        y = next_down(y, fmt) if y > 0 else next_up(y, fmt)
    return y


def _is_subnormal(x: float, fmt: Format) -> bool:
    return x != 0 and math.isfinite(x) and abs(x) < fmt.min_normal


def _period(s: Num, D: Num, work: Format) -> float:
    """The floored exponent of the keras order."""
    p = divide(cast_to(s, work), cast_to(D, work), work)
    return float(math.floor(p)) if math.isfinite(p) else p


def _one(I: Num, D: Num, r: Num, s: Num, staircase: bool, fmt: Format, cfg: Config,
         chunk_first: Num) -> float:
    work = fmt
    if cfg.nan_step_to_num and isinstance(s, float) and not math.isfinite(s):
        s = 0.0 if math.isnan(s) else math.copysign(np.finfo(np.float64).max, s)
    if cfg.negative_step_abs and s < 0:
        s = -s
    if cfg.step_through_float16:
        s = cast_to(s, F16)
    if cfg.rate_through_bfloat16:
        r = cast_to(r, BF16)
    if cfg.initial_rate_through_float16:
        I = cast_to(I, F16)
    if cfg.rate_clamped_unit and not math.isnan(r):
        r = min(max(r, 0), 1)
    if cfg.decay_steps_ceil and isinstance(D, float) and math.isfinite(D) and not D.is_integer():
        D = float(math.ceil(D))
    Ic, Dc, rc, sc = (cast_to(x, work) for x in (I, D, r, s))
    if cfg.inputs_flushed:  # denormals-are-zero on the inputs
        Ic, rc = (math.copysign(0.0, v) if _is_subnormal(v, work) else v for v in (Ic, rc))
    if cfg.division_toward_zero and math.isfinite(sc) and math.isfinite(Dc) and Dc != 0 \
            and sc != 0:
        p = _toward_zero(Fraction(sc) / Fraction(Dc), work)
    else:
        p = divide(sc, Dc, work)
    if staircase and math.isfinite(p):
        if cfg.staircase_ceil:
            p = float(math.ceil(p))
        elif cfg.staircase_stale_chunk:
            p = _period(chunk_first, D, work)
        else:
            p = float(math.floor(p))
    if cfg.pow_as_exp_log and math.isfinite(p) and math.isfinite(rc) and rc > 0:
        # exp(p * log(r)), each operation rounded in the format
        lg = cast_to(math.log(rc), work)
        t = multiply(p, lg, work)
        w = cast_to(math.exp(t), work) if t < 709 else math.inf
    elif cfg.zero_pow_zero_nan and rc == 0 and p == 0:
        w = math.nan  # exp(0 * log(0)) = exp(0 * -inf)
    else:
        w = power(rc, p, work)
    if cfg.multiply_toward_zero and math.isfinite(Ic) and math.isfinite(w) and Ic != 0 \
            and w != 0:
        y = _toward_zero(Fraction(Ic) * Fraction(w), work)
    else:
        y = multiply(Ic, w, work)
    if cfg.nan_as_zero and math.isnan(y):
        y = 0.0
    if cfg.overflow_saturated and math.isinf(y):
        y = math.copysign(work.max_finite, y)
    return y


def _make(cfg: Config) -> Callable[..., Any]:
    def fn(I: Num, D: Num, r: Num, steps: Any, *, staircase: Any = False,
           dtype: str = "float32") -> np.ndarray:
        validate(D, staircase, cfg)
        fmt = get_format(dtype)
        values = np.asarray(steps).tolist()
        out = [_one(I, D, r, s, bool(staircase), fmt, cfg, values[k - k % CHUNK])
               for k, s in enumerate(values)]
        return np.array(out, dtype=np.float64)

    return fn


#: mutant name -> (its knob, the cause ids that describe it (a proven cause
#: outside them is wrong), what it is modelled on).  ``pow_as_exp_log`` is a
#: ``pow`` that is not correctly rounded, and the casts of one input through
#: float16 or bfloat16 are ``input-through-narrower-format``: the diagnosis
#: may prove those.  A decay_steps below 1 rounded up is 1: there
#: ``decay_steps_ceil`` does ignore decay_steps.
MUTANTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "nan_as_zero": ("nan_as_zero", (),
                    "a NaN result returned as 0 (nan_to_num on the output)"),
    "staircase_ceil": ("staircase_ceil", (),
                       "the staircase exponent rounded up (ceil instead of floor)"),
    "step_through_float16": ("step_through_float16", ("input-through-narrower-format",),
                             "the step counter kept in float16"),
    "rate_clamped_unit": ("rate_clamped_unit", (),
                          "decay_rate clamped to [0, 1] before use"),
    "multiply_toward_zero": ("multiply_toward_zero", (),
                             "the final product rounded toward zero"),
    "inputs_flushed": ("inputs_flushed", (),
                       "subnormal inputs (initial rate, rate) read as zero: "
                       "denormals-are-zero"),
    "staircase_stale_chunk": ("staircase_stale_chunk", (),
                              f"the staircase period computed once per batch of {CHUNK} "
                              "steps, from the batch's first step"),
    "pow_as_exp_log": ("pow_as_exp_log", ("pow-not-correctly-rounded",),
                       "pow computed as exp(p * log(r)), each operation rounded in the "
                       "format"),
    "division_toward_zero": ("division_toward_zero", (),
                             "s / D rounded toward zero"),
    "zero_pow_zero_nan": ("zero_pow_zero_nan", (),
                          "pow(0, 0) computed as exp(0 * log 0): NaN instead of 1"),
    "overflow_saturated": ("overflow_saturated", (),
                           "an infinite result saturated to the largest finite value"),
    "nan_step_to_num": ("nan_step_to_num", (),
                        "non-finite steps replaced (nan_to_num): NaN by 0, infinities by "
                        "the largest float64"),
    "decay_steps_ceil": ("decay_steps_ceil", ("decay-steps-ignored",),
                         "a non-integer decay_steps rounded up to an integer"),
    "negative_step_abs": ("negative_step_abs", (),
                          "a negative step taken as its absolute value"),
    "rate_through_bfloat16": ("rate_through_bfloat16", ("input-through-narrower-format",),
                              "decay_rate stored as bfloat16 (a mixed-precision "
                              "hyperparameter)"),
    "initial_rate_through_float16": ("initial_rate_through_float16",
                                     ("input-through-narrower-format",),
                                     "the initial rate stored as float16"),
}

for _name, (_knob, _ids, _text) in MUTANTS.items():
    globals()[_name] = _make(Config(**{_knob: True}))

#: Without a defect: the keras order (passes the keras profile).
baseline = _make(Config())
