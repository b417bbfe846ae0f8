"""Which path evaluates which elements of one schedule: the compiled kernels,
the numpy chunks, the staircase gather, the oracle for Python-object steps
(spec/kernels.md, section 3)."""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np

from .. import inputs
from ..floats import get_format
from ..orders import Order, check_order
from .constants import exp2_table, ln2_dd
from .fallback import KEY_UINT64, Fallback, object_steps, oracle_keys, tagged
from .numpy_paths import floor_div, keras_p, regular_chunk
from .plan import FastStats, Plan, make_plan

#: Elements processed per chunk.
CHUNK = 1 << 13

#: Arrays with fewer elements than this never build power tables (a table of
#: 4096 entries costs about as much as the double-double path on 2**17 steps;
#: evaluations with many elements repay it).
TABLE_MIN_ELEMENTS = 1 << 18


def as_steps(steps: Any) -> np.ndarray:
    arr = np.asarray(steps)
    kind = arr.dtype.kind
    if kind == "b" or kind not in "iufO" and arr.dtype != get_format("bfloat16").dtype:
        raise TypeError(f"steps must be an array of integers or floats; got dtype {arr.dtype}")
    return arr


def _convert(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 or float64 steps, and the mask of elements that could not be
    converted exactly (uint64 above 2**63 - 1), which go to the oracle."""
    kind = chunk.dtype.kind
    if kind == "f" or kind == "V":
        return chunk.astype(np.float64), np.zeros(chunk.shape, bool)
    if chunk.dtype == np.uint64:
        huge = chunk > np.uint64(2**63 - 1)
        return np.where(huge, 0, chunk).astype(np.int64), huge
    return chunk.astype(np.int64), np.zeros(chunk.shape, bool)


def evaluate_schedule(initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
                      steps: Any, *, staircase: bool, dtype: Any, order: Order,
                      stats: FastStats | None) -> np.ndarray:
    """:func:`expdecay.fast.evaluate_array` for one schedule (scalar parameters)."""
    inputs.check_staircase(staircase)
    D = inputs.check_decay_steps(decay_steps)
    fmt = get_format(dtype)
    order = check_order(order)
    I = inputs.to_exact(initial_learning_rate, "initial_learning_rate")
    r = inputs.to_exact(decay_rate, "decay_rate")
    arr = as_steps(steps)
    stats = stats if stats is not None else FastStats()
    plan = make_plan(I, D, r, fmt, order, bool(staircase), arr.size >= TABLE_MIN_ELEMENTS)
    flat = arr.reshape(-1)
    result = np.empty(flat.shape, fmt.dtype)
    fallback = Fallback(plan, stats)
    if arr.dtype.kind == "O":
        object_steps(flat, result, fallback)
    elif _kernel_evaluate(flat, result, plan, fallback):
        pass
    else:
        gather = staircase_table(flat, plan, stats)
        for start in range(0, flat.size, CHUNK):
            chunk, out = flat[start:start + CHUNK], result[start:start + CHUNK]
            if gather is not None and _gather_chunk(chunk, out, plan, *gather):
                stats.fast += int(chunk.size)
            else:
                _evaluate_chunk(chunk, out, plan, fallback)
    stats.elements += int(flat.size)
    return result.reshape(arr.shape)


#: Staircase arrays at least this large are evaluated once per distinct exponent.
GATHER_MIN_ELEMENTS = 4096


def _staircase_exponents(steps: np.ndarray, plan: Plan) -> np.ndarray | None:
    """The integer exponent of every int64 step of a staircase schedule
    (``floor(s / D)``; keras: ``floor(rnd(rnd(s) / Df))``), or None when one
    of them is not proven, not finite or not below ``2**62`` in magnitude (a
    float exponent of 2**63 or more has no int64, and the table's index
    arithmetic must not overflow)."""
    if plan.order == "keras":
        with np.errstate(all="ignore"):
            p = keras_p(steps, plan)
        if not (np.abs(p) < 2.0**62).all():  # False for NaN too
            return None
        return p.astype(np.int64)
    q, ok = floor_div(steps, plan)
    return q if ok.all() else None


# spec/kernels.md, section 6.7
def staircase_table(flat: np.ndarray, plan: Plan, stats: FastStats
                     ) -> tuple[int, np.ndarray] | None:
    """``(lo, table)`` with ``table[q - lo]`` the value for exponent ``q``, for
    every exponent the integer steps of ``flat`` can have; None when the case
    does not qualify (not staircase, special parameters, float steps, or more
    distinct exponents than a quarter of the elements).

    A staircase schedule depends on the step only through its exponent ``q``,
    which is monotone in the step, so the exponents of the smallest and largest
    step bound them all.  The value for ``q`` is exactly the continuous
    schedule at step ``q`` with ``D = 1`` in both orders (keras: ``q`` is a
    value of the format, so ``rnd(q) = q`` and ``rnd(q / 1) = q``): the table
    comes from this module's own continuous path, bit for bit."""
    if (not plan.staircase or plan.kind != "regular" or flat.size < GATHER_MIN_ELEMENTS
            or flat.dtype.kind not in "iu" or flat.dtype == np.uint64):
        return None
    ends = _staircase_exponents(np.array([flat.min(), flat.max()], dtype=np.int64), plan)
    if ends is None:
        return None
    lo, hi = int(ends[0]), int(ends[1])  # Python ints: the span cannot overflow
    if hi - lo >= flat.size // 4:
        return None
    I, _, r = plan.args
    table = evaluate_schedule(I, 1, r, np.arange(lo, hi + 1, dtype=np.int64), staircase=False,
                              dtype=plan.fmt, order=plan.order, stats=stats)
    stats.elements -= table.size  # the caller counts its own elements
    stats.fast -= table.size
    return lo, table


def _gather_chunk(raw: np.ndarray, out: np.ndarray, plan: Plan, lo: int, table: np.ndarray
                  ) -> bool:
    q = _staircase_exponents(raw.astype(np.int64), plan)
    if q is None:
        return False
    out[:] = table[q - lo]
    return True


def _evaluate_chunk(raw: np.ndarray, out: np.ndarray, plan: Plan, fallback: Fallback) -> None:
    steps, unconvertible = _convert(raw)
    if plan.kind == "constant":
        out[:] = plan.const
        fallback.stats.fast += int(raw.size)
        return
    if plan.kind == "oracle":
        ok = np.zeros(raw.shape, bool)
    else:
        with np.errstate(all="ignore"):
            val, ok = regular_chunk(steps, plan)
            out[:] = val  # exact where ok: val holds values of the format
        ok &= ~unconvertible
        fallback.stats.fast += int(np.count_nonzero(ok))
    undecided = np.flatnonzero(~ok & ~unconvertible)
    if undecided.size:
        fallback.fill(out, undecided, raw, oracle_keys(steps[undecided], plan))
    if unconvertible.any():  # uint64 above 2**63 - 1: keyed by value, disjoint from int64
        where = np.flatnonzero(unconvertible)
        fallback.fill(out, where, raw, tagged(KEY_UINT64, raw[where].view(np.int64)))


# ---------------------------------------------------------------------------
# Compiled kernels
# ---------------------------------------------------------------------------

#: Arrays with fewer elements than this stay on the numpy path (which needs
#: no compiler): scalar work never imports numba.
KERNEL_MIN_ELEMENTS = 1 << 12

#: Undecided indices collected per kernel call before the oracle is asked.
UNDECIDED_BUFFER = 1 << 12

_KERNEL_STEP_DTYPES = (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.float64),
                       np.dtype(np.float32))


