"""Host-side tables that let a compiled training step gather the schedule.

A training framework compiles its step (XLA under jax and TensorFlow, Inductor
under torch), and inside a compiled step no bit of the learning rate may come
from the device's ``pow`` or division (XLA divides float32 by a rounded
reciprocal; CUDA's ``powf`` is a 4-ulp function).  So the device does only
integer work and gathers: expdecay computes the values ahead of time on the
host with its own vectorised path (:func:`expdecay.fast.evaluate_array`,
bit-identical to the oracle) and the graph picks one with an integer index.

Why a table can be small
------------------------
Write ``v(s)`` for the schedule's value at the integer step ``s`` in the chosen
order.  When ``I`` is finite and ``r`` is finite and ``>= 0`` (and, in the
keras order, ``D`` rounds to a finite value), ``v`` is a monotone function of
``s``: the exponent (``s / D``, ``floor(s / D)``, or the keras order's
``rnd(rnd(s) / Df)`` and its floor) is non-decreasing in ``s`` because every
rounding is monotone; ``r ** p`` is monotone in ``p`` for a fixed ``r >= 0``
(IEEE ``pow`` special cases included) and correct rounding keeps that; and so
is ``rnd(I * w)`` for a fixed ``I``.  A monotone function that has the same
bits at two steps is constant between them.  Hence:

* *saturation*: the steps where ``v`` equals its value at the largest int64
  step form an upper interval, found by bisection (and likewise at the
  bottom); the schedule is constant there (``0``, ``inf`` or ``I``), so the
  table ends where saturation starts and one value covers the rest;
* *stairs*: the steps where ``v`` changes are found by splitting intervals
  whose two ends differ, never entering an interval whose ends agree, so a
  staircase table costs one value per stair (one per distinct value, in
  fact), and a boundary array of int64 steps;
* a continuous schedule changes value at nearly every step, so its table is
  *dense* (one value per step, indexed by ``s - start``) and needs a bound.

What the search relies on is weaker than monotonicity, and it also holds when
the keras order's ``rnd(I)`` is zero (``I == 0``, or ``I`` below half the
smallest subnormal, e.g. ``5e-324`` in float32): then ``v(s)`` is ``rnd(I) * w``
with ``w = rnd(r ** p)`` monotone in ``s``, which is a zero of ``I``'s sign where
``w`` is finite and NaN where ``w`` is ``inf`` (IEEE ``0 * inf``), and the steps
where ``w`` is ``inf`` form an interval at one end.  In every accepted case,
therefore, *each value's set of steps is an interval* (an interval of steps
where ``v`` has a given bit pattern), which is all the bisections below use.

A bound on the work
-------------------
For any schedule it accepts, ``build_table`` makes at most
``2 + 2 * 64 + 2 * 67 = 264`` vectorised calls of expdecay's evaluator, on at
most ``2 + 2 * 64 + 2 * (2 + 65 * max_entries)`` steps in all: the two ends,
two saturation bisections, then at most two searches (the complete table,
then the open one), each of ``2 + 64`` calls on at most ``max_entries`` steps
apiece plus one call for its at most ``max_entries`` entries (an open dense
table is a single call on at most ``max_entries`` steps).  Why:

* each saturation bisection (:func:`_first_equal`, :func:`_last_equal`) halves
  an interval of at most ``2**64`` steps (Python integers, no overflow), so it
  ends after at most 64 evaluations;
* :func:`change_points` keeps a list of disjoint intervals ``[a, b]`` with
  ``a < b`` and ``v(a) != v(b)``.  Each holds at least one change point, so
  the list is never longer than the number of change points, and the search
  stops (``TooManyEntriesError``) as soon as that count could exceed its
  limit.  A round splits every interval at the midpoint ``m``
  (``a < m < b`` whenever ``b - a >= 2``, computed without forming ``a + b``
  or ``b - a`` in int64, which can overflow) and keeps the halves whose ends
  differ; an interval of length ``L >= 2`` leaves halves of length at most
  ``ceil(L / 2)``, so after at most 64 rounds every interval has length 1 and
  its right end is a change point.  An empty range (``lo >= hi``) has none;
* a table whose two saturated tails meet (no step between them, as for
  ``I == 0`` in the keras order: NaN below a step, zero from it on) has one
  entry.

A table covers ``[start, stop)`` exactly; below and above, either a proven
constant (``low`` / ``high``) or nothing, and then the adapter evaluates on the
host where the framework allows it, or refuses (see :mod:`expdecay.keras`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .. import fast
from ..errors import ExpdecayError
from ..floats import Format, get_format, round_rational
from ..inputs import check_decay_steps, to_exact
from ..orders import Order, check_order

__all__ = [
    "Table", "View", "build_table", "host_values", "check_table_arguments",
    "DEFAULT_HORIZON", "DEFAULT_MAX_ENTRIES", "INT64_MIN", "INT64_MAX",
    "change_points", "midpoint", "TooManyEntriesError",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: A continuous schedule that does not saturate within ``DEFAULT_MAX_ENTRIES``
#: steps gets a table of this many steps from ``first_step`` unless ``horizon``
#: says otherwise.
DEFAULT_HORIZON = 1 << 20
#: The most values one table may hold (8 MiB of float64 values).
DEFAULT_MAX_ENTRIES = 1 << 20


def host_values(schedule: Any, order: Order, steps: Any) -> np.ndarray:
    """The schedule at integer ``steps`` in ``order``: expdecay's own values."""
    return fast.evaluate_array(
        schedule.initial_learning_rate, schedule.decay_steps, schedule.decay_rate,
        np.asarray(steps, dtype=np.int64), staircase=schedule.staircase,
        dtype=schedule.format, order=check_order(order),
    )


