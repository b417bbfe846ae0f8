"""What a sweep evaluates: a schedule configuration, the correctly rounded
orders over arrays of steps (:func:`expdecay.fast.evaluate_array`), and the
implementation under test."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ...fast import evaluate_array
from ...floats import Format, get_format, round_rational
from ...inputs import to_exact
from ...orders import Order


@dataclass(frozen=True)
class Schedule:
    """A schedule configuration with its inputs as given (exact strings or numbers)."""

    initial_learning_rate: Any
    decay_steps: Any
    decay_rate: Any
    staircase: bool
    dtype: str

    @property
    def format(self) -> Format:
        return get_format(self.dtype)

    def rounded(self) -> tuple[float, float]:
        """``(rnd(I), rnd(r))``: the inputs as the format holds them."""
        fmt = self.format
        return tuple(  # type: ignore[return-value]
            _round_input(to_exact(x, n), fmt)
            for x, n in ((self.initial_learning_rate, "initial_learning_rate"),
                         (self.decay_rate, "decay_rate"))
        )


def _round_input(x: Any, fmt: Format) -> float:
    return round_rational(x, fmt) if isinstance(x, Fraction) else x


def evaluate_order(
    I: Any, D: Any, r: Any, steps: np.ndarray, *, staircase: bool, dtype: str, order: Order
) -> np.ndarray:
    """The correctly rounded schedule at ``steps`` (array of the format's dtype),
    by the vectorised paths of :mod:`expdecay.fast`."""
    fmt = get_format(dtype)
    return np.asarray(
        evaluate_array(I, D, r, steps, staircase=staircase, dtype=fmt.name, order=order)
    ).astype(fmt.dtype, copy=False)


def implementation_values(
    sch: Schedule, steps: np.ndarray, implementation: str, options: dict[str, Any],
    keras_values: np.ndarray | None = None,
) -> np.ndarray:
    """The implementation's outputs at ``steps`` in the schedule's dtype.

    ``implementation="expdecay"`` with no options is this package's keras order.
    """
    fmt = sch.format
    if implementation == "expdecay" and options.get("order", "keras") == "keras":
        if keras_values is not None:
            return keras_values
        return evaluate_order(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate, steps,
                              staircase=sch.staircase, dtype=sch.dtype, order="keras")
    from ...conformance.adapters import AdapterError, Params, get_adapter

    key = (implementation, tuple(sorted(options.items())))
    try:
        adapter = _ADAPTERS.get(key)
        if adapter is None:
            adapter = _ADAPTERS[key] = get_adapter(implementation, **options)
        params = Params(sch.initial_learning_rate, sch.decay_steps, sch.decay_rate,
                        sch.staircase, sch.dtype)
        got = np.asarray(adapter.evaluate(params, [int(s) for s in steps]), dtype=np.float64)
    except AdapterError as e:
        # A missing framework or a step it cannot take: one line on the CLI.
        raise ValueError(f"implementation {implementation!r} failed: {e}") from None
    return got.astype(fmt.dtype)


_ADAPTERS: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


def adapter_label(implementation: str, options: dict[str, Any]) -> str:
    """A short name with version for reports."""
    if implementation == "expdecay" and options.get("order", "keras") == "keras":
        return "expdecay keras order (correctly rounded pow)"
    try:
        from ...conformance.adapters import get_adapter

        key = (implementation, tuple(sorted(options.items())))
        a = _ADAPTERS.get(key) or get_adapter(implementation, **options)
        _ADAPTERS[key] = a
        opts = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
        return f"{a.name} [{a.version}]" + (f" ({opts})" if opts else "")
    except Exception as e:  # noqa: BLE001 - a label must not fail the analysis
        return f"{implementation} ({e})"
