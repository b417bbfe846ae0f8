"""The fast path gives the same bits whatever code the CPU runs.

The same evaluation (about 300,000 elements across the four formats, both
orders and both staircase modes) runs in subprocesses:

* ``default``: numpy's default SIMD dispatch, the compiled kernels built for
  this CPU;
* ``numpy``: the numpy path (``EXPDECAY_KERNELS=0``), default dispatch;
* ``reduced``: the numpy path with ``NPY_DISABLE_CPU_FEATURES`` naming every
  dispatch target the ``default`` child reported as available on this CPU
  (taken from numpy at run time, baseline excluded; nothing assumes x86);
* ``generic``: the kernels compiled for a generic CPU of this architecture
  (``NUMBA_CPU_NAME=generic``: SSE2 on x86-64) with the same targets disabled;
* each named CPU of ``kernel_asm.TARGETS`` (``haswell``, ``skylake-avx512``,
  ``znver4``): the kernels compiled for that CPU's own features, run where
  this CPU has every feature the target's code may use; a target this CPU
  cannot run is skipped with the features it lacks (its machine code is still
  checked by ``tests/fast/test_kernels_machine_code.py``).

The output bytes must be identical in all of them, and a sample must match
the oracle.  The control: numpy's own transcendentals, computed in the same
children, show whether disabling the targets changed any bits.  When it
changes none on this CPU (or numpy has no dispatch target to disable), the
comparison of ``default`` and ``reduced`` proves nothing about dispatch, and
that part is skipped with its reason; :func:`test_numpy_path_independent_of_exp2_bits`
then proves the independence another way, by perturbing ``numpy.exp2`` (the
only numpy transcendental the fast path uses) by up to 1/4 of its assumed
error bound and checking that no output bit changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from expdecay import fast, inputs, oracle
from expdecay.fast import constants, dispatch, numpy_paths
from expdecay.floats import get_format, to_bits
from support.kernel_asm import TARGETS, is_x86, runnable

CHILD = r"""
import hashlib, json, sys
import numpy as np
from expdecay import fast
from expdecay.fast import dispatch

try:
    from numpy._core._multiarray_umath import (__cpu_baseline__, __cpu_dispatch__,
                                               __cpu_features__)
except ImportError:  # numpy < 2
    from numpy.core._multiarray_umath import (__cpu_baseline__, __cpu_dispatch__,
                                              __cpu_features__)

out_dir = sys.argv[1]
dispatch.TABLE_MIN_ELEMENTS = 0  # exercise the float64 power tables of the numpy path too
rng = np.random.default_rng(20261124)
steps = {
    "int": np.concatenate([rng.integers(0, 2**30, 6000), rng.integers(-10**6, 10**6, 2000),
                           rng.integers(0, 2**62, 1000)]).astype(np.int64),
    "float": rng.uniform(-1e5, 3e7, 9000),
}
schedules = [("0.1", 1000, "0.96"), (3.0, 7, 1.5), ("1e-30", 3, "0.5")]
report = {"outputs": {}, "controls": {},
          "targets": [t for t in __cpu_dispatch__
                      if __cpu_features__.get(t) and t not in __cpu_baseline__],
          "kernels": dispatch.kernel_module() is not None}
for fmt in ("float16", "bfloat16", "float32", "float64"):
    for order in ("exact", "keras"):
        for staircase in (False, True):
            for k, (I, D, r) in enumerate(schedules):
                for kind, s in steps.items():
                    if fmt == "float64" and kind == "float" and k:
                        continue
                    got = fast.evaluate_array(I, D, r, s, staircase=staircase, dtype=fmt,
                                              order=order)
                    name = f"{fmt}-{order}-{int(staircase)}-{k}-{kind}"
                    np.save(f"{out_dir}/{name}.npy", got.view(f"u{got.itemsize}"))
                    report["outputs"][name] = hashlib.sha256(got.tobytes()).hexdigest()
