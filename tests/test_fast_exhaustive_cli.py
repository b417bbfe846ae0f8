"""``expdecay analyze --exhaustive``, the sampling notice and progress lines,
and that scalar work never imports numba."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from expdecay import fast
from expdecay.analysis import sweep as sweep_module
from expdecay.cli import main

SCHEDULE = ["--initial-learning-rate", "0.1", "--decay-steps", "1000", "--decay-rate", "0.96",
            "--dtype", "bfloat16"]


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expdecay.cli", *argv], capture_output=True,
                          text=True, timeout=600, check=False, env=env)


def test_exhaustive_evaluates_every_step(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # A small budget stands for the real one (2**26 steps): a range just above
    # it is sampled by default and evaluated in full with --exhaustive.
    monkeypatch.setattr(sweep_module, "FAST_BUDGET", 20_000)
    monkeypatch.setattr(sweep_module, "FAST_SAMPLES", 2_000)
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
            "fast.evaluate(0.1, 10, 0.5, np.arange(100)); "
            "print('numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_without_numba_same_bits() -> None:
    """EXPDECAY_KERNELS=0 (as when numba is missing) gives the kernels' bytes."""
    code = ("import numpy as np, sys; from expdecay import fast; "
            "s = np.arange(0, 3 * 10**6, 37); "
            "print(fast.kernels() is not None); "
            "sys.stdout.write(''.join(fast.evaluate('0.1', 1000, '0.96', s, dtype=d, order=o,"
            " staircase=st).tobytes().hex()[:0] + __import__('hashlib').sha256("
            "fast.evaluate('0.1', 1000, '0.96', s, dtype=d, order=o, staircase=st).tobytes())"
            ".hexdigest() + '\\n' for d in ('float16', 'bfloat16', 'float32', 'float64') "
            "for o in ('exact', 'keras') for st in (False, True)))")
    outs = []
    for flag in ("1", "0"):
        env = dict(os.environ, EXPDECAY_KERNELS=flag)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, check=False, env=env)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.splitlines())
    assert outs[0][0] == str(fast.kernels() is not None) and outs[1][0] == "False"
    assert len(outs[0]) == 17 and outs[0][1:] == outs[1][1:]
    assert np.unique(outs[0][1:]).size == 16