def _bits(values: np.ndarray, fmt: Format) -> np.ndarray:
    return values.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[fmt.dtype.itemsize])


def check_table_arguments(schedule: Any, order: Order, first_step: Any, horizon: Any,
                          max_entries: Any) -> tuple[int, int | None, int]:
    """Validate the table arguments; raise on parameters whose values are not
    monotone in the step (the tables rely on it)."""
    check_order(order)
    for name, value in (("first_step", first_step), ("max_entries", max_entries)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if not INT64_MIN <= int(first_step) <= INT64_MAX:
        raise ValueError(f"first_step must fit in int64; got {first_step!r}")
    if int(max_entries) < 1:
        raise ValueError(f"max_entries must be >= 1; got {max_entries!r}")
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise TypeError(f"horizon must be an int or None; got {type(horizon).__name__} "
                            f"{horizon!r}")
        if not int(first_step) < int(horizon) <= INT64_MAX:
            raise ValueError(f"horizon must be > first_step ({first_step}) and fit in int64; "
                             f"got {horizon!r}")
    I = to_exact(schedule.initial_learning_rate, "initial_learning_rate")
    r = to_exact(schedule.decay_rate, "decay_rate")
    fmt: Format = schedule.format
    if isinstance(I, float) and not math.isfinite(I):
        raise ValueError(f"initial_learning_rate must be finite for a training schedule; got "
                         f"{schedule.initial_learning_rate!r}")
    if not (isinstance(r, Fraction) and r > 0 or r == 0.0):
        raise ValueError(f"decay_rate must be finite and >= 0 for a training schedule; got "
                         f"{schedule.decay_rate!r}")
    if order == "keras":
        D = check_decay_steps(schedule.decay_steps)
        Df = round_rational(D, fmt)
        if not math.isfinite(Df):
            raise ValueError(f"decay_steps={schedule.decay_steps!r} rounds to inf in {fmt.name}: "
                             "the keras order's exponent is then NaN from some step on")
        if Df == 0:
            raise ValueError(f"decay_steps={schedule.decay_steps!r} rounds to 0 in {fmt.name}: "
                             "the keras order's exponent is then NaN at step 0")
    return (int(first_step), None if horizon is None else int(horizon), int(max_entries))


@dataclass(frozen=True)
class View:
    """A table as seen by a counter of one integer width: what the graph needs.

    ``start``/``stop`` are the covered steps (``stop`` None: up to the counter's
    largest value); ``bounds`` the first step of each entry (None when dense);
    ``low``/``high`` the proven constant below ``start`` / from ``stop`` on, or
    None when that region is open (the host must evaluate)."""

    int_dtype: np.dtype
    start: int
    stop: int | None
    dense: bool
    bounds: np.ndarray | None
    values: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None

    @property
    def open_low(self) -> bool:
        lowest = INT32_MIN if self.int_dtype.itemsize == 4 else INT64_MIN
        return self.low is None and self.start > lowest

    @property
    def open_high(self) -> bool:
        return self.high is None and self.stop is not None

    @property
    def complete(self) -> bool:
        return not (self.open_low or self.open_high)


@dataclass(frozen=True)
class Table:
    """Values of one schedule in one order over ``[start, stop)`` (int64 steps).

    ``bounds[i]`` is the first step of entry ``i`` (``bounds[0] == start``)
    unless ``dense`` (entry ``i`` is step ``start + i``).  ``low`` is the value
    of every step below ``start`` and ``high`` of every step from ``stop`` on,
    each None when not proven constant."""

    fmt: Format
    start: int
    stop: int
    dense: bool
    bounds: np.ndarray | None
    values: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None

    @property
    def nbytes(self) -> int:
        """Memory of the table's arrays on the host (bytes)."""
        return int(self.values.nbytes + (0 if self.bounds is None else self.bounds.nbytes))

    @property
    def complete(self) -> bool:
        """True when every int64 step is covered (no host evaluation ever)."""
        return self.low is not None and self.high is not None

    def view(self, bits: int) -> View:
        """The table for a ``bits``-wide signed counter (32 or 64)."""
        itype = np.dtype(np.int32 if bits == 32 else np.int64)
        lo, hi = (INT32_MIN, INT32_MAX) if bits == 32 else (INT64_MIN, INT64_MAX)
        high = self.high
        stop: int | None = self.stop
        if self.stop > hi:
            stop, high = None, None
        if self.start > hi:  # no counter value of this width is in the table
            return View(itype, hi, hi, True, None, self.values[:1], self.low, None)
        start = max(self.start, lo)
        if self.dense:
            skip = start - self.start
            values = self.values[skip: skip + (hi - start + 1)]
            return View(itype, start, stop, True, None, values, self.low, high)
        assert self.bounds is not None
        keep = self.bounds <= hi
        bounds = np.maximum(self.bounds[keep], lo).astype(itype)
        return View(itype, start, stop, False, bounds, self.values[keep], self.low, high)


def _first_equal(v: Any, lo: int, hi: int, target: int) -> int:
    """Smallest ``s`` in ``[lo, hi]`` with ``v(s) == target`` (``v(hi) == target``
    and the set of such steps is an upper interval)."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if int(v(np.array([mid]))[0]) == target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _last_equal(v: Any, lo: int, hi: int, target: int) -> int:
    """Largest ``s`` in ``[lo, hi]`` with ``v(s) == target`` (``v(lo) == target``,
    a lower interval)."""
    while lo < hi:
        mid = lo + (hi - lo + 1) // 2
        if int(v(np.array([mid]))[0]) == target:
            lo = mid
        else:
            hi = mid - 1
    return lo


class TooManyEntriesError(ExpdecayError):
    """Raised by :func:`change_points` when a range holds more change points
    than its limit."""


def midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``floor((a + b) / 2)`` for int64 ``a < b`` without int64 overflow."""
    mid: np.ndarray = (a >> 1) + (b >> 1) + ((a & 1) + (b & 1) >> 1)
    return mid


def change_points(v: Any, lo: int, hi: int, limit: int) -> np.ndarray:
    """Every ``s`` in ``(lo, hi]`` with ``v(s) != v(s - 1)``, sorted, when each
    value of ``v`` takes an interval of steps; raises
    :class:`TooManyEntriesError` past ``limit``.

    Intervals whose ends agree are constant and dropped; the others are halved
    until they are one step long: at most 64 rounds of at most ``limit + 1``
    evaluations each (see the module's docstring)."""
    if lo >= hi:
        return np.zeros(0, np.int64)
    a = np.array([lo], np.int64)
    b = np.array([hi], np.int64)
    va, vb = v(a), v(b)
    keep = va != vb
    a, b, va, vb = a[keep], b[keep], va[keep], vb[keep]
    found: list[np.ndarray] = []
    count = 0
    for _ in range(65):  # 64 halvings make every interval of int64 steps a unit
        unit = a == b - 1
        if unit.any():
            found.append(b[unit])
            count += int(unit.sum())
            a, b, va, vb = a[~unit], b[~unit], va[~unit], vb[~unit]
        if count + a.size > limit:
            raise TooManyEntriesError
        if not a.size:
            break
        m = midpoint(a, b)
        vm = v(m)
        left, right = va != vm, vm != vb
        a, b, va, vb = (np.concatenate([a[left], m[right]]), np.concatenate([m[left], b[right]]),
                        np.concatenate([va[left], vm[right]]),
                        np.concatenate([vm[left], vb[right]]))
    else:  # pragma: no cover - excluded by the argument above
        raise AssertionError("the change-point search did not end within 64 halvings")
    return np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)