x = np.linspace(-80.0, 80.0, 100001)
y = np.linspace(1e-3, 1e3, 100001)
for dt in ("float32", "float64"):
    for fname, arg in (("exp2", x), ("exp", x), ("log", y), ("sin", x), ("tanh", x)):
        got = getattr(np, fname)(arg.astype(dt))
        report["controls"][f"numpy.{fname}[{dt}]"] = hashlib.sha256(got.tobytes()).hexdigest()
json.dump(report, sys.stdout)
"""

SCHEDULES = [("0.1", 1000, "0.96"), (3.0, 7, 1.5), ("1e-30", 3, "0.5")]


def _run(tmp: Path, env_extra: dict[str, str]) -> dict[str, object]:
    env = dict(os.environ)
    for key in ("NPY_DISABLE_CPU_FEATURES", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                "EXPDECAY_KERNELS"):
        env.pop(key, None)
    env.update(env_extra)
    tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp)], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout)
    return out


#: The named CPUs besides ``generic`` whose kernels run here when this CPU can.
NAMED = [t for t in TARGETS if t != "generic"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("dispatch")
    default = _run(tmp / "default", {})
    targets = list(default["targets"])  # type: ignore[call-overload]
    disable = {"NPY_DISABLE_CPU_FEATURES": " ".join(targets)} if targets else {}
    children = {
        "numpy": {"EXPDECAY_KERNELS": "0"},
        "reduced": {**disable, "EXPDECAY_KERNELS": "0"},
        "generic": {**disable, "NUMBA_CPU_NAME": "generic"},
    }
    if default["kernels"] and is_x86():
        for target in NAMED:
            if runnable(target)[0]:
                # The target's own features, not this CPU's (empty: LLVM's
                # definition of the named CPU).
                children[target] = {"NUMBA_CPU_NAME": target, "NUMBA_CPU_FEATURES": ""}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, tmp / name, env) for name, env in children.items()}
        out: dict[str, dict[str, object]] = {n: f.result() for n, f in futures.items()}
    out["default"] = default
    out["dir"] = {"path": str(tmp)}
    return out


def test_kernels_and_numpy_path_agree(runs: dict[str, dict[str, object]]) -> None:
    """Kernels (host CPU) and the numpy path give the same bytes."""
    default, numpy_path = runs["default"], runs["numpy"]
    if not default["kernels"]:
        pytest.skip("numba is not importable: only the numpy path exists")
    assert len(default["outputs"]) >= 80  # type: ignore[arg-type]
    assert default["outputs"] == numpy_path["outputs"]


def test_kernels_independent_of_cpu_target(runs: dict[str, dict[str, object]]) -> None:
    """Kernels compiled for a generic CPU give the host-compiled kernels' bytes."""
    if not runs["default"]["kernels"]:
        pytest.skip("numba is not importable: no kernels to compile for another CPU")
    assert runs["default"]["outputs"] == runs["generic"]["outputs"]


@pytest.mark.parametrize("target", NAMED)
def test_kernels_same_bits_for_named_cpu(runs: dict[str, dict[str, object]],
                                         target: str) -> None:
    """Kernels compiled for a named CPU give the host-compiled kernels' bytes."""
    if not runs["default"]["kernels"]:
        pytest.skip("numba is not importable: no kernels to compile for another CPU")
    if not is_x86():
        pytest.skip(f"{target} is an x86-64 CPU; this machine is not x86-64")
    ok, why = runnable(target)
    if not ok:
        pytest.skip(f"cannot run code compiled for {why}")
    assert len(runs[target]["outputs"]) >= 80  # type: ignore[arg-type]
    assert runs["default"]["outputs"] == runs[target]["outputs"]


