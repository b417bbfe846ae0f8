"""Random differential campaigns (``expdecay check --random``, spec/conformance.md §8).

* The cases are a function of the seed alone: a digest of the first 2048
  schedules of seed 20261128, computed once when the distributions were
  written, pins them; the same digest comes out with numpy's SIMD dispatch
  reduced to the baseline (a different code path for every vectorised
  operation), and any schedule can be drawn alone.
* The regions draw what spec/conformance.md §8 says, checked with exact
  rationals.
* A correct implementation passes; a mutant with a known defect fails, its
  failures are written as a vector file that validates and that, re-run with
  ``--vectors``, gives the same failures.
* The two defect classes of issue 13 are found in the real peers (optax's
  reciprocal division, tf.keras's float32 decay rate in float64 schedules).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expdecay.conformance import campaign
from expdecay.conformance.adapters import Adapter, get_adapter
from expdecay.conformance.campaign import REGIONS, STEPS_PER_SCHEDULE, draw, run_campaign
from expdecay.conformance.vectors import validate_file
from expdecay.floats import get_format
from support.paths import MUTANT_DIR, ROOT

#: sha256 of the first 2048 schedules of seed 20261128 (all four formats),
#: computed once with the distributions of spec/conformance.md §8.  It changes
#: only when the distributions change, and then the spec's version must too.
DIGEST = "d15eebce96348335bb9f81ab29e60e0da7b56173c4b10d596364ef5bdb72d733"

DIGEST_CODE = r"""
import hashlib, sys
import numpy as np
from expdecay.conformance.campaign import draw
b = draw(20261128, 0, 2048)
h = hashlib.sha256()
for a in (b.dtype, b.staircase, b.I, b.D, b.D_int, b.r, b.steps, b.fsteps, b.float_steps,
          b.region):
    a = np.ascontiguousarray(a)
    h.update(a.astype(a.dtype.newbyteorder("<")).tobytes())
