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
from typing import Any, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import fast
from .floats import Format, round_rational
from .inputs import check_decay_steps, check_staircase, resolve_dtype, to_exact
from .orders import Order

__all__ = ["ExponentialDecay", "serialize", "deserialize"]

_CONFIG_KEYS = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")
#: expdecay's own form adds the format (spec §11).
_OWN_KEYS = (*_CONFIG_KEYS, "dtype")
_KERAS_MODULES = ("keras.optimizers.schedules", "keras.src.optimizers.schedules")
_OWN_MODULE = "expdecay"
_REGISTERED_NAME = "expdecay>ExponentialDecay"

#: A scalar step: the value comes back as a numpy scalar of the format.
Scalar: TypeAlias = int | float | np.integer[Any] | np.floating[Any]


def _plain(x: Any) -> Any:
    """A config value, JSON-ready and exact: Python ints and floats stay; numpy
    integers become ints and numpy floats of at most 64 bits the Python float
    of the same value; a 0-d array is read as its element; any other number
    (``Fraction``, ``Decimal``, ``np.longdouble``) becomes a string that
    :func:`expdecay.inputs.to_exact` reads back as the same exact value."""
    if type(x) is int or type(x) is float:
        return x
    if isinstance(x, np.ndarray):  # 0-d (to_exact refused the others)
        return _plain(x[()])
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, float) or (isinstance(x, np.generic) and x.dtype.itemsize <= 8):
        return float(x)  # exact for float16, bfloat16, float32, float64
    if isinstance(x, Decimal) and x.is_finite():
        return str(x)  # the decimal as written: exact
    return _exact_text(to_exact(x, "value"))


def _exact_text(q: Fraction | float) -> str:
    """An exact string for an exact value: a hexadecimal float for a dyadic
    rational (compact: the numerator's hex digits and a binary exponent),
    ``"n/d"`` for any other rational, the float's name for the specials
    (``"-0.0"``, ``"inf"``, ``"nan"``)."""
    if isinstance(q, float):
        return repr(q)
    num, den = q.numerator, q.denominator
    if den & (den - 1) == 0:
        sign = "-" if num < 0 else ""
        return f"{sign}0x{abs(num):x}p-{den.bit_length() - 1}"
    return f"{num}/{den}"


