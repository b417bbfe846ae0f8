"""The compiled kernels of the fast path against independent references.

* Exhaustive: over a step range where the schedule passes through every
  value of the format (float16, bfloat16: every finite output from the
  largest value down to 0 appears), every element is proven right.  The exact
  schedule is monotone in the step and rounding is monotone, so the outputs
  must be non-increasing; an output that is constant over a run of steps is
  right for every step of the run once it is right at both ends (the exact
  values between lie between the ends' and round to the same value).  Both
  ends of every run are checked with Arb balls (python-flint) against the
  format's midpoints around the output, falling back to the Arb oracle of
  ``tests/support/arb_oracle.py`` when a ball straddles a midpoint.
* Slow tier (``--tier slow``): all 2**31 int32 steps of float32 schedules in
  the same way, the keras order exhaustively for float16/bfloat16 with the
  Arb oracle at every run end, and 10**6 random cases against the Arb oracle.
* Hypothesis: broadcast inputs, all formats, both orders and staircase modes,
  with the kernels forced on small arrays, against the Arb oracle.
(Their machine code is read by ``tests/fast/test_kernels_machine_code.py``.)
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from flint import arb, ctx, fmpq
from hypothesis import example, given
from hypothesis import strategies as st

from expdecay import fast
from expdecay.fast import dispatch
from expdecay.floats import Format, get_format, to_bits
from support.arb_oracle import arb_evaluate
from support.kernel_asm import kernels_for_every_size

FORMATS = ("float16", "bfloat16", "float32", "float64")


def _bits(values: np.ndarray) -> np.ndarray:
    return values.view(f"u{values.itemsize}").astype(np.int64)


def _from_bits(b: int, fmt: Format) -> Fraction:
    arr = np.array([b], dtype=f"u{fmt.width // 8}").view(fmt.dtype)
    return Fraction(float(arr[0]))


def _window(b: int, fmt: Format) -> tuple[Fraction, Fraction]:
    """The open interval of reals rounding to the positive value with bits ``b``
    (above the largest finite value: up to the overflow threshold)."""
    v = _from_bits(b, fmt)
    lo = Fraction(0) if b == 0 else (v + _from_bits(b - 1, fmt)) / 2
    if v == Fraction(fmt.max_finite):
        return lo, v + Fraction(2) ** (fmt.emax - fmt.precision)
    return lo, (v + _from_bits(b + 1, fmt)) / 2


def _ball(I: Fraction, D: Fraction, r: Fraction, s: int) -> arb:
    e = fmpq(s * D.denominator, D.numerator)
    return arb(fmpq(I.numerator, I.denominator)) * arb(fmpq(r.numerator, r.denominator)) ** arb(e)


def _check_exact_at(I: Fraction, D: Fraction, r: Fraction, s: int, b: int, fmt: Format) -> bool:
    """Whether the exact value at step ``s`` rounds to the bits ``b`` (>= 0)."""
    lo, hi = _window(b, fmt)
    x = _ball(I, D, r, s)
    above = x > arb(fmpq(lo.numerator, lo.denominator)) or (b == 0 and x >= 0)
    if above and x < arb(fmpq(hi.numerator, hi.denominator)):
        return True
    want = arb_evaluate(I, D, r, s, False, fmt.name, "exact")
    return to_bits(want, fmt) == b


def _runs(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal values."""
    change = np.flatnonzero(np.diff(bits)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change - 1, [bits.size - 1]])
    return starts, ends


EXHAUSTIVE = {
    # I = the largest finite value, r = 1/2 per D steps: each step moves the
    # value by less than half an ulp, from the top of the range down to 0.
    "float16": (Fraction(65504), Fraction(4096), 43 * 4096),
    "bfloat16": (Fraction((1 << 128) - (1 << 120)), Fraction(512), 268 * 512),
}


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_every_output_exact_order(name: str) -> None:
    fmt = get_format(name)
    I, D, n = EXHAUSTIVE[name]
    r = Fraction(1, 2)
    ctx.prec = 128
    steps = np.arange(n, dtype=np.int64)
    got = fast.evaluate_array(I, D, r, steps, dtype=name, order="exact")
    bits = _bits(got)
    # Every finite non-negative value of the format appears, in order.
    finite_top = int(np.array([fmt.max_finite], fmt.dtype).view(f"u{fmt.width // 8}")[0])
    assert np.array_equal(np.unique(bits), np.arange(finite_top + 1))
    assert np.all(np.diff(bits) <= 0)  # non-increasing, as the exact values
    starts, ends = _runs(bits)
    bad = [int(s) for s in np.concatenate([starts, ends]).tolist()
           if not _check_exact_at(I, D, r, s, int(bits[s]), fmt)]
    assert not bad, bad[:10]


