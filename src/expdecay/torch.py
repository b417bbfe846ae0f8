"""The verified schedule as a PyTorch learning-rate scheduler.

::

    import torch, expdecay.torch
    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    sched = expdecay.torch.ExponentialDecayLR(opt, 1000, 0.96)  # then sched.step() per step

Torch runs its scheduler on the host, in Python, between steps, so the value
is expdecay's own (``expdecay.ExponentialDecay``, the keras order by default)
for ``last_epoch``, computed on the host and written into the parameter
groups: into the tensor in place when the optimizer was built with a tensor
learning rate (a ``torch.compile``'d step then sees a new value without
recompiling), as a Python float otherwise.  Either way the optimizer applies
exactly that value: a float of the format is exact as a Python float and as a
tensor of the same or a wider format.
"""

from __future__ import annotations

from typing import Any

try:
    import torch
    from torch.optim.lr_scheduler import LRScheduler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.torch needs PyTorch: pip install 'expdecay[peers]'") from exc

import numpy as np

from ._tables import host_values
from .schedule import ExponentialDecay

__all__ = ["ExponentialDecayLR"]

_ORDERS = ("keras", "exact")


class ExponentialDecayLR(LRScheduler):
    """``lr = initial * decay_rate ** (last_epoch / decay_steps)`` per group.

    ``initial_learning_rate`` is each group's learning rate when the scheduler
    is created, unless given.  ``dtype`` (default float32, Keras's floatx) and
    ``order`` (``"keras"`` or ``"exact"``) as in :class:`expdecay.ExponentialDecay`.
    ``state_dict()`` holds only plain values (it loads with
    ``torch.load(weights_only=True)``)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        decay_steps: Any,
        decay_rate: Any,
        staircase: bool = False,
        *,
        initial_learning_rate: Any = None,
        dtype: Any = "float32",
        order: str = "keras",
        last_epoch: int = -1,
    ) -> None:
        if order not in _ORDERS:
            raise ValueError(f"order must be 'keras' or 'exact'; got {order!r}")
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase
        self.dtype, self.order = dtype, order
        self.initial_learning_rate = initial_learning_rate
        inits = []
        for group in optimizer.param_groups:
            if initial_learning_rate is not None:
                inits.append(initial_learning_rate)
            else:
                lr = group.get("initial_lr", group["lr"]) if last_epoch != -1 else group["lr"]
                inits.append(float(lr) if isinstance(lr, torch.Tensor) else lr)
        self._schedules = [ExponentialDecay(i, decay_steps, decay_rate, staircase, dtype=dtype)
                           for i in inits]
        self._window_start: int | None = None
        self._window: list[np.ndarray] = []
        super().__init__(optimizer, last_epoch)

    #: Steps evaluated at once on the host: one vectorised call per window
    #: instead of one per step (each call has a fixed cost of about 1 ms).
    WINDOW = 4096

    def value(self, step: int) -> list[float]:
        """The learning rate of every group at ``step`` (exact Python floats)."""
        step = int(step)
        start = self._window_start
        if start is None or not start <= step < start + self.WINDOW:
            steps = np.arange(step, step + self.WINDOW, dtype=np.int64)
            self._window = [host_values(s, self.order, steps) for s in self._schedules]
            self._window_start = start = step
        return [float(w[step - start]) for w in self._window]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return self.value(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self.value(self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the counter, the last values and the configuration
        (each group's schedule in expdecay's own config form)."""
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": [float(x) for x in self._last_lr],
            "order": self.order,
            "schedules": [s.get_config() for s in self._schedules],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counter and the schedules from :meth:`state_dict`."""
        order = state_dict["order"]
        if order not in _ORDERS:
            raise ValueError(f"order must be 'keras' or 'exact'; got {order!r}")
        schedules = [ExponentialDecay.from_config(dict(c)) for c in state_dict["schedules"]]
        if len(schedules) != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict has {len(schedules)} schedules for "
                             f"{len(self.optimizer.param_groups)} parameter groups")
        self.order, self._schedules = order, schedules
        self._window_start = None
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self._last_lr = [float(x) for x in state_dict["_last_lr"]]