def test_bits_independent_of_simd_dispatch(runs: dict[str, dict[str, object]]) -> None:
    default, reduced = runs["numpy"], runs["reduced"]
    targets = runs["default"]["targets"]
    if not targets:
        pytest.skip("numpy reports no dispatch target above its baseline on this CPU: "
                    "nothing to switch off (see test_numpy_path_independent_of_exp2_bits)")
    controls: dict[str, str] = default["controls"]  # type: ignore[assignment]
    reduced_controls: dict[str, str] = reduced["controls"]  # type: ignore[assignment]
    changed = [k for k in controls if controls[k] != reduced_controls[k]]
    print(f"disabled {' '.join(targets)}; numpy functions whose bits "  # type: ignore[arg-type]
          f"changed: {', '.join(changed) or 'none'}")
    # The output must not change, whatever the control says.
    assert default["outputs"] == reduced["outputs"]
    if not changed:
        pytest.skip(f"disabling {targets} changed none of numpy's own bits on this CPU, so "
                    "this comparison cannot show independence from dispatch "
                    "(see test_numpy_path_independent_of_exp2_bits)")


def test_outputs_match_the_oracle(runs: dict[str, dict[str, object]]) -> None:
    """The files hash as reported, and a sample of each agrees with the oracle."""
    base = Path(runs["dir"]["path"]) / "default"  # type: ignore[arg-type]
    outputs: dict[str, str] = runs["default"]["outputs"]  # type: ignore[assignment]
    rng = np.random.default_rng(7)
    gen = np.random.default_rng(20261124)
    ints = np.concatenate([gen.integers(0, 2**30, 6000), gen.integers(-10**6, 10**6, 2000),
                           gen.integers(0, 2**62, 1000)]).astype(np.int64)
    steps = {"int": ints, "float": gen.uniform(-1e5, 3e7, 9000)}
    for name, digest in outputs.items():
        bits = np.load(base / f"{name}.npy")
        assert hashlib.sha256(bits.tobytes()).hexdigest() == digest
        fmt_name, order, staircase, k, kind = name.split("-")
        fmt = get_format(fmt_name)
        I, D, r = SCHEDULES[int(k)]
        args = (inputs.to_exact(I), inputs.check_decay_steps(D), inputs.to_exact(r))
        for i in rng.choice(bits.size, 6, replace=False).tolist():
            s = steps[kind][i].item()
            want = oracle.evaluate_exact(args + (inputs.to_exact(s),), staircase == "1", fmt,
                                         order)
            assert to_bits(want, fmt) == int(bits[i]), (name, s)


def test_numpy_path_independent_of_exp2_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy path's float32 route through ``numpy.exp2`` gives the same bits
    when ``exp2``'s results move by up to a quarter of the error bound the
    path assumes: any CPU's ``exp2`` within the bound gives the same output.

    The control: the same run with a perturbation far beyond the bound
    (2**-20) does change bits, so the comparison can fail, and the perturbed
    ``exp2`` is really called."""
    monkeypatch.setenv("EXPDECAY_KERNELS", "0")
    dispatch.kernel_module.cache_clear()
    try:
        if not numpy_paths.hardware_ok():
            pytest.skip("float32 through numpy.exp2 is switched off on this machine")
        rng = np.random.default_rng(5)
        steps = np.concatenate([rng.integers(0, 2**24, 20000), np.arange(0, 20000)])
        cases = [("0.1", 1000, "0.96", False), (3.0, 7, 1.5, False), ("0.1", 10, "0.999", True)]

        def outputs() -> list[np.ndarray]:
            return [fast.evaluate_array(I, D, r, steps, staircase=st, dtype="float32",
                                  order=o).view(np.uint32)
                    for I, D, r, st in cases for o in ("exact", "keras")]

        reference = outputs()
        real_exp2 = np.exp2
        calls = [0]

        def perturb(delta: float) -> None:
            def exp2(t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
                calls[0] += 1
                y: np.ndarray = real_exp2(t, out=out)
                noise = np.random.default_rng(calls[0]).uniform(-delta, delta, t.shape)
                y *= 1.0 + noise
                return y

            monkeypatch.setattr(np, "exp2", exp2)

        perturb(constants.EXP2_ERR / 4)
        within = outputs()
        assert calls[0] > 0
        for a, b in zip(reference, within, strict=True):
            assert np.array_equal(a, b)
        perturb(2.0**-20)
        beyond = outputs()
        assert any(not np.array_equal(a, b) for a, b in zip(reference, beyond, strict=True))
    finally:
        dispatch.kernel_module.cache_clear()