@functools.cache
def kernel_module() -> Any:
    """The compiled-kernel module, or None when numba cannot be imported (or
    ``EXPDECAY_KERNELS=0`` in the environment switches the kernels off)."""
    if os.environ.get("EXPDECAY_KERNELS", "1") == "0":
        return None
    try:
        from . import kernels
    except ImportError:
        return None
    return kernels


@functools.cache
def kernel_tables() -> tuple[np.ndarray, ...]:
    mod = kernel_module()
    hi, lo, hh, hl = exp2_table()
    return hi, lo, hh, hl, mod.pow2_table()


def kernel_steps(flat: np.ndarray) -> np.ndarray | None:
    """``flat`` in a dtype the kernels take (a view or a copy), or None."""
    if flat.dtype in _KERNEL_STEP_DTYPES:
        return np.ascontiguousarray(flat)
    kind = flat.dtype.kind
    if kind == "u" and flat.dtype.itemsize == 8:
        if flat.size and int(flat.max()) > 2**63 - 1:
            return None
        return flat.astype(np.int64)
    if kind in "iu":
        return flat.astype(np.int64)
    if kind == "f" or flat.dtype == get_format("bfloat16").dtype:
        return flat.astype(np.float64)
    return None


def _kernel_evaluate(flat: np.ndarray, result: np.ndarray, plan: Plan,
                     fallback: Fallback) -> bool:
    """Evaluate a regular schedule with the compiled kernels; False when they
    do not apply (small array, numba missing, special schedule, steps dtype)."""
    if plan.kind != "regular" or flat.size < KERNEL_MIN_ELEMENTS:
        return False
    mod = kernel_module()
    if mod is None:
        return False
    steps = kernel_steps(flat)
    if steps is None:
        return False
    run_kernel(steps, result, plan, fallback)
    return True


