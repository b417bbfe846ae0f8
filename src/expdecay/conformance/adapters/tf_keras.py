"""tf.keras (the ``tf_keras`` package) on TensorFlow.

Same conventions as :mod:`expdecay.conformance.adapters.keras`: the dtype of
``initial_learning_rate`` decides the computation dtype; steps are an int64
array (float64 when a step is not an integer) or one Python number per call.
"""

from __future__ import annotations

import os

import numpy as np

from .base import Adapter, Params
from .keras import STEP_MODES, initial_value, step_array, to_numpy_values


class TfKerasAdapter(Adapter):
    """``tf_keras.optimizers.schedules.ExponentialDecay``."""

    def __init__(self, step_mode: str = "array") -> None:
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 'array' or 'scalar'; got {step_mode!r}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        import tf_keras

        self.tf = tf
        self.tf_keras = tf_keras
        self.step_mode = step_mode
        self.vectorised = step_mode == "array"
        self.name = "tf-keras" + ("" if self.vectorised else "[scalar]")
        self.version = f"tf_keras {tf_keras.__version__}, tensorflow {tf.__version__}"

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        sched = self.tf_keras.optimizers.schedules.ExponentialDecay(
            initial_value(params, I), D, r, staircase=params.staircase)
        if self.vectorised:
            return to_numpy_values(sched(step_array(steps))).astype(np.float64)
        return np.array([float(to_numpy_values(sched(s))) for s in steps])