def build_table(schedule: Any, order: Order = "keras", *, first_step: int = 0,
                horizon: int | None = None,
                max_entries: int = DEFAULT_MAX_ENTRIES) -> Table:
    """The table of ``schedule`` (an :class:`expdecay.ExponentialDecay`) in ``order``.

    Complete (every int64 step covered, the tails proven constant) when the
    schedule saturates within ``max_entries`` entries; otherwise it covers
    ``[first_step, horizon)`` (default: ``DEFAULT_HORIZON`` or ``max_entries``
    steps, the fewer) and the
    regions outside are open.  Raises ``ValueError`` when ``horizon`` asks for
    more than ``max_entries`` entries."""
    first, hz, cap = check_table_arguments(schedule, order, first_step, horizon, max_entries)
    fmt: Format = get_format(schedule.format)

    def v(steps: np.ndarray) -> np.ndarray:
        return _bits(host_values(schedule, order, steps), fmt)

    ends = v(np.array([INT64_MIN, INT64_MAX], np.int64))
    bottom, top = int(ends[0]), int(ends[1])
    # Saturation: v is constant on [INT64_MIN, lo_sat] and on [hi_sat, INT64_MAX].
    lo_sat = _last_equal(v, INT64_MIN, INT64_MAX, bottom)
    hi_sat = _first_equal(v, INT64_MIN, INT64_MAX, top)
    bit_dtype = ends.dtype
    low_val = np.array([bottom], bit_dtype).view(fmt.dtype)
    high_val = np.array([top], bit_dtype).view(fmt.dtype)
    if bottom == top:  # constant everywhere
        return Table(fmt, 0, 1, True, None, high_val.copy(), low_val, high_val)
    # Try the complete table: entries for the steps in (lo_sat, hi_sat).
    start, stop = lo_sat + 1, hi_sat
    if start == stop:  # the tails meet: one entry, the top's value at hi_sat
        return Table(fmt, stop, stop + 1, True, None, high_val.copy(), low_val, high_val)
    if not schedule.staircase:
        if stop - start <= cap:
            steps = np.arange(start, stop, dtype=np.int64)
            return Table(fmt, start, stop, True, None, host_values(schedule, order, steps),
                         low_val, high_val)
    elif (stop - start) / float(check_decay_steps(schedule.decay_steps)) <= 2 * cap:
        try:
            changes = change_points(v, start, stop - 1, cap - 1)
        except TooManyEntriesError:
            pass
        else:
            bounds = np.concatenate([np.array([start], np.int64), changes])
            return Table(fmt, start, stop, False, bounds, host_values(schedule, order, bounds),
                         low_val, high_val)
    # Open table from first_step.
    want = hz if hz is not None else min(first + min(DEFAULT_HORIZON, cap), INT64_MAX)
    start, stop = max(first, lo_sat + 1), min(want, hi_sat)
    low = low_val if start == lo_sat + 1 else None
    if stop <= start:  # first_step is already in the saturated top
        return Table(fmt, start, start + 1, True, None, high_val.copy(), low, high_val)
    high = high_val if stop == hi_sat else None
    if stop - start <= cap:
        steps = np.arange(start, stop, dtype=np.int64)
        values = host_values(schedule, order, steps)
        if schedule.staircase:  # keep one entry per run of equal values when that is smaller
            bits = _bits(values, fmt)
            keep = np.concatenate([[True], bits[1:] != bits[:-1]])
            if keep.sum() * (8 + fmt.dtype.itemsize) < values.nbytes:
                return Table(fmt, start, stop, False, steps[keep], values[keep], low, high)
        return Table(fmt, start, stop, True, None, values, low, high)
    if not schedule.staircase:
        raise ValueError(f"horizon={hz} needs {stop - start} values (one per step of a "
                         f"continuous schedule), more than max_entries={cap}")
    try:
        changes = change_points(v, start, stop - 1, cap - 1)
    except TooManyEntriesError:
        raise ValueError(f"the steps [{start}, {stop}) hold more than max_entries={cap} stairs; "
                         "give a smaller horizon or a larger max_entries") from None
    bounds = np.concatenate([np.array([start], np.int64), changes])
    return Table(fmt, start, stop, False, bounds, host_values(schedule, order, bounds),
                 low, high)
