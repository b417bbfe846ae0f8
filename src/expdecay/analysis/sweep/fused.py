"""The fused route of a sweep: the three orders evaluated and reduced in one
compiled pass per chunk (:mod:`expdecay.analysis.sweep.fused_kernels`)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...fast.constants import ln2_dd
from ...fast.dispatch import kernel_module, kernel_tables
from ...fast.plan import make_plan
from ...inputs import check_decay_steps, to_exact
from ...orders import Order
from .evaluation import Schedule, evaluate_order
from .stats import Envelope, ErrorStats, ulp_errors
from .steps import StepSet
from .unfused import Task, run_task

#: Larger ``|error|`` values the kernel writes out per reference before the
#: chunk stops for them to be counted (the dense histogram takes the others).
_BIG = 1 << 16

#: Undecided steps collected per chunk before the kernel stops for them.
_PENDING = 1 << 16


@dataclass(frozen=True)
class FusedSetup:
    """The kernel parameters of the three orders (exact, keras, exact on the
    rounded inputs) of one schedule."""

    kernel: Callable[..., Any]
    keras: np.ndarray  # bool per order
    fp: np.ndarray  # float64 (3, 6)
    ip: np.ndarray  # int64 (3, 4)
    fmt: np.ndarray  # int64: precision, emin, emax, bias
    tab: np.ndarray
    ln2: float
    pow2: np.ndarray


class SetupCache:
    """The fused route's setups of the schedules used last (a sweep asks for
    its schedule's setup once per chunk), at most ``maxsize`` of them: a
    process that analyses many schedules keeps only the recent ones."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Schedule, FusedSetup | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sch: Schedule) -> FusedSetup | None:
        with self._lock:
            if sch in self._items:
                self._items.move_to_end(sch)
                return self._items[sch]
            got = make_setup(sch)
            self._items[sch] = got
            if len(self._items) > self.maxsize:
                self._items.popitem(last=False)  # the least recently used
            return got

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, sch: object) -> bool:
        return sch in self._items


SETUPS = SetupCache(maxsize=16)


def fused_setup(sch: Schedule) -> FusedSetup | None:
    """The fused route's parameters for ``sch``, or None when it does not
    apply: not a 16- or 32-bit format, no compiled kernels (numba missing or
    ``EXPDECAY_KERNELS=0``), ``EXPDECAY_FUSED_SWEEP=0``, or a schedule one of
    whose orders is not a regular plan of :mod:`expdecay.fast` (special
    parameters, a constant schedule).  Recent schedules' answers are kept in
    :data:`SETUPS` (the switches are read when a schedule's setup is made)."""
    try:
        hash(sch)
    except TypeError:  # an unhashable input: not cached
        return make_setup(sch)
    return SETUPS.get(sch)


def make_setup(sch: Schedule) -> FusedSetup | None:
    fmt = sch.format
    if fmt.width not in (16, 32) or os.environ.get("EXPDECAY_FUSED_SWEEP", "1") == "0":
        return None
    if kernel_module() is None:
        return None
    try:
        from . import fused_kernels
    except (ImportError, AttributeError):  # no numba, or kernels it cannot find
        return None
    D = check_decay_steps(sch.decay_steps)
    I = to_exact(sch.initial_learning_rate, "initial_learning_rate")
    r = to_exact(sch.decay_rate, "decay_rate")
    If, rf = sch.rounded()
    Iq, rq = to_exact(If, "initial_learning_rate"), to_exact(rf, "decay_rate")
    orders: tuple[tuple[Any, Any, Order], ...] = ((I, r, "exact"), (I, r, "keras"),
                                                 (Iq, rq, "exact"))
    plans = [make_plan(a, D, b, fmt, order, sch.staircase, False) for a, b, order in orders]
    if any(p.kind != "regular" for p in plans):
        return None
    fp = np.empty((3, 6))
    ip = np.empty((3, 4), np.int64)
    for o, p in enumerate(plans):
        # The arguments fast.run_kernel passes the kernels, in their order.
        num, den = p.d_int if p.d_int is not None else (0, 1)
        d_float = float(p.args[1]) if p.args[1] < 2**1000 else math.inf
        h, _, e = p.scale
        fp[o] = (p.c[0], h, p.log2_i, p.i_fmt, p.d_fmt, d_float)
        ip[o] = (e, int(p.negative), num, den)
    hi, _, _, _, pow2 = kernel_tables()
    l2h, _ = ln2_dd()
    kernel = fused_kernels.fused32 if fmt.width == 32 else fused_kernels.fused16
    return FusedSetup(kernel, np.array([False, True, False]), fp, ip,
                       np.array([fmt.precision, fmt.emin, fmt.emax, 1 - fmt.emin], np.int64),
                       hi, l2h, pow2)


def fused_available(schedule: Schedule, implementation: str = "expdecay",
                    options: dict[str, Any] | None = None, pow_ulps: float | None = None
                    ) -> bool:
    """Whether :func:`sweep` takes the fused route: expdecay's own keras order,
    no error bound (``pow_ulps=None``), a float16, bfloat16 or float32
    schedule whose three orders are regular plans, and the compiled kernels
    available.  Otherwise the unfused route (:func:`expdecay.fast.evaluate_array`
    and numpy reductions) measures the same thing."""
    options = options or {}
    own = implementation == "expdecay" and options.get("order", "keras") == "keras"
    return own and pow_ulps is None and fused_setup(schedule) is not None