def test_exhaustive_check_can_fail() -> None:
    """The run-end check rejects a wrong output (one ulp off)."""
    fmt = get_format("float16")
    I, D, _ = EXHAUSTIVE["float16"]
    ctx.prec = 128
    r = Fraction(1, 2)
    for s in (1000, 30000, 100000, 150000):
        got = fast.evaluate_array(I, D, r, np.array([s]), dtype="float16", order="exact")
        b = int(_bits(got)[0])
        assert _check_exact_at(I, D, r, s, b, fmt)
        assert not _check_exact_at(I, D, r, s, b + 1, fmt)
        if b:
            assert not _check_exact_at(I, D, r, s, b - 1, fmt)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
@pytest.mark.parametrize("order,staircase", [("exact", True), ("keras", False),
                                             ("keras", True)])
def test_other_modes_monotone_and_sampled(name: str, order: str, staircase: bool) -> None:
    """Keras order and staircase over the same range: outputs are
    non-increasing (every rounding in the keras order is monotone) and a
    sample of run ends agrees with the Arb oracle (all of them in the slow
    tier, :func:`test_every_run_end_slow`)."""
    I, D, n = EXHAUSTIVE[name]
    D = D if order == "exact" else Fraction(64)
    steps = np.arange(n, dtype=np.int64)
    got = fast.evaluate_array(I, D, Fraction(1, 2), steps, staircase=staircase, dtype=name,
                        order=order)
    bits = _bits(got)
    assert np.all(np.diff(bits) <= 0)
    starts, ends = _runs(bits)
    picks = np.concatenate([starts, ends])
    rng = np.random.default_rng(11)
    sample = rng.choice(picks, min(150, picks.size), replace=False)
    fmt = get_format(name)
    for s in sample.tolist():
        want = arb_evaluate(I, D, Fraction(1, 2), int(s), staircase, name, order)
        assert to_bits(want, fmt) == int(bits[s]), s


@pytest.mark.slow
@pytest.mark.parametrize("name", ["float16", "bfloat16"])
@pytest.mark.parametrize("order,staircase", [("exact", True), ("keras", False),
                                             ("keras", True)])
def test_every_run_end_slow(name: str, order: str, staircase: bool) -> None:
    I, D, n = EXHAUSTIVE[name]
    D = D if order == "exact" else Fraction(64)
    got = fast.evaluate_array(I, D, Fraction(1, 2), np.arange(n, dtype=np.int64),
                        staircase=staircase, dtype=name, order=order)
    bits = _bits(got)
    assert np.all(np.diff(bits) <= 0)
    fmt = get_format(name)
    starts, ends = _runs(bits)
    for s in np.union1d(starts, ends).tolist():
        want = arb_evaluate(I, D, Fraction(1, 2), int(s), staircase, name, order)
        assert to_bits(want, fmt) == int(bits[s]), s


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [("0.1", 10**9, "0.99"), ("0.001", 2**30, "0.999")])
def test_all_int32_steps_float32_slow(schedule: tuple[str, int, str]) -> None:
    """Every int32 step (2**31 non-negative ones) of a float32 schedule, exact
    order: monotone outputs, every run end proven with Arb balls."""
    I, D, r = (Fraction(schedule[0]), Fraction(schedule[1]), Fraction(schedule[2]))
    fmt = get_format("float32")
    ctx.prec = 128
    block = 1 << 24
    prev_last = None
    for start in range(0, 1 << 31, block):
        steps = np.arange(start, start + block, dtype=np.int32)
        bits = _bits(fast.evaluate_array(I, D, r, steps, dtype="float32", order="exact"))
        assert np.all(np.diff(bits) <= 0)
        if prev_last is not None:
            assert bits[0] <= prev_last
        prev_last = int(bits[-1])
        starts, ends = _runs(bits)
        for i in np.union1d(starts, ends).tolist():
            assert _check_exact_at(I, D, r, start + i, int(bits[i]), fmt), start + i


