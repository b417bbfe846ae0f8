"""The oracle fallback: the elements no approximation decides, one oracle
call per distinct key (spec/kernels.md, section 3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import inputs, oracle
from ..floats import Format
from .numpy_paths import floor_div, keras_p
from .plan import FastStats, Plan


class Fallback:
    """Oracle evaluations shared by equal keys across the chunks of a call."""

    def __init__(self, plan: Plan, stats: FastStats):
        self.plan = plan
        self.stats = stats
        self.cache: dict[Any, float] = {}

    def fill(self, out: np.ndarray, idx: np.ndarray, steps: np.ndarray,
             keys: np.ndarray) -> None:
        """Set ``out[idx]`` from the oracle; row ``keys[i]`` (a tag and a value,
        see :func:`oracle_keys`) is the key of ``idx[i]``: equal keys, equal results."""
        if idx.size == 0:
            return
        self.stats.oracle += int(idx.size)
        tags = keys[:, 0]
        if tags.min() == tags.max():  # one key space: a faster one-dimensional unique
            uniq, first, inverse = np.unique(keys[:, 1], return_index=True,
                                             return_inverse=True)
            rows = [(int(tags[0]), v) for v in uniq.tolist()]
        else:
            uniq, first, inverse = np.unique(keys, axis=0, return_index=True,
                                             return_inverse=True)
            rows = list(map(tuple, uniq.tolist()))
        values = np.empty(len(rows))
        for k, (key, pos) in enumerate(zip(rows, first.tolist(), strict=True)):
            got = self.cache.get(key)
            if got is None:
                step = steps[idx[pos]]
                I, D, r = self.plan.args
                got = oracle.evaluate_exact(
                    (I, D, r, inputs.to_exact(step, "step")), self.plan.staircase,
                    self.plan.fmt, self.plan.order)
                self.cache[key] = got
                self.stats.oracle_calls += 1
            values[k] = got
        out[idx] = to_format(values, self.plan.fmt)[inverse.reshape(-1)]


# Tags of the key spaces of :func:`oracle_keys` (a key is a pair: tag, int64 value).
_KEY_STEP_INT, _KEY_STEP_FLOAT, _KEY_P_BITS, _KEY_FLOOR, KEY_UINT64 = range(5)


def tagged(tag: int | np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.broadcast_to(np.asarray(tag, np.int64), values.shape),
                     values.astype(np.int64, copy=False)], axis=1)


def oracle_keys(steps: np.ndarray, plan: Plan) -> np.ndarray:
    """Keys (rows: tag, value) shared by elements with equal results: the bits
    of the exponent ``p`` (keras order; ``Df`` is a value of the format even for
    special schedules), ``floor(s / D)`` where it is known exactly (exact-order
    staircase), else the step itself."""
    if plan.order == "keras":
        with np.errstate(all="ignore"):
            return tagged(_KEY_P_BITS, keras_p(steps, plan).view(np.int64))
    if steps.dtype.kind == "f":
        own = tagged(_KEY_STEP_FLOAT, steps.view(np.int64))
    else:
        own = tagged(_KEY_STEP_INT, steps)
    if plan.staircase:
        with np.errstate(all="ignore"):
            fl, ok = floor_div(steps, plan)
        own[ok] = tagged(_KEY_FLOOR, fl[ok])
    return own



def to_format(val: np.ndarray, fmt: Format) -> np.ndarray:
    """float64 values of ``fmt`` to ``fmt``'s dtype (exact), canonical NaN."""
    out = val.astype(fmt.dtype)
    nan = np.isnan(val)
    if nan.any():
        bits = out.view(f"u{fmt.width // 8}")
        bits[nan] = fmt.nan_bits
    return out


def object_steps(flat: np.ndarray, out: np.ndarray, fallback: Fallback) -> None:
    """Steps given as Python objects (e.g. ints beyond int64): the oracle, one
    call per distinct exact value."""
    plan, stats = fallback.plan, fallback.stats
    I, D, r = plan.args
    seen: dict[Any, float] = {}
    result = np.empty(flat.size)
    for i, x in enumerate(flat.tolist()):
        s = inputs.to_exact(x, "step")
        got = seen.get(s)
        if got is None:
            got = oracle.evaluate_exact((I, D, r, s), plan.staircase, plan.fmt, plan.order)
            seen[s] = got
            stats.oracle_calls += 1
        result[i] = got
    out[:] = to_format(result, plan.fmt)
    stats.oracle += int(flat.size)