print(h.hexdigest())
"""


def _python(code: str, env: dict[str, str] | None = None) -> str:
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *sys.path])
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full, timeout=300, check=True)
    return out.stdout.strip()


def _dispatch_targets() -> list[str]:
    try:
        from numpy._core._multiarray_umath import (  # type: ignore[import-not-found,unused-ignore]
            __cpu_baseline__,
            __cpu_dispatch__,
            __cpu_features__,
        )
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import (  # type: ignore[attr-defined,no-redef,unused-ignore]
            __cpu_baseline__,
            __cpu_dispatch__,
            __cpu_features__,
        )
    return [t for t in __cpu_dispatch__ if __cpu_features__.get(t) and t not in __cpu_baseline__]


def test_same_cases_on_every_machine() -> None:
    assert _python(DIGEST_CODE) == DIGEST
    targets = _dispatch_targets()
    if targets:  # numpy's SIMD paths off: every vectorised operation runs other code
        assert _python(DIGEST_CODE, {"NPY_DISABLE_CPU_FEATURES": " ".join(targets)}) == DIGEST


def test_other_seed_other_cases_and_random_access() -> None:
    a, b = draw(1, 0, 200), draw(2, 0, 200)
    assert not np.array_equal(a.steps, b.steps)
    part = draw(1, 37, 100)  # schedules 37..136 drawn alone
    for name in ("dtype", "staircase", "I", "D", "r", "steps", "region"):
        assert np.array_equal(getattr(a, name)[37:137], getattr(part, name), equal_nan=True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seed"):
        draw(-1, 0, 1)
    with pytest.raises(ValueError, match="float8"):
        draw(0, 0, 1, ("float8",))
    a = get_adapter("expdecay", isolated=False)
    with pytest.raises(ValueError, match="cases"):
        run_campaign(a, 0)
    with pytest.raises(ValueError, match="profile"):
        run_campaign(a, 10, profiles=("fast",))


def _region(block: campaign.Block, name: str) -> np.ndarray:
    return np.flatnonzero(block.region == [r[0] for r in REGIONS].index(name))


BLOCK = draw(5, 0, 4096)


def test_region_shares_follow_the_weights() -> None:
    counts = np.bincount(BLOCK.region, minlength=len(REGIONS))
    for (name, weight, _), c in zip(REGIONS, counts, strict=True):
        assert abs(c / len(BLOCK) - weight / 64) < 0.03, name


def test_boundary_steps_are_next_to_multiples() -> None:
    idx = _region(BLOCK, "boundary")
    assert BLOCK.D_int[idx].all()
    D = BLOCK.D[idx].astype(np.int64)[:, None]
    s = BLOCK.steps[idx]
    assert (((s + 1) % D <= 2) | (s == 0)).all()
    assert BLOCK.staircase[idx].mean() > 0.6
    below = (s < 2**24).mean()
    assert below > 0.7  # float32 staircase below 2**24: where reciprocal division misfloors


def test_large_steps_are_near_the_anchors() -> None:
    idx = _region(BLOCK, "large")
    s = BLOCK.steps[idx]
    anchors = [2**24, 2**31, 2**53, 2**63 - 1 - 2**12]
    near = np.zeros(s.shape, dtype=bool)
    for a in anchors:
        near |= np.abs(s - a) <= 2**12
    assert near.all()


def test_rates_near_one_or_tiny() -> None:
    idx = _region(BLOCK, "rate")
    r = BLOCK.r[idx]
    assert ((np.abs(r - 1) <= 2.0**-7) | (r <= 2.0**-9)).all()


def _midpoint(v: Fraction, fmt_name: str) -> bool:
    """Is the positive rational ``v`` exactly halfway between two values of the format?"""
    fmt = get_format(fmt_name)
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    q = v / Fraction(2) ** (max(e, fmt.emin) - fmt.precision + 1)
    return q.denominator == 2


def test_midpoint_region_hits_midpoints() -> None:
    idx = _region(BLOCK, "midpoint")
    hits = 0
    for i in idx:
        D = int(BLOCK.D[i])
        k = int(BLOCK.steps[i, 0]) // D  # the integer exponent
        v = Fraction(float(BLOCK.I[i])) * Fraction(float(BLOCK.r[i])) ** k
        hits += _midpoint(v, BLOCK.dtypes[int(BLOCK.dtype[i])])
    assert hits / len(idx) > 0.35  # half are exact midpoints, less the failed constructions


def test_range_region_reaches_the_thresholds() -> None:
    from expdecay.fast import evaluate_array as evaluate

    idx = _region(BLOCK, "range")
    near = 0
    for i in idx[:200]:
        fmt = get_format(BLOCK.dtypes[int(BLOCK.dtype[i])])
        y = np.abs(evaluate(float(BLOCK.I[i]), float(BLOCK.D[i]), float(BLOCK.r[i]),
                            BLOCK.steps[i], dtype=fmt.name, order="exact").astype(float))
        near += int(((y < 4 * fmt.min_normal) | (y > fmt.max_finite / 4)).sum())
    assert near / (min(len(idx), 200) * STEPS_PER_SCHEDULE) > 0.6


def test_nonint_decay_steps() -> None:
    idx = _region(BLOCK, "nonint")
    assert not BLOCK.D_int[idx].any()
    assert (np.floor(BLOCK.D[idx]) != BLOCK.D[idx]).all()


def test_the_reference_passes_its_own_campaign() -> None:
    for order in ("exact", "keras"):
        a = get_adapter("expdecay", isolated=False, order=order)
        camp = run_campaign(a, 3000, 11, profiles=(order,))
        c = camp.counts[order]
        assert c["fail"] == 0 and c["notrun"] == 0 and c["pass"] + c["na"] == 3000, c


@pytest.mark.parametrize("order", ["exact", "keras"])
def test_expected_values_agree_with_arb(order: str) -> None:
    """The campaign's expected bits (:func:`campaign.expected`, the fast
    path the reference adapter also uses) against the independent Arb
    oracle of tests/support/arb_oracle.py on a sample of every region and format:
    the reference's own campaign is only as good as this agreement."""
    from support.arb_oracle import arb_evaluate

    block = draw(11, 0, 1024)
    want = campaign.expected(block, order)
    rng = np.random.default_rng(4)
    checked = 0
    for j in range(len(REGIONS)):
        rows = np.flatnonzero(block.region == j)
        for i in rng.choice(rows, min(12, rows.size), replace=False).tolist():
            p = block.params(i)
            for k in rng.choice(STEPS_PER_SCHEDULE, 3, replace=False).tolist():
                s = block.step_list(i)[k]
                if s < 0 or s != s:
                    continue  # invalid steps: the spec's special table, not the schedule
                got = arb_evaluate(p.initial_learning_rate, Fraction(p.decay_steps),
                                   p.decay_rate, s, bool(p.staircase), p.dtype, order)
                fmt = get_format(p.dtype)
                a = np.array([got, want[i, k]]).astype(fmt.dtype).view(f"u{fmt.width // 8}")
                assert a[0] == a[1] or (got != got and want[i, k] != want[i, k]), (
                    block.case(i, k), order, got, want[i, k])
                checked += 1
    assert checked > 150


