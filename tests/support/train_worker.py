"""Runs one training configuration in a fresh process and prints JSON.

The Keras backend is read when Keras is imported, so each backend (and jax's
64-bit mode) needs its own process: the tests in ``test_train_frameworks.py``
start this script with ``KERAS_BACKEND`` / ``JAX_ENABLE_X64`` set and compare
the recorded bits with expdecay's values.  Usage:
``python train_worker.py '<json job>'``; the job names a ``kind`` and its
arguments (see the functions below).  Output: one JSON object on the last
line of stdout, with every recorded learning rate as the integer bits of its
format.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

import numpy as np

WIDTH = {"float16": np.uint16, "bfloat16": np.uint16, "float32": np.uint32,
         "float64": np.uint64}


def bits(x: Any, dtype: str) -> int:
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)

    arr = np.asarray(x)
    if arr.dtype.name != dtype:
        raise AssertionError(f"learning rate has dtype {arr.dtype}, expected {dtype}")
    return int(arr.reshape(()).view(WIDTH[dtype]))


def _keras3(job: dict[str, Any]) -> dict[str, Any]:
    import keras  # type: ignore[import-untyped]
    from keras import ops

    import expdecay.keras

    keras.config.disable_traceback_filtering()

    dtype = job["dtype"]
    keras.config.set_floatx(dtype)
    sched = expdecay.keras.ExponentialDecay(*job["args"], **job.get("kwargs", {}))

    class Recording(keras.optimizers.SGD):  # type: ignore[misc]
        """SGD that keeps, in a variable, the learning rate its last update applied."""

        def build(self, variables: Any) -> None:
            super().build(variables)
            self.applied = self.add_variable(shape=(), dtype=dtype, name="applied")

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            self.applied.assign(ops.cast(learning_rate, dtype))
            super().update_step(gradient, variable, learning_rate)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    opt = Recording(learning_rate=sched)
    model.compile(optimizer=opt, loss="mse", jit_compile=job["jit"])
    x = np.ones((job["steps"], 2), dtype=dtype)
    y = np.zeros((job["steps"], 1), dtype=dtype)
    model.fit(x[:1], y[:1], epochs=1, verbose=0)  # builds everything
    opt.iterations.assign(job["start"])
    seen: list[list[int]] = []

    class Record(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.step = int(ops.convert_to_numpy(opt.iterations))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if hasattr(self.model, "jax_state_sync"):  # jax keeps the state outside
                self.model.jax_state_sync()
            lr = ops.convert_to_numpy(opt.learning_rate)  # the schedule at the new counter
            seen.append([self.step, bits(ops.convert_to_numpy(opt.applied), dtype),
                         int(ops.convert_to_numpy(opt.iterations)), bits(lr, dtype)])

    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[Record()],
              shuffle=False)
    out: dict[str, Any] = {"records": seen, "iter_dtype": str(opt.iterations.dtype)}
    if job.get("save"):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.keras")
            model.save(path)
            loaded = keras.models.load_model(path, custom_objects={"Recording": Recording})
            lr2 = loaded.optimizer._learning_rate
            out["loaded_class"] = f"{type(lr2).__module__}.{type(lr2).__name__}"
            out["loaded_config"] = lr2.get_config()
            out["loaded_iterations"] = int(ops.convert_to_numpy(loaded.optimizer.iterations))
            out["loaded_lr"] = bits(ops.convert_to_numpy(loaded.optimizer.learning_rate), dtype)
    return out


def _tf_keras(job: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf  # type: ignore[import-untyped]
    import tf_keras  # type: ignore[import-untyped]

    import expdecay.keras

    dtype = job["dtype"]
    tf_keras.backend.set_floatx(dtype)
    sched = expdecay.keras.TFKerasExponentialDecay(*job["args"], **job.get("kwargs", {}))

    class Recording(tf_keras.optimizers.SGD):  # type: ignore[misc]
        def update_step(self, gradient: Any, variable: Any) -> None:
            lr = tf.cast(self.learning_rate, dtype)
            self.applied.assign(lr)
            super().update_step(gradient, variable)

    model = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)])
    opt = Recording(learning_rate=sched)
    opt.applied = tf.Variable(tf.zeros((), dtype), trainable=False)
    model.compile(optimizer=opt, loss="mse", jit_compile=job["jit"])
    x = np.ones((job["steps"], 2), dtype=dtype)
    y = np.zeros((job["steps"], 1), dtype=dtype)
    model.fit(x[:1], y[:1], epochs=1, verbose=0)
    opt.iterations.assign(job["start"])
    seen: list[list[int]] = []

    class Record(tf_keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.step = int(opt.iterations.numpy())

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            seen.append([self.step, bits(opt.applied.numpy(), dtype),
                         int(opt.iterations.numpy()), bits(opt.learning_rate.numpy(), dtype)])

    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[Record()],
              shuffle=False)
    return {"records": seen, "iter_dtype": opt.iterations.dtype.name}


def _optax(job: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax  # type: ignore[import-untyped]

    import expdecay.optax

    dtype = job["dtype"]
    lr = expdecay.optax.exponential_decay(*job["args"], **job.get("kwargs", {}))
    params = {"w": jnp.zeros(2, dtype)}
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    state = tx.init(params)
    # resume: the counter of inject_hyperparams and the schedule's own counter
    start = jnp.asarray(job["start"], jnp.int32)
    hstates = {k: v._replace(count=start) for k, v in state.hyperparams_states.items()}
    state = state._replace(count=start, hyperparams_states=hstates)

    @jax.jit
    def step(params: Any, state: Any) -> Any:
        grads = {"w": jnp.ones(2, dtype)}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    seen = []
    for _ in range(job["steps"]):
        count = int(state.hyperparams_states["learning_rate"].count)
        params, state, updates = step(params, state)
        # the lr applied by this update is in the state; SGD's update is -lr * 1
        applied = state.hyperparams["learning_rate"]
        seen.append([count, bits(applied, dtype), bits(-updates["w"][0], dtype)])
    jitted = jax.jit(lr)
    direct = [[s, bits(jitted(jnp.asarray(s, jnp.int32)), dtype)] for s in job["direct"]]
    return {"records": seen, "direct": direct, "count_dtype": str(state.count.dtype)}


def _torch(job: dict[str, Any]) -> dict[str, Any]:
    import io

    import torch

    import expdecay.torch

    dtype = job["dtype"]
    tdtype = getattr(torch, dtype)
    w = torch.nn.Parameter(torch.zeros(2, dtype=tdtype))
    opt = torch.optim.SGD([w], lr=torch.tensor(0.5, dtype=tdtype))
    sched = expdecay.torch.ExponentialDecayLR(opt, *job["args"], **job.get("kwargs", {}))
    if job["start"]:
        sd = sched.state_dict()
        sd["last_epoch"] = job["start"] - 1
        sched.load_state_dict(sd)
        sched.step()

    def train_step() -> Any:
        before = w.detach().clone()
        opt.zero_grad()
        loss = w.sum()  # gradient exactly 1
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return before

    if job["compile"]:
        opt.step = torch.compile(opt.step)  # type: ignore[method-assign]
    seen = []
    for _ in range(job["steps"]):
        with torch.no_grad():
            w.zero_()  # w - lr * 1 from 0 is exactly -lr
        step = sched.last_epoch
        train_step()
        applied = (-w.detach()[0]).numpy()
        lr_now = opt.param_groups[0]["lr"]
        seen.append([step, bits(lr_now.detach().numpy(), dtype), bits(applied, dtype)])
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    opt2 = torch.optim.SGD([w], lr=0.5)
    sched2 = expdecay.torch.ExponentialDecayLR(opt2, *job["args"], **job.get("kwargs", {}))
    sched2.load_state_dict(torch.load(buf, weights_only=True))
    sched2.step()
    return {"records": seen, "resumed": [sched2.last_epoch, float(opt2.param_groups[0]["lr"])],
            "next": [sched.last_epoch + 1, sched.value(sched.last_epoch + 1)[0]]}


def main() -> None:
    """Run every job of the list in ``argv[1]``; a job that raises reports the
    exception's type and message instead of records."""
    jobs = json.loads(sys.argv[1])
    kinds = {"keras3": _keras3, "tf_keras": _tf_keras, "optax": _optax, "torch": _torch}
    results = []
    for job in jobs:
        try:
            results.append(kinds[job["kind"]](job))
        except Exception as exc:  # reported to the test, which decides
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