def _value_key(x: Any) -> Any:
    """What a schedule computes with: the exact value, with the signed zeros,
    the infinities and NaN told apart (``-0.0`` and ``+0.0`` give different
    values as a ``decay_rate``)."""
    q = to_exact(x, "value")
    if isinstance(q, float):
        return "nan" if q != q else repr(q)
    return q


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
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the values (``ml_dtypes.bfloat16`` for bfloat16)."""
        dt: np.dtype[Any] = self.format.dtype
        return dt

    def _evaluate(self, step: Any, order: Order) -> Any:
        steps = _as_steps(step)
        if steps.dtype == object and steps.size and all(_is_int(x) for x in steps.flat):
            return self._big_ints(step, steps, order)  # ints beyond int64/uint64
        if steps.dtype.kind not in "iuf" and steps.dtype.name != "bfloat16":
            raise TypeError(
                f"step must be an integer or float number or array; got {_describe(step)}")
        out = fast.evaluate_array(
            self.initial_learning_rate,
            self.decay_steps,
            self.decay_rate,
            steps,
            staircase=self.staircase,
            dtype=self.format,
            order=order,
        )
        return out[()] if steps.ndim == 0 and not isinstance(step, np.ndarray) else out

    def _big_ints(self, step: Any, steps: NDArray[Any], order: Order) -> Any:
        """Integer steps no fixed-width dtype holds: each goes to the oracle,
        which takes Python ints of any size (the vectorised paths read steps
        as int64, uint64 or floats)."""
        from .oracle import evaluate

        out = np.empty(steps.shape, dtype=self.format.dtype)
        for idx, x in np.ndenumerate(steps):
            out[idx] = evaluate(self.initial_learning_rate, self.decay_steps, self.decay_rate,
                                int(x), staircase=self.staircase, dtype=self.format,
                                order=order)
        return out[()] if steps.ndim == 0 and not isinstance(step, np.ndarray) else out

    @overload
    def __call__(self, step: Scalar) -> np.floating[Any]: ...
    @overload
    def __call__(self, step: NDArray[Any]) -> NDArray[Any]: ...
    @overload
    def __call__(self, step: ArrayLike) -> np.floating[Any] | NDArray[Any]: ...

    def __call__(self, step: ArrayLike) -> np.floating[Any] | NDArray[Any]:
        """The value in Keras's order of evaluation (spec §7): a numpy scalar
        of the format for a scalar step, an array of the step's shape for an
        array."""
        result: np.floating[Any] | NDArray[Any] = self._evaluate(step, "keras")
        return result

    @overload
    def exact(self, step: Scalar) -> np.floating[Any]: ...
    @overload
    def exact(self, step: NDArray[Any]) -> NDArray[Any]: ...
    @overload
    def exact(self, step: ArrayLike) -> np.floating[Any] | NDArray[Any]: ...

    def exact(self, step: ArrayLike) -> np.floating[Any] | NDArray[Any]:
        """The exact real value rounded once to the format (spec §6); scalar
        in, scalar out, as for :meth:`__call__`."""
        result: np.floating[Any] | NDArray[Any] = self._evaluate(step, "exact")
        return result

    @overload
    def error_bound(self, step: Scalar, pow_ulps: float = 1.0) -> np.float64: ...
    @overload
    def error_bound(self, step: NDArray[Any], pow_ulps: float = 1.0) -> NDArray[np.float64]: ...
    @overload
    def error_bound(
        self, step: ArrayLike, pow_ulps: float = 1.0
    ) -> np.float64 | NDArray[np.float64]: ...

    def error_bound(
        self, step: ArrayLike, pow_ulps: float = 1.0
    ) -> np.float64 | NDArray[np.float64]:
        """Bound, in ulps, on the distance between a plain float pipeline in
        the format (with a ``pow`` of at most ``pow_ulps`` error) and the
        exact order (see :mod:`expdecay.bounds`): a ``np.float64`` for a
        scalar step, a float64 array of the step's shape for an array.

        >>> b = ExponentialDecay(1.0, 1, 0.5, dtype="float16").error_bound(3)
        >>> type(b).__name__, round(float(b), 6)  # pow: 2 ulps below 1/8
        ('float64', 3.0)
        """
        from .bounds import error_bound

        steps = _as_steps(step)
        out: NDArray[np.float64] = error_bound(
            self.initial_learning_rate,
            self.decay_steps,
            self.decay_rate,
            steps,
            staircase=self.staircase,
            dtype=self.format.name,
            pow_ulps=pow_ulps,
        )
        if steps.ndim == 0 and not isinstance(step, np.ndarray):
            return np.float64(out[()])
        return out

    def _key(self) -> tuple[Any, ...]:
        return (type(self), self.format.name, _value_key(self.initial_learning_rate),
                _value_key(self.decay_steps), _value_key(self.decay_rate), self.staircase,
                self.name)

    def __eq__(self, other: object) -> bool:
        """Schedules are equal when they are of the same class and compute with
        the same exact inputs in the same format, with the same staircase flag
        and name: ``0.5``, ``np.float32(0.5)``, ``"0.5"`` and ``Fraction(1, 2)``
        are the same input, ``0.1`` (a binary float) and ``"0.1"`` (a decimal)
        are not.  Equal schedules give the same bits at every step."""
        if not isinstance(other, ExponentialDecay):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        # Equal keys are equal exact values (Fractions, ints, bools, strings):
        # they hash equally, whatever type each input was given as.
        return hash((type(self).__name__, *self._key()[1:]))

    def get_config(self) -> dict[str, Any]:
        """expdecay's own form (spec §11): Keras's keys with every input
        exactly as given (Python and numpy numbers of at most 64 bits as JSON
        numbers, other types as an exact string) plus ``dtype``, the format's
        name.  JSON-ready; :meth:`from_config` rebuilds a schedule that is
        ``==`` to this one and gives the same bits at every step."""
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


def _as_steps(step: Any) -> NDArray[Any]:
    """``np.asarray(step)``, or a ``TypeError`` naming ``step`` when numpy
    cannot read it (a torch.bfloat16 tensor, for one)."""
    try:
        return np.asarray(step)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"step must be an integer or float number or array; got {_describe(step)}, "
            f"which numpy cannot read ({e})") from None


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _describe(step: Any) -> str:
    """The step as an error message shows it: its type and (short) value."""
    dtype = getattr(step, "dtype", None)
    kind = type(step).__name__ if dtype is None else f"{type(step).__name__} of dtype {dtype}"
    text = repr(step)
    return f"{kind} {text[:80]}{'...' if len(text) > 80 else ''}"


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