class _Recording(Adapter):
    """An implementation that answers ``I * r**(s / D)`` in float64 (plain
    numpy, wrong in the last bits) and records every call."""

    name = "recording"
    vectorised = True

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[Any, list[int | float]]] = []
        self.fail_at = fail_at

    def _evaluate(self, params: Any, steps: list[int | float]) -> np.ndarray:
        first = sum(len(s) for _, s in self.calls)
        self.calls.append((params, list(steps)))
        I, D, r = (float(x) for x in params.as_python())
        with np.errstate(all="ignore"):
            p = np.array(steps, dtype=np.float64) / D
            out = I * np.power(r, np.floor(p) if params.staircase else p)
            out = out.astype(get_format(params.dtype).dtype).astype(np.float64)
        if self.fail_at is not None and first <= self.fail_at < first + len(steps):
            out[self.fail_at - first] = -1.0  # a plainly wrong output
        return out


def test_campaign_across_a_block_boundary() -> None:
    """N = 65,536 + 100 crosses the first block of 4096 schedules: the
    cases are numbered on, the first M cases of a campaign are the cases of
    the campaign of M (also across the seam), every case is counted once,
    and so are the per-region tallies (the last schedule is partial)."""
    n = campaign.BLOCK * STEPS_PER_SCHEDULE + 100
    a = _Recording(fail_at=campaign.BLOCK * STEPS_PER_SCHEDULE + 37)
    camp = run_campaign(a, n, 21, profiles=("exact",), max_failures=10**6)
    c = camp.counts["exact"]
    assert sum(c[x] for x in ("pass", "fail", "na", "notrun")) == n
    flat = [(params, s) for params, steps in a.calls for s in steps]
    assert len(flat) == n
    # The same cases as drawn one by one, in order.
    cases = list(campaign.iter_cases(21, n))
    for j in (0, 65_535, 65_536, 65_537, n - 1):
        params, s = flat[j]
        assert (params.dtype, params.decay_rate, s) == (
            cases[j]["dtype"], cases[j]["decay_rate"], cases[j]["step"]), j
    # The failure planted after the seam is found where it was planted.
    rec = [r for r in camp.recorded if r.schedule == campaign.BLOCK + 2 and r.k == 5]
    assert rec and rec[0].output[0] == -1.0
    # Per-region tallies count each case once, the partial last schedule too.
    from collections import Counter
    assert {k: v for k, v in camp.regions.items() if v} == dict(
        Counter(x["region"] for x in cases))
    # The first M cases are the campaign of M (M inside the second block).
    m = campaign.BLOCK * STEPS_PER_SCHEDULE + 20
    b = _Recording()
    run_campaign(b, m, 21, profiles=("exact",), max_failures=0)
    flat_m = [(params, s) for params, steps in b.calls for s in steps]
    assert len(flat_m) == m
    assert all(x[1] == y[1] and x[0] == y[0] for x, y in zip(flat_m, flat, strict=False))


