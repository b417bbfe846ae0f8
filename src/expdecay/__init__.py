"""expdecay: the verified reference of the exponential-decay learning-rate schedule.

``lr(step) = initial_learning_rate * decay_rate ** (step / decay_steps)``
(``floor`` on the exponent when ``staircase``), correctly rounded to float16,
bfloat16, float32 and float64 in two orders of evaluation (``exact`` and
``keras``); see ``spec/exponential_decay.md`` (installed with the package:
``expdecay.resources.spec_dir()``).

The public names are loaded on first use (PEP 562), so that ``import
expdecay.cli`` costs nothing until a command runs: the command line can then
handle Ctrl-C from its first instruction, and tools that only need one
submodule do not pay for SymPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_PUBLIC = {
    "ExponentialDecay": "schedule",
    "serialize": "schedule",
    "deserialize": "schedule",
    "FORMATS": "floats",
    "get_format": "floats",
    "evaluate": "oracle",
    "value": "oracle",
    "PrecisionError": "oracle",
    "ExpdecayError": "errors",
    "Order": "orders",
    "ORDERS": "orders",
    "check_order": "orders",
}

__all__ = [
    "ExponentialDecay", "serialize", "deserialize",
    "FORMATS", "get_format", "evaluate", "value", "PrecisionError", "__version__",
    "ExpdecayError", "Order", "ORDERS", "check_order",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .errors import ExpdecayError
    from .floats import FORMATS, get_format
    from .oracle import PrecisionError, evaluate, value
    from .orders import ORDERS, Order, check_order
    from .schedule import ExponentialDecay, deserialize, serialize


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'expdecay' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
