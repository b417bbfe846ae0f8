"""The fast path gives the same bits whatever SIMD code numpy dispatches to.

numpy's transcendentals give different last bits with and without AVX-512
(float64 ``exp2``), and with and without AVX2 (float32 ``exp``, ``log``, ...).
The same evaluation (about 300,000 elements across the four formats, both
orders and both staircase modes) runs in two subprocesses: one with numpy's
default dispatch and one with ``NPY_DISABLE_CPU_FEATURES`` naming every
AVX-512 target this numpy found on this CPU (or, on a CPU without AVX-512, the
AVX2-level targets).  The output bytes must be identical, and a sample must
match the oracle.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from expdecay import inputs, oracle
from expdecay.floats import get_format, to_bits

CHILD = r"""
import hashlib, json, sys
import numpy as np
from expdecay import fast

out_dir = sys.argv[1]
fast.TABLE_MIN_ELEMENTS = 0  # exercise the float64 power tables too
rng = np.random.default_rng(20261124)
steps = {
    "int": np.concatenate([rng.integers(0, 2**30, 6000), rng.integers(-10**6, 10**6, 2000),
                           rng.integers(0, 2**62, 1000)]).astype(np.int64),
    "float": rng.uniform(-1e5, 3e7, 9000),
}
schedules = [("0.1", 1000, "0.96"), (3.0, 7, 1.5), ("1e-30", 3, "0.5")]
report = {}
for fmt in ("float16", "bfloat16", "float32", "float64"):
    for order in ("exact", "keras"):
        for staircase in (False, True):
            for k, (I, D, r) in enumerate(schedules):
                for kind, s in steps.items():
                    if fmt == "float64" and kind == "float" and k:
                        continue
                    got = fast.evaluate(I, D, r, s, staircase=staircase, dtype=fmt, order=order)
                    name = f"{fmt}-{order}-{int(staircase)}-{k}-{kind}"
                    np.save(f"{out_dir}/{name}.npy", got.view(f"u{got.itemsize}"))
                    report[name] = hashlib.sha256(got.tobytes()).hexdigest()
# The control: numpy's own transcendentals, whose SIMD kernels differ by CPU
# level (on AVX-512 machines float64 exp2 changes; on AVX2-only machines
# float64 exp2 is scalar either way, but float32 exp/log/sin/tanh change).
x = np.linspace(-80.0, 80.0, 100001)
y = np.linspace(1e-3, 1e3, 100001)
for dt in ("float32", "float64"):
    for fname, arg in (("exp2", x), ("exp", x), ("log", y), ("sin", x), ("tanh", x)):
        got = getattr(np, fname)(arg.astype(dt))
        report[f"numpy.{fname}[{dt}] (not ours)"] = hashlib.sha256(got.tobytes()).hexdigest()
json.dump(report, sys.stdout)
"""


def _dispatch_targets() -> list[str]:
    """The SIMD targets numpy dispatches to on this CPU (as in np.show_runtime)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import (  # type: ignore[no-redef]
            __cpu_dispatch__,
            __cpu_features__,
        )
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def features_to_disable() -> tuple[list[str], str]:
    """AVX-512 targets if the CPU has any, else AVX2-level ones; and a label."""
    found = _dispatch_targets()
    avx512 = [f for f in found if "512" in f or f == "X86_V4"]
    if avx512:
        return avx512, "AVX-512"
    avx2 = [f for f in found if f in ("AVX2", "FMA3", "X86_V3", "AVX512F")]
    return avx2, "AVX2"


def _run(tmp: Path, disable: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
    tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_bits_independent_of_simd_dispatch(tmp_path: Path) -> None:
    disable, label = features_to_disable()
    if not disable:
        pytest.fail("numpy reports no SIMD dispatch target to disable on this CPU")
    default = _run(tmp_path / "default", [])
    reduced = _run(tmp_path / "reduced", disable)
    controls = [k for k in default if k.endswith("(not ours)")]
    changed = [k for k in controls if default.pop(k) != reduced.pop(k)]
    print(f"disabled {label} targets: {' '.join(disable)}; numpy functions whose bits "
          f"changed: {', '.join(changed) or 'none'}")
    # The control: without it the test would pass vacuously if the variable
    # had no effect.  Some of numpy's own transcendentals must change bits.
    assert changed, f"disabling {disable} changed none of numpy's bits ({controls})"
    assert default.keys() == reduced.keys() and len(default) >= 80
    differing = [k for k in default if default[k] != reduced[k]]
    assert not differing, differing
    # The files hash as reported, and a sample of each agrees with the oracle.
    rng = np.random.default_rng(7)
    schedules = [("0.1", 1000, "0.96"), (3.0, 7, 1.5), ("1e-30", 3, "0.5")]
    gen = np.random.default_rng(20261124)
    ints = np.concatenate([gen.integers(0, 2**30, 6000), gen.integers(-10**6, 10**6, 2000),
                           gen.integers(0, 2**62, 1000)]).astype(np.int64)
    steps = {"int": ints, "float": gen.uniform(-1e5, 3e7, 9000)}
    for name, digest in default.items():
        bits = np.load(tmp_path / "default" / f"{name}.npy")
        assert hashlib.sha256(bits.tobytes()).hexdigest() == digest
        fmt_name, order, staircase, k, kind = name.split("-")
        fmt = get_format(fmt_name)
        I, D, r = schedules[int(k)]
        args = (inputs.to_exact(I), inputs.check_decay_steps(D), inputs.to_exact(r))
        for i in rng.choice(bits.size, 6, replace=False).tolist():
            s = steps[kind][i].item()
            want = oracle.evaluate_exact(args + (inputs.to_exact(s),), staircase == "1", fmt,
                                         order)
            assert to_bits(want, fmt) == int(bits[i]), (name, s)


def test_disable_list_names_real_targets() -> None:
    disable, label = features_to_disable()
    assert set(disable) <= set(_dispatch_targets())
    assert label in ("AVX-512", "AVX2")
