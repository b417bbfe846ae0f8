"""The fused sweep kernel (numba): three correctly rounded evaluations and the
sweep's reductions in one pass over a chunk of steps.

:func:`expdecay.analysis.sweep.sweep` measures expdecay's keras order against
the ``exact`` order and against the ``exact`` order on the rounded inputs.
Evaluating the three orders with :func:`expdecay.fast.evaluate_array` and reducing
the results with numpy costs about seven times as much as the evaluations
(ulp keys, differences, histogram, worst steps and envelope bins each make
a pass and temporaries over the whole chunk).  The kernels here do it in one
pass, sub-block by sub-block (:data:`SUB` steps, so every buffer stays in
the cache):

1. the steps of the sub-block (``start + stride * i``, or taken from an
   array of explicit steps);
2. the three orders, each by the compiled kernel :mod:`expdecay.fast` uses
   for the format (:func:`expdecay.fast.kernels.f32_block_kernel` for float32,
   :func:`expdecay.fast.kernels.small_kernel` for float16 and bfloat16), with the
   same parameters as :func:`expdecay.fast.dispatch.run_kernel` passes it, so the
   decided values are the same bits;
3. for every step that all three decided: the signed ulp distance of the
   keras value to each reference, folded into exact reductions (count, NaN
   mismatches, sum of ``|error|``, a dense histogram of ``|error|`` below
   :data:`HIST` with larger values collected for the caller, the ``top``
   worst steps ordered by ``(-|error|, step)``, and the per-bin minimum and
   maximum of the error for the plot).

A step that any of the three kernels leaves undecided is skipped and
recorded; the caller evaluates it through :mod:`expdecay.fast` (the oracle)
and folds it into the same reductions.  Every reduction is a sum, a count, a
minimum/maximum or a top-k under a total order, so the outcome does not
depend on the order in which steps, sub-blocks or chunks are folded: it is
the same, bit for bit, as the unfused route.

numba caches machine code per source file, and this module's kernels call
those of :mod:`expdecay.fast.kernels`: a change there would not invalidate the
cached fused kernels by itself.  The kernels are therefore built as closures
over a digest of ``fast/kernels.py``'s source, which numba includes in the cache
key (the closure's cell contents), so that any change recompiles them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numba
import numpy as np

from ...fast import kernels

__all__ = ["HIST", "SUB", "fused32", "fused16"]

#: Steps per sub-block (the buffers of three orders stay in the L2 cache).
SUB = 1 << 14

#: ``|error|`` values below this are counted in a dense histogram; larger
#: ones are written out for the caller.
HIST = 1 << 16

_STAMP = int(hashlib.sha256(Path(kernels.__file__).read_bytes()).hexdigest()[:15], 16)


_jit = cast(Callable[[Callable[..., Any]], Callable[..., Any]],
            numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy"))
# Module globals, not closure cells: numba keys a closure's cache entry on
# the pickled cell contents, and a pickled dispatcher differs per process.
_f32_block_kernel = kernels.f32_block_kernel
_small_kernel = kernels.small_kernel
_keras_p = kernels.keras_p  # the keras exponent exactly as the kernels form it


@_jit
def _fill_steps(sbuf: np.ndarray, explicit: np.ndarray, use_explicit: bool, start: int,
               stride: int, i0: int, m: int) -> None:
    if use_explicit:
        for k in range(m):
            sbuf[k] = explicit[i0 + k]
    else:
        base = start + stride * i0
        for k in range(m):
            sbuf[k] = base + stride * k

@_jit
def _reduce_block(sbuf: np.ndarray, vals: np.ndarray, flag: np.ndarray, m: int,
                 width: int, prec: int, edges: np.ndarray, b0: int,
                 cnt: np.ndarray, nanm: np.ndarray, tot: np.ndarray, hist: np.ndarray,
                 big: np.ndarray, nbig: np.ndarray, wa: np.ndarray, we: np.ndarray,
                 ws: np.ndarray, wn: np.ndarray, emin: np.ndarray, emax: np.ndarray,
                 pend: np.ndarray, npend: int) -> tuple[int, int]:
    """Fold ``m`` steps (``vals[o, k]``: the bits of order ``o``: 0 exact,
    1 keras, 2 exact on rounded inputs) into the reductions; steps with
    ``flag[k]`` go to ``pend``.  Returns the envelope bin reached and the
    pending count."""
    sign = 1 << (width - 1)
    inf_bits = ((1 << (width - prec)) - 1) << (prec - 1)
    nb = emin.shape[1]
    top = wa.shape[1]
    hmax = hist.shape[1]
    b = b0
    for k in range(m):
        s = sbuf[k]
        if flag[k]:
            pend[npend] = s
            npend += 1
            continue
        x = float(s)
        while b + 1 < nb and edges[b + 1] <= x:
            b += 1
        while b > 0 and edges[b] > x:
            b -= 1
        bi = np.int64(vals[1, k])
        mi = bi & (sign - 1)
        nan_i = mi > inf_bits
        ki = -mi if (bi & sign) != 0 else mi
        for j in range(2):
            br = np.int64(vals[2 * j, k])
            mr = br & (sign - 1)
            nan_r = mr > inf_bits
            err = 0
            if nan_i != nan_r:
                nanm[j] += 1
            else:
                cnt[j] += 1
                if not nan_i:
                    err = int(ki - (-mr if (br & sign) != 0 else mr))
                a = -err if err < 0 else err
                tot[j] += a
                if a < hmax:
                    hist[j, a] += 1
                else:
                    big[j, nbig[j]] = a
                    nbig[j] += 1
                if a > 0 and top > 0:
                    n = wn[j]
                    last = top - 1
                    if n < top or a > wa[j, last] or (a == wa[j, last] and s < ws[j, last]):
                        p = n if n < top else last
                        while p > 0 and (wa[j, p - 1] < a
                                         or (wa[j, p - 1] == a and ws[j, p - 1] > s)):
                            wa[j, p] = wa[j, p - 1]
                            we[j, p] = we[j, p - 1]
                            ws[j, p] = ws[j, p - 1]
                            p -= 1
                        wa[j, p] = a
                        we[j, p] = err
                        ws[j, p] = s
                        if n < top:
                            wn[j] = n + 1
            e = float(err)
            if e < emin[j, b]:
                emin[j, b] = e
            if e > emax[j, b]:
                emax[j, b] = e
    return b, npend


@_jit
def _block_mode(sbuf: np.ndarray, m: int, keras: bool, staircase: bool, c0: float,
                log2_i: float, d_float: float, prec: int, emin: int, emax: int) -> int:
    """How to evaluate one order on the steps ``sbuf[:m]``: 2 when every
    value is proven to round to zero (see below), 1 when some value is
    likely subnormal (the per-element kernel, which the block kernel would
    call element by element), 0 otherwise (the block kernel).  Only the
    answer 2 bears on the values; 0 and 1 give the same bits.

    Zero is proven for ``r < 1`` (``c0 < 0``) and steps ``s >= 0``: the
    exponent operand ``a`` (``s``, ``floor(s / D)`` or the keras ``p``) is
    at least ``a_lo`` computed from the least step (float conversions within
    ``2**-50``; the keras roundings of ``s``, ``D`` and the quotient within
    ``2**(3 - prec)``; the floor within 1), the true ``c = log2(r) /
    divisor`` is within ``2**-90`` of ``c0``, so ``t = a c <= a_lo c0 (1 -
    2**-30)``; when that plus ``log2 |I|`` (exact order; ``log2_i`` within
    ``2**-40``) or alone (keras: ``w = rnd(2**t)`` is then 0 and so is
    ``If w``) is below ``emin - prec - 2``, every value is below a quarter of
    the least subnormal and rounds to zero (signed as ``I``).  The keras
    order also needs ``rnd(s)`` and the quotient finite: ``s / D < 2**(emax - 1)``.
    """
    lo = sbuf[0]
    hi = sbuf[0]
    for k in range(1, m):
        v = sbuf[k]
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    lift = 0.0 if keras else log2_i
    if c0 < 0.0 and lo >= 0 and d_float > 0.0 and d_float < np.inf:
        x = float(lo) * (1.0 - 2.0**-50)
        if keras or staircase:
            a_lo = x / d_float * (1.0 - (2.0**-20 if not keras else 2.0**(3 - prec)))
            if staircase:
                a_lo -= 1.0
            if a_lo < 0.0:
                a_lo = 0.0
        else:
            a_lo = x
        finite = not keras or float(hi) / d_float < 2.0**(emax - 1)
        if finite and a_lo * c0 * (1.0 - 2.0**-30) + lift < float(emin - prec - 2):
            return 2
    # An estimate of the smallest value's exponent (no proof needed).
    t_min = np.inf
    for s in (lo, hi):
        a = float(s) if not (keras or staircase) else float(s) / d_float
        t = a * c0 + lift
        if t < t_min:
            t_min = t
    return 1 if t_min < float(emin + 2) else 0


@_jit
def _exponent(s: int, keras: bool, prec: int, emin: int, emax: int, d_fmt: float,
              d_num: int, d_den: int, pow2: np.ndarray) -> tuple[bool, int]:
    """The staircase exponent of step ``s`` (see :func:`_runs`), and whether
    it could be formed here."""
    if keras:
        p = _keras_p(s, True, prec, emin, emax, True, d_fmt, pow2)
        if not abs(p) < 2.0**62:  # NaN too
            return False, 0
        return True, int(p)
    lim = (1 << 62) // max(d_den, 1)
    if d_num <= 0 or not (s < lim and s > -lim):
        return False, 0
    return True, (s * d_den) // d_num


@_jit
def _runs(st: np.ndarray, m: int, keras: bool, prec: int, emin: int, emax: int,
          d_fmt: float, d_num: int, d_den: int, pow2: np.ndarray, keys: np.ndarray,
          reps: np.ndarray) -> int:
    """Staircase: the runs of equal exponent among ``st[:m]``.  The exponent
    is the keras order's ``p`` (the kernels' own :func:`_keras_p`) or the
    exact ``floor(s / D)`` by integer division (``D = d_num / d_den``); a
    staircase value depends on the step only through it, in the kernels too
    (their rounding test included, keras order), so one element per run
    stands for the run.  Both exponents are nondecreasing in the step, so
    for ascending steps a run is found by galloping from its first element
    (its end is where the exponent first differs).  Writes each element's
    exponent into ``keys`` and each run's first step into ``reps``; returns
    the number of runs, or 0 when the steps are not ascending or an
    exponent cannot be formed here (then every element is evaluated)."""
    for k in range(1, m):
        if st[k] < st[k - 1]:
            return 0
    nr = 0
    pos = 0
    while pos < m:
        ok, kp = _exponent(st[pos], keras, prec, emin, emax, d_fmt, d_num, d_den, pow2)
        if not ok:
            return 0
        # last: the last index known in the run; beyond: an index known past it (or m)
        last = pos
        beyond = m
        step = 1
        while last + step < m:
            ok, kq = _exponent(st[last + step], keras, prec, emin, emax, d_fmt, d_num, d_den,
                               pow2)
            if not ok:
                return 0
            if kq != kp:
                beyond = last + step
                break
            last += step
            step *= 2
        while beyond - last > 1:
            mid = (last + beyond) // 2
            ok, kq = _exponent(st[mid], keras, prec, emin, emax, d_fmt, d_num, d_den, pow2)
            if not ok:
                return 0
            if kq == kp:
                last = mid
            else:
                beyond = mid
        for k in range(pos, beyond):
            keys[k] = kp
        reps[nr] = st[pos]
        nr += 1
        pos = beyond
    return nr


@_jit
def _expand(m: int, keys: np.ndarray, rout: np.ndarray, rflag: np.ndarray, out: np.ndarray,
            flag: np.ndarray) -> None:
    """Each element gets its run's value (and undecided mark)."""
    j = -1
    for k in range(m):
        if k == 0 or keys[k] != keys[k - 1]:
            j += 1
        out[k] = rout[j]
        if rflag[j]:
            flag[k] = True


