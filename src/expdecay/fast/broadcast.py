"""Broadcasting over the schedule's parameters: a schedule per element
(spec/kernels.md, section 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import inputs
from ..floats import Format, get_format
from ..orders import Order, check_order
from . import dispatch
from .constants import ln2_dd, log2_tables
from .dispatch import UNDECIDED_BUFFER, as_steps, kernel_steps, kernel_tables
from .plan import FastStats


def is_array_input(x: Any) -> bool:
    """A schedule parameter given per element (a numpy array)."""
    return isinstance(x, np.ndarray) and x.ndim > 0


def _group_ids(values: np.ndarray) -> np.ndarray:
    """Integer ids, equal exactly for elements that are the same input: floats
    by their bits (so ``-0.0`` and ``0.0``, and NaN payloads, stay apart),
    integers by value, other objects by type and value."""
    kind = values.dtype.kind
    if kind in "fV" and values.dtype.itemsize in (2, 4, 8):
        keys = values.view(f"u{values.dtype.itemsize}")
    elif kind in "iub":
        keys = values
    else:
        seen: dict[Any, int] = {}
        out = np.empty(values.shape, np.int64)
        for i, v in enumerate(values.tolist()):
            # Floats by their bits (-0.0 and 0.0 are different inputs).
            key = (float, v.hex()) if isinstance(v, float) else (type(v), v if v == v else repr(v))
            out[i] = seen.setdefault(key, len(seen))
        return out
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def evaluate_broadcast(I: Any, D: Any, r: Any, steps: Any, *, staircase: bool, dtype: Any,
                        order: Order, stats: FastStats | None) -> np.ndarray:
    """:func:`evaluate` with per-element schedule parameters."""
    inputs.check_staircase(staircase)
    fmt = get_format(dtype)
    order = check_order(order)
    params = []
    for name, x in (("initial_learning_rate", I), ("decay_steps", D), ("decay_rate", r)):
        if is_array_input(x):
            arr = x
            if arr.dtype.kind not in "iufOV":
                raise TypeError(f"{name} must be an array of numbers; got dtype {arr.dtype}")
        elif isinstance(x, float | int | np.floating | np.integer) and not isinstance(
                x, bool | np.bool_) and (not isinstance(x, int) or -2**63 <= x < 2**63):
            arr = np.asarray(x)  # a number: held exactly by its numpy dtype
        else:
            arr = np.empty((), dtype=object)
            arr[()] = x
        params.append(arr)
    s = as_steps(steps)
    try:
        shape = np.broadcast_shapes(*(p.shape for p in params), s.shape)
    except ValueError as exc:
        raise ValueError(f"initial_learning_rate, decay_steps, decay_rate and steps must "
                         f"broadcast together; got shapes {[p.shape for p in params]} and "
                         f"{s.shape}") from exc
    stats = stats if stats is not None else FastStats()
    result = np.empty(shape, fmt.dtype)
    n = result.size
    if n == 0:
        return result
    flat_params = [np.broadcast_to(p, shape).reshape(-1) for p in params]
    flat_steps = np.broadcast_to(s, shape).reshape(-1)
    flat_out = result.reshape(-1)
    if _broadcast_kernel(flat_params, flat_steps, flat_out, fmt, order, bool(staircase), stats):
        return result
    _evaluate_groups(flat_params, flat_steps, flat_out, np.arange(n), fmt, order,
                     bool(staircase), stats)
    return result


def _evaluate_groups(flat_params: list[np.ndarray], flat_steps: np.ndarray,
                     flat_out: np.ndarray, idx: np.ndarray, fmt: Format, order: Order,
                     staircase: bool, stats: FastStats) -> None:
    """``flat_out[idx]``: the elements ``idx`` grouped by schedule, each group
    evaluated as one schedule."""
    sub = [p[idx] for p in flat_params]
    ids = [_group_ids(p) for p in sub]
    combined = ids[0]
    for more in ids[1:]:
        combined = combined * (int(more.max()) + 1) + more
    order_idx = np.argsort(combined, kind="stable")
    cuts = np.flatnonzero(np.diff(combined[order_idx])) + 1
    for group in np.split(order_idx, cuts):
        first = int(group[0])
        args = [p[first] for p in sub]
        I, D, r = (a.item() if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in args)
        if any(is_array_input(x) for x in (I, D, r)):
            got = evaluate_broadcast(I, D, r, flat_steps[idx[group]], staircase=staircase,
                                     dtype=fmt, order=order, stats=stats)
        else:
            got = dispatch.evaluate_schedule(I, D, r, flat_steps[idx[group]],
                                             staircase=staircase, dtype=fmt, order=order,
                                             stats=stats)
        flat_out[idx[group]] = got


#: The per-element kernel is used when a broadcast evaluation has more
#: distinct schedules than this (fewer: each schedule is planned once).
BROADCAST_KERNEL_MIN_SCHEDULES = 64


def _exact_float64(x: np.ndarray) -> np.ndarray | None:
    """A parameter array as float64 when that is exact, else None."""
    if x.dtype.kind == "f" or x.dtype == get_format("bfloat16").dtype:
        return x.astype(np.float64) if x.dtype.itemsize <= 8 else None
    if x.dtype.kind in "iu" and x.dtype != np.uint64:
        if x.size and int(np.abs(x.astype(np.int64)).max()) >= 1 << 53:
            return None
        return x.astype(np.float64)
    return None



def _broadcast_kernel(flat_params: list[np.ndarray], flat_steps: np.ndarray,
                      flat_out: np.ndarray, fmt: Format, order: Order, staircase: bool,
                      stats: FastStats) -> bool:
    """The per-element kernels; False when they do not apply (numba missing,
    few elements or schedules, parameters that are not numbers exactly held
    by float64, invalid decay steps)."""
    n = flat_steps.size
    if n < dispatch.KERNEL_MIN_ELEMENTS or dispatch.kernel_module() is None:
        return False
    if any(p.dtype.kind == "O" for p in flat_params):
        return False
    conv = [_exact_float64(p) for p in flat_params]
    if any(c is None for c in conv):
        return False
    I, D, R = (np.ascontiguousarray(c) for c in conv)
    if not bool(np.all((D > 0) & np.isfinite(D))):
        return False  # the general path names the bad decay_steps
    # Few schedules (judged on a sample): each is planned once instead.  The
    # sample has at least one element, so that with both thresholds at 0 the
    # kernels take every array.
    head = slice(0, max(4 * dispatch.KERNEL_MIN_ELEMENTS, 1))
    with np.errstate(over="ignore"):
        mixed = (I[head].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                 ^ D[head].view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
                 ^ R[head].view(np.uint64))
    if np.unique(mixed).size <= BROADCAST_KERNEL_MIN_SCHEDULES:
        return False
    steps = kernel_steps(flat_steps)
    if steps is None:
        return False
    mod = dispatch.kernel_module()
    hi, lo, hh, hl, pow2 = kernel_tables()
    buf = np.empty(min(UNDECIDED_BUFFER, n), np.int64)
    pos = 0
    if fmt.precision == 53:
        logs = log2_tables()
        l2h, l2l = ln2_dd()
    else:
        out = flat_out.view(np.uint16 if fmt.width == 16 else np.uint32)
    while pos < n:
        if fmt.precision == 53:
            nxt, count = mod.f64_broadcast_kernel(
                I, D, R, steps, flat_out, pos, buf, order == "keras", staircase, hi, lo, hh,
                hl, l2h, l2l, pow2, *logs)
        else:
            nxt, count = mod.small_broadcast_kernel(
                I, D, R, steps, out, pos, buf, fmt.precision, fmt.emin, fmt.emax, 1 - fmt.emin,
                order == "keras", staircase, hi, ln2_dd()[0], pow2)
        stats.fast += (nxt - pos) - count
        stats.elements += (nxt - pos) - count
        if count:
            stats.deferred += count
            _evaluate_groups(flat_params, flat_steps, flat_out, buf[:count].copy(), fmt,
                             order, staircase, stats)
        pos = nxt
    return True
