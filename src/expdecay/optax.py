"""The verified schedule as an optax schedule (``count -> learning rate``).

::

    import optax, expdecay.optax
    lr = expdecay.optax.exponential_decay(0.1, 1000, 0.96)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)

``exponential_decay`` takes ``optax.exponential_decay``'s arguments
(``init_value, transition_steps, decay_rate, transition_begin=0,
staircase=False, end_value=None``) with their documented meaning, and returns
expdecay's correctly rounded value: at ``count - transition_begin`` when the
count is past ``transition_begin`` (``init_value`` before), then clipped at
``end_value``.  The returned function takes integer or float counts of any
shape, works eagerly, inside ``jax.jit``, under ``jax.vmap`` and under
``optax.inject_hyperparams``: it gathers expdecay's precomputed values with
integer indexes (no ``pow``, no division on the device) and asks the host
(``jax.pure_callback``) for counts outside its table; see ``spec/training.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.optax needs jax: pip install 'expdecay[peers]'") from exc

import numpy as np

from .floats import round_rational
from .frameworks import graph
from .frameworks.tables import DEFAULT_MAX_ENTRIES, INT64_MAX, build_table, host_values
from .inputs import resolve_dtype, to_exact
from .oracle import evaluate
from .orders import Order, check_order
from .schedule import ExponentialDecay

__all__ = ["exponential_decay"]

_log = logging.getLogger(__name__)


def _real(value: Any, name: str) -> Any:
    """``value`` as expdecay's exact form (Fraction or special float); a jax
    array becomes the numpy value it holds."""
    if isinstance(value, jax.Array):
        if value.ndim != 0:
            raise TypeError(f"{name} must be a scalar; got an array of shape {value.shape}")
        value = np.asarray(value)[()]
    if isinstance(value, str):
        raise TypeError(f"{name} must be a number; got str {value!r}")
    try:
        return to_exact(value, name)
    except TypeError:
        raise
    except ValueError as exc:
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}") from exc


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    return int(value)


def _check_args(init_value: Any, transition_steps: Any, decay_rate: Any, transition_begin: Any,
                staircase: Any, end_value: Any,
                order: Any) -> tuple[Any, Any, Any, int, Any, Order]:
    I = _real(init_value, "init_value")
    if not (isinstance(I, Fraction) or math.isfinite(I)):
        raise ValueError(f"init_value must be finite; got {init_value!r}")
    D = _real(transition_steps, "transition_steps")
    if not (isinstance(D, Fraction) or math.isfinite(D)):
        raise ValueError(f"transition_steps must be finite; got {transition_steps!r}")
    r = _real(decay_rate, "decay_rate")
    if not (isinstance(r, Fraction) and r > 0 or r == 0.0):
        raise ValueError(f"decay_rate must be finite and >= 0; got {decay_rate!r}")
    if isinstance(transition_begin, (bool, np.bool_)):
        raise TypeError(f"transition_begin must be an int; got bool {transition_begin!r} "
                        "(staircase is the fifth argument, after transition_begin)")
    begin = _integer(transition_begin, "transition_begin")
    if staircase is not True and staircase is not False:
        raise TypeError(f"staircase must be a bool; got {type(staircase).__name__} {staircase!r}")
    E = None
    if end_value is not None:
        E = _real(end_value, "end_value")
        if isinstance(E, float) and math.isnan(E):
            raise ValueError(f"end_value must not be NaN; got {end_value!r}")
    return I, D, r, begin, E, check_order(order)


def exponential_decay(
    init_value: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Any = None,
    *,
    dtype: Any = None,
    order: Order = "keras",
    horizon: int | None = None,
    first_step: int = 0,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Callable[[Any], Any]:
    """optax's ``exponential_decay`` with expdecay's verified bits.

    For a count ``c`` (an integer or float, a scalar or an array of any shape)
    and ``d = c - transition_begin``::

        d <= 0:  rnd(init_value)
        d > 0:   v(d) = init_value * decay_rate ** (d / transition_steps)
                 (floor of the exponent when staircase), correctly rounded
                 in ``order`` as expdecay.ExponentialDecay(...)(d) gives it

    then, when ``end_value`` is given, ``max(value, rnd(end_value))`` if
    ``decay_rate < 1`` (a floor) else ``min(value, rnd(end_value))`` (a
    ceiling).  ``rnd`` rounds to the schedule's format (Keras's dtype rule:
    float32 for a Python number, unless ``dtype`` says otherwise); clipping a
    value of the format by a value of the format is exact.  A non-integer
    float count takes the schedule at the real step ``d``.

    As optax does, ``transition_steps <= 0`` and ``decay_rate == 0`` give the
    constant schedule ``rnd(init_value)`` (``end_value`` has no effect) and a
    negative ``transition_begin`` is taken as 0, each with an INFO record on
    the ``expdecay.optax`` logger.  Unlike optax, bad types and non-finite or
    negative values raise ``TypeError``/``ValueError`` naming the argument.

    ``horizon``/``first_step``/``max_entries`` size the in-graph table as for
    :class:`expdecay.keras.ExponentialDecay` (``first_step`` and ``horizon`` are
    counts).  A float64 schedule needs jax's 64-bit mode.  The function carries
    the core schedule as ``.schedule`` (None for a constant schedule) and its
    table as ``.table``."""
    I, D, r, begin, E, order = _check_args(init_value, transition_steps, decay_rate,
                                           transition_begin, staircase, end_value, order)
    init = init_value if not isinstance(init_value, jax.Array) else np.asarray(init_value)[()]
    fmt = resolve_dtype(init, dtype)
    start_value = round_rational(I, fmt) if isinstance(I, Fraction) else I  # rnd(init_value)
    np_dtype = fmt.dtype
    constant = None
    if D <= 0:
        _log.info("exponential_decay: transition_steps=%r is not positive; the schedule is "
                  "the constant init_value", transition_steps)
        constant = start_value
    elif r == 0:
        _log.info("exponential_decay: decay_rate is 0; the schedule is the constant init_value")
        constant = start_value
    if constant is not None:
        fixed = np.asarray(constant, np_dtype)

        def const_fn(count: Any) -> Any:
            return jnp.full(jnp.shape(count), fixed, dtype=np_dtype)

        const_fn.schedule = None  # type: ignore[attr-defined]
        const_fn.table = None  # type: ignore[attr-defined]
        const_fn.order = order  # type: ignore[attr-defined]
        return const_fn
    if begin < 0:
        _log.info("exponential_decay: transition_begin=%r is negative; 0 is used", begin)
        begin = 0
    schedule = ExponentialDecay(init, transition_steps, decay_rate, staircase, dtype=fmt.name)
    first = _integer(first_step, "first_step")
    if horizon is not None:
        horizon = _integer(horizon, "horizon")
        if horizon <= max(first, begin):
            raise ValueError(f"horizon must be > first_step ({first}) and > transition_begin "
                             f"({begin}); got {horizon!r}")
        horizon = min(horizon - begin, INT64_MAX)
    table = build_table(schedule, order, first_step=max(first - begin, 0), horizon=horizon,
                        max_entries=max_entries)
    clip: Any = None
    if E is not None:
        e = np.asarray(round_rational(E, fmt) if isinstance(E, Fraction) else E, np_dtype)
        floor = isinstance(r, Fraction) and r < 1
        clip = (jnp.maximum if floor else jnp.minimum, e)
    start_np = np.asarray(start_value, np_dtype)

    def host(step: int) -> Any:
        return host_values(schedule, order, [step])[0]

    def host_many(steps: np.ndarray) -> np.ndarray:
        return host_values(schedule, order, steps)

    def host_real(counts: np.ndarray, need: np.ndarray) -> np.ndarray:
        """The value at each float count where ``need`` (real steps, on the host)."""
        counts, need = np.asarray(counts), np.asarray(need)
        out = np.zeros(counts.shape, np_dtype)
        for idx in np.ndindex(counts.shape):
            if not need[idx]:
                continue
            c = float(counts[idx])
            if math.isnan(c) or c == math.inf:
                d: Any = c
            else:
                d = Fraction(c) - begin if c != -math.inf else -math.inf
            if d <= 0:
                out[idx] = start_np
            else:
                out[idx] = evaluate(schedule.initial_learning_rate, schedule.decay_steps,
                                    schedule.decay_rate, d, staircase=schedule.staircase,
                                    dtype=fmt.name, order=order)
        return out

    def integer_value(c: Any) -> Any:
        if begin > np.iinfo(c.dtype).max:  # every count of this width is before the decay
            return jnp.full(c.shape, start_np, dtype=np_dtype)
        d = jnp.where(c <= begin, jnp.zeros((), c.dtype), c - jnp.asarray(begin, c.dtype))
        return graph.jax_value(table, d, host, host_many=host_many)

    def fn(count: Any) -> Any:
        c = jnp.asarray(count)
        if jnp.issubdtype(c.dtype, jnp.integer):
            out = integer_value(c)
        elif jnp.issubdtype(c.dtype, jnp.floating):
            x64 = bool(jax.config.read("jax_enable_x64"))
            itype = jnp.int64 if x64 else jnp.int32
            limit = float(2 ** (63 if x64 else 31))
            integral = (c == jnp.floor(c)) & (jnp.abs(c) < limit)
            ci = jnp.where(integral, c, jnp.zeros((), c.dtype)).astype(itype)
            out = integer_value(ci)
            shape = jax.ShapeDtypeStruct(c.shape, np_dtype)
            real = jax.lax.cond(
                jnp.any(~integral),
                lambda: jax.pure_callback(host_real, shape, c, ~integral,
                                          vmap_method="broadcast_all"),
                lambda: jnp.zeros(c.shape, np_dtype))
            out = jnp.where(integral, out, real)
        else:
            raise TypeError(f"count must be an integer or float array; got dtype {c.dtype}")
        if clip is not None:
            out = clip[0](out, clip[1])
        return out

    fn.schedule = schedule  # type: ignore[attr-defined]
    fn.table = table  # type: ignore[attr-defined]
    fn.order = order  # type: ignore[attr-defined]
    return fn
