"""A user's script, typed, built from the README's examples, passes ``mypy --strict``.

``assert_type`` makes the check fail when a public function returns ``Any``
(which ``mypy --strict`` would otherwise accept silently): scalar steps give
numpy floating scalars, arrays give ``NDArray``, ``evaluate`` gives a floating
scalar usable in arithmetic.  The script also runs, so that the types it
claims are the types the code returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.paths import SRC

mypy_api = pytest.importorskip("mypy.api", reason="mypy comes with the test extra")


USER_SCRIPT = textwrap.dedent('''
    """README examples, as a user with a typed code base writes them."""
    import math
    from decimal import Decimal
    from fractions import Fraction
    from typing import Any, assert_type

    import numpy as np
    from numpy.typing import NDArray

    from expdecay import ExponentialDecay, evaluate, value
    from expdecay.testing import assert_conforms, assert_ulp_close

    # "The schedule in three lines"
    schedule = ExponentialDecay(0.1, decay_steps=100000, decay_rate=0.96, staircase=False)
    lr, lr_exact = schedule(10**6), schedule.exact(10**6)
    assert_type(lr, np.floating[Any])
    assert_type(lr_exact, np.floating[Any])
    assert_type(schedule(np.arange(5)), NDArray[Any])
    assert_type(schedule.exact(np.arange(5)), NDArray[Any])
    assert_type(schedule.error_bound(1000), np.float64)
    assert_type(schedule.error_bound(np.arange(3)), NDArray[np.float64])
    half: float = float(lr) / 2
    same: bool = schedule == ExponentialDecay(0.1, 100000, 0.96)

    # "The oracle"
    x: np.float32 = evaluate(0.1, 100000, 0.96, 10**6, dtype="float32", order="exact")
    y = evaluate(0.1, 100000, 0.96, 10**6, dtype="float32", order="keras") * 2.0
    digits: str = value(0.1, 100000, "0.96", 10**6, digits=25)

    # "Testing your implementation"
    def my_schedule(I: float, D: float, r: float, steps: NDArray[Any], *,
                    staircase: bool, dtype: str) -> NDArray[Any]:
        return np.asarray(ExponentialDecay(I, D, r, staircase, dtype=dtype)(steps))

    def my_lr(initial_learning_rate: float, decay_steps: float, decay_rate: float,
              staircase: bool, step: int, dtype: Any) -> Any:
        p = step / decay_steps
        if staircase:
            p = math.floor(p)
        with np.errstate(all="ignore"):
            return (np.float64(initial_learning_rate) * np.float64(decay_rate) ** p).astype(dtype)

    if __name__ == "__main__":
        assert float(lr) == float(np.float32(0.06648325)), lr
        assert float(x) == float(np.float32(0.06648327)), x
        assert isinstance(schedule.error_bound(1000), np.float64)
        assert isinstance(schedule(np.arange(5)), np.ndarray)
        assert same and half > 0 and y > x
        exact = Fraction(0.1) * Fraction(24, 25) ** 10  # 0.1 is the double nearest 0.1
        assert abs(Fraction(Decimal(digits)) / exact - 1) < Fraction(1, 10**24), digits
        assert_ulp_close(my_lr(0.1, 1000, 0.96, False, 5000, np.float32),
                         ExponentialDecay(0.1, 1000, 0.96).exact(5000), ulps=1, dtype="float32")
        print(type(assert_conforms).__name__, my_schedule.__name__)
''')


def test_readme_user_script_passes_mypy_strict_and_runs(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    # Run from tmp_path so that this repository's mypy configuration does not
    # apply: the user's own --strict is what counts.  Imported modules are
    # followed silently (their own checking is `mypy --strict src/expdecay`).
    old = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(SRC)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        out, err, status = mypy_api.run([
            "--strict", "--follow-imports=silent", "--no-error-summary",
            "--cache-dir", str(tmp_path / ".mypy_cache"), str(script)])
    finally:
        os.chdir(cwd)
        if old is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = old
    assert status == 0, out + err
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path[1:]])}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["function", "my_schedule"]
