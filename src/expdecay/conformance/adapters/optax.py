"""optax (``optax.exponential_decay``) on JAX, with or without x64.

optax has no dtype argument: its arithmetic runs in JAX's default float,
float32, or float64 when ``jax_enable_x64`` is on.  A case in another format
is therefore not applicable.  Steps are an int32/int64 count array as an
optax optimizer state holds it (or one Python number per call);
``count_dtype`` gives the count another dtype (optax's output dtype follows
the count's: a float32 count makes a float64 schedule float32).
"""

from __future__ import annotations

import numpy as np

from .base import Adapter, Params
from .keras import STEP_MODES, step_array

#: dtypes the step count may be given in (None: int32, or int64 with x64).
COUNT_DTYPES = (None, "int32", "int64", "float32", "float64")


class OptaxAdapter(Adapter):
    """``optax.exponential_decay(init_value, transition_steps, decay_rate, staircase=...)``."""

    def __init__(self, x64: bool = False, step_mode: str = "array",
                 count_dtype: str | None = None) -> None:
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be 'array' or 'scalar'; got {step_mode!r}")
        if count_dtype not in COUNT_DTYPES:
            raise ValueError(f"count_dtype must be one of {', '.join(map(str, COUNT_DTYPES))}; "
                             f"got {count_dtype!r}")
        self.count_dtype = count_dtype
        import jax

        jax.config.update("jax_enable_x64", bool(x64))
        import optax

        self.jax = jax
        self.optax = optax
        self.x64 = bool(x64)
        self.step_mode = step_mode
        self.vectorised = step_mode == "array"
        self.name = "optax" + ("[x64]" if x64 else "") + ("" if self.vectorised else "[scalar]") \
            + (f"[count={count_dtype}]" if count_dtype else "")
        self.version = f"optax {optax.__version__}, jax {jax.__version__}"

    def applicable(self, params: Params) -> str | None:
        native = "float64" if self.x64 else "float32"
        if params.dtype != native:
            return f"optax computes in JAX's default float ({native}); no dtype argument"
        return None

    def step_applicable(self, params: Params, step: int | float) -> str | None:
        int32 = not self.x64 or self.count_dtype == "int32"
        if int32 and isinstance(step, int) and not -2**31 <= step < 2**31:
            return "step outside int32, the count's integer type"
        if self.count_dtype is not None and self.count_dtype.startswith("int") and not (
                isinstance(step, int)):
            return f"a non-integer step is not an {self.count_dtype} count"
        return None

    def _evaluate(self, params: Params, steps: list[int | float]) -> np.ndarray:
        I, D, r = params.as_python()
        fn = self.optax.exponential_decay(I, D, r, staircase=params.staircase)
        if self.vectorised:
            arr = step_array(steps)
            if self.count_dtype is not None:
                arr = arr.astype(self.count_dtype)
            count = self.jax.numpy.asarray(arr)
            return np.asarray(fn(count), dtype=np.float64).ravel()
        return np.array([float(fn(s)) for s in steps])
