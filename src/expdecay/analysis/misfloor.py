"""Exact enumeration of staircase misfloors.

In a format F the ``keras`` order computes the staircase exponent as
``p(s) = floor(rnd(rnd(s) / rnd(D)))``; the true exponent is
``t(s) = floor(s / D)``.  A *misfloor* is an integer step ``s`` with
``p(s) != t(s)``.  This module finds every misfloor of a range of steps
exactly, without evaluating the steps one by one.

The reasoning
-------------

*Cells.*  ``s -> rnd(s)`` is a step function: the integers that round to one
float ``f`` form a run ``[L_f, R_f)`` (a *cell*).  Below ``2**P`` every
integer is a float and is its own cell.  In the binade ``[2**e, 2**(e+1))``
(``e >= P``) the floats are ``f = m * u`` with spacing ``u = 2**(e-P+1)`` and
``2**(P-1) <= m < 2**P``; the cell of ``f`` runs from the midpoint with its
predecessor (``f - u/2``, or ``f - u/4`` for ``f = 2**e`` whose predecessor
lies in the finer binade below) to the midpoint with its successor
(``f + u/2``).  An integer midpoint belongs to the neighbour with an even
significand (ties to even).  Past the largest finite float the steps round to
infinity: one last cell whose exponent is not finite.

*Counting a cell.*  On a cell the computed exponent is one number
``p_f = floor(rnd(f / rnd(D)))`` (a correctly rounded IEEE division, done by
numpy in F, or in float32 for the 16-bit formats: float32 has at least
``2P + 2`` bits there, so the double rounding is innocuous).  The steps of the
cell that are *not* misfloors are exactly those with ``t(s) = p_f``, the
integers of ``[ceil(p_f D), ceil((p_f + 1) D))``.  The rest of the cell, at
most two runs, are misfloors.  This is exact and needs no sampling.

*Which cells.*  A misfloor needs an integer ``k`` between ``s / D`` and the
computed quotient ``q``: ``p(s) > t(s)`` puts ``k = t(s) + 1`` in
``(s/D, q]``, ``p(s) < t(s)`` puts ``k = t(s)`` in ``(q, s/D]``.  So
``|s - k D| <= D |q - s/D|`` and the error of the quotient is bounded on a
run of cells of width ``u`` up to the step ``s_hi`` by

    |q - s/D| <= (s_hi + u) / Df * 2**-P + 2**(qmin - 1)   (rounding the quotient)
               + (u / 2) / Df                              (rounding the step)
               + s_hi * |1/Df - 1/D|                       (rounding D)

Only the cells within that distance ``W`` of a multiple of ``D`` can hold a
misfloor.  For each binade the module visits whichever is smaller: every cell,
or the few cells around each multiple of ``D`` (there are about
``(stop - start) / D`` multiples).  The exact binade below ``2**P`` is
skipped outright for an integer ``D`` the format holds exactly: there the
quotient's rounding error stays below ``1 / D``, the least distance from a
non-integer ``s / D`` to an integer (see :func:`_exact_cells_safe`).  An
enumeration that would visit more than :data:`CELL_BUDGET` cells is refused
with a ValueError.  Float32 with ``D = 1000`` over
``[0, 2**25)`` visits about 10**5 cells instead of 3.4 * 10**7 steps.

Steps are non-negative integers below ``2**62``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..floats import Format, get_format, round_rational
from ..inputs import check_decay_steps

__all__ = ["MisfloorResult", "misfloors", "true_floor"]

#: Largest step (exclusive) the enumeration accepts.
MAX_STEP = 1 << 62


@dataclass
class MisfloorResult:
    """The misfloors of ``[start, stop)``: ``runs`` is an ``(n, 2)`` int64
    array of disjoint, sorted, non-adjacent half-open runs ``[a, b)``.

    ``early`` counts the steps where the computed exponent is too large (the
    schedule decays early), ``late`` those where it is too small, and
    ``nonfinite`` those where it is infinite or NaN (the step or the
    quotient overflowed the format).  ``cells_visited`` says how much work
    the enumeration did.
    """

    start: int
    stop: int
    decay_steps: Fraction
    dtype: str
    runs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    early: int = 0
    late: int = 0
    nonfinite: int = 0
    cells_visited: int = 0

    @property
    def count(self) -> int:
        """Number of misfloor steps."""
        return int((self.runs[:, 1] - self.runs[:, 0]).sum())

    def first(self, n: int = 10) -> list[int]:
        """The first ``n`` misfloor steps, in increasing order."""
        out: list[int] = []
        for a, b in self.runs[:n].tolist():
            out.extend(range(a, min(b, a + n - len(out))))
            if len(out) >= n:
                break
        return out

    def steps_between(self, lo: int, hi: int) -> np.ndarray:
        """The misfloor steps in ``[lo, hi)`` as an int64 array."""
        i0 = int(np.searchsorted(self.runs[:, 1], lo, side="right"))
        i1 = int(np.searchsorted(self.runs[:, 0], hi, side="left"))
        parts = [np.arange(max(a, lo), min(b, hi), dtype=np.int64)
                 for a, b in self.runs[i0:i1].tolist()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def steps(self) -> np.ndarray:
        """Every misfloor step as an int64 array (beware of huge counts)."""
        return self.steps_between(self.start, self.stop)

    def to_json(self, first: int = 20) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "range": [self.start, self.stop],
            "decay_steps": str(self.decay_steps),
            "dtype": self.dtype,
            "count": self.count,
            "early": self.early,
            "late": self.late,
            "nonfinite": self.nonfinite,
            "runs": len(self.runs),
            "first": self.first(first),
            "first_runs": self.runs[:first].tolist(),
            "cells_visited": self.cells_visited,
        }


# ---------------------------------------------------------------------------
# Point functions (for single steps and for checking)
# ---------------------------------------------------------------------------


def true_floor(s: int, D: Fraction) -> int:
    """``floor(s / D)`` exactly."""
    return (s * D.denominator) // D.numerator


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Binade:
    """Cells ``f = m * u`` for ``m`` in ``[m_lo, m_hi)``; ``first`` marks a
    binade whose lowest float is a power of two with a finer binade below."""

    u: int
    m_lo: int
    m_hi: int
    first_is_pow2: bool


def _binades(fmt: Format, stop: int) -> list[_Binade]:
    """The cell families covering the integers ``[0, stop)``, lowest first."""
    P = fmt.precision
    out = [_Binade(1, 0, 1 << P, False)]  # every integer below 2**P is a float
    e = P
    while (1 << e) - (1 << (e - P)) < stop and e <= fmt.emax:
        out.append(_Binade(1 << (e - P + 1), 1 << (P - 1), 1 << P, True))
        e += 1
    return out


def _overflow_start(fmt: Format) -> int:
    """The least integer that rounds to infinity in ``fmt``."""
    u = 1 << (fmt.emax - fmt.precision + 1)
    return (1 << (fmt.emax + 1)) - u // 2  # a tie with an odd neighbour: to infinity


def _cell_bounds(m: np.ndarray, b: _Binade) -> tuple[np.ndarray, np.ndarray]:
    """Integer runs ``[L, R)`` of the steps that round to ``m * u`` (int64 arrays)."""
    u = b.u
    f = m * u
    if u == 1:
        return f, f + 1
    even = ((m & 1) == 0).astype(np.int64)
    # Upper midpoint f + u/2 (an integer): it rounds to f when m is even.
    R = f + u // 2 + even
    # Lower midpoint f - u/2: it rounds to f when m is even.
    L = f - u // 2 + (1 - even)
    if b.first_is_pow2:
        # 2**e: its predecessor is u/2 below, the midpoint u/4 below; a tie
        # there goes to 2**e (even significand); for u == 2 it is no integer.
        L = np.where(m == b.m_lo, f - u // 4, L)
    return L, R


def _exponents(f: np.ndarray, fmt: Format, Df: float) -> np.ndarray:
    """``floor(rnd(f / Df))`` for floats ``f`` of ``fmt`` (float64 array; may be inf/nan)."""
    with np.errstate(all="ignore"):
        if fmt.name == "float64":
            return np.floor(f.astype(np.float64) / np.float64(Df))
        # One float32 division, then one rounding to F: for P <= 24 the
        # double rounding of a quotient is innocuous (24 >= 2P + 2 for P <= 11,
        # and float32 itself needs no second rounding).
        q = f.astype(np.float32) / np.float32(Df)
        return np.floor(q.astype(fmt.dtype).astype(np.float64))


def _ceil_mul(k: np.ndarray, D: Fraction) -> np.ndarray:
    """``ceil(k * D)`` elementwise for an integer array ``k``."""
    if D.denominator == 1:
        return k * D.numerator
    return -((-k * D.numerator) // D.denominator)


# ---------------------------------------------------------------------------
# The enumeration
# ---------------------------------------------------------------------------


def _quotient_slack(D: Fraction, Df: float, fmt: Format, u: int, s_hi: int) -> int | None:
    """Half-width ``W`` (in steps) of the windows around multiples of ``D`` that
    can hold misfloors, for cells of width ``u`` below ``s_hi``; None when the
    division is degenerate (``rnd(D)`` zero or infinite) and every cell counts."""
    if Df == 0.0 or math.isinf(Df) or Fraction(s_hi) / Fraction(Df) >= fmt.max_finite / 2:
        return None
    Dq = Fraction(Df)
    eps = (
        Fraction(s_hi + u) / Dq / (1 << fmt.precision)
        + Fraction(2) ** (fmt.quantum_min - 1)
        + Fraction(u, 2) / Dq
        + s_hi * abs(1 / Dq - 1 / D)
    )
    return math.ceil(D * eps) + 2


def _process_cells(
    m: np.ndarray, b: _Binade, D: Fraction, Df: float, fmt: Format, lo: int, hi: int,
    runs: list[np.ndarray], counts: list[int],
) -> None:
    """Count the misfloors of the cells ``m`` of ``b`` inside ``[lo, hi)``."""
    if m.size == 0:
        return
    L, R = _cell_bounds(m, b)
    L = np.maximum(L, lo)
    R = np.minimum(R, hi)
    keep = L < R
    L, R, m = L[keep], R[keep], m[keep]
    if m.size == 0:
        return
    p = _exponents(m * b.u, fmt, Df)
    finite = np.isfinite(p)
    pi = np.where(finite, p, 0).astype(np.int64)
    good_lo = _ceil_mul(pi, D)
    good_hi = _ceil_mul(pi + 1, D)
    # early: the computed exponent is too big, the steps before good_lo;
    # late: too small, the steps from good_hi on.  A non-finite exponent
    # makes the whole cell a misfloor.
    a1, b1 = L, np.where(finite, np.minimum(R, good_lo), L)
    a2, b2 = np.where(finite, np.maximum(L, good_hi), R), R
    e1 = b1 > a1
    e2 = b2 > a2
    counts[0] += int((b1 - a1)[e1].sum())
    counts[1] += int((b2 - a2)[e2].sum())
    counts[2] += int((R - L)[~finite].sum())
    runs.append(np.stack([a1[e1], b1[e1]], axis=1))
    runs.append(np.stack([a2[e2], b2[e2]], axis=1))
    runs.append(np.stack([L[~finite], R[~finite]], axis=1))


def _candidate_cells(
    b: _Binade, D: Fraction, W: int, lo: int, hi: int, m_lo: int, m_hi: int
) -> np.ndarray:
    """Cell indices of ``b`` within ``W`` steps of a multiple of ``D`` in ``[lo, hi)``."""
    k0 = true_floor(max(lo - W, 0), D)
    k1 = true_floor(hi + W, D) + 1
    k = np.arange(k0, k1 + 1, dtype=np.int64)
    x = _ceil_mul(k, D)
    width = (2 * W) // b.u + 5
    first = (x - W) // b.u - 1
    idx = (first[:, None] + np.arange(width, dtype=np.int64)[None, :]).ravel()
    idx = idx[(idx >= m_lo) & (idx < m_hi)]
    if m_hi - m_lo <= 1 << 27:  # dedupe through a mask: linear time
        mask = np.zeros(m_hi - m_lo, dtype=bool)
        mask[idx - m_lo] = True
        return m_lo + np.flatnonzero(mask)
    return np.unique(idx)


def _exact_cells_safe(D: Fraction, Df: float, fmt: Format, b: _Binade, s_hi: int) -> bool:
    """True when no step below ``s_hi`` in the exact binade ``b`` (``u = 1``)
    can be a misfloor.

    There every step ``s`` is a float.  For an integer ``D`` held exactly
    (``rnd(D) = D``) write ``s / D = k + j / D`` with integers ``k`` and
    ``0 <= j < D``.  If ``j = 0`` the quotient ``k <= s < 2**P`` is a float
    and ``rnd(s / D) = k``.  Otherwise ``s / D`` lies at least ``1 / D`` from
    both ``k`` and ``k + 1`` (floats too), and rounding moves it by at most
    ``h = x 2**-P + 2**(qmin - 1)`` for ``x = s / D`` (half an ulp, normal or
    subnormal; the 16-bit formats divide in float32 first, which the bound
    also covers).  So ``h < 1 / D`` keeps ``rnd(s / D)`` in
    ``(k, k + 1)`` and its floor is ``k``: no misfloor.  ``h`` grows with
    ``x``, so checking the largest step suffices.  A non-integer ``D`` or one
    the format does not hold exactly is left to the general path.
    """
    if b.u != 1 or D.denominator != 1 or Df == 0.0 or math.isinf(Df) or Fraction(Df) != D:
        return False
    x_max = Fraction(max(s_hi - 1, 0), D)
    rel = Fraction(1, 1 << fmt.precision)
    tiny = Fraction(2) ** (fmt.quantum_min - 1)
    if fmt.name not in ("float32", "float64"):
        # float32 first (relative 2**-24, absolute 2**-150 below its normals),
        # then F on a value at most (1 + 2**-24) x.
        rel = rel * (1 + Fraction(1, 1 << 24)) + Fraction(1, 1 << 24)
        tiny += Fraction(1, 1 << 150)
    h = x_max * rel + tiny  # a sum: covers normal and subnormal quotients
    return h * D < 1


#: Most cells an enumeration may visit before it gives up (about 15 s).
CELL_BUDGET = 1 << 28

#: Enumerations planned to visit at least this many cells report progress.
PROGRESS_CELLS = 1 << 24


@dataclass(frozen=True)
class _Pass:
    """One binade's share of the enumeration: every cell in ``[m_lo, m_hi)``
    (``W`` is None) or those within ``W`` steps of a multiple of ``D``."""

    b: _Binade
    m_lo: int
    m_hi: int
    W: int | None
    lo: int
    hi: int
    cells: int  # planned cells (an upper bound for the windowed pass)


def misfloors(
    decay_steps: Any, start: int, stop: int, dtype: Any = "float32", *, chunk: int = 1 << 22,
    progress: Callable[[int, int, float], None] | None = None,
    max_cells: int = CELL_BUDGET,
) -> MisfloorResult:
    """Every step ``s`` in ``[start, stop)`` where the keras order's staircase
    exponent ``floor(rnd(rnd(s) / rnd(D)))`` differs from ``floor(s / D)``.

    Raises ValueError when the enumeration would visit more than
    ``max_cells`` cells (the range is too long for an exact answer in
    reasonable time).  ``progress(done, total, seconds)`` is called after each
    chunk of cells when the enumeration is long (at least
    :data:`PROGRESS_CELLS` planned cells), like the sweep's callback.

    >>> r = misfloors(1000, 0, 2**25, "float32")
    >>> r.count, r.first(3)
    (16777, [16777999, 16778999, 16779999])
    >>> misfloors(1000, 0, 2**24, "float32").count
    0
    """
    fmt = get_format(dtype)
    D = _decay_fraction(decay_steps)
    start, stop = _check_range(start, stop, D)
    Df = round_rational(D, fmt)
    result = MisfloorResult(start, stop, D, fmt.name)
    runs: list[np.ndarray] = []
    counts = [0, 0, 0]
    plan: list[_Pass] = []
    for b in _binades(fmt, stop):
        cell_lo = b.m_lo * b.u - b.u  # generous: cells reach u/2 below f
        cell_hi = b.m_hi * b.u
        if cell_hi <= start - b.u or cell_lo >= stop:
            continue
        m_lo = max(b.m_lo, (start // b.u) - 1)
        m_hi = min(b.m_hi, stop // b.u + 2)
        if m_lo >= m_hi:
            continue
        if _exact_cells_safe(D, Df, fmt, b, min(stop, cell_hi)):
            continue  # provably no misfloor in this binade
        lo, hi = max(start, cell_lo), min(stop, cell_hi)
        W = _quotient_slack(D, Df, fmt, b.u, hi)
        n_cells = m_hi - m_lo
        if W is not None:
            n_mult = (hi - lo) / float(D) + 2
            n_win = n_mult * ((2 * W) // b.u + 5)
            if n_win < n_cells:
                plan.append(_Pass(b, m_lo, m_hi, W, lo, hi, math.ceil(n_win)))
                continue
        plan.append(_Pass(b, m_lo, m_hi, None, lo, hi, n_cells))
    total = sum(p.cells for p in plan)
    if total > max_cells:
        raise ValueError(
            f"misfloor enumeration of steps [{start}, {stop}) in {fmt.name} would visit "
            f"about {total:.3g} cells (limit {max_cells:.3g}); use a smaller step range"
        )
    report = progress if progress is not None and total >= PROGRESS_CELLS else None
    t0 = time.perf_counter()
    done = 0
    for p in plan:
        if p.W is not None:
            m = _candidate_cells(p.b, D, p.W, p.lo, p.hi, p.m_lo, p.m_hi)
            result.cells_visited += int(m.size)
            pieces: Iterator[np.ndarray] = (m[i:i + chunk] for i in range(0, m.size, chunk))
        else:
            result.cells_visited += p.m_hi - p.m_lo
            pieces = (np.arange(a, min(a + chunk, p.m_hi), dtype=np.int64)
                      for a in range(p.m_lo, p.m_hi, chunk))
        for piece in pieces:
            _process_cells(piece, p.b, D, Df, fmt, start, stop, runs, counts)
            if report is not None:
                # The windowed count is an estimate: keep done below total.
                done = min(done + int(piece.size), total)
                report(done, total, time.perf_counter() - t0)
    if report is not None and done < total:
        report(total, total, time.perf_counter() - t0)
    over = _overflow_start(fmt)
    if stop > over:
        a = max(start, over)
        runs.append(np.array([[a, stop]], dtype=np.int64))
        counts[2] += stop - a
    result.early, result.late, result.nonfinite = counts
    result.runs = _merge(runs)
    return result


def _merge(parts: list[np.ndarray]) -> np.ndarray:
    """Sort and merge half-open runs into disjoint maximal ones ((n, 2) int64)."""
    nonempty = [p for p in parts if p.size]
    if not nonempty:
        return np.zeros((0, 2), dtype=np.int64)
    allr = np.concatenate(nonempty)
    allr = allr[np.argsort(allr[:, 0], kind="stable")]
    a, b = allr[:, 0], allr[:, 1]
    reach = np.maximum.accumulate(b)
    new = np.ones(a.size, dtype=bool)
    new[1:] = a[1:] > reach[:-1]  # a gap before this run: a new merged run starts
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, a.size - 1)
    return np.stack([a[first], reach[last]], axis=1)


def _decay_fraction(decay_steps: Any) -> Fraction:
    return check_decay_steps(decay_steps)


def _check_range(start: Any, stop: Any, D: Fraction) -> tuple[int, int]:
    for name, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int; got {v!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= MAX_STEP:
        raise ValueError(
            f"the step range must satisfy 0 <= start <= stop <= 2**62; got [{start}, {stop})"
        )
    if stop / D > 2**60:
        raise ValueError(
            f"stop / decay_steps must stay below 2**60; got stop={stop}, decay_steps={D}"
        )
    return start, stop