@_jit
def _eval32(st: np.ndarray, m: int, out: np.ndarray, outf: np.ndarray, und: np.ndarray,
            flag: np.ndarray, keras: bool, staircase: bool, fp: np.ndarray, ip: np.ndarray,
            tab: np.ndarray, ln2: float, pow2: np.ndarray) -> None:
    """One order of float32 on ``st[:m]``: bits into ``out`` (``outf`` its
    float32 view), undecided elements marked in ``flag``."""
    mode = _block_mode(st, m, keras, staircase, fp[0], fp[2], fp[5], 24, -126, 127)
    c = 0
    if mode == 2:
        zero = np.uint32(0x80000000 if ip[1] != 0 else 0)
        for k in range(m):
            out[k] = zero
    elif mode == 1:
        _, c = _small_kernel(st, out, 0, und, 24, -126, 127, 127, keras, staircase,
                             fp[0], fp[1], ip[0], ip[1] != 0, fp[2], fp[3], fp[4], ip[2],
                             ip[3], fp[5], tab, ln2, pow2)
    else:
        _, c = _f32_block_kernel(st, out, outf, 0, und, keras, staircase, fp[0], fp[1],
                                 ip[0], ip[1] != 0, fp[2], fp[3], fp[4], ip[2], ip[3], fp[5],
                                 tab, ln2, pow2)
    for k in range(c):
        flag[und[k]] = True


