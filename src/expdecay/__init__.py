"""expdecay: the verified reference of the exponential-decay learning-rate schedule.

``lr(step) = initial_learning_rate * decay_rate ** (step / decay_steps)``
(``floor`` on the exponent when ``staircase``), correctly rounded to float16,
bfloat16, float32 and float64 in two orders of evaluation (``exact`` and
``keras``); see ``spec/exponential_decay.md``.
"""

from .floats import FORMATS, get_format
from .oracle import PrecisionError, evaluate, value
from .schedule import ExponentialDecay, deserialize, serialize

__version__ = "0.1.0"

__all__ = [
    "ExponentialDecay",
    "serialize",
    "deserialize",
    "FORMATS", "get_format", "evaluate", "value", "PrecisionError", "__version__"]
