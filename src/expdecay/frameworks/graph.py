"""The in-graph lookup of a :class:`expdecay.frameworks.tables.Table` for jax,
TensorFlow and torch: integer arithmetic, a ``searchsorted`` on int64 (or int32)
boundaries, a gather and ``where`` between gathered values.  No floating-point
operation touches a value, so the bits are the table's on every device.

Steps outside the table and not in a proven-constant tail are *open*: the
value comes from the host (``jax.pure_callback``; ``tf.numpy_function`` outside
XLA; under torch, the custom op ``expdecay::lookup`` of :func:`torch_op`, which
``torch.compile`` keeps opaque).  TensorFlow under XLA cannot call the
host: a table with open regions is refused when the step is traced, unless the
user declared the covered steps with ``horizon=``, in which case open steps
give NaN.  Each function imports its framework lazily.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .tables import Table, View

__all__ = ["jax_value", "tf_value", "torch_value", "XLA_OPEN_MESSAGE", "Host", "HostStep",
           "bits_dtype", "in_xla", "host_lookup", "torch_op", "TORCH_HOSTS"]

#: Host function: an int step -> the value, a numpy scalar of the format.
Host = Callable[[int], Any]
#: Host function of the torch custom op: a 0-d numpy step (of an integer dtype,
#: or float64 for a float step) -> the value, a numpy scalar of the format.
HostStep = Callable[[np.ndarray], Any]

XLA_OPEN_MESSAGE = (
    "{name}: the in-graph table covers steps [{start}, {stop}) and other steps need the "
    "host, which an XLA-compiled TensorFlow step cannot call; compile with "
    "jit_compile=False, or declare the steps you train with horizon= (and first_step=) so "
    "that steps outside them give NaN under XLA"
)


def _covered(view: View, s: Any, ge: Callable[[Any, int], Any], lt: Callable[[Any, int], Any],
             and_: Callable[[Any, Any], Any]) -> Any:
    conds = []
    if view.open_low:
        conds.append(ge(s, view.start))
    if view.open_high:
        assert view.stop is not None
        conds.append(lt(s, view.stop))
    out = conds[0]
    for c in conds[1:]:
        out = and_(out, c)
    return out


def bits_dtype(itemsize: int) -> Any:
    """The signed integer dtype of ``itemsize`` bytes (a value's bits)."""
    return {2: np.int16, 4: np.int32, 8: np.int64}[itemsize]


# ---------------------------------------------------------------------------
# jax
# ---------------------------------------------------------------------------


def jax_value(table: Table, step: Any, host: Host,
              host_many: Callable[[np.ndarray], np.ndarray] | None = None) -> Any:
    """The value at ``step``: an integer jax array (any shape) or tracer, or a
    Python int; elementwise, and usable under ``jax.jit`` and ``jax.vmap``.

    Open steps are evaluated on the host by ``host_many`` (int64 steps -> values
    of the format) when given, else one by one by ``host``."""
    import jax
    import jax.numpy as jnp

    x64 = bool(jax.config.read("jax_enable_x64"))
    if table.fmt.name == "float64" and not x64:
        raise ValueError("a float64 schedule needs jax's 64-bit mode "
                         "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1); "
                         "without it jax would silently give float32")
    s = jnp.asarray(step)
    if not jnp.issubdtype(s.dtype, jnp.integer):
        raise TypeError(f"step must be an integer array; got dtype {s.dtype}")
    view = table.view(64 if x64 else 32)
    # numpy constants, not cached jax arrays: an array made while tracing is
    # a tracer and must not outlive the trace.
    values, bounds = view.values, view.bounds
    s = s.astype(view.int_dtype)
    n = int(view.values.shape[0])
    if view.dense:
        idx = s - view.start
    else:
        assert bounds is not None
        # one vectorised comparison for small tables (XLA's CPU while loop of
        # the default binary search costs more there), a binary search beyond
        method = "compare_all" if bounds.size <= 1 << 16 else "scan"
        idx = jnp.searchsorted(bounds, s, side="right", method=method) - 1
    out = jnp.take(values, jnp.clip(idx, 0, n - 1))
    if view.low is not None:
        out = jnp.where(s < view.start, jnp.asarray(view.low[0]), out)
    if view.high is not None and view.stop is not None:
        out = jnp.where(s >= view.stop, jnp.asarray(view.high[0]), out)
    if view.complete:
        return out
    covered = _covered(view, s, lambda a, b: a >= b, lambda a, b: a < b, jnp.logical_and)
    dtype = table.fmt.dtype

    def on_host(x: Any, need: Any) -> np.ndarray:
        x, need = np.asarray(x), np.asarray(need)
        got = np.zeros(x.shape, dtype)
        if need.any():
            if host_many is not None:
                got[need] = host_many(x[need].astype(np.int64))
            else:
                for i in np.ndindex(x.shape):
                    if need[i]:
                        got[i] = host(int(x[i]))
        return got

    shape = jax.ShapeDtypeStruct(s.shape, dtype)
    # Only a call with open steps pays for the host (under vmap the condition
    # is batched and both branches run; the host then evaluates the open
    # elements only).
    fetched = jax.lax.cond(
        jnp.any(~covered),
        lambda: jax.pure_callback(on_host, shape, s, ~covered, vmap_method="broadcast_all"),
        lambda: jnp.zeros(s.shape, dtype))
    return jnp.where(covered, out, fetched)


# ---------------------------------------------------------------------------
# TensorFlow
# ---------------------------------------------------------------------------

_TF_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32",
              "float64": "float64"}