@_jit
def _eval16(st: np.ndarray, m: int, out: np.ndarray, und: np.ndarray, flag: np.ndarray,
            keras: bool, staircase: bool, fp: np.ndarray, ip: np.ndarray, fmt: np.ndarray,
            tab: np.ndarray, ln2: float, pow2: np.ndarray) -> None:
    """:func:`_eval32` for float16 and bfloat16 (``fmt``: precision, emin,
    emax, bias)."""
    prec, fmin, fmax, bias = fmt[0], fmt[1], fmt[2], fmt[3]
    c = 0
    if _block_mode(st, m, keras, staircase, fp[0], fp[2], fp[5], prec, fmin, fmax) == 2:
        zero = np.uint16(0x8000 if ip[1] != 0 else 0)
        for k in range(m):
            out[k] = zero
    else:
        _, c = _small_kernel(st, out, 0, und, prec, fmin, fmax, bias, keras, staircase,
                             fp[0], fp[1], ip[0], ip[1] != 0, fp[2], fp[3], fp[4], ip[2],
                             ip[3], fp[5], tab, ln2, pow2)
    for k in range(c):
        flag[und[k]] = True


def _build(stamp: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The two entry kernels, as closures over ``stamp`` (see the module
    docstring); everything else they call is a module global."""

    @_jit
    def fused32(explicit: np.ndarray, use_explicit: bool, start: int, stride: int, n: int,
                pos: int, keras: np.ndarray, staircase: bool, reuse: bool, fp: np.ndarray,
                ip: np.ndarray, tab: np.ndarray, ln2: float, pow2: np.ndarray,
                edges: np.ndarray, cnt: np.ndarray, nanm: np.ndarray, tot: np.ndarray,
                hist: np.ndarray, big: np.ndarray, nbig: np.ndarray, wa: np.ndarray,
                we: np.ndarray, ws: np.ndarray, wn: np.ndarray, emin: np.ndarray,
                emax: np.ndarray, pend: np.ndarray, npend0: int) -> tuple[int, int]:
        """float32: steps ``pos`` to ``n`` of the chunk.  ``fp[o]`` holds
        ``c0, scale_h, log2_i, i_fmt, d_fmt, d_float`` and ``ip[o]``
        ``scale_e, negative, d_num, d_den`` of order ``o``; ``reuse``: one
        evaluation per run of equal exponent (staircase, :func:`_runs`).
        Returns where it stopped (``n`` when done; earlier when ``big`` or
        ``pend`` has no room for another sub-block) and the pending count."""
        if stamp < 0:  # never: the stamp only keys numba's cache
            return pos, npend0
        sbuf = np.empty(SUB, np.int64)
        vals = np.empty((3, SUB), np.uint32)
        und = np.empty(SUB, np.int64)
        flag = np.zeros(SUB, np.bool_)
        keys = np.empty(SUB, np.int64)
        reps = np.empty(SUB, np.int64)
        rout = np.empty(SUB, np.uint32)
        rflag = np.zeros(SUB, np.bool_)
        npend = npend0
        b = 0
        i = pos
        while i < n:
            m = min(SUB, n - i)
            if npend + m > pend.shape[0] or nbig[0] + m > big.shape[1] \
                    or nbig[1] + m > big.shape[1]:
                return i, npend
            _fill_steps(sbuf, explicit, use_explicit, start, stride, i, m)
            st = sbuf[:m]
            for k in range(m):
                flag[k] = False
            for o in range(3):
                row = vals[o]
                nr = 0
                if reuse:
                    nr = _runs(st, m, keras[o], 24, -126, 127, fp[o, 4], ip[o, 2], ip[o, 3],
                               pow2, keys, reps)
                if 0 < nr <= m // 4:
                    for k in range(nr):
                        rflag[k] = False
                    _eval32(reps[:nr], nr, rout[:nr], rout.view(np.float32)[:nr], und, rflag,
                            keras[o], staircase, fp[o], ip[o], tab, ln2, pow2)
                    _expand(m, keys, rout, rflag, row, flag)
                else:
                    _eval32(st, m, row[:m], row.view(np.float32)[:m], und, flag, keras[o],
                            staircase, fp[o], ip[o], tab, ln2, pow2)
            b, npend = _reduce_block(st, vals, flag, m, 32, 24, edges, b, cnt, nanm, tot,
                                     hist, big, nbig, wa, we, ws, wn, emin, emax, pend, npend)
            i += m
        return n, npend

    @_jit
    def fused16(explicit: np.ndarray, use_explicit: bool, start: int, stride: int, n: int,
                pos: int, keras: np.ndarray, staircase: bool, reuse: bool, fp: np.ndarray,
                ip: np.ndarray, fmt: np.ndarray, tab: np.ndarray, ln2: float,
                pow2: np.ndarray, edges: np.ndarray, cnt: np.ndarray, nanm: np.ndarray,
                tot: np.ndarray, hist: np.ndarray, big: np.ndarray, nbig: np.ndarray,
                wa: np.ndarray, we: np.ndarray, ws: np.ndarray, wn: np.ndarray,
                emin: np.ndarray, emax: np.ndarray, pend: np.ndarray, npend0: int
                ) -> tuple[int, int]:
        """:func:`fused32` for float16 and bfloat16 (``fmt``: precision,
        emin, emax, bias) through :func:`expdecay.fast.kernels.small_kernel`."""
        if stamp < 0:  # never: the stamp only keys numba's cache
            return pos, npend0
        prec, fmin, fmax = fmt[0], fmt[1], fmt[2]
        sbuf = np.empty(SUB, np.int64)
        vals = np.empty((3, SUB), np.uint16)
        und = np.empty(SUB, np.int64)
        flag = np.zeros(SUB, np.bool_)
        keys = np.empty(SUB, np.int64)
        reps = np.empty(SUB, np.int64)
        rout = np.empty(SUB, np.uint16)
        rflag = np.zeros(SUB, np.bool_)
        npend = npend0
        b = 0
        i = pos
        while i < n:
            m = min(SUB, n - i)
            if npend + m > pend.shape[0] or nbig[0] + m > big.shape[1] \
                    or nbig[1] + m > big.shape[1]:
                return i, npend
            _fill_steps(sbuf, explicit, use_explicit, start, stride, i, m)
            st = sbuf[:m]
            for k in range(m):
                flag[k] = False
            for o in range(3):
                row = vals[o]
                nr = 0
                if reuse:
                    nr = _runs(st, m, keras[o], prec, fmin, fmax, fp[o, 4], ip[o, 2],
                               ip[o, 3], pow2, keys, reps)
                if 0 < nr <= m // 4:
                    for k in range(nr):
                        rflag[k] = False
                    _eval16(reps[:nr], nr, rout[:nr], und, rflag, keras[o], staircase, fp[o],
                            ip[o], fmt, tab, ln2, pow2)
                    _expand(m, keys, rout, rflag, row, flag)
                else:
                    _eval16(st, m, row[:m], und, flag, keras[o], staircase, fp[o], ip[o], fmt,
                            tab, ln2, pow2)
            b, npend = _reduce_block(st, vals, flag, m, 16, prec, edges, b, cnt, nanm, tot,
                                     hist, big, nbig, wa, we, ws, wn, emin, emax, pend, npend)
            i += m
        return n, npend

    return fused32, fused16


fused32, fused16 = _build(_STAMP)