def test_region_tallies_leave_the_padding_out() -> None:
    """100 cases: 6 schedules and 4 steps of a seventh; the tallies add up
    to 100 (the padded steps of the last schedule are not cases)."""
    from collections import Counter
    camp = run_campaign(_Recording(), 100, 3, profiles=("exact",))
    assert sum(camp.regions.values()) == 100
    assert {k: v for k, v in camp.regions.items() if v} == dict(
        Counter(x["region"] for x in campaign.iter_cases(3, 100)))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(MUTANT_DIR), *sys.path])
    return subprocess.run([sys.executable, "-m", "expdecay", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_failures_round_trip(tmp_path: Path) -> None:
    """A mutant dividing by a rounded reciprocal: the campaign finds it, the
    failures validate as a vector file, and re-running the file gives the same
    failures, with the same cause."""
    impl = "python:expdecay_mutants:reciprocal_division"
    out = tmp_path / "failures.json"
    rep1 = tmp_path / "random.json"
    r = _cli("check", "--impl", impl, "--random", "1500", "--seed", "3", "--dtype", "float32",
             "--profile", "keras", "--max-failures", "100000", "--write-failures", str(out),
             "--report", str(rep1), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    first = json.loads(rep1.read_text())["implementations"][0]
    assert first["failed"] > 0
    assert "reciprocal-division" in first["causeIds"]
    assert validate_file(out) == []
    doc = json.loads(out.read_text())
    assert doc["numberOfTests"] == first["failed"]  # every failure written
    rep2 = tmp_path / "again.json"
    r = _cli("check", "--impl", impl, "--vectors", str(out), "--profile", "keras",
             "--report", str(rep2), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    again = json.loads(rep2.read_text())["implementations"][0]
    assert again["failed"] == first["failed"] and again["passed"] == 0
    assert again["causeIds"] == first["causeIds"]
    assert "validate" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--random", "0"], "--random must be"),
    (["--random", "10", "--seed", "-1"], "--seed must be"),
    (["--random", "10", "--dtype", "float8"], "--dtype must be"),
    (["--write-failures", "x.json"], "need --random"),
    (["--random", "10", "--vectors", "x.json"], "not --vectors"),
    (["--random", "ten"], "invalid int"),
])
def test_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    r = _cli("check", "--impl", "expdecay", *args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def _installed(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _proven(camp: campaign.Campaign, profile: str) -> dict[str, int]:
    return dict(camp.reports()[list(camp.profiles).index(profile)].cause_ids)


@pytest.mark.peers
@pytest.mark.skipif(not _installed("optax", "jax"), reason="optax not installed")
def test_optax_reciprocal_division_is_found() -> None:
    """Seed 0 proves the misfloor at case 138 (float32 staircase, below 2**24)."""
    a = get_adapter("optax", isolated=True)
    try:
        camp = run_campaign(a, 400, 0, profiles=("keras",), dtypes=("float32",),
                            max_failures=400)
    finally:
        a.close()
    assert _proven(camp, "keras").get("reciprocal-division", 0) >= 1


@pytest.mark.peers
@pytest.mark.skipif(not _installed("tf_keras", "tensorflow"), reason="tf_keras not installed")
def test_tf_keras_float32_rate_is_found() -> None:
    a = get_adapter("tf-keras", isolated=True)
    try:
        camp = run_campaign(a, 64, 0, profiles=("keras",), dtypes=("float64",),
                            max_failures=64)
    finally:
        a.close()
    assert _proven(camp, "keras").get("rate-through-float32", 0) >= 1


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.skipif(not _installed("optax", "jax"), reason="optax not installed")
def test_optax_full_campaign(tmp_path: Path) -> None:
    """10**5 cases through the command line, all four formats asked for."""
    rep = tmp_path / "r.json"
    r = _cli("check", "--impl", "optax", "--random", "100000", "--seed", "0", "--profile",
             "keras", "--report", str(rep), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    got = json.loads(rep.read_text())["implementations"][0]
    assert got["causeIds"].get("reciprocal-division", 0) >= 1
    assert "random: 100000/100000 cases (100%)" in r.stderr  # progress shown


def test_an_implementation_that_refuses_negative_steps_passes() -> None:
    """Raising on a negative step is allowed (the spec's invalid inputs): the
    campaign passes it, with finite ulp distances, and still fails an error
    on a valid step."""
    a = get_adapter("expdecay", isolated=False, order="exact")
    inner = a._evaluate
    raised = {"negative": 0}

    def refuse_negative(params: Any, steps: list[Any]) -> Any:
        if any(s < 0 or s != s for s in steps):
            raised["negative"] += 1
            raise ValueError("negative step")
        return inner(params, steps)

    a._evaluate = refuse_negative  # type: ignore[method-assign]
    camp = run_campaign(a, 3000, 11, profiles=("exact",))
    c = camp.counts["exact"]
    assert raised["negative"] > 0  # the campaign did reach negative steps
    assert c["fail"] == 0 and c["notrun"] == 0, c
    assert np.isfinite(camp.max_ulps["exact"]), camp.max_ulps

    def refuse_all(params: Any, steps: list[Any]) -> Any:
        raise ValueError("no")

    a._evaluate = refuse_all  # type: ignore[method-assign]
    camp = run_campaign(a, 200, 11, profiles=("exact",))
    assert camp.counts["exact"]["fail"] > 0
    assert camp.max_ulps["exact"] == np.inf


def test_keras_tolerances_agree_with_the_rational_route() -> None:
    """The vectorised keras tolerances of the judge (0, 2 or 'ask') against
    :func:`expdecay.conformance.vectors.keras_tolerance` (exact rationals,
    the one make_tests writes) on every case of a few hundred schedules of
    each format; almost every case is decided without asking."""
    from expdecay.conformance.vectors import Group, keras_tolerance

    asked = known = 0
    zeros = 0
    for seed in (2, 3):
        b = draw(seed, 0, 160)
        for d, name in enumerate(b.dtypes):
            rows = np.flatnonzero(b.dtype == d)
            i = np.repeat(rows, STEPS_PER_SCHEDULE)
            k = np.tile(np.arange(STEPS_PER_SCHEDULE), rows.size)
            tol = campaign.keras_tolerances(b, i, k, get_format(name))
            for ii, kk, t in zip(i.tolist(), k.tolist(), tol.tolist(), strict=True):
                if t < 0:
                    asked += 1
                    continue
                p = b.params(ii)
                g = Group(p.dtype, bool(p.staircase), campaign.as_number(p.initial_learning_rate),
                          campaign.as_number(p.decay_steps), campaign.as_number(p.decay_rate))
                assert t == keras_tolerance(g, b.step_list(ii)[kk]), b.case(ii, kk)
                known += 1
                zeros += t == 0
    assert known > 50 * asked and zeros > 100
