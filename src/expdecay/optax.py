"""The verified schedule as an optax schedule (``count -> learning rate``).

::

    import optax, expdecay.optax
    lr = expdecay.optax.exponential_decay(0.1, 1000, 0.96)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)

The returned function works eagerly, inside ``jax.jit`` and under
``optax.inject_hyperparams``: it gathers expdecay's precomputed values with
integer indexes (no ``pow``, no division on the device) and asks the host
(``jax.pure_callback``) for steps outside its table; see ``spec/training.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import jax  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.optax needs jax: pip install 'expdecay[peers]'") from exc

from . import _graph
from ._tables import DEFAULT_MAX_ENTRIES, build_table, host_values
from .schedule import ExponentialDecay

__all__ = ["exponential_decay"]


def exponential_decay(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    staircase: bool = False,
    *,
    dtype: Any = None,
    order: str = "keras",
    horizon: int | None = None,
    first_step: int = 0,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Callable[[Any], Any]:
    """``count -> initial_learning_rate * decay_rate ** (count / decay_steps)``,
    bit-identical to :class:`expdecay.ExponentialDecay` in ``order``.

    Arguments as for :class:`expdecay.keras.ExponentialDecay`; a float64
    schedule needs jax's 64-bit mode (an error says so otherwise).  The
    function carries the core schedule as ``.schedule`` and its table as
    ``.table``."""
    schedule = ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase,
                                dtype=dtype)
    table = build_table(schedule, order, first_step=first_step, horizon=horizon,
                        max_entries=max_entries)

    def host(step: int) -> Any:
        return host_values(schedule, order, [step])[0]

    def fn(count: Any) -> Any:
        return _graph.jax_value(table, count, host)

    fn.schedule = schedule  # type: ignore[attr-defined]
    fn.table = table  # type: ignore[attr-defined]
    fn.order = order  # type: ignore[attr-defined]
    return fn