def run_fused(task: Task) -> tuple[ErrorStats, ErrorStats, ErrorStats, Envelope, float,
                                     int, str | None]:
    """:func:`run_task` for expdecay's keras order without the bound, by the
    fused kernel of :mod:`expdecay.analysis.sweep.fused_kernels`; the same result."""
    sch, steps, top = task.schedule, task.steps, task.top
    setup = fused_setup(sch)
    if setup is None:  # a worker where the kernels cannot load: the unfused route
        return run_task(task)
    n = len(steps)
    explicit = steps.points is not None or steps.stride >= 1 << 62
    arr = steps.array() if explicit else np.empty(0, np.int64)
    env = task.envelope.copy()
    nb = env.err_min.size
    cnt, nanm, tot = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)
    hist = np.zeros((2, _sweep_hist()), np.int64)
    big, nbig = np.empty((2, _BIG), np.int64), np.zeros(2, np.int64)
    wa, we, ws = (np.zeros((2, top), np.int64) for _ in range(3))
    wn = np.zeros(2, np.int64)
    emin, emax = np.full((2, nb), np.inf), np.full((2, nb), -np.inf)
    pend = np.empty(_PENDING, np.int64)
    stats = [ErrorStats(), ErrorStats()]
    pending: list[np.ndarray] = []
    pos = 0
    while pos < n:
        args: tuple[Any, ...] = (arr, explicit, steps.start, steps.stride, n, pos, setup.keras,
                                 sch.staircase, sch.staircase and _reuse(), setup.fp, setup.ip)
        if setup.kernel.__name__ == "fused16":
            args += (setup.fmt,)
        pos, npend = setup.kernel(*args, setup.tab, setup.ln2, setup.pow2, env.edges, cnt,
                                  nanm, tot, hist, big, nbig, wa, we, ws, wn, emin, emax,
                                  pend, 0)
        for j in range(2):
            if nbig[j]:
                vals, counts = np.unique(big[j, :nbig[j]], return_counts=True)
                h = stats[j].hist
                for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
                    h[v] = h.get(v, 0) + c
                nbig[j] = 0
        if npend:
            pending.append(pend[:npend].copy())
    for j, st in enumerate(stats):
        st.count, st.nan_mismatch, st.total_abs = int(cnt[j]), int(nanm[j]), int(tot[j])
        for v in np.flatnonzero(hist[j]).tolist():
            st.hist[v] = st.hist.get(v, 0) + int(hist[j, v])
        st.worst = [(int(we[j, i]), int(ws[j, i])) for i in range(int(wn[j]))]
    decided = int(cnt[0] + nanm[0])
    vs_k = ErrorStats(count=decided, hist={0: decided} if decided else {})
    env.err_min[:], env.err_max[:] = emin[0], emax[0]
    env.arith_min[:], env.arith_max[:] = emin[1], emax[1]
    if pending:
        # Steps one of the kernels left undecided: the oracle, then the same
        # reductions (each is exact and independent of the folding order).
        s = np.concatenate(pending)
        kw: dict[str, Any] = {"staircase": sch.staircase, "dtype": sch.dtype}
        I, D, r = sch.initial_learning_rate, sch.decay_steps, sch.decay_rate
        If, rf = sch.rounded()
        keras = evaluate_order(I, D, r, s, order="keras", **kw)
        errs = []
        for st, ref in ((stats[0], evaluate_order(I, D, r, s, order="exact", **kw)),
                        (vs_k, keras),
                        (stats[1], evaluate_order(If, D, rf, s, order="exact", **kw))):
            err, valid = ulp_errors(keras, ref, sch.format)
            st.add(err, s, valid, top)
            errs.append(err)
        env.add(s, errs[0], errs[2], None)
    return stats[0], vs_k, stats[1], env, -math.inf, 0, None


def _reuse() -> bool:
    """Staircase: one evaluation per run of equal exponent (default), or
    every step (``EXPDECAY_SWEEP_REUSE=0``, for measurement)."""
    return os.environ.get("EXPDECAY_SWEEP_REUSE", "1") != "0"


def _sweep_hist() -> int:
    from .fused_kernels import HIST

    return HIST


#: Seconds the first fused call of this process took per kernel (compiling
#: the kernel, or loading it from numba's cache), by format width.
first_call_seconds: dict[int, float] = {}


def warm_fused(schedule: Schedule) -> None:
    """One tiny fused chunk, so that the kernel is compiled (or loaded from
    numba's cache) once, before worker threads start."""
    width = schedule.format.width
    if width in first_call_seconds:
        return
    t0 = time.perf_counter()
    one = StepSet(0, 1)
    run_fused(Task(schedule, one, "expdecay", (), Envelope.empty(one, 1), 1, None))
    first_call_seconds[width] = time.perf_counter() - t0
