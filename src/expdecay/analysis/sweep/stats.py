"""The reductions of a sweep: exact statistics of integer ulp errors, the
envelope for plotting, and the result that gathers them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...floats import Format, ulp_diff, ulp_keys
from .evaluation import Schedule
from .steps import StepSet


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


def ulp_errors(a: np.ndarray, b: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Signed ulp distance ``a - b`` (0 where NaN) and where it is defined
    (both NaN or neither)."""
    na, nb = np.isnan(a), np.isnan(b)
    return np.where(na | nb, 0, ulp_diff(ulp_keys(a, fmt), ulp_keys(b, fmt))), na == nb