@pytest.mark.slow
def test_million_random_cases_vs_arb() -> None:
    """10**6 random cases (1000 random schedules x 1000 random steps each,
    every format and order in turn) through the broadcasting fast path,
    against the Arb oracle."""
    rng = np.random.default_rng(2026)
    total = 0
    for k in range(1000):
        name = FORMATS[k % 4]
        order = ("exact", "keras")[(k // 4) % 2]
        staircase = bool((k // 8) % 2)
        I = float(rng.uniform(1e-4, 2.0))
        D = int(rng.integers(1, 5000))
        r = float(rng.uniform(0.3, 0.9999))
        steps = rng.integers(0, 10**6, 1000)
        got = fast.evaluate_array(np.full(1000, I), D, r, steps, staircase=staircase, dtype=name,
                            order=order)
        fmt = get_format(name)
        bits = _bits(got)
        for i, s in enumerate(steps.tolist()):
            want = arb_evaluate(I, D, r, s, staircase, name, order)
            assert to_bits(want, fmt) == int(bits[i]), (I, D, r, s, name, order, staircase)
            total += 1
    assert total == 10**6


# ---------------------------------------------------------------------------
# Hypothesis: broadcast inputs through the kernels
# ---------------------------------------------------------------------------

_values = st.one_of(st.floats(1e-3, 10.0), st.sampled_from([0.1, 0.5, 1.0, 3.0]))
_rates = st.one_of(st.floats(0.05, 1.5), st.sampled_from([0.5, 0.96, 0.999, 1.0, 2.0]))


@given(
    name=st.sampled_from(FORMATS),
    order=st.sampled_from(["exact", "keras"]),
    staircase=st.booleans(),
    I=st.lists(_values, min_size=1, max_size=3),
    D=st.lists(st.integers(1, 10**5) | st.sampled_from([3.5, 0.25, 1000.0]),
               min_size=1, max_size=3),
    r=st.lists(_rates, min_size=1, max_size=3),
    s=st.lists(st.integers(0, 2**40) | st.floats(0, 1e9), min_size=1, max_size=4),
)
@example(name="bfloat16", order="keras", staircase=False, I=[0.85229427], D=[91729],
         r=[0.8857486877953051], s=[310233])
def test_broadcast_kernels_vs_arb(name: str, order: str, staircase: bool, I: list[float],
                                  D: list[Any], r: list[float], s: list[Any]) -> None:
    # Shapes (len(I), 1, 1), (len(D), 1), (len(r),) ... broadcast to 3-d.
    Ia = np.array(I).reshape(-1, 1, 1, 1)
    Da = np.array(D, dtype=object if any(isinstance(d, float) for d in D) else np.int64
                  ).reshape(-1, 1, 1)
    ra = np.array(r).reshape(-1, 1)
    sa = np.array(s, dtype=np.float64 if any(isinstance(x, float) for x in s) else np.int64)
    with kernels_for_every_size():
        got = fast.evaluate_array(Ia, Da, ra, sa, staircase=staircase, dtype=name, order=order)
    assert got.shape == np.broadcast_shapes(Ia.shape, Da.shape, ra.shape, sa.shape)
    fmt = get_format(name)
    flat = _bits(got.reshape(-1))
    full = np.broadcast_arrays(Ia, Da, ra, sa)
    for idx in range(flat.size):
        i, d, rr, ss = (a.reshape(-1)[idx] for a in full)
        step = ss.item()
        want = arb_evaluate(float(i), Fraction(d.item() if hasattr(d, "item") else d),
                            float(rr), step, staircase, name, order)
        assert to_bits(want, fmt) == int(flat[idx]), (float(i), d, float(rr), step)


@pytest.mark.parametrize("name", FORMATS)
def test_small_broadcasts_reach_the_kernels(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``kernels_for_every_size``, even two schedules go through the
    per-element kernel (so the Hypothesis test above tests the kernel; its
    sample of schedules was once empty, and no kernel ran)."""
    mod = dispatch.kernel_module()
    if mod is None:
        pytest.skip("numba is not importable")
    kernel = "f64_broadcast_kernel" if name == "float64" else "small_broadcast_kernel"
    real = getattr(mod, kernel)
    calls = []

    def recording(*args: Any) -> Any:
        calls.append(len(args[3]))
        return real(*args)

    monkeypatch.setattr(mod, kernel, recording)
    with kernels_for_every_size():
        got = fast.evaluate_array(np.array([0.5, 0.75]), 1000, np.array([0.5, 0.25]), 2000,
                            dtype=name, order="exact")
    assert calls == [2]
    assert got.tolist() == [0.125, 0.046875]  # 0.5 * 0.5**2 and 0.75 * 0.25**2, exact


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("order", ["exact", "keras"])
@pytest.mark.parametrize("staircase", [False, True])
def test_per_element_kernel_random_schedules(name: str, order: str, staircase: bool) -> None:
    """All four inputs random per element (the per-element kernel with its own
    log2): the same bits as one evaluation per schedule, and a sample agrees
    with the Arb oracle."""
    rng = np.random.default_rng(99)
    n = dispatch.KERNEL_MIN_ELEMENTS
    I = rng.uniform(1e-4, 2.0, n)
    D = rng.integers(1, 3000, n).astype(np.float64)
    D[::5] = rng.uniform(0.3, 50.0, D[::5].size)
    r = np.concatenate([rng.uniform(0.3, 0.9999, n - 6), [0.5, 1.0, 2.0, 1 - 2.0**-40, 0.0, 7.5]])
    # Steps spread over 0 to about 40 binades of decay (where values are
    # neither 1 nor 0), a few huge and a few tiny ones.
    good = (r > 0) & (r != 1)
    e_folds = np.abs(np.log2(np.where(good, r, 0.5)))
    s = np.minimum(rng.uniform(0, 40, n) * D / np.maximum(e_folds, 1e-6), 2.0**40).astype(np.int64)
    s[::11] = rng.integers(0, 60000 if name == "float16" else 2**31, s[::11].size)
    s[::7] = rng.integers(0, 50, s[::7].size)
    mod = dispatch.kernel_module()
    stats = fast.FastStats()
    got = fast.evaluate_array(I, D, r, s, staircase=staircase, dtype=name, order=order, stats=stats)
    if mod is not None:
        assert mod.small_broadcast_kernel.signatures  # the per-element kernel ran
    # A subset, below the kernels' size: one evaluation per schedule.
    pick = np.concatenate([np.arange(n - 6, n), rng.choice(n - 6, 400, replace=False)])
    ref = fast.evaluate_array(I[pick], D[pick], r[pick], s[pick], staircase=staircase, dtype=name,
                        order=order)
    assert np.array_equal(_bits(got)[pick], _bits(ref))
    fmt = get_format(name)
    bits = _bits(got)
    for i in pick[:50].tolist():
        want = arb_evaluate(float(I[i]), float(D[i]), float(r[i]), int(s[i]), staircase, name,
                            order)
        assert to_bits(want, fmt) == int(bits[i]), (I[i], D[i], r[i], s[i])


def test_log2_constants_are_rounded_to_nearest() -> None:
    mod = dispatch.kernel_module()
    if mod is None:
        pytest.skip("numba is not importable")
    for k, c in enumerate(mod.ATANH, start=1):
        assert c == float(Fraction(1, 2 * k + 1))
    ctx.prec = 200
    two_over_ln2 = arb(2) / arb(2).log()
    ulp = Fraction(2) ** -51  # 2/ln 2 is in [2, 4)
    c = Fraction(mod.TWO_OVER_LN2)
    lo, hi = c - ulp / 2, c + ulp / 2
    assert two_over_ln2 > arb(fmpq(lo.numerator, lo.denominator))
    assert two_over_ln2 < arb(fmpq(hi.numerator, hi.denominator))


def test_broadcast_shape_mismatch_names_arguments() -> None:
    with pytest.raises(ValueError, match="broadcast together"):
        fast.evaluate_array(np.array([0.1, 0.2]), 10, np.array([0.5, 0.6, 0.7]), 3)
