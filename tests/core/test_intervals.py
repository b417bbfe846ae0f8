"""``intervals.exp_interval_parts`` against Arb: the enclosure holds exp at
both ends of the argument interval, on the shared-reduction route (narrow
intervals) and on the per-end route (wide intervals or a coarse ln 2 step)."""

from __future__ import annotations

import random
from typing import Any

import flint
import pytest
from flint import arb, fmpz

from expdecay import intervals


def _exp_at(X: int, F: int, prec: int) -> Any:  # noqa: N803
    with flint.ctx.workprec(prec):
        return (arb(fmpz(X)) * arb(2) ** -F).exp()


def _dyadic(m: int, e: int, prec: int) -> Any:
    # int(): the mantissas may be gmpy2 integers (mpmath's backend).
    with flint.ctx.workprec(prec):
        return arb(fmpz(int(m))) * arb(2) ** int(e)


@pytest.mark.parametrize("wide", [False, True])
def test_exp_interval_parts_encloses_exp(wide: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    per_end = []
    real = intervals.exp_bound

    def spy(X: int, F: int, upper: bool) -> tuple[int, int]:  # noqa: N803
        per_end.append(upper)
        return real(X, F, upper)

    monkeypatch.setattr(intervals, "exp_bound", spy)
    rng = random.Random(f"exp-interval-{wide}")
    for _ in range(300):
        F = rng.choice([40, 64, 100, 200, 500])  # noqa: N806
        x = rng.uniform(-700.0, 700.0)
        X_lo = int(x * 2.0**F)  # noqa: N806
        width = rng.randint(F // 2, F + 8) if wide else rng.randint(0, F // 4)
        X_hi = X_lo + rng.getrandbits(max(width, 1))  # noqa: N806
        a, ea, b, eb = intervals.exp_interval_parts(X_lo, X_hi, F)
        prec = 3 * F + 64
        lo, hi = _dyadic(a, ea, prec), _dyadic(b, eb, prec)
        with flint.ctx.workprec(prec):
            assert lo < _exp_at(X_lo, F, prec), (X_lo, X_hi, F)
            assert _exp_at(X_hi, F, prec) < hi, (X_lo, X_hi, F)
            # Tight: about F bits wide relative to the value on narrow intervals.
            if not wide:
                rel = (hi - lo) / lo
                assert rel < arb(2) ** (-(F // 2)), (X_lo, X_hi, F)
    # Wide argument intervals go through the per-end route, narrow ones do not.
    assert bool(per_end) == wide
    with pytest.raises(ValueError, match="X_lo <= X_hi"):
        intervals.exp_interval_parts(1, 0, 10)