# spec/kernels.md, section 3
def run_kernel(steps: np.ndarray, result: np.ndarray, plan: Plan, fallback: Fallback) -> None:
    """The kernel loop: compiled evaluation, oracle for the undecided."""
    mod = kernel_module()
    hi, lo, hh, hl, pow2 = kernel_tables()
    fmt, keras = plan.fmt, plan.order == "keras"
    num, den = plan.d_int if plan.d_int is not None else (0, 1)
    d_float = float(plan.args[1]) if plan.args[1] < 2**1000 else math.inf
    h, l_, e = plan.scale
    buf = np.empty(min(UNDECIDED_BUFFER, max(steps.size, 1)), np.int64)
    l2h, l2l = ln2_dd()
    pos, n = 0, steps.size
    stats = fallback.stats
    # int64 steps of float32/float64 go through the block kernels (the loops
    # vectorise); other step dtypes and formats through the per-element ones.
    block = (steps.dtype == np.int64 and fmt.name in ("bfloat16", "float32", "float64")
             and os.environ.get("EXPDECAY_BLOCK_KERNELS", "1") != "0")
    while pos < n:
        if block and fmt.precision == 8:
            nxt, count = mod.bf16_block_kernel(
                steps, result.view(np.uint16), pos, buf, keras, plan.staircase, plan.c[0],
                h, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den, d_float,
                hi, l2h, pow2)
        elif block and fmt.precision == 53:
            nxt, count = mod.f64_block_kernel(
                steps, result, pos, buf, keras, plan.staircase, plan.c[0], plan.c[1],
                h, l_, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den,
                d_float, hi, lo, hh, hl, l2h, l2l, pow2)
        elif block:
            nxt, count = mod.f32_block_kernel(
                steps, result.view(np.uint32), result.view(np.float32), pos, buf, keras,
                plan.staircase, plan.c[0], h, e, plan.negative, plan.log2_i, plan.i_fmt,
                plan.d_fmt, num, den, d_float, hi, l2h, pow2)
        elif fmt.precision == 53:
            nxt, count = mod.f64_kernel(
                steps, result, pos, buf, keras, plan.staircase, plan.c[0], plan.c[1],
                h, l_, e, plan.negative, plan.log2_i, plan.i_fmt, plan.d_fmt, num, den,
                d_float, hi, lo, hh, hl, l2h, l2l, pow2)
        else:
            bias = 1 - fmt.emin
            out = result.view(np.uint16 if fmt.width == 16 else np.uint32)
            nxt, count = mod.small_kernel(
                steps, out, pos, buf, fmt.precision, fmt.emin, fmt.emax, bias, keras,
                plan.staircase, plan.c[0], h, e, plan.negative, plan.log2_i, plan.i_fmt,
                plan.d_fmt, num, den, d_float, hi, l2h, pow2)
        stats.fast += (nxt - pos) - count
        if count:
            idx = buf[:count].copy()
            conv, _ = _convert(steps[idx])
            if fmt.precision == 53 and plan.tables:
                # The numpy path's power tables (bound 2**-96) decide almost
                # every element the double-double bound 2**-69 leaves.
                with np.errstate(all="ignore"):
                    val, ok = regular_chunk(conv, plan)
                result[idx[ok]] = val[ok]
                stats.fast += int(np.count_nonzero(ok))
                idx, conv = idx[~ok], conv[~ok]
            if idx.size:
                fallback.fill(result, idx, steps, oracle_keys(conv, plan))
        pos = nxt

