"""Float (real-valued) steps for the Keras adapters, on top of
:mod:`expdecay.frameworks.graph`.

Keras accepts a step of any real dtype (``keras.Variable(1.0)`` is a float32
step) and computes at that real step: ``p = cast(step) / cast(D)`` in the
format, then ``floor`` if staircase, then ``pow`` and the product.
:class:`expdecay.ExponentialDecay` computes the same order (correctly rounded)
for float steps, so:

* an integer step takes the table of :mod:`expdecay.frameworks.graph` unchanged;
* a float step whose value is an integer that the counter width holds is
  converted exactly to that integer in the graph and takes the table too (the
  value of a schedule depends only on the exact value of the step, not on the
  type that carries it);
* any other float step (``1.5``, ``nan``, ``inf``, beyond the integer width)
  gets its value from the host, from :class:`expdecay.ExponentialDecay`
  itself: ``jax.pure_callback`` (inside a ``lax.cond``, so only those steps
  pay for it), ``tf.numpy_function`` in TensorFlow outside XLA, and the
  ``torch.library`` custom op of :func:`expdecay.frameworks.graph.torch_op`
  under torch.  TensorFlow under XLA cannot call
  the host; a float step there is refused when traced unless the user declared
  the trained steps with ``horizon=``, and then a non-integral step gives NaN.

A schedule whose values are not monotone in the step (``decay_rate`` of
``-0.0``: ``pow(-0, p)`` is ``-0`` for odd integer ``p`` and ``+0`` otherwise)
has no table: every step goes to the host (``every_step_on_host``).

Each function imports its framework lazily.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import graph
from .tables import Table

__all__ = ["jax_value", "tf_value", "torch_value", "register_torch", "XLA_HOST_MESSAGE"]

#: Any step (a 0-d numpy array of an integer or float dtype) -> the value, a
#: numpy scalar of the format.
Real = Callable[[np.ndarray], Any]

XLA_HOST_MESSAGE = (
    "{name}: {what} needs the host, which an XLA-compiled TensorFlow step cannot call; "
    "compile with jit_compile=False{declare}"
)


def _step_error(step: Any, dtype: Any) -> TypeError:
    text = repr(step)
    text = text if len(text) <= 80 else text[:80] + "..."
    return TypeError(f"step must be an integer or float number, tensor or variable; "
                     f"got {type(step).__name__} {text}"
                     + ("" if dtype is None else f" of dtype {dtype}"))


# ---------------------------------------------------------------------------
# jax
# ---------------------------------------------------------------------------


def jax_value(table: Table | None, step: Any, host: graph.Host, real: Real,
              fmt: np.dtype[Any]) -> Any:
    """The value at ``step`` (a jax integer or float array or tracer, or a
    Python number); ``table`` None sends every step to the host."""
    import jax
    import jax.numpy as jnp

    try:
        s = jnp.asarray(step)
    except (TypeError, ValueError):
        raise _step_error(step, getattr(step, "dtype", None)) from None
    is_int = jnp.issubdtype(s.dtype, jnp.integer)
    if not (is_int or jnp.issubdtype(s.dtype, jnp.floating)) or s.ndim != 0:
        if s.ndim != 0:
            raise TypeError(f"step must be a scalar; got shape {tuple(s.shape)}")
        raise _step_error(step, s.dtype)
    if is_int and table is not None:
        return graph.jax_value(table, s, host)
    x64 = bool(jax.config.read("jax_enable_x64"))
    if fmt == np.float64 and not x64:
        raise ValueError("a float64 schedule needs jax's 64-bit mode "
                         "(jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1); "
                         "without it jax would silently give float32")
    shape = jax.ShapeDtypeStruct((), fmt)

    def on_host(x: Any) -> np.ndarray:
        return np.asarray(real(np.asarray(x)), dtype=fmt)

    if table is None:
        return jax.pure_callback(on_host, shape, s)
    int_dtype = jnp.int64 if x64 else jnp.int32
    limit = 2.0 ** (63 if x64 else 31)
    integral = jnp.logical_and(s == jnp.floor(s), jnp.abs(s) < limit)
    as_int = jnp.where(integral, s, jnp.zeros_like(s)).astype(int_dtype)
    from_table = graph.jax_value(table, as_int, host)
    return jax.lax.cond(integral, lambda: from_table,
                        lambda: jax.pure_callback(on_host, shape, s))


# ---------------------------------------------------------------------------
# TensorFlow
# ---------------------------------------------------------------------------


def tf_value(table: Table | None, step: Any, host: graph.Host, real: Real,
             fmt: np.dtype[Any], declared: bool, name: str) -> Any:
    """The value at ``step`` (an integer or float tensor or variable, or a
    Python number) in TensorFlow; ``table`` None sends every step to the host."""
    import tensorflow as tf

    s = tf.convert_to_tensor(step)
    if s.shape.rank != 0:
        raise TypeError(f"step must be a scalar; got shape {s.shape}")
    if not (s.dtype.is_integer or s.dtype.is_floating) or s.dtype == tf.bool:
        raise _step_error(step, s.dtype.name)
    if s.dtype.is_integer and table is not None:
        return graph.tf_value(table, s, host, declared, name)
    fdtype = getattr(tf, fmt.name)
    udtype = {2: np.uint16, 4: np.uint32, 8: np.uint64}[fmt.itemsize]
    in_xla = graph.in_xla()
    if table is None:
        if in_xla:
            raise ValueError(XLA_HOST_MESSAGE.format(
                name=name, what="this schedule (decay_rate=-0.0) takes every value from the host",
                declare=""))
        integral = tf.constant(False)
        from_table = tf.zeros([], fdtype)
    else:
        integral = tf.logical_and(tf.equal(s, tf.floor(s)), tf.abs(s) < 2.0 ** 63)
        as_int = tf.cast(tf.where(integral, s, tf.zeros_like(s)), tf.int64)
        from_table = graph.tf_value(table, as_int, host, declared, name)
        if in_xla:
            if not declared:
                raise ValueError(XLA_HOST_MESSAGE.format(
                    name=name, what="a float step that is not an integer",
                    declare=", or pass integer steps, or declare the steps you train with "
                            "horizon= (a non-integral float step then gives NaN under XLA)"))
            return tf.where(integral, from_table, tf.constant(float("nan"), fdtype))

    def on_host(x: Any) -> np.ndarray:
        value = np.asarray(real(np.asarray(x)), dtype=fmt)
        return value.reshape(()).view(udtype)

    # float64 holds every float16, bfloat16 and float32 step exactly (and
    # numpy_function cannot pass bfloat16)
    wide = tf.cast(s, tf.float64) if s.dtype.is_floating else s

    def fetch() -> Any:
        raw = tf.numpy_function(on_host, [wide], tf.as_dtype(udtype), stateful=False)
        return tf.bitcast(tf.reshape(raw, []), fdtype)

    if table is None:
        return fetch()
    return tf.cond(integral, lambda: from_table, fetch)


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------

def torch_value(table: Table | None, step: Any, host: graph.Host, real: Real,
                fmt: np.dtype[Any], key: int, cache: dict[Any, Any]) -> Any:
    """The value at ``step`` (an integer or float tensor, or a Python number)
    as a 0-d tensor; ``table`` None sends every step to the host."""
    import torch

    try:
        t = step if isinstance(step, torch.Tensor) else torch.as_tensor(step)
    except (TypeError, ValueError, RuntimeError):
        raise _step_error(step, getattr(step, "dtype", None)) from None
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise _step_error(step, t.dtype)
    if t.dim() != 0:
        raise TypeError(f"step must be a scalar; got shape {tuple(t.shape)}")
    if not t.dtype.is_floating_point and table is not None:
        return graph.torch_value(table, t, host, cache)
    if key not in graph.TORCH_HOSTS:
        register_torch(key, table, host, real)
    raw = graph.torch_op()(t, key, fmt.itemsize)
    fdtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
              "float64": torch.float64}[fmt.name]
    return raw.view(fdtype)


def host_value(table: Table | None, host: graph.Host, real: Real, step: np.ndarray) -> Any:
    """The value at ``step`` (a 0-d numpy array) on the host: the table for a
    step that is an int64 integer, else the schedule itself."""
    if table is not None:
        if step.dtype.kind in "iu" and -(2**63) <= int(step) < 2**63:
            return graph.host_lookup(table, host, int(step))
        x = float(step)
        if x == np.floor(x) and abs(x) < 2.0**63:
            return graph.host_lookup(table, host, int(x))
    return real(step)


def register_torch(key: int, table: Table | None, host: graph.Host, real: Real) -> None:
    """Make the schedule known to the torch custom op under ``key`` (the ``id()``
    of an object that ``host`` or ``real`` keeps alive), and define the op: both
    outside any ``torch.compile`` trace (a trace can neither define an op nor be
    relied on to replay a write to a module's dict)."""
    graph.TORCH_HOSTS[key] = functools.partial(host_value, table, host, real)
    graph.torch_op()
