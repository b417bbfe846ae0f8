"""Error sweeps: ulp error of an implementation over a set of steps.

A sweep compares, at every step of a :class:`StepSet`, the values of an
implementation with the correctly rounded ``exact`` and ``keras`` orders, and
reduces them on the fly to exact statistics (a histogram of integer ulp
errors gives the mean and percentiles exactly), the worst steps, the error
bound and an envelope for plotting.  Work is cut into chunks; with the
vectorised fast path (:mod:`expdecay.fast`) evaluates them, in a process pool
on every core for expdecay's own order.

A separate, smaller pass splits the error into its causes (:func:`quantisation`):
rounding ``initial_learning_rate`` and ``decay_rate`` to the format, and the
arithmetic of the keras order itself.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .. import fast as _fast
from ..fast import evaluate as fast_evaluate
from ..floats import Format, get_format, round_rational, ulp_diff, ulp_keys
from ..inputs import check_decay_steps, to_exact

__all__ = [
    "StepSet",
    "parse_steps",
    "Schedule",
    "SweepResult",
    "sweep",
    "quantisation",
    "evaluate_order",
]

#: Chunk length of a sweep (steps per task).
CHUNK = 1 << 20

#: Chunk length of the fused route (:func:`fused_available`).
FUSED_CHUNK = 1 << 22


#: Longest step set the fast path sweeps in full; a longer one is cut to
#: :data:`FAST_SAMPLES` log-spaced samples (plus the special steps).
FAST_BUDGET = 1 << 26

#: Log-spaced samples of a set too long for the fast path.  Samples are held
#: as a tuple of Python ints (about 40 bytes each), hence fewer than
#: :data:`FAST_BUDGET`, which a contiguous range sweeps chunk by chunk.
FAST_SAMPLES = 1 << 22


# ---------------------------------------------------------------------------
# Step sets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSet:
    """Integer steps: ``range(start, stop, stride)``, or explicit ``points``."""

    start: int
    stop: int
    stride: int = 1
    points: tuple[int, ...] | None = None
    log: bool = False

    def __len__(self) -> int:
        if self.points is not None:
            return len(self.points)
        return max(0, -(-(self.stop - self.start) // self.stride))

    @property
    def lo(self) -> int:
        return min(self.points) if self.points else self.start

    @property
    def hi(self) -> int:
        """One past the largest step."""
        return max(self.points) + 1 if self.points else self.stop

    def chunks(self, size: int = CHUNK) -> Iterator[StepSet]:
        """Consecutive pieces of at most ``size`` steps."""
        if self.points is not None:
            for i in range(0, len(self.points), size):
                yield StepSet(0, 0, 1, self.points[i:i + size], self.log)
            return
        span = size * self.stride
        for a in range(self.start, self.stop, span):
            yield StepSet(a, min(self.stop, a + span), self.stride, None, self.log)

    def array(self) -> np.ndarray:
        if self.points is not None:
            return np.asarray(self.points, dtype=np.int64)
        return np.arange(self.start, self.stop, self.stride, dtype=np.int64)

    def sample(self, n: int, extra: tuple[int, ...] = ()) -> StepSet:
        """At most about ``n`` steps of this set, log-spaced (dense near the
        start, where a schedule changes fastest in ulps), plus ``extra``
        steps that fall inside it."""
        if len(self) <= n:
            return self
        lo, hi = self.lo, self.hi - 1
        grid = np.rint(np.geomspace(max(lo, 1), hi, n)).astype(np.int64)
        # float64 rounding can push the ends just outside [lo, hi] (2**62 - 1).
        grid = np.unique(np.clip(grid, lo, hi))
        if lo < 1:
            grid = np.unique(np.concatenate([[lo], grid]))
        if self.points is None and self.stride > 1:
            grid = self.start + (grid - self.start) // self.stride * self.stride
        inside = np.asarray([e for e in extra if self.contains(e)], dtype=np.int64)
        picks = np.union1d(grid, inside)  # sorted, unique, stays in numpy
        return StepSet(0, 0, 1, tuple(picks.tolist()), True)

    def contains(self, s: int) -> bool:
        if self.points is not None:
            return s in self.points
        return self.start <= s < self.stop and (s - self.start) % self.stride == 0

    def describe(self) -> str:
        if self.points is not None:
            kind = "log-spaced samples" if self.log else ("steps" if len(self) != 1 else "step")
            return f"{len(self)} {kind} in [{self.lo}, {self.hi})"
        stride = f" every {self.stride}" if self.stride != 1 else ""
        n = len(self)
        return f"[{self.start}, {self.stop}){stride}: {n} step{'s' if n != 1 else ''}"


#: Numbers in a step specification must be below ``2**MAX_SPEC_BITS`` in
#: magnitude.  Steps must lie within +-2**62 anyway; this bound is checked on
#: the text, before any power or decimal exponent is evaluated, so that
#: ``10**999999999`` or ``1e1_000_000`` is refused at once, not computed.
MAX_SPEC_BITS = 64

#: Longest number (characters) accepted in a step specification.
MAX_SPEC_CHARS = 100

_DIGITS = r"[0-9](?:_?[0-9])*"  # digits, single underscores between them
_POWER = re.compile(rf"([+-]?)({_DIGITS})\*\*({_DIGITS})")
_DECIMAL = re.compile(rf"([+-]?)({_DIGITS})?(?:\.({_DIGITS})?)?(?:[eE]([+-]?{_DIGITS}))?")


def _shown(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for an error message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _int(text: str, name: str) -> int:
    """An integer written as ``123``, ``1_000``, ``2**24``, ``-2**31``, ``1e6``,
    ``1.5e3`` or ``-5``, of magnitude below ``2**MAX_SPEC_BITS``.

    A sign before a power applies to the power, as in Python (``-2**2`` is
    -4).  Operands are bounded before anything is computed: a power's result
    size is known from the bit length of its base times its exponent, a
    decimal's from its digit count plus its exponent.
    """
    t = text.strip()
    shown = _shown(t)
    if len(t) > MAX_SPEC_CHARS:
        raise ValueError(f"{name}: a number has at most {MAX_SPEC_CHARS} characters; "
                         f"got {shown!r}")
    not_int = ValueError(f"{name} must be an integer; got {shown!r}")
    too_big = ValueError(f"{name}: numbers must be below 2**{MAX_SPEC_BITS} in magnitude; "
                         f"got {shown!r}")
    if m := _POWER.fullmatch(t):
        sign, base, exp = m.group(1), int(m.group(2)), int(m.group(3))  # int() takes "1_0"
        # base >= 2: base**exp >= 2**((bit_length - 1) * exp), so this refuses
        # every result of 2**MAX_SPEC_BITS or more before computing it.
        if base >= 2 and (base.bit_length() - 1) * exp >= MAX_SPEC_BITS:
            raise too_big
        value = base**exp if base >= 2 else int(base == 1 or exp == 0)  # 0**0 = 1
    elif (m := _DECIMAL.fullmatch(t)) and (m.group(2) or m.group(3)):
        sign, whole, frac, exp10 = m.groups()
        frac = (frac or "").replace("_", "")
        mant = int((whole or "0").replace("_", "") + frac)
        e = (int(exp10) if exp10 else 0) - len(frac)  # at most MAX_SPEC_CHARS digits
        if mant == 0:
            value = 0
        elif e >= 0:
            # mant * 10**e >= 10**(digits - 1 + e) >= 10**20 > 2**64 when digits + e > 20
            if len(str(mant)) + e > 20:
                raise too_big
            value = mant * 10**e
        else:
            if -e >= len(str(mant)):  # 0 < |value| < 1
                raise not_int
            value, rest = divmod(mant, 10**-e)
            if rest:
                raise not_int
    else:
        raise not_int
    if value >= 1 << MAX_SPEC_BITS:
        raise too_big
    return -value if sign == "-" else value


def parse_steps(spec: str) -> StepSet:
    """Parse ``START:STOP[:STEP]`` (every STEP-th integer), ``log:START:STOP:N``
    (N log-spaced integers, ``N <= FAST_SAMPLES``) or ``A,B,C`` (a list).
    Each number is an integer as :func:`_int` reads it, below
    ``2**MAX_SPEC_BITS`` in magnitude; anything else is a ``ValueError``
    naming ``steps`` and the value.

    >>> parse_steps("0:2**25").describe()
    '[0, 33554432): 33554432 steps'
    >>> parse_steps("log:1:10**6:5").points
    (1, 32, 1000, 31623, 999999)
    """
    if not isinstance(spec, str):
        raise TypeError(f"steps must be a str; got {spec!r}")
    parts = spec.split(":")
    if parts[0] == "log":
        if len(parts) != 4:
            raise ValueError(f"steps must be log:START:STOP:N; got {_shown(spec)!r}")
        a, b, n = (_int(p, "steps") for p in parts[1:])
        if not 0 <= a < b or not 1 <= n <= FAST_SAMPLES:
            raise ValueError(f"steps log:START:STOP:N needs 0 <= START < STOP, "
                             f"1 <= N <= {FAST_SAMPLES}; got {_shown(spec)!r}")
        return StepSet(a, b).sample(n) if b - a > n else StepSet(a, b)
    if len(parts) == 1:
        pts = tuple(sorted({_int(p, "steps") for p in spec.split(",")}))
        return StepSet(0, 0, 1, pts)
    if len(parts) not in (2, 3):
        raise ValueError(f"steps must be START:STOP[:STEP]; got {_shown(spec)!r}")
    a, b = _int(parts[0], "steps"), _int(parts[1], "steps")
    stride = _int(parts[2], "steps") if len(parts) == 3 else 1
    if stride < 1 or b <= a:
        raise ValueError("steps START:STOP[:STEP] needs START < STOP and STEP >= 1; "
                         f"got {_shown(spec)!r}")
    if abs(a) >= 1 << 62 or abs(b) > 1 << 62:
        raise ValueError(f"steps must lie within +-2**62; got {_shown(spec)!r}")
    return StepSet(a, b, stride)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A schedule configuration with its inputs as given (exact strings or numbers)."""

    initial_learning_rate: Any
    decay_steps: Any
    decay_rate: Any
    staircase: bool
    dtype: str

    @property
    def format(self) -> Format:
        return get_format(self.dtype)

    def rounded(self) -> tuple[float, float]:
        """``(rnd(I), rnd(r))``: the inputs as the format holds them."""
        fmt = self.format
        return tuple(  # type: ignore[return-value]
            _round_input(to_exact(x, n), fmt)
            for x, n in ((self.initial_learning_rate, "initial_learning_rate"),
                         (self.decay_rate, "decay_rate"))
        )


