"""The Keras-compatible :class:`ExponentialDecay` schedule.

``schedule(step)`` gives Keras's order of evaluation and ``schedule.exact(step)``
the exactly rounded real value, both bit-identical to :func:`expdecay.oracle.evaluate`
for every element and computed by the vectorised paths of :mod:`expdecay.fast`.

>>> s = ExponentialDecay(0.1, 100000, 0.96)
>>> s(10**6), s.exact(10**6)
(np.float32(0.06648325), np.float32(0.06648327))
>>> serialize(s)["config"]["decay_rate"], serialize(s)["config"]["dtype"]
(0.96, 'float32')
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from . import fast
from .floats import Format, round_rational
from .inputs import check_decay_steps, check_staircase, resolve_dtype, to_exact

__all__ = ["ExponentialDecay", "serialize", "deserialize"]

_CONFIG_KEYS = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")
#: expdecay's own form adds the format (spec §11).
_OWN_KEYS = (*_CONFIG_KEYS, "dtype")
_KERAS_MODULES = ("keras.optimizers.schedules", "keras.src.optimizers.schedules")
_OWN_MODULE = "expdecay"
_REGISTERED_NAME = "expdecay>ExponentialDecay"


def _plain(x: Any) -> Any:
    """A config value: Python numbers stay; numpy scalars become the Python
    number of the same exact value; exact types (Fraction, Decimal, str) become
    their exact string."""
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.generic):
        return float(x)  # exact for the four formats
    if isinstance(x, (Fraction, Decimal)):
        return str(x)
    return x


def _keras_number(x: Any, fmt: Format, integral_as_int: bool) -> Any:
    """A value Keras's own class can compute with: a JSON number.  Python ints
    and floats stay (Keras casts them as the keras order does); anything else
    becomes its exact value rounded to the schedule's format (the value the
    keras order computes with), or an int when ``integral_as_int`` and the
    exact value is an integer."""
    if isinstance(x, bool) or isinstance(x, (int, float)):
        return x
    if isinstance(x, np.integer):
        return int(x)
    q = to_exact(x, "value")
    if isinstance(q, float):
        return q  # a zero, an infinity or NaN
    if integral_as_int and q.denominator == 1:
        return int(q)
    return round_rational(q, fmt)


class ExponentialDecay:
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``.
    The computation format is ``dtype`` if given, else the format of a numpy
    float ``initial_learning_rate``, else float32 (spec §4).

    Raises ``ValueError`` when ``decay_steps`` is not finite and > 0,
    ``TypeError`` when ``staircase`` is not a bool or a number has an
    unsupported type.
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
    ) -> None:
        check_decay_steps(decay_steps)
        check_staircase(staircase)
        to_exact(initial_learning_rate, "initial_learning_rate")
        to_exact(decay_rate, "decay_rate")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None; got {type(name).__name__} {name!r}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = bool(staircase)
        self.name = name
        self.format: Format = resolve_dtype(initial_learning_rate, dtype)

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the values (``ml_dtypes.bfloat16`` for bfloat16)."""
        return self.format.dtype

    def _evaluate(self, step: Any, order: str) -> Any:
        steps = np.asarray(step)
        if steps.dtype.kind not in "iuf" and steps.dtype.name != "bfloat16":
            raise TypeError(f"step must be an integer or float number or array; got {step!r}")
        out = fast.evaluate(
            self.initial_learning_rate,
            self.decay_steps,
            self.decay_rate,
            steps,
            staircase=self.staircase,
            dtype=self.format,
            order=order,
        )
        return out[()] if steps.ndim == 0 and not isinstance(step, np.ndarray) else out

    def __call__(self, step: Any) -> Any:
        """The value in Keras's order of evaluation (spec §7)."""
        return self._evaluate(step, "keras")

    def exact(self, step: Any) -> Any:
        """The exact real value rounded once to the format (spec §6)."""
        return self._evaluate(step, "exact")

    def error_bound(self, step: Any, pow_ulps: float = 1.0) -> Any:
        """Bound, in ulps, on the distance between a plain float pipeline in
        the format (with a ``pow`` of at most ``pow_ulps`` error) and the
        exact order (see :mod:`expdecay.bounds`)."""
        from .bounds import error_bound

        return error_bound(
            self.initial_learning_rate,
            self.decay_steps,
            self.decay_rate,
            np.asarray(step),
            staircase=self.staircase,
            dtype=self.format.name,
            pow_ulps=pow_ulps,
        )

    def get_config(self) -> dict[str, Any]:
        """expdecay's own form (spec §11): Keras's keys with every input
        exactly as given (exact types as their exact string) plus ``dtype``,
        the format's name.  JSON-ready; :meth:`from_config` rebuilds the same
        schedule, format included."""
        return {
            "initial_learning_rate": _plain(self.initial_learning_rate),
            "decay_steps": _plain(self.decay_steps),
            "decay_rate": _plain(self.decay_rate),
            "staircase": self.staircase,
            "name": self.name,
            "dtype": self.format.name,
        }

    def get_keras_config(self) -> dict[str, Any]:
        """The Keras-compatible form (spec §11): Keras's five keys with JSON
        numbers only, so that Keras's own ``ExponentialDecay`` computes with it.
        Exact inputs (strings, fractions, decimals, numpy scalars) are written
        as their value rounded to the format; the format itself is not written
        (Keras takes it from its floatx)."""
        fmt = self.format
        return {
            "initial_learning_rate": _keras_number(self.initial_learning_rate, fmt, False),
            "decay_steps": _keras_number(self.decay_steps, fmt, True),
            "decay_rate": _keras_number(self.decay_rate, fmt, False),
            "staircase": self.staircase,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ExponentialDecay:
        """Rebuild a schedule from either form (without ``dtype``: float32,
        Keras's rule for Python numbers)."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict; got {type(config).__name__}")
        unknown = sorted((k for k in config if k not in _OWN_KEYS), key=repr)
        if unknown:
            raise ValueError(f"config has unknown keys {unknown}; expected {list(_OWN_KEYS)}")
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"ExponentialDecay({args}, dtype={self.format.name!r})"


def serialize(schedule: ExponentialDecay, *, form: str = "expdecay") -> dict[str, Any]:
    """The serialized form of ``schedule``, in Keras 3's layout.

    ``form="expdecay"`` (default): ``get_config()`` under the registered name
    ``expdecay>ExponentialDecay``; round-trips exactly (format included), and
    Keras itself reads it as :class:`expdecay.keras.ExponentialDecay` once
    ``expdecay.keras`` is imported.  ``form="keras"``: Keras's own
    ``keras.optimizers.schedules.ExponentialDecay`` with
    ``get_keras_config()``, for Keras without expdecay (lossy, spec §11)."""
    if not isinstance(schedule, ExponentialDecay):
        raise TypeError(f"schedule must be an ExponentialDecay; got {type(schedule).__name__}")
    if form == "keras":
        return {
            "module": "keras.optimizers.schedules",
            "class_name": "ExponentialDecay",
            "config": schedule.get_keras_config(),
            "registered_name": None,
        }
    if form != "expdecay":
        raise ValueError(f"form must be 'expdecay' or 'keras'; got {form!r}")
    return {
        "module": _OWN_MODULE,
        "class_name": "ExponentialDecay",
        "config": schedule.get_config(),
        "registered_name": _REGISTERED_NAME,
    }


def deserialize(config: dict[str, Any]) -> ExponentialDecay:
    """Read either serialized form, or Keras 2's ``{"class_name", "config"}``."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict; got {type(config).__name__}")
    name = config.get("class_name")
    if name != "ExponentialDecay":
        raise ValueError(f"class_name must be 'ExponentialDecay'; got {name!r}")
    inner = config.get("config")
    if not isinstance(inner, dict):
        raise ValueError(f"config['config'] must be a dict; got {inner!r}")
    module = config.get("module", "keras.optimizers.schedules")
    if module not in (*_KERAS_MODULES, _OWN_MODULE):
        raise ValueError(f"module must be keras.optimizers.schedules or expdecay; got {module!r}")
    return ExponentialDecay.from_config(inner)
