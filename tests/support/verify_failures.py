"""Confirm a sample of a conformance report's failures by calling each
library directly, outside the runner and its adapters.

    PYTHONPATH=src python tests/support/verify_failures.py REPORT.json [--per-class N]

For every implementation of the report (one built-in framework, or a
variant of one) and every failure class, up to N failures (default 3) are
replayed: a fresh Python process imports the framework itself (with the
backend, floatx or x64 setting the implementation's name gives), builds the
schedule from the test's inputs with the framework's own API and calls it
on the step, one call per failure.  The output must have the bits the report
observed (or, for ``raised`` failures, the call must raise; for
``missing-validation``, it must not).  Failures that depend on process
state are replayed too: in a fresh process they must give the expected
value.  Prints one line per class and a total; exits 1 when a replay
disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

# The replay program: reads one JSON job on stdin, prints one JSON result per
# case.  It uses nothing from expdecay: numbers come as hex floats / ints.
REPLAY = r'''
import json, math, os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
job = json.loads(sys.stdin.read())
kind, opts = job["kind"], job["options"]

def num(text):
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else float.fromhex(text)

import re
DT = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
try:
    import ml_dtypes
    DT["bfloat16"] = ml_dtypes.bfloat16
except ImportError:
    pass

def initial(I, dtype, floatx, how):
    if isinstance(I, int) or dtype == floatx:
        return I
    if how == "numpy_scalar":
        return DT[dtype](I)
    return np.asarray(I, dtype=DT[dtype])

def steps_of(c):
    """The group's whole step array, as the runner sends it (XLA's division
    depends on the array: the failure may need its neighbours)."""
    steps = [num(x) for x in c["steps"]]
    if all(isinstance(x, int) for x in steps):
        return np.array(steps, dtype=np.int64)
    return np.array([float(x) for x in steps], dtype=np.float64)

def pick(x, c):
    return as_float_at(x, c["index"])

def as_float_at(x, i=0):
    if hasattr(x, "detach"):
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.cpu().numpy()
    elif hasattr(x, "numpy"):
        x = x.numpy()
    flat = np.asarray(x, dtype=np.float64).ravel()
    return float(flat[i if flat.size > 1 else 0])  # a scalar answers every step

as_float = as_float_at

if kind in ("keras", "tf-keras"):
    if kind == "keras":
        import keras
        if opts.get("floatx"):
            keras.config.set_floatx(opts["floatx"])
        Sched = keras.optimizers.schedules.ExponentialDecay
    else:
        import tf_keras
        Sched = tf_keras.optimizers.schedules.ExponentialDecay
    floatx = opts.get("floatx", "float32")
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        sched = Sched(initial(I, c["dtype"], floatx, opts.get("initial", "array")), D, r,
                      staircase=c["staircase"])
        if opts.get("step_mode") == "scalar":
            return as_float(sched(s))
        return pick(sched(steps_of(c)), c)
elif kind == "optax":
    import jax
    jax.config.update("jax_enable_x64", bool(opts.get("x64")))
    import optax
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        fn = optax.exponential_decay(I, D, r, staircase=c["staircase"])
        if opts.get("step_mode") == "scalar":
            return as_float(fn(s))
        arr = steps_of(c)
        if opts.get("count_dtype"):
            arr = arr.astype(opts["count_dtype"])
        return pick(fn(jax.numpy.asarray(arr)), c)
elif kind == "torch":
    import torch
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=float(I))
        lrs = torch.optim.lr_scheduler
        sched = lrs.StepLR(opt, step_size=int(D), gamma=r) if c["staircase"] else \
            lrs.ExponentialLR(opt, gamma=r)
        if opts.get("form") == "chainable":
            for _ in range(int(s)):
                opt.step(); sched.step()
            lr = float(opt.param_groups[0]["lr"])
        else:
            sched.last_epoch = int(s)
            lr = float(sched._get_closed_form_lr()[0])
        if c["dtype"] != "float64" and math.isfinite(lr):
            lr = float(np.asarray(lr, dtype=np.float64).astype(DT[c["dtype"]]))
        return lr
elif kind == "tf-compat-v1":
    import tensorflow as tf
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        step = s if opts.get("step_mode") == "scalar" else steps_of(c)
        fn = tf.compat.v1.train.exponential_decay(initial(I, c["dtype"], "float32", "array"),
                                                  step, D, r, staircase=c["staircase"])
        return as_float(fn()) if opts.get("step_mode") == "scalar" else pick(fn(), c)
elif kind == "jax-example-libraries":
    import jax
    jax.config.update("jax_enable_x64", bool(opts.get("x64")))
    from jax.example_libraries import optimizers
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        fn = optimizers.exponential_decay(I, D, r)
        if opts.get("step_mode") == "scalar":
            return as_float(fn(s))
        return pick(fn(jax.numpy.asarray(steps_of(c))), c)
def per_step(r, D):
    """r ** (1 / D) when it is exactly a float (checked with rationals)."""
    from fractions import Fraction
    if D == 1:
        return r
    g = r ** (1.0 / D)
    for cand in (g, math.nextafter(g, 0), math.nextafter(g, 2)):
        if Fraction(cand) ** int(D) == Fraction(r):
            return cand
    raise ValueError("no exact rate per step")
def to_dtype(lr, dtype):
    if dtype != "float64" and math.isfinite(lr):
        lr = float(np.asarray(lr, dtype=np.float64).astype(DT[dtype]))
    return lr
if kind == "mlx":
    import mlx.core as mx
    import mlx.optimizers as optim
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        fn = (optim.step_decay(I, r, int(D)) if c["staircase"] else
              optim.exponential_decay(I, per_step(r, D)))
        out = fn(mx.array(np.array([num(x) for x in c["steps"]], dtype=np.uint64)))
        return float(np.asarray(out, dtype=np.float64).ravel()[c["index"]])
elif kind == "paddle":
    import paddle
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        lr = paddle.optimizer.lr
        if opts.get("api") == "legacy":
            sched = lr.exponential_decay(I, D, r, staircase=c["staircase"])
        elif c["staircase"]:
            sched = lr.StepDecay(I, step_size=int(D), gamma=r)
        else:
            sched = lr.ExponentialDecay(I, gamma=per_step(r, D))
        sched.step(s)
        return to_dtype(float(sched.last_lr), c["dtype"])
elif kind == "timm":
    import importlib.util, sys as _sys, types, torch
    folder = os.path.join(importlib.util.find_spec("timm").submodule_search_locations[0],
                          "scheduler")
    pkg = types.ModuleType("_replay_timm"); pkg.__path__ = [folder]
    _sys.modules["_replay_timm"] = pkg
    for name in ("scheduler", "step_lr"):
        spec = importlib.util.spec_from_file_location(f"_replay_timm.{name}",
                                                      os.path.join(folder, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        _sys.modules[f"_replay_timm.{name}"] = mod
        spec.loader.exec_module(mod)
    StepLRScheduler = _sys.modules["_replay_timm.step_lr"].StepLRScheduler
    def call(c):
        I, D, r, s = (num(c[k]) for k in ("I", "D", "r", "s"))
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=float(I))
        sched = StepLRScheduler(opt, decay_t=D, decay_rate=r)
        sched.step(int(s))
        return to_dtype(float(opt.param_groups[0]["lr"]), c["dtype"])
elif kind not in ("keras", "tf-keras", "optax", "torch", "tf-compat-v1",
                  "jax-example-libraries"):
    raise SystemExit(f"no replay for {kind}")

for c in job["cases"]:
    try:
        v = call(c)
        out = {"value": "nan" if math.isnan(v) else v.hex()}
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {str(e)[:100]}"}
    print(json.dumps(out), flush=True)
'''

NAME = re.compile(r"^([a-z0-9-]+)(?:\[(.*)\])?$")
KINDS = ("keras", "tf-keras", "optax", "torch", "tf-compat-v1", "jax-example-libraries", "mlx",
         "paddle", "timm")


def parse_name(name: str) -> tuple[str, dict[str, Any]] | None:
    """``keras[backend=jax,step_mode=scalar]`` -> ("keras", {...})."""
    m = NAME.match(name)
    if m is None or m.group(1) not in KINDS:
        return None
    opts: dict[str, Any] = {}
    for part in filter(None, (m.group(2) or "").split(",")):
        k, _, v = part.partition("=")
        opts[k] = {"True": True, "False": False}.get(v, v)
    return m.group(1), opts


def replay(kind: str, opts: dict[str, Any], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if kind == "keras" and opts.get("backend"):
        env["KERAS_BACKEND"] = str(opts["backend"])
    proc = subprocess.run([sys.executable, "-c", REPLAY], input=json.dumps(
        {"kind": kind, "options": opts, "cases": cases}), capture_output=True, text=True,
        env=env, timeout=1800)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    if len(lines) != len(cases):
        raise RuntimeError(f"replay of {kind} {opts} failed: {proc.stderr[-500:]}")
    return lines


def load_groups(files: list[str], vectors: Path) -> dict[tuple[str, int], tuple[list[str], int]]:
    """(file, tcId) -> (the steps of its group, as the report writes inputs; its index)."""
    out = {}
    for name in files:
        doc = json.loads((vectors / name).read_text())
        for g in doc["testGroups"]:
            steps = [t["step"].get("int") or t["step"]["hex"] for t in g["tests"]]
            for i, t in enumerate(g["tests"]):
                out[(name, t["tcId"])] = (steps, i)
    return out


def case_of(entry: dict[str, Any], group: tuple[list[str], int]) -> dict[str, Any]:
    i = entry["inputs"]
    return {"I": i["initial_learning_rate"], "D": i["decay_steps"], "r": i["decay_rate"],
            "s": i["step"], "staircase": i["staircase"], "dtype": i["dtype"],
            "steps": group[0], "index": group[1]}


def agrees(entry: dict[str, Any], got: dict[str, Any], cls: str) -> bool:
    if cls.startswith("process-state"):
        want = entry["expected"]  # a fresh process gives the expected value
    elif cls == "missing-validation":
        return "value" in got
    elif cls == "raised":
        return "error" in got
    else:
        want = entry["observed"]
    if "value" not in got or want is None:
        return False
    if want == "nan":
        return bool(got["value"] == "nan")
    value = str(got["value"])
    if value == "nan" or float.fromhex(value) != float.fromhex(want):
        return False
    return float.fromhex(want) != 0 or value.startswith("-") == want.startswith("-")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--only", default="", help="implementations whose name starts so")
    ap.add_argument("--vectors", default=str(Path(__file__).resolve().parents[2] /
                                             "conformance" / "vectors"))
    args = ap.parse_args()
    rep = json.loads(open(args.report).read())
    groups = load_groups(rep["vectorFiles"], Path(args.vectors))
    total = [0, 0]
    bad: int = 0
    for imp in rep["implementations"]:
        parsed = parse_name(imp["implementation"])
        if parsed is None or imp.get("status") == "unavailable" or not imp[
                "implementation"].startswith(args.only):
            continue
        kind, opts = parsed
        by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in imp["files"]:
            for e in f["failures"]:
                cls = "+".join(e["causeIds"]) if e["diagnosis"] == "proven" else e["diagnosis"]
                if len(by_class[cls]) < args.per_class:
                    by_class[cls].append({**e, "file": f["file"]})
            for e in f.get("processState", []):
                if len(by_class["process-state"]) < args.per_class:
                    by_class["process-state"].append({**e, "file": f["file"]})
        picked = [(cls, e) for cls, es in sorted(by_class.items()) for e in es]
        if not picked:
            continue
        plain = [(c, e) for c, e in picked if c != "process-state"]
        state = [(c, e) for c, e in picked if c == "process-state"]
        got = replay(kind, opts, [case_of(e, groups[(e["file"], e["tcId"])])
                                  for _, e in plain]) if plain else []
        for _, e in state:  # each in a process of its own: a fresh state
            got += replay(kind, opts, [case_of(e, groups[(e["file"], e["tcId"])])])
        picked = plain + state
        summary: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (cls, e), g in zip(picked, got, strict=True):
            ok = agrees(e, g, cls)
            summary[cls][0] += int(ok)
            summary[cls][1] += 1
            if not ok:
                print(f"  DISAGREES {imp['implementation']} {imp['profile']} tcId {e['tcId']} "
                      f"{cls}: report {e.get('observed')} direct {g}")
        for cls, (n_ok, n) in sorted(summary.items()):
            print(f"{imp['implementation']:<40} {imp['profile']:<6} {cls:<60} "
                  f"{n_ok}/{n} confirmed")
            total[0] += n_ok
            total[1] += n
            bad += n - n_ok
    print(f"\nconfirmed by a direct call: {total[0]} of {total[1]} sampled failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
