"""Benchmark of the verified schedule inside training loops, same run.

Time per training step of a small model (Dense 64-64-1, batch 32, SGD,
``jit_compile=True``) with :class:`expdecay.keras.ExponentialDecay` divided by
the time with Keras's own ``keras.optimizers.schedules.ExponentialDecay``, on
each Keras 3 backend (one process each: Keras reads its backend at import);
the two schedules alternate, best of ``--repeat`` rounds of ``--steps`` steps.
Also a jitted optax loop (``expdecay.optax.exponential_decay`` against
``optax.exponential_decay``) and a torch loop (``expdecay.torch.ExponentialDecayLR``
against ``torch.optim.lr_scheduler.LambdaLR`` with the same formula).
Target: ratio <= 1.05.  Then the memory of the table of several
configurations (host bytes; the graph holds one copy) and its build time.

Usage::

    python benchmarks/bench_training.py            # 300 steps, best of 5
    python benchmarks/bench_training.py --quick    # 100 steps, best of 3
    python benchmarks/bench_training.py --only torch optax

The machine's other load shows in the ratios: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEDULES: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "continuous": ([0.1, 100000, 0.96], {"horizon": 1 << 20}),
    "staircase": ([0.1, 1000, 0.96], {"staircase": True}),
}


def _keras_child(backend: str, steps: int, repeat: int) -> dict[str, Any]:
    import keras  # type: ignore[import-untyped]

    import expdecay.keras

    x = np.random.default_rng(0).standard_normal((steps * 32, 64)).astype("float32")
    y = x[:, :1].copy()
    out: dict[str, Any] = {}
    for label, (args, kw) in SCHEDULES.items():
        ours = expdecay.keras.ExponentialDecay(*args, **kw)
        theirs = keras.optimizers.schedules.ExponentialDecay(
            *args, staircase=kw.get("staircase", False))
        models = {}
        for name, sched in (("expdecay", ours), ("keras", theirs)):
            model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, "relu"),
                                      keras.layers.Dense(64, "relu"), keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=sched), loss="mse",
                          jit_compile=True)
            model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)  # compile
            models[name] = model
        best = {"expdecay": float("inf"), "keras": float("inf")}
        for _ in range(repeat):
            for name, model in models.items():
                t = time.perf_counter()
                model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
                best[name] = min(best[name], (time.perf_counter() - t) / steps)
        out[label] = best
    return out


def _optax_child(steps: int, repeat: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax  # type: ignore[import-untyped]

    import expdecay.optax

    params = {"w1": jnp.ones((64, 64)) * 0.01, "w2": jnp.ones((64, 1)) * 0.01}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((32, 64)), jnp.float32)

    def loss(p: Any) -> Any:
        return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"]) ** 2)

    out: dict[str, Any] = {}
    for label, (args, kw) in SCHEDULES.items():
        lrs = {"expdecay": expdecay.optax.exponential_decay(*args, **kw),
               "optax": optax.exponential_decay(args[0], args[1], args[2],
                                                staircase=kw.get("staircase", False))}
        best: dict[str, float] = {}
        compiled: dict[str, tuple[Any, Any, Any]] = {}
        for name, lr in lrs.items():
            tx = optax.sgd(lr)

            @jax.jit
            def step(p: Any, s: Any, tx: Any = tx) -> Any:
                g = jax.grad(loss)(p)
                u, s = tx.update(g, s, p)
                return optax.apply_updates(p, u), s

            p, s = params, tx.init(params)
            p, s = step(p, s)
            jax.block_until_ready(p)  # type: ignore[no-untyped-call]
            best[name] = float("inf")
            compiled[name] = (step, p, s)
        for _ in range(repeat):
            for name in best:
                step, p, s = compiled[name]
                t = time.perf_counter()
                for _ in range(steps):
                    p, s = step(p, s)
                jax.block_until_ready(p)  # type: ignore[no-untyped-call]
                best[name] = min(best[name], (time.perf_counter() - t) / steps)
        out[label] = best
    return out


def _torch_child(steps: int, repeat: int) -> dict[str, Any]:
    import torch

    import expdecay.torch

    torch.manual_seed(0)
    x = torch.randn(32, 64)
    out: dict[str, Any] = {}
    for label, (args, kw) in SCHEDULES.items():
        runs = {}
        for name in ("expdecay", "lambda"):
            model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 1))
            opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(args[0]))
            if name == "expdecay":
                sched: Any = expdecay.torch.ExponentialDecayLR(
                    opt, args[1], args[2], staircase=kw.get("staircase", False))
            else:
                D, r, st = args[1], args[2], kw.get("staircase", False)

                def factor(s: int, D: Any = D, r: Any = r, st: bool = st) -> float:
                    return float(r ** ((s // D) if st else (s / D)))

                sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)

            @torch.compile
            def train_step(model: Any = model) -> Any:
                return model(x).pow(2).mean()

            runs[name] = (model, opt, sched, train_step)
        best = {name: float("inf") for name in runs}
        for _ in range(repeat + 1):  # the first round compiles
            for name, (_model, opt, sched, train_step) in runs.items():
                t = time.perf_counter()
                for _ in range(steps):
                    opt.zero_grad()
                    train_step().backward()
                    opt.step()
                    sched.step()
                best[name] = min(best[name], (time.perf_counter() - t) / steps)
        out[label] = best
    return out


def _child(kind: str, steps: int, repeat: int) -> None:
    # One thread per framework: the two schedules compete less with the
    # machine's other load (and with each other's thread pools).
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1")
    if kind == "torch" or os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(1)
    if os.environ.get("KERAS_BACKEND") == "tensorflow":
        import tensorflow as tf  # type: ignore[import-untyped]

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if kind == "optax":
        result = _optax_child(steps, repeat)
    elif kind == "torch":
        result = _torch_child(steps, repeat)
    else:
        result = _keras_child(kind, steps, repeat)
    print(json.dumps(result))


def _memory() -> list[tuple[str, int, int, bool, float]]:
    from expdecay import ExponentialDecay
    from expdecay.frameworks.tables import build_table

    rows = []
    configs: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("staircase 0.1*0.96^(s//1000)", (0.1, 1000, 0.96), {"staircase": True}),
        ("staircase 0.1*0.96^(s//1000)", (0.1, 1000, 0.96), {"staircase": True,
                                                            "dtype": "float64"}),
        ("continuous 0.1*0.96^(s/10)", (0.1, 10, 0.96), {}),
        ("continuous 0.1*0.96^(s/10)", (0.1, 10, 0.96), {"dtype": "float64"}),
        ("continuous 0.1*0.96^(s/100000)", (0.1, 100000, 0.96), {}),
        ("continuous 0.1*0.96^(s/100000)", (0.1, 100000, 0.96), {"dtype": "float64"}),
    ]
    for label, args, kw in configs:
        s = ExponentialDecay(*args, **kw)
        t = time.perf_counter()
        table = build_table(s)
        dt = time.perf_counter() - t
        rows.append((f"{label} {s.format.name}", table.values.size, table.nbytes,
                     table.complete, dt))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="KIND",
                    choices=["jax", "tensorflow", "torch", "optax", "torch-native"],
                    help="run only these (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.steps, a.repeat = 100, 3
    if a.child:
        _child(a.child, a.steps, a.repeat)
        return 0
    src = str(Path(__file__).resolve().parent.parent / "src")
    print(f"time per training step, best of {a.repeat} rounds of {a.steps} steps")
    print(f"{'framework':<18} {'schedule':<11} {'expdecay':>11} {'baseline':>11} {'ratio':>7}")
    for kind in a.only or ("jax", "tensorflow", "torch", "optax", "torch-native"):
        path = src + os.pathsep + os.environ.get("PYTHONPATH", "")
        env: dict[str, str] = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}
        child = kind
        if kind in ("jax", "tensorflow", "torch"):
            env["KERAS_BACKEND"] = kind
        if kind == "torch-native":
            child = "torch"
        proc = subprocess.run([sys.executable, __file__, "--child", child, "--steps",
                               str(a.steps), "--repeat", str(a.repeat)],
                              capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{kind}: failed\n{proc.stderr[-2000:]}")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        name = kind if kind in ("optax", "torch-native") else f"keras/{kind}"
        for label, best in result.items():
            ours = best.pop("expdecay")
            (base,) = best.values()
            print(f"{name:<18} {label:<11} {ours * 1e6:>9.1f}us {base * 1e6:>9.1f}us "
                  f"{ours / base:>7.3f}")
    print("\nmemory per configuration (host table; the graph holds one copy)")
    print(f"{'configuration':<42} {'entries':>8} {'bytes':>10} {'complete':>9} {'build':>7}")
    for label, n, nbytes, complete, dt in _memory():
        print(f"{label:<42} {n:>8} {nbytes:>10} {complete!s:>9} {dt:>6.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
