"""The plan of one schedule: everything that does not depend on the step
(spec/kernels.md, sections 3 and 6.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .. import inputs
from ..floats import Format, round_rational
from ..intervals import ln_interval
from ..orders import Order
from . import numpy_paths
from .constants import DEN_MAX, INT64_SAFE, log2_dd, mantissa_dd


@dataclass
class FastStats:
    """Counters of :func:`evaluate`: elements seen, decided by the fast path,
    sent to the oracle, and distinct oracle calls made for the latter; with a
    schedule per element, the elements deferred to per-schedule evaluation."""

    elements: int = 0
    fast: int = 0
    oracle: int = 0
    oracle_calls: int = 0
    #: Elements the per-element kernels left to the evaluation one schedule
    #: at a time (which decides most of them itself, the rest by the oracle).
    deferred: int = 0



@dataclass(frozen=True)
class Plan:
    """Everything about a schedule that does not depend on the step."""

    fmt: Format
    order: Order
    staircase: bool
    args: tuple[Any, Any, Any]  # exact I, D, r
    kind: str  # "regular", "constant" or "oracle"
    const: float = 0.0  # the value of a constant schedule
    negative: bool = False
    c: tuple[float, float] = (0.0, 0.0)  # log2(r)/D (or log2 r, log2 rf), double-double
    scale: tuple[float, float, int] = (1.0, 0.0, 0)  # |I| = 2**e (h + l)
    i_fmt: float = 0.0  # If (keras order)
    d_fmt: float = 0.0  # Df (keras order)
    d_int: tuple[int, int] | None = None  # D = num/den with both < 2**62
    log2_i: float = 0.0
    tables: bool = False  # use power tables for integer exponents (float64)
    f32_exp2: bool = False  # float32 through numpy.exp2 and IEEE conversions


def make_plan(I: Any, D: Fraction, r: Any, fmt: Format, order: Order, staircase: bool,
          tables: bool) -> Plan:
    d_int = None
    if D.numerator < INT64_SAFE and D.denominator <= DEN_MAX:
        d_int = (D.numerator, D.denominator)
    base: dict[str, Any] = dict(fmt=fmt, order=order, staircase=staircase, args=(I, D, r),
                                tables=tables, d_int=d_int)
    if order == "keras":
        I_, r_ = (inputs.to_exact(round_rational(x, fmt)) if isinstance(x, Fraction)
                  else x for x in (I, r))
        d_fmt = round_rational(D, fmt)
    else:
        I_, r_, d_fmt = I, r, 0.0
    if not (isinstance(I_, Fraction) and abs(mantissa_dd(I_)[2]) < 1000):
        return Plan(**base, kind="oracle", d_fmt=d_fmt)
    if not isinstance(r_, Fraction) or r_ <= 0:
        return Plan(**base, kind="oracle", d_fmt=d_fmt)
    if order == "keras" and (math.isinf(d_fmt) or d_fmt == 0):
        return Plan(**base, kind="oracle", d_fmt=d_fmt)
    if r_ == 1:
        return Plan(**base, kind="constant", const=round_rational(I_, fmt))
    divisor = Fraction(1) if staircase or order == "keras" else D
    # c = log2(r) / divisor must be a normal double-double with room to spare
    # (D = 5e-324 makes it about 2**1074): otherwise the oracle decides.
    ln_lo, _ = ln_interval(r_, 16)
    c_mag = abs(ln_lo) / divisor
    if not Fraction(1, 1 << 900) < c_mag < (1 << 900):
        return Plan(**base, kind="oracle", d_fmt=d_fmt)
    h, l_, e = mantissa_dd(I_)
    return Plan(
        **base, kind="regular", f32_exp2=fmt.name == "float32" and numpy_paths.hardware_ok(),
        negative=I_ < 0, c=log2_dd(r_, divisor), scale=(h, l_, e),
        i_fmt=float(I_) if order == "keras" else 0.0, d_fmt=d_fmt,
        log2_i=e + math.log2(h),
    )
