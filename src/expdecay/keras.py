"""The verified schedule as a Keras learning rate: ``learning_rate=`` of any
Keras 3 optimizer on the jax, tensorflow and torch backends, jit on or off.

::

    import keras, expdecay.keras
    lr = expdecay.keras.ExponentialDecay(0.1, 1000, 0.96, staircase=True)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")

Every value the optimizer applies is expdecay's own value for its iteration
counter (the keras order by default, ``order="exact"`` on request), gathered in
the graph from a table that :mod:`expdecay._tables` computes on the host; see
``spec/training.md`` for the table, its horizon and what happens beyond it.

:class:`ExponentialDecay` is registered for Keras serialization as
``expdecay>ExponentialDecay``, so ``model.save`` / ``keras.models.load_model``
restore it (import ``expdecay.keras`` before loading).  tf.keras (the
``tf_keras`` package, Keras 2) has its own base class and registry, so it gets
its own class, :class:`TFKerasExponentialDecay` (registered as
``expdecay>TFKerasExponentialDecay``), created on first use so that this
module does not import TensorFlow under another Keras backend.
"""

from __future__ import annotations

from typing import Any

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.keras needs Keras 3: pip install 'expdecay[peers]'") from exc

from . import _graph
from ._tables import DEFAULT_MAX_ENTRIES, Table, build_table, host_values
from .schedule import ExponentialDecay as _Core

__all__ = ["ExponentialDecay", "TFKerasExponentialDecay"]  # noqa: F822 (made on first use)

_EXTRA_KEYS = ("order", "horizon", "first_step", "max_entries")


class _Adapter:
    """What the Keras 3 and tf.keras classes share: the core schedule, the
    table, the host route and the config."""

    schedule: _Core
    order: str
    horizon: int | None
    first_step: int
    max_entries: int
    table: Table

    def _setup(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
               staircase: bool, name: str | None, dtype: Any, order: str,
               horizon: int | None, first_step: int, max_entries: int) -> None:
        self.schedule = _Core(initial_learning_rate, decay_steps, decay_rate, staircase,
                              name, dtype=dtype)
        self.table = build_table(self.schedule, order, first_step=first_step,
                                 horizon=horizon, max_entries=max_entries)
        self.order, self.horizon = order, horizon
        self.first_step, self.max_entries = int(first_step), int(max_entries)
        self._cache: dict[Any, Any] = {}

    # The parameters, as attributes of the same names as Keras's class.
    @property
    def initial_learning_rate(self) -> Any:
        return self.schedule.initial_learning_rate

    @property
    def decay_steps(self) -> Any:
        return self.schedule.decay_steps

    @property
    def decay_rate(self) -> Any:
        return self.schedule.decay_rate

    @property
    def staircase(self) -> bool:
        return self.schedule.staircase

    def host(self, step: int) -> Any:
        """expdecay's value at ``step`` in this schedule's order (a numpy scalar)."""
        return host_values(self.schedule, self.order, [step])[0]

    def _config(self) -> dict[str, Any]:
        return {**self.schedule.get_config(), "order": self.order, "horizon": self.horizon,
                "first_step": self.first_step, "max_entries": self.max_entries}


class ExponentialDecay(keras.optimizers.schedules.LearningRateSchedule, _Adapter):  # type: ignore[misc]
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` for Keras 3
    optimizers, bit-identical to :class:`expdecay.ExponentialDecay`.

    The first five arguments and ``dtype`` are those of
    :class:`expdecay.ExponentialDecay` (the values' format follows Keras's
    dtype rule).  ``order`` is ``"keras"`` (default: the value of
    ``expdecay.ExponentialDecay(...)(step)``) or ``"exact"`` (``.exact(step)``).
    ``horizon`` (exclusive) and ``first_step`` bound the steps a continuous
    schedule keeps in the graph when it does not saturate within
    ``max_entries`` values; ``spec/training.md`` gives the policy.

    Raises ``ValueError`` for parameters whose value is not monotone in the
    step (``decay_rate < 0``, a non-finite ``initial_learning_rate``) and for a
    ``horizon`` that needs more than ``max_entries`` values.
    """

    def __init__(
        self,
        initial_learning_rate: Any,
        decay_steps: Any,
        decay_rate: Any,
        staircase: bool = False,
        name: str | None = "ExponentialDecay",
        *,
        dtype: Any = None,
        order: str = "keras",
        horizon: int | None = None,
        first_step: int = 0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        super().__init__()
        self._setup(initial_learning_rate, decay_steps, decay_rate, staircase, name, dtype,
                    order, horizon, first_step, max_entries)
        self.name = name

    def __call__(self, step: Any) -> Any:
        backend = keras.backend.backend()
        value = keras.ops.convert_to_tensor(step) if isinstance(step, keras.Variable) else step
        if backend == "jax":
            return _graph.jax_value(self.table, value, self.host)
        if backend == "tensorflow":
            return _graph.tf_value(self.table, value, self.host, self.horizon is not None,
                                   f"expdecay.keras.ExponentialDecay {self.name!r}")
        if backend == "torch":
            return _graph.torch_value(self.table, value, self.host, self._cache)
        raise ValueError(f"Keras backend {backend!r} is not supported "
                         "(jax, tensorflow and torch are)")

    def get_config(self) -> dict[str, Any]:
        """expdecay's own form (with ``dtype``) plus the table arguments."""
        return self._config()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ExponentialDecay:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"expdecay.keras.ExponentialDecay({args})"


keras.saving.register_keras_serializable(package="expdecay", name="ExponentialDecay")(
    ExponentialDecay)


def _make_tf_keras_class() -> type:
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("expdecay.keras.TFKerasExponentialDecay needs tf_keras: "
                          "pip install 'expdecay[peers]'") from exc

    class TFKerasExponentialDecay(tf_keras.optimizers.schedules.LearningRateSchedule,  # type: ignore[misc]
                                  _Adapter):
        """:class:`ExponentialDecay` for tf.keras (Keras 2) optimizers."""

        def __init__(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
                     staircase: bool = False, name: str | None = "ExponentialDecay", *,
                     dtype: Any = None, order: str = "keras", horizon: int | None = None,
                     first_step: int = 0, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
            super().__init__()
            self._setup(initial_learning_rate, decay_steps, decay_rate, staircase, name,
                        dtype, order, horizon, first_step, max_entries)
            self.name = name

        def __call__(self, step: Any) -> Any:
            return _graph.tf_value(self.table, step, self.host, self.horizon is not None,
                                   f"expdecay.keras.TFKerasExponentialDecay {self.name!r}")

        def get_config(self) -> dict[str, Any]:
            return self._config()

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            return cls(**config)

    tf_keras.saving.register_keras_serializable(
        package="expdecay", name="TFKerasExponentialDecay")(TFKerasExponentialDecay)
    TFKerasExponentialDecay.__module__ = __name__
    return TFKerasExponentialDecay


def __getattr__(name: str) -> Any:
    if name == "TFKerasExponentialDecay":
        cls = _make_tf_keras_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module 'expdecay.keras' has no attribute {name!r}")
