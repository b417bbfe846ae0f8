"""Step sets: integer ranges, strided or log-spaced samples, explicit points,
and the parser of their text form (``--steps``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Chunk length of a sweep (steps per task).
CHUNK = 1 << 20



#: Longest step set the fast path sweeps in full; a longer one is cut to
#: :data:`FAST_SAMPLES` log-spaced samples (plus the special steps).
FAST_BUDGET = 1 << 26

#: Log-spaced samples of a set too long for the fast path.  Samples are held
#: as a tuple of Python ints (about 40 bytes each), hence fewer than
#: :data:`FAST_BUDGET`, which a contiguous range sweeps chunk by chunk.
FAST_SAMPLES = 1 << 22


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