def _round_input(x: Any, fmt: Format) -> float:
    return round_rational(x, fmt) if isinstance(x, Fraction) else x


def evaluate_order(
    I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool, dtype: str, order: str
) -> np.ndarray:
    """The correctly rounded schedule at ``steps`` (array of the format's dtype),
    by the vectorised paths of :mod:`expdecay.fast`."""
    fmt = get_format(dtype)
    return np.asarray(
        fast_evaluate(I, D, r, steps, staircase=staircase, dtype=fmt.name, order=order)
    ).astype(fmt.dtype, copy=False)




# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------


@dataclass
class ErrorStats:
    """Exact statistics of integer ulp errors (signed values, |.| for stats)."""

    count: int = 0
    nan_mismatch: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    worst: list[tuple[int, int]] = field(default_factory=list)  # (err, step)
    total_abs: int = 0

    def add(self, err: np.ndarray, steps: np.ndarray, valid: np.ndarray, top: int) -> None:
        self.nan_mismatch += int((~valid).sum())
        err, steps = err[valid], steps[valid]
        self.count += err.size
        a = np.abs(err)
        self.total_abs += int(a.sum())
        if a.size and a.max() < 1 << 16:
            cnt = np.bincount(a)
            vals = np.flatnonzero(cnt)
            cnt = cnt[vals]
        else:
            vals, cnt = np.unique(a, return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
            self.hist[v] = self.hist.get(v, 0) + c
        if a.size:
            k = min(top, a.size)
            v = a[np.argpartition(-a, k - 1)[k - 1]]  # the k-th largest |error|
            above = np.flatnonzero(a > v)
            ties = np.flatnonzero(a == v)[: k - above.size]  # earliest steps first
            idx = np.concatenate([above, ties])
            cand = [(int(err[i]), int(steps[i])) for i in idx if a[i] > 0]
            self.worst = _top(self.worst + cand, top)

    def merge(self, other: ErrorStats, top: int) -> None:
        self.count += other.count
        self.nan_mismatch += other.nan_mismatch
        self.total_abs += other.total_abs
        for v, c in other.hist.items():
            self.hist[v] = self.hist.get(v, 0) + c
        self.worst = _top(self.worst + other.worst, top)

    @property
    def max(self) -> int:
        return max(self.hist, default=0)

    @property
    def mean(self) -> float:
        return self.total_abs / self.count if self.count else 0.0

    def percentile(self, q: float) -> int:
        """Least ``v`` with at least ``q`` percent of the |errors| ``<= v``."""
        need = math.ceil(q / 100 * self.count)
        acc = 0
        for v in sorted(self.hist):
            acc += self.hist[v]
            if acc >= need:
                return v
        return 0

    def nonzero(self) -> int:
        return self.count - self.hist.get(0, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "nonzero": self.nonzero(),
            "nan_mismatch": self.nan_mismatch,
            "max_abs_ulp": self.max,
            "mean_abs_ulp": self.mean,
            "percentiles_abs_ulp": {str(q): self.percentile(q) for q in (50, 90, 99, 99.9, 100)},
            "worst": [{"step": s, "ulp": e} for e, s in self.worst],
        }


def _top(items: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    return sorted(set(items), key=lambda t: (-abs(t[0]), t[1]))[:n]


@dataclass
class Envelope:
    """Per-bin extremes of the error and the bound, for plotting."""

    edges: np.ndarray
    err_min: np.ndarray
    err_max: np.ndarray
    bound_max: np.ndarray
    arith_min: np.ndarray
    arith_max: np.ndarray

    @classmethod
    def empty(cls, steps: StepSet, bins: int) -> Envelope:
        lo, hi = steps.lo, steps.hi
        bins = max(1, min(bins, len(steps)))
        if steps.log and lo >= 0:
            edges = np.concatenate([[lo], np.geomspace(max(lo, 1), hi, bins)])
        else:
            edges = np.linspace(lo, hi, bins + 1)
        n = len(edges) - 1
        lo_, hi_ = np.full(n, np.inf), np.full(n, -np.inf)
        return cls(edges, lo_, hi_, hi_.copy(), lo_.copy(), hi_.copy())

    def copy(self) -> Envelope:
        return Envelope(self.edges, self.err_min.copy(), self.err_max.copy(),
                        self.bound_max.copy(), self.arith_min.copy(), self.arith_max.copy())

    def add(self, steps: np.ndarray, err: np.ndarray, arith: np.ndarray,
            bound: np.ndarray | None) -> None:
        """Fold in the errors against exact (``err``), against exact on the
        rounded inputs (``arith``) and the bound at ``steps``."""
        i = np.clip(np.searchsorted(self.edges, steps, side="right") - 1, 0, len(self.err_min) - 1)
        for arr, lo, hi in ((err, self.err_min, self.err_max),
                            (arith, self.arith_min, self.arith_max)):
            e = arr.astype(np.float64)
            np.minimum.at(lo, i, e)
            np.maximum.at(hi, i, e)
        if bound is not None:
            np.maximum.at(self.bound_max, i, np.asarray(bound, dtype=np.float64))

    def merge(self, other: Envelope) -> None:
        for name in ("err_min", "arith_min"):
            np.minimum(getattr(self, name), getattr(other, name), out=getattr(self, name))
        for name in ("err_max", "bound_max", "arith_max"):
            np.maximum(getattr(self, name), getattr(other, name), out=getattr(self, name))


@dataclass
class SweepResult:
    """What :func:`sweep` measured."""

    schedule: Schedule
    implementation: str
    steps: StepSet
    vs_exact: ErrorStats
    vs_keras: ErrorStats
    vs_rounded: ErrorStats
    envelope: Envelope
    bound_max: float | None = None
    bound_violations: int = 0
    bound_available: bool = False
    seconds: float = 0.0
    evaluator: str = "fast"
    pow_ulps: float | None = 1
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Steps per second."""
        return len(self.steps) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "steps": self.steps.describe(),
            "evaluated_steps": len(self.steps),
            "evaluator": self.evaluator,
            "vs_exact": self.vs_exact.to_json(),
            "vs_keras": self.vs_keras.to_json(),
            "vs_exact_on_rounded_inputs": self.vs_rounded.to_json(),
            "bound": {
                "available": self.bound_available,
                "max_ulp": self.bound_max,
                "violations": self.bound_violations,
            },
            "seconds": round(self.seconds, 3),
            "steps_per_second": round(self.rate, 1),
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    schedule: Schedule
    steps: StepSet
    implementation: str
    options: tuple[tuple[str, Any], ...]
    envelope: Envelope
    top: int
    pow_ulps: float | None  # None: no bound


def _error_bound(
    sch: Schedule, steps: np.ndarray, pow_ulps: float
) -> tuple[np.ndarray | None, str | None]:
    """The derived bound at ``steps`` (ulps), or None and why not.  A failure
    of the bound is reported, never allowed to stop the measurement."""
    try:
        from ..bounds import error_bound
    except ImportError:
        return None, None
    try:
        return np.asarray(error_bound(
            sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, steps,
            staircase=sch.staircase, dtype=sch.dtype, pow_ulps=pow_ulps), dtype=np.float64), None
    except Exception as e:  # noqa: BLE001 - reported in the notes
        return None, f"error bound failed: {type(e).__name__}: {e}"


def implementation_values(
    sch: Schedule, steps: np.ndarray, implementation: str, options: dict[str, Any],
    keras_values: np.ndarray | None = None,
) -> np.ndarray:
    """The implementation's outputs at ``steps`` in the schedule's dtype.

    ``implementation="expdecay"`` with no options is this package's keras order.
    """
    fmt = sch.format
    if implementation == "expdecay" and options.get("order", "keras") == "keras":
        if keras_values is not None:
            return keras_values
        return evaluate_order(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, steps,
                              staircase=sch.staircase, dtype=sch.dtype, order="keras")
    from ..conformance.adapters import AdapterError, Params, get_adapter

    key = (implementation, tuple(sorted(options.items())))
    try:
        adapter = _ADAPTERS.get(key)
        if adapter is None:
            adapter = _ADAPTERS[key] = get_adapter(implementation, **options)
        params = Params(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate,
                        sch.staircase, sch.dtype)
        got = np.asarray(adapter.evaluate(params, [int(s) for s in steps]), dtype=np.float64)
    except AdapterError as e:
        # A missing framework or a step it cannot take: one line on the CLI.
        raise ValueError(f"implementation {implementation!r} failed: {e}") from None
    return got.astype(fmt.dtype)


_ADAPTERS: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


def adapter_label(implementation: str, options: dict[str, Any]) -> str:
    """A short name with version for reports."""
    if implementation == "expdecay" and options.get("order", "keras") == "keras":
        return "expdecay keras order (correctly rounded pow)"
    try:
        from ..conformance.adapters import get_adapter

        key = (implementation, tuple(sorted(options.items())))
        a = _ADAPTERS.get(key) or get_adapter(implementation, **options)
        _ADAPTERS[key] = a
        opts = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
        return f"{a.name} [{a.version}]" + (f" ({opts})" if opts else "")
    except Exception as e:  # noqa: BLE001 - a label must not fail the analysis
        return f"{implementation} ({e})"


def _errors(a: np.ndarray, b: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Signed ulp distance ``a - b`` (0 where NaN) and where it is defined
    (both NaN or neither)."""
    na, nb = np.isnan(a), np.isnan(b)
    return np.where(na | nb, 0, ulp_diff(ulp_keys(a, fmt), ulp_keys(b, fmt))), na == nb


def _run_task(
    task: _Task,
) -> tuple[ErrorStats, ErrorStats, ErrorStats, Envelope, float, int, str | None]:
    sch = task.schedule
    steps = task.steps.array()
    fmt = sch.format
    kw: dict[str, Any] = {"staircase": sch.staircase, "dtype": sch.dtype}
    I, D, r = sch.initial_learning_rate, sch.decay_steps, sch.decay_rate
    exact = evaluate_order(I, D, r, steps, order="exact", **kw)
    keras = evaluate_order(I, D, r, steps, order="keras", **kw)
    If, rf = sch.rounded()
    exact_q = evaluate_order(If, D, rf, steps, order="exact", **kw)
    impl = implementation_values(sch, steps, task.implementation, dict(task.options), keras)
    stats = []
    errs = []
    for ref in (exact, keras, exact_q):
        err, valid = _errors(impl, ref, fmt)
        st = ErrorStats()
        st.add(err, steps, valid, task.top)
        stats.append(st)
        errs.append(err)
    bound, why = (None, None) if task.pow_ulps is None else \
        _error_bound(sch, steps, task.pow_ulps)
    env = task.envelope.copy()
    env.add(steps, errs[0], errs[2], bound)
    err_e = errs[0]
    bmax, viol = -math.inf, 0
    if bound is not None and bound.size:
        bmax = float(np.nanmax(bound))
        viol = int((np.abs(err_e) > bound).sum())
    return stats[0], stats[1], stats[2], env, bmax, viol, why


# ---------------------------------------------------------------------------
# The fused route: one compiled pass per chunk
# ---------------------------------------------------------------------------

#: Larger ``|error|`` values the kernel writes out per reference before the
#: chunk stops for them to be counted (the dense histogram takes the others).
_BIG = 1 << 16

#: Undecided steps collected per chunk before the kernel stops for them.
_PENDING = 1 << 16


@dataclass(frozen=True)
class _FusedSetup:
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


class _SetupCache:
    """The fused route's setups of the schedules used last (a sweep asks for
    its schedule's setup once per chunk), at most ``maxsize`` of them: a
    process that analyses many schedules keeps only the recent ones."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Schedule, _FusedSetup | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sch: Schedule) -> _FusedSetup | None:
        with self._lock:
            if sch in self._items:
                self._items.move_to_end(sch)
                return self._items[sch]
            got = _make_setup(sch)
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


_SETUPS = _SetupCache(maxsize=16)


def _fused_setup(sch: Schedule) -> _FusedSetup | None:
    """The fused route's parameters for ``sch``, or None when it does not
    apply: not a 16- or 32-bit format, no compiled kernels (numba missing or
    ``EXPDECAY_KERNELS=0``), ``EXPDECAY_FUSED_SWEEP=0``, or a schedule one of
    whose orders is not a regular plan of :mod:`expdecay.fast` (special
    parameters, a constant schedule).  Recent schedules' answers are kept in
    :data:`_SETUPS` (the switches are read when a schedule's setup is made)."""
    try:
        hash(sch)
    except TypeError:  # an unhashable input: not cached
        return _make_setup(sch)
    return _SETUPS.get(sch)


def _make_setup(sch: Schedule) -> _FusedSetup | None:
    fmt = sch.format
    if fmt.width not in (16, 32) or os.environ.get("EXPDECAY_FUSED_SWEEP", "1") == "0":
        return None
    if _fast.kernels() is None:
        return None
    try:
        from . import _sweep_kernels
    except (ImportError, AttributeError):  # no numba, or kernels it cannot find
        return None
    D = check_decay_steps(sch.decay_steps)
    I = to_exact(sch.initial_learning_rate, "initial_learning_rate")
    r = to_exact(sch.decay_rate, "decay_rate")
    If, rf = sch.rounded()
    Iq, rq = to_exact(If, "initial_learning_rate"), to_exact(rf, "decay_rate")
    plans = [_fast._plan(a, D, b, fmt, order, sch.staircase, False)
             for a, b, order in ((I, r, "exact"), (I, r, "keras"), (Iq, rq, "exact"))]
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
    hi, _, _, _, pow2 = _fast._kernel_tables()
    l2h, _ = _fast._ln2_dd()
    kernel = _sweep_kernels.fused32 if fmt.width == 32 else _sweep_kernels.fused16
    return _FusedSetup(kernel, np.array([False, True, False]), fp, ip,
                       np.array([fmt.precision, fmt.emin, fmt.emax, 1 - fmt.emin], np.int64),
                       hi, l2h, pow2)


def fused_available(schedule: Schedule, implementation: str = "expdecay",
                    options: dict[str, Any] | None = None, pow_ulps: float | None = None
                    ) -> bool:
    """Whether :func:`sweep` takes the fused route: expdecay's own keras order,
    no error bound (``pow_ulps=None``), a float16, bfloat16 or float32
    schedule whose three orders are regular plans, and the compiled kernels
    available.  Otherwise the unfused route (:func:`expdecay.fast.evaluate`
    and numpy reductions) measures the same thing."""
    options = options or {}
    own = implementation == "expdecay" and options.get("order", "keras") == "keras"
    return own and pow_ulps is None and _fused_setup(schedule) is not None


def _run_fused(task: _Task) -> tuple[ErrorStats, ErrorStats, ErrorStats, Envelope, float,
                                     int, str | None]:
    """:func:`_run_task` for expdecay's keras order without the bound, by the
    fused kernel of :mod:`expdecay.analysis._sweep_kernels`; the same result."""
    sch, steps, top = task.schedule, task.steps, task.top
    setup = _fused_setup(sch)
    if setup is None:  # a worker where the kernels cannot load: the unfused route
        return _run_task(task)
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
            err, valid = _errors(keras, ref, sch.format)
            st.add(err, s, valid, top)
            errs.append(err)
        env.add(s, errs[0], errs[2], None)
    return stats[0], vs_k, stats[1], env, -math.inf, 0, None


def _reuse() -> bool:
    """Staircase: one evaluation per run of equal exponent (default), or
    every step (``EXPDECAY_SWEEP_REUSE=0``, for measurement)."""
    return os.environ.get("EXPDECAY_SWEEP_REUSE", "1") != "0"


def _sweep_hist() -> int:
    from ._sweep_kernels import HIST

    return HIST


def _worker_count(workers: Any, tasks: int) -> int:
    """Processes to start: ``workers`` (default: the usable cores), never more
    than the usable cores or the tasks; ``workers`` must be an int >= 1."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    if workers is None:
        return max(1, min(cores, tasks))
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int; got {type(workers).__name__} {workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    return max(1, min(workers, cores, tasks))


def sweep(
    schedule: Schedule,
    steps: StepSet,
    *,
    implementation: str = "expdecay",
    options: dict[str, Any] | None = None,
    workers: int | None = None,
    bins: int = 2000,
    top: int = 10,
    pow_ulps: float | None = 1,
    progress: Callable[[int, int, float], None] | None = None,
    chunk: int | None = None,
    extra: tuple[int, ...] = (),
    max_points: int | None = None,
    scheduler: str | None = None,
) -> SweepResult:
    """Measure the implementation's ulp error on ``steps``.

    A set longer than ``max_points`` is cut down to about that many
    log-spaced samples plus ``extra``; a note says so.  The default is
    ``2**20`` for an external implementation and :data:`FAST_BUDGET` for
    expdecay's own keras order (whose longer
    sets are cut to :data:`FAST_SAMPLES` samples, so that work and memory
    stay bounded whatever the range).  ``pow_ulps=None`` skips the error bound.

    ``scheduler`` (a Dask scheduler address) runs the chunks on that cluster;
    otherwise they run on ``workers`` local processes (threads on the fused
    route, whose compiled kernel releases the GIL).  Chunks are fixed by
    ``chunk`` alone (default :data:`CHUNK`, or :data:`FUSED_CHUNK` on the
    fused route) and merged in chunk order (every reduction is exact), so
    the result is the same, bit for bit, however the work is spread.

    The fused route (:func:`fused_available`: expdecay's keras order, no
    bound, float16/bfloat16/float32) evaluates the three orders and reduces
    them in one compiled pass per chunk; the unfused route evaluates with
    :func:`expdecay.fast.evaluate` and reduces with numpy.  Both give the
    same result.
    """
    options = dict(options or {})
    notes: list[str] = []
    external = not (implementation == "expdecay" and options.get("order", "keras") == "keras")
    samples = max_points
    if max_points is None:
        if external:
            max_points = samples = 1 << 20
        else:
            max_points, samples = FAST_BUDGET, FAST_SAMPLES
    if len(steps) > max_points:
        if external:
            why = "external implementation"
        else:
            why = f"more than {max_points} steps for the fast path"
        notes.append(f"{why}: {len(steps)} steps cut to about {samples} log-spaced samples "
                     "(misfloors are still enumerated over the whole range)")
        steps = steps.sample(samples if samples is not None else max_points, extra)
    env0 = Envelope.empty(steps, bins)
    fused = not external and pow_ulps is None and _fused_setup(schedule) is not None
    if chunk is None:
        chunk = FUSED_CHUNK if fused else CHUNK
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1; got {chunk!r}")
    tasks = [_Task(schedule, c, implementation, tuple(sorted(options.items())), env0, top,
                   pow_ulps) for c in steps.chunks(chunk)]
    result = SweepResult(schedule, adapter_label(implementation, options), steps,
                         ErrorStats(), ErrorStats(), ErrorStats(), env0.copy(),
                         evaluator="fused" if fused else "fast", pow_ulps=pow_ulps,
                         notes=notes)
    t0 = time.perf_counter()
    done = 0
    bmax = -math.inf
    nworkers = _worker_count(workers, len(tasks))
    run = _run_fused if fused else _run_task
    outs: Iterator[Any]
    if scheduler is not None:
        from .scaleout import map_ordered

        outs = map_ordered(run, tasks, scheduler=scheduler)
    elif fused:
        # The compiled kernel releases the GIL: threads share the plans and
        # the compiled code (loaded once, here, before they start).
        _warm_fused(schedule)
        from .scaleout import map_ordered

        outs = map_ordered(run, tasks, workers=nworkers, threads=True)
    elif not external and nworkers > 1 and len(tasks) > 1:
        # Warm the fast path's tables and plans before forking, so that the
        # workers inherit them instead of each building its own.
        # The compiled kernels are loaded too (an array large enough for them).
        _run_task(_Task(schedule, StepSet(steps.lo, steps.lo + 4096), implementation,
                        tuple(sorted(options.items())), Envelope.empty(steps, bins), top,
                        pow_ulps))
        pool = ProcessPoolExecutor(max_workers=nworkers)
        outs = _closing(pool, pool.map(_run_task, tasks))
    else:
        outs = map(_run_task, tasks)
    for task, out in zip(tasks, outs, strict=True):
        bmax = _absorb(result, out, top, bmax)
        done += len(task.steps)
        if progress:
            progress(done, len(steps), time.perf_counter() - t0)
    result.seconds = time.perf_counter() - t0
    result.bound_available = bmax > -math.inf
    result.bound_max = bmax if result.bound_available else None
    return result


def _closing(pool: ProcessPoolExecutor, outs: Iterator[Any]) -> Iterator[Any]:
    """``outs``, then the pool shut down (also when the caller stops early)."""
    with pool:
        yield from outs


#: Seconds the first fused call of this process took per kernel (compiling
#: the kernel, or loading it from numba's cache), by format width.
first_call_seconds: dict[int, float] = {}


def _warm_fused(schedule: Schedule) -> None:
    """One tiny fused chunk, so that the kernel is compiled (or loaded from
    numba's cache) once, before worker threads start."""
    width = schedule.format.width
    if width in first_call_seconds:
        return
    t0 = time.perf_counter()
    one = StepSet(0, 1)
    _run_fused(_Task(schedule, one, "expdecay", (), Envelope.empty(one, 1), 1, None))
    first_call_seconds[width] = time.perf_counter() - t0


def _absorb(result: SweepResult, out: tuple[Any, ...], top: int, bmax: float) -> float:
    vs_e, vs_k, vs_r, env, b, viol, why = out
    if why and why not in result.notes:
        result.notes.append(why)
    result.vs_exact.merge(vs_e, top)
    result.vs_keras.merge(vs_k, top)
    result.vs_rounded.merge(vs_r, top)
    result.envelope.merge(env)
    result.bound_violations += viol
    return max(bmax, float(b))


# ---------------------------------------------------------------------------
# Input quantisation
# ---------------------------------------------------------------------------


@dataclass
class Quantisation:
    """Ulp contributions along the chain exact(I, r) -> exact(rnd I, r) ->
    exact(rnd I, rnd r) -> keras order (distances add up exactly)."""

    steps: np.ndarray
    from_i: np.ndarray
    from_rate: np.ndarray
    arithmetic: np.ndarray
    total: np.ndarray
    i_rel: float
    r_rel: float
    drift_per_period: float

    def at(self, i: int) -> dict[str, int]:
        return {"step": int(self.steps[i]), "from_initial_learning_rate": int(self.from_i[i]),
                "from_decay_rate": int(self.from_rate[i]), "arithmetic": int(self.arithmetic[i]),
                "total": int(self.total[i])}

    def to_json(self) -> dict[str, Any]:
        worst = int(np.argmax(np.abs(self.from_rate))) if self.steps.size else 0
        last = self.steps.size - 1
        return {
            "initial_learning_rate_relative_error": self.i_rel,
            "decay_rate_relative_error": self.r_rel,
            "decay_rate_ulps_per_period": self.drift_per_period,
            "max_abs_ulp": {
                "from_initial_learning_rate": int(np.abs(self.from_i).max(initial=0)),
                "from_decay_rate": int(np.abs(self.from_rate).max(initial=0)),
                "arithmetic": int(np.abs(self.arithmetic).max(initial=0)),
                "total": int(np.abs(self.total).max(initial=0)),
            },
            "at_worst_decay_rate_step": self.at(worst) if self.steps.size else None,
            "at_last_step": self.at(last) if self.steps.size else None,
        }


def quantisation(schedule: Schedule, steps: np.ndarray) -> Quantisation:
    """Split the keras order's error at ``steps`` into the part due to
    rounding ``initial_learning_rate``, the part due to rounding
    ``decay_rate`` (both measured on exact arithmetic) and the rest."""
    fmt = schedule.format
    If, rf = schedule.rounded()
    I, D, r = schedule.initial_learning_rate, schedule.decay_steps, schedule.decay_rate
    kw: dict[str, Any] = {"staircase": schedule.staircase, "dtype": schedule.dtype}
    chain = [
        evaluate_order(I, D, r, steps, order="exact", **kw),
        evaluate_order(If, D, r, steps, order="exact", **kw),
        evaluate_order(If, D, rf, steps, order="exact", **kw),
        evaluate_order(I, D, r, steps, order="keras", **kw),
    ]
    keys = [ulp_keys(c, fmt) for c in chain]
    bad = np.zeros(steps.shape, dtype=bool)
    for c in chain:
        bad |= np.isnan(c)
    d = [np.where(bad, 0, keys[i + 1] - keys[i]) for i in range(3)]
    i_rel = _relative(to_exact(I, "initial_learning_rate"), If)
    r_rel = _relative(to_exact(r, "decay_rate"), rf)
    # One period multiplies by r: its relative error compounds once per period.
    drift = abs(r_rel) * 2.0 ** (fmt.precision - 1)
    return Quantisation(steps, d[0], d[1], d[2], d[0] + d[1] + d[2], i_rel, r_rel, drift)


def _relative(x: Any, xf: float) -> float:
    """``(xf - x) / x`` for finite nonzero ``x`` (0.0 otherwise)."""
    if not isinstance(x, Fraction) or not math.isfinite(xf):
        return 0.0
    return float((Fraction(xf) - x) / x)
