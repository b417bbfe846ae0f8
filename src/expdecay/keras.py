"""The verified schedule as a Keras learning rate: ``learning_rate=`` of any
Keras 3 optimizer on the jax, tensorflow and torch backends, jit on or off,
and of any tf.keras (Keras 2, the ``tf_keras`` package) optimizer.

::

    import keras, expdecay.keras
    lr = expdecay.keras.ExponentialDecay(0.1, 1000, 0.96, staircase=True)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")

Every value the optimizer applies is expdecay's own value for its iteration
counter (the keras order by default, ``order="exact"`` on request), gathered in
the graph from a table that :mod:`expdecay.frameworks.tables` computes on the host; see
``spec/training.md`` for the table, its horizon and what happens beyond it.
Float steps (``keras.Variable(1.5)``) take the value at that real step, as
Keras's own class does (:mod:`expdecay.frameworks.realsteps`).

:class:`ExponentialDecay` is registered for Keras serialization as
``expdecay>ExponentialDecay``, so ``model.save`` / ``keras.models.load_model``
restore it once this module is imported (Keras imports nothing by itself to
find a registered class outside its own packages).  tf.keras has its own base
class and registry, so it gets its own class, :class:`TFKerasExponentialDecay`
(registered as ``expdecay>TFKerasExponentialDecay``).  It is made and
registered when this module is imported if ``tf_keras`` is installed and
TensorFlow is already loaded (the Keras 3 tensorflow backend loads it, and so
does importing ``tf_keras`` or ``tensorflow`` first); otherwise on the first
use of the name ``expdecay.keras.TFKerasExponentialDecay``, so that importing
this module under the jax or torch backend does not load TensorFlow.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.keras needs Keras 3: pip install 'expdecay[peers]'") from exc

from .frameworks import realsteps
from .frameworks.tables import (
    DEFAULT_MAX_ENTRIES,
    Table,
    build_table,
    check_table_arguments,
    host_values,
)
from .inputs import to_exact
from .orders import Order
from .schedule import ExponentialDecay as _Core

__all__ = ["ExponentialDecay", "TFKerasExponentialDecay"]  # noqa: F822 (made on demand)

_EXTRA_KEYS = ("order", "horizon", "first_step", "max_entries")


class _Adapter:
    """What the Keras 3 and tf.keras classes share: the core schedule, the
    table, the host routes and the config."""

    schedule: _Core
    order: Order
    horizon: int | None
    first_step: int
    max_entries: int
    #: None when the values are not monotone in the step (``decay_rate=-0.0``):
    #: then every step is evaluated on the host.
    table: Table | None

    def _setup(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
               staircase: bool, name: str | None, dtype: Any, order: Order,
               horizon: int | None, first_step: int, max_entries: int) -> None:
        self.schedule = _Core(initial_learning_rate, decay_steps, decay_rate, staircase,
                              name, dtype=dtype)
        r = to_exact(decay_rate, "decay_rate")
        if isinstance(r, float) and r == 0.0 and math.copysign(1.0, r) < 0:
            # pow(-0, p) is -0 at odd integer p and +0 elsewhere: the sign
            # alternates with the step, so no monotone table exists.
            check_table_arguments(self.schedule, order, first_step, horizon, max_entries)
            self.table = None
        else:
            self.table = build_table(self.schedule, order, first_step=first_step,
                                     horizon=horizon, max_entries=max_entries)
        self.order, self.horizon = order, horizon
        self.first_step, self.max_entries = int(first_step), int(max_entries)
        self._cache: dict[Any, Any] = {}
        # the torch custom op's key for this schedule (its entry keeps self alive)
        self._key = id(self)

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
        """expdecay's value at the integer ``step`` in this schedule's order
        (a numpy scalar)."""
        return host_values(self.schedule, self.order, [step])[0]

    def real(self, step: Any) -> Any:
        """expdecay's value at ``step`` (a number or 0-d array of an integer or
        float dtype), the real step as given: :class:`expdecay.ExponentialDecay`
        itself (a numpy scalar)."""
        x = np.asarray(step)
        value: Any = int(x) if x.dtype.kind in "iu" else x.astype(np.float64)[()]
        return self.schedule(value) if self.order == "keras" else self.schedule.exact(value)

    def _config(self) -> dict[str, Any]:
        return {**self.schedule.get_config(), "order": self.order, "horizon": self.horizon,
                "first_step": self.first_step, "max_entries": self.max_entries}

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as its config: the table is rebuilt (it is derived data)
        return (_rebuild, (type(self), self._config()))


def _rebuild(cls: Any, config: dict[str, Any]) -> Any:
    return cls.from_config(config)


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

    The step may be an integer or a float (Python number, numpy value,
    tensor or ``keras.Variable``); a float step that is not an integer takes
    the value at that real step.

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
        order: Order = "keras",
        horizon: int | None = None,
        first_step: int = 0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        super().__init__()
        self._setup(initial_learning_rate, decay_steps, decay_rate, staircase, name, dtype,
                    order, horizon, first_step, max_entries)
        self.name = name
        if keras.backend.backend() == "torch":  # outside any torch.compile trace
            realsteps.register_torch(self._key, self.table, self.host, self.real)

    def __call__(self, step: Any) -> Any:
        backend = keras.backend.backend()
        value = keras.ops.convert_to_tensor(step) if isinstance(step, keras.Variable) else step
        dtype = self.schedule.dtype
        if backend == "jax":
            return realsteps.jax_value(self.table, value, self.host, self.real, dtype)
        if backend == "tensorflow":
            return realsteps.tf_value(self.table, value, self.host, self.real, dtype,
                                       self.horizon is not None,
                                       f"expdecay.keras.ExponentialDecay {self.name!r}")
        if backend == "torch":
            return realsteps.torch_value(self.table, value, self.host, self.real, dtype,
                                          self._key, self._cache)
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
        """:class:`ExponentialDecay` for tf.keras (Keras 2) optimizers: the same
        arguments, values, step types and config."""

        def __init__(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
                     staircase: bool = False, name: str | None = "ExponentialDecay", *,
                     dtype: Any = None, order: Order = "keras", horizon: int | None = None,
                     first_step: int = 0, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
            super().__init__()
            self._setup(initial_learning_rate, decay_steps, decay_rate, staircase, name,
                        dtype, order, horizon, first_step, max_entries)
            self.name = name

        def __call__(self, step: Any) -> Any:
            return realsteps.tf_value(
                self.table, step, self.host, self.real, self.schedule.dtype,
                self.horizon is not None,
                f"expdecay.keras.TFKerasExponentialDecay {self.name!r}")

        def get_config(self) -> dict[str, Any]:
            return self._config()

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            return cls(**config)

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
            return f"expdecay.keras.TFKerasExponentialDecay({args})"

    # A module-level name, so that pickle and repr find it here.
    TFKerasExponentialDecay.__module__ = __name__
    TFKerasExponentialDecay.__qualname__ = "TFKerasExponentialDecay"
    tf_keras.saving.register_keras_serializable(
        package="expdecay", name="TFKerasExponentialDecay")(TFKerasExponentialDecay)
    return TFKerasExponentialDecay


def _tf_keras_class() -> type:
    cls: type | None = globals().get("TFKerasExponentialDecay")
    if cls is None:
        cls = _make_tf_keras_class()
        globals()["TFKerasExponentialDecay"] = cls
    return cls


def _tf_keras_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tf_keras") is not None
    except (ImportError, ValueError):  # pragma: no cover - a broken installation
        return False


if "tensorflow" in sys.modules and _tf_keras_available():
    _tf_keras_class()


def __getattr__(name: str) -> Any:
    if name == "TFKerasExponentialDecay":
        return _tf_keras_class()
    raise AttributeError(f"module 'expdecay.keras' has no attribute {name!r}")
