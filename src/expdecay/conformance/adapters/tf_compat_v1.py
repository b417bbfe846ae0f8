"""TensorFlow 1's ``tf.compat.v1.train.exponential_decay``, still shipped.

``tf.compat.v1.train.exponential_decay(learning_rate, global_step,
decay_steps, decay_rate, staircase=...)`` builds TensorFlow's internal copy of
the Keras schedule (``tensorflow.python.keras``, not the ``tf_keras``
package) and, in eager mode, returns a function of no argument that
evaluates it at ``global_step``.  The adapter passes the group's steps as
``global_step`` (an int64 array, float64 when a step is not an integer; one
Python number per call with ``step_mode="scalar"``) and calls that function.
The dtype follows the Keras rule, as in
:mod:`expdecay.conformance.adapters.keras`: a float32 case passes a Python
float, the other formats a 0-d numpy array of the format.  ``staircase`` is
passed as given (TensorFlow validates none of the arguments).
"""

from __future__ import annotations

import os

import numpy as np

from .base import Adapter, Params
from .keras import STEP_MODES, initial_value, step_array, to_numpy_values


class TfCompatV1Adapter(Adapter):
    """``tf.compat.v1.train.exponential_decay`` in eager mode."""

    def __init__(self, step_mode: str = "array") -> None:
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 'array' or 'scalar'; got {step_mode!r}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        self.tf = tf
        self.step_mode = step_mode
        self.vectorised = step_mode == "array"
        self.name = "tf-compat-v1" + ("" if self.vectorised else "[scalar]")
        self.version = f"tensorflow {tf.__version__}"

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        decay = self.tf.compat.v1.train.exponential_decay

        def at(step: object) -> np.ndarray:
            fn = decay(initial_value(params, I), step, D, r, staircase=params.staircase)
            return to_numpy_values(fn()).astype(np.float64)

        if self.vectorised:
            return at(step_array(steps))
        return np.array([float(at(s)) for s in steps])