def in_xla() -> bool:
    """Whether TensorFlow is tracing for XLA here (no host call possible)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def tf_value(table: Table, step: Any, host: Host, declared: bool, name: str) -> Any:
    """The value at ``step`` (an integer tensor or variable) in TensorFlow."""
    import tensorflow as tf

    fdtype = getattr(tf, _TF_DTYPES[table.fmt.name])
    bdtype = bits_dtype(table.fmt.dtype.itemsize)
    s = tf.cast(tf.convert_to_tensor(step), tf.int64)
    view = table.view(64)
    values = tf.bitcast(tf.constant(view.values.view(bdtype)), fdtype)
    n = int(view.values.shape[0])
    if view.dense:
        idx = s - view.start
    else:
        bounds = tf.constant(view.bounds)
        idx = tf.searchsorted(bounds, tf.reshape(s, [1]), side="right",
                              out_type=tf.int64)[0] - 1
    out = tf.gather(values, tf.clip_by_value(idx, 0, n - 1))
    if view.low is not None:
        low = tf.bitcast(tf.constant(view.low.view(bdtype)[0]), fdtype)
        out = tf.where(s < view.start, low, out)
    if view.high is not None and view.stop is not None:
        high = tf.bitcast(tf.constant(view.high.view(bdtype)[0]), fdtype)
        out = tf.where(s >= view.stop, high, out)
    if view.complete:
        return out
    covered = _covered(view, s, lambda a, b: a >= b, lambda a, b: a < b, tf.logical_and)
    if in_xla():
        if not declared:
            raise ValueError(XLA_OPEN_MESSAGE.format(name=name, start=view.start,
                                                     stop=view.stop))
        return tf.where(covered, out, tf.constant(float("nan"), fdtype))
    udtype = {2: np.uint16, 4: np.uint32, 8: np.uint64}[table.fmt.dtype.itemsize]

    def on_host(x: Any) -> np.ndarray:
        value = np.asarray(host(int(x)), dtype=table.fmt.dtype)
        return value.reshape(()).view(udtype)

    def fetch() -> Any:
        raw = tf.numpy_function(on_host, [s], tf.as_dtype(udtype), stateful=False)
        return tf.bitcast(tf.reshape(raw, []), fdtype)

    return tf.cond(covered, lambda: out, fetch)


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------

_TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32",
                 "float64": "float64"}


def torch_value(table: Table, step: Any, host: Host, cache: dict[Any, Any]) -> Any:
    """The value at ``step`` (an integer tensor or a Python int) as a 0-d tensor."""
    import torch

    t = step if isinstance(step, torch.Tensor) else torch.as_tensor(step)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"step must be an integer tensor; got dtype {t.dtype}")
    fdtype = getattr(torch, _TORCH_DTYPES[table.fmt.name])
    bdtype = bits_dtype(table.fmt.dtype.itemsize)
    view = table.view(64)
    key = ("torch", t.device)
    if key not in cache:
        values = torch.from_numpy(view.values.view(bdtype).copy()).view(fdtype).to(t.device)
        bounds = None if view.bounds is None else torch.from_numpy(view.bounds.copy()).to(t.device)

        def scalar(a: np.ndarray | None) -> Any:
            if a is None:
                return None
            return torch.from_numpy(a.view(bdtype).copy()).view(fdtype).to(t.device)[0]

        cache[key] = (values, bounds, scalar(view.low), scalar(view.high))
    values, bounds, low, high = cache[key]
    s = t.to(torch.int64).reshape(())
    n = int(view.values.shape[0])
    if view.dense:
        idx = s - view.start
    else:
        idx = torch.searchsorted(bounds, s.reshape(1), right=True)[0] - 1
    out = values[idx.clamp(0, n - 1)]
    if low is not None:
        out = torch.where(s < view.start, low, out)
    if high is not None and view.stop is not None:
        out = torch.where(s >= view.stop, high, out)
    if view.complete:
        return out
    # Open steps exist: the whole lookup runs on the host, in a custom op that
    # torch.compile keeps opaque (no graph break, no tracing of numpy code).
    op_key = id(table)  # the entry keeps the table alive: no other live object has this id
    TORCH_HOSTS[op_key] = functools.partial(_host_lookup_step, table, host)
    raw = torch_op()(s, op_key, table.fmt.dtype.itemsize)
    return raw.view(fdtype)


def host_lookup(table: Table, host: Host, step: int) -> np.ndarray:
    """The value at ``step`` from the table or, at an open step, from the host."""
    if step < table.start:
        value = table.low[0] if table.low is not None else host(step)
    elif step >= table.stop:
        value = table.high[0] if table.high is not None else host(step)
    elif table.dense:
        value = table.values[step - table.start]
    else:
        assert table.bounds is not None
        value = table.values[int(np.searchsorted(table.bounds, step, side="right")) - 1]
    return np.asarray(value, dtype=table.fmt.dtype).reshape(())


def _host_lookup_step(table: Table, host: Host, step: np.ndarray) -> np.ndarray:
    return host_lookup(table, host, int(step))


#: key -> the host function the custom op calls for that key (kept alive here).
#: A key is the ``id()`` of an object its entry keeps alive, so two live
#: entries never share one.
TORCH_HOSTS: dict[int, HostStep] = {}
_TORCH_OP: list[Any] = []


def torch_op() -> Any:
    """``expdecay::lookup(step, key, itemsize) -> bits``: ``TORCH_HOSTS[key]`` at
    ``step`` (a 0-d integer or float tensor), as the signed integer bits of its
    ``itemsize``-byte value, on the step's device.  Defined once: call it outside
    any ``torch.compile`` trace first (defining an op cannot be traced), as the
    Keras class does at construction under torch."""
    if _TORCH_OP:
        return _TORCH_OP[0]
    import torch

    signed = {2: torch.int16, 4: torch.int32, 8: torch.int64}

    def lookup(step: torch.Tensor, key: int, itemsize: int) -> torch.Tensor:
        s = step.detach().cpu()
        # float64 holds every float16, bfloat16 and float32 value exactly
        x = s.to(torch.float64).numpy() if s.dtype.is_floating_point else s.numpy()
        value = np.asarray(TORCH_HOSTS[key](np.asarray(x).reshape(())))
        bits = value.reshape(1).view(bits_dtype(itemsize)).copy()
        return torch.from_numpy(bits).to(step.device)[0]

    def fake(step: torch.Tensor, key: int, itemsize: int) -> torch.Tensor:
        return torch.empty((), dtype=signed[itemsize], device=step.device)

    # The schema is spelled out: this module's annotations are strings.
    op = torch.library.custom_op("expdecay::lookup", lookup, mutates_args=(),
                                 schema="(Tensor step, int key, int itemsize) -> Tensor")
    op.register_fake(fake)
    _TORCH_OP.append(op)
    return op
