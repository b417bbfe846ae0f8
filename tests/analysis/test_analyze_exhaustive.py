"""``expdecay analyze --exhaustive``, the sampling notice and progress lines,
and that scalar work never imports numba."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from expdecay.analysis import sweep as sweep_module
from expdecay.analysis.sweep import steps as step_sets
from expdecay.analysis.sweep.stats import ErrorStats
from expdecay.cli import main
from expdecay.fast import dispatch

SCHEDULE = ["--initial-learning-rate", "0.1", "--decay-steps", "1000", "--decay-rate", "0.96",
            "--dtype", "bfloat16"]


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expdecay.cli", *argv], capture_output=True,
                          text=True, timeout=600, check=False, env=env)


def test_exhaustive_evaluates_every_step(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # A small budget stands for the real one (2**26 steps): a range just above
    # it is sampled by default and evaluated in full with --exhaustive.
    monkeypatch.setattr(step_sets, "FAST_BUDGET", 20_000)
    monkeypatch.setattr(step_sets, "FAST_SAMPLES", 2_000)
    n = 20_005
    steps = f"--steps=0:{n}"
    assert main(["analyze", *SCHEDULE, steps, "--json", "--no-bound", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "add --exhaustive to evaluate all of them" in err
    assert json.loads(out)["sweep"]["vs_exact"]["count"] < n
    assert main(["analyze", *SCHEDULE, steps, "--json", "--no-bound", "--exhaustive",
                 "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "--exhaustive" not in err
    assert json.loads(out)["sweep"]["vs_exact"]["count"] == n
    # Not a terminal: progress comes as whole lines, no carriage return.
    assert "\r" not in err
    assert f"analyze: {n:,}/{n:,} steps (100%)" in err


def test_exhaustive_excludes_max_points() -> None:
    got = _cli("analyze", *SCHEDULE, "--steps=0:100", "--exhaustive", "--max-points", "10")
    assert got.returncode == 2
    assert "--exhaustive and --max-points" in got.stderr


def test_eval_does_not_import_numba() -> None:
    code = ("import sys; from expdecay.cli import main; "
            "main(['eval', '--initial-learning-rate', '0.1', '--decay-steps', '10', "
            "'--decay-rate', '0.5', '--step', '7']); "
            "from expdecay import fast; import numpy as np; "
            "fast.evaluate_array(0.1, 10, 0.5, np.arange(100)); "
            "print('numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_without_numba_same_bits() -> None:
    """EXPDECAY_KERNELS=0 (as when numba is missing) gives the kernels' bytes."""
    code = ("import numpy as np, sys; from expdecay import fast; "
            "from expdecay.fast import dispatch; "
            "s = np.arange(0, 3 * 10**6, 37); "
            "print(dispatch.kernel_module() is not None); "
            "sys.stdout.write(''.join(fast.evaluate_array('0.1', 1000, '0.96', s, dtype=d, order=o,"
            " staircase=st).tobytes().hex()[:0] + __import__('hashlib').sha256("
            "fast.evaluate_array('0.1', 1000, '0.96', s, dtype=d, order=o, staircase=st).tobytes())"
            ".hexdigest() + '\\n' for d in ('float16', 'bfloat16', 'float32', 'float64') "
            "for o in ('exact', 'keras') for st in (False, True)))")
    outs = []
    for flag in ("1", "0"):
        env = dict(os.environ, EXPDECAY_KERNELS=flag)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, check=False, env=env)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.splitlines())
    assert outs[0][0] == str(dispatch.kernel_module() is not None) and outs[1][0] == "False"
    assert len(outs[0]) == 17 and outs[0][1:] == outs[1][1:]
    assert np.unique(outs[0][1:]).size == 16


def test_exhaustive_float32_takes_the_fused_route() -> None:
    # 2**21 steps across 2**24, without the bound: the fused route, with
    # progress lines (not a terminal) and the same numbers as the unfused one.
    argv = ["analyze", "--initial-learning-rate", "0.1", "--decay-steps", "1000",
            "--decay-rate", "0.9999", "--staircase", "--dtype", "float32",
            "--steps", f"{2**24 - 2**20}:{2**24 + 2**20}", "--no-bound", "--exhaustive",
            "--json"]
    fused = _cli(*argv)
    assert fused.returncode == 0, fused.stderr
    assert f"analyze: {2**21:,}/{2**21:,} steps (100%)" in fused.stderr
    got = json.loads(fused.stdout)["sweep"]
    assert got["evaluator"] == "fused" and got["vs_exact"]["count"] == 2**21
    plain = _cli(*argv, env=dict(os.environ, EXPDECAY_FUSED_SWEEP="0"))
    assert plain.returncode == 0, plain.stderr
    want = json.loads(plain.stdout)["sweep"]
    assert want["evaluator"] == "fast"
    for key in ("vs_exact", "vs_keras", "vs_exact_on_rounded_inputs"):
        assert got[key] == want[key], key


@pytest.mark.slow
def test_exhaustive_all_int32_steps_float32() -> None:
    """All 2**31 int32 steps of a float32 schedule through the CLI (slow tier):
    every step counted, and the numbers equal to the same range swept as 16
    separate pieces of 2**27 steps (on one thread) and merged here."""
    argv = ["analyze", "--initial-learning-rate", "0.1", "--decay-steps", "1000",
            "--decay-rate", "0.9999", "--staircase", "--dtype", "float32",
            "--steps", "0:2**31", "--no-bound", "--exhaustive", "--json"]
    done = _cli(*argv)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)["sweep"]
    assert got["evaluator"] == "fused" and got["vs_exact"]["count"] == 2**31
    sch = sweep_module.Schedule("0.1", 1000, "0.9999", True, "float32")
    parts = [sweep_module.sweep(sch, sweep_module.StepSet(a, a + 2**27), workers=1,
                                pow_ulps=None) for a in range(0, 2**31, 2**27)]
    for key, name in (("vs_exact", "vs_exact"), ("vs_exact_on_rounded_inputs", "vs_rounded")):
        merged = ErrorStats()
        for p in parts:
            merged.merge(getattr(p, name), 10)
        assert got[key] == merged.to_json(), key
