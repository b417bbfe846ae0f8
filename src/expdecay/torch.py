"""The verified schedule as PyTorch learning-rate schedulers.

::

    import torch, expdecay.torch
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = expdecay.torch.ExponentialLR(opt, gamma=0.96)   # or StepLR(opt, 30, 0.1)

``ExponentialLR`` and ``StepLR`` take the signatures of torch's classes of
those names (``torch.optim.lr_scheduler``) and behave as they do, composition
with other schedulers included; used alone, they set each step's closed-form
value correctly rounded instead of torch's running product (see
``spec/training.md`` for which bits are guaranteed in which use).

``ExponentialDecayLR`` is Keras's schedule (``decay_steps``, ``staircase``,
the keras order by default) as a torch scheduler::

    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    sched = expdecay.torch.ExponentialDecayLR(opt, 1000, 0.96)  # then sched.step() per step

Torch runs its scheduler on the host, in Python, between steps, so the value
is expdecay's own (``expdecay.ExponentialDecay``, the keras order by default)
for ``last_epoch``, computed on the host and written into the parameter
groups: into the tensor in place when the optimizer was built with a tensor
learning rate (a ``torch.compile``'d step then sees a new value without
recompiling), as a Python float otherwise.  Either way the optimizer applies
exactly that value: a float of the format is exact as a Python float and as a
tensor of the same or a wider format (a narrower tensor is refused).
"""

from __future__ import annotations

import math
import numbers
import warnings
import weakref
from typing import Any

try:
    import torch
    from torch.optim.lr_scheduler import LRScheduler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("expdecay.torch needs PyTorch: pip install 'expdecay[peers]'") from exc

import numpy as np

from .floats import get_format
from .frameworks.tables import host_values
from .orders import Order, check_order
from .schedule import ExponentialDecay

__all__ = ["ExponentialDecayLR", "ExponentialLR", "StepLR"]


class ExponentialDecayLR(LRScheduler):  # type: ignore[misc]
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
        order: Order = "keras",
        last_epoch: int = -1,
    ) -> None:
        order = check_order(order)
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
        for index, group in enumerate(optimizer.param_groups):
            _group_format(group["lr"], self._schedules[index].format.name, index)
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

    def get_lr(self) -> list[float]:
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
        order = check_order(state_dict["order"], "state_dict['order']")
        schedules = [ExponentialDecay.from_config(dict(c)) for c in state_dict["schedules"]]
        if len(schedules) != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict has {len(schedules)} schedules for "
                             f"{len(self.optimizer.param_groups)} parameter groups")
        self.order, self._schedules = order, schedules
        if schedules:  # the public attributes follow the restored schedules
            first = schedules[0]
            self.decay_steps, self.decay_rate = first.decay_steps, first.decay_rate
            self.staircase, self.dtype = first.staircase, first.format.name
        self._window_start = None
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self._last_lr = [float(x) for x in state_dict["_last_lr"]]


# ---------------------------------------------------------------------------
# Drop-ins for torch.optim.lr_scheduler.ExponentialLR and StepLR
# ---------------------------------------------------------------------------

#: Formats a learning-rate tensor of each torch dtype can hold exactly.
_HOLDS = {
    torch.float64: ("float64", "float32", "float16", "bfloat16"),
    torch.float32: ("float32", "float16", "bfloat16"),
    torch.float16: ("float16",),
    torch.bfloat16: ("bfloat16",),
}
_TORCH_FORMAT = {torch.float64: "float64", torch.float32: "float32",
                 torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _warn_get_lr(scheduler: LRScheduler) -> None:
    """torch's warning for ``get_lr()`` called outside ``step()``."""
    if not scheduler._get_lr_called_within_step:
        warnings.warn("To get the last learning rate computed by the scheduler, "
                      "please use `get_last_lr()`.", UserWarning, stacklevel=3)


def _real_arg(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating,
                                                                      np.integer)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be finite and >= 0; got {value!r}")
    return x


def _int_arg(value: Any, name: str, least: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if int(value) < least:
        raise ValueError(f"{name} must be >= {least}; got {value!r}")
    return int(value)


def _lr_value(lr: Any) -> float:
    """The exact value of a group's learning rate (a number or a 0-d tensor)."""
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def _group_format(lr: Any, dtype: str | None, index: int) -> str:
    """The format of group ``index``'s values: ``dtype`` when given (it must be
    exact in the group's tensor), else the tensor's dtype, else float64."""
    if isinstance(lr, torch.Tensor):
        if lr.dtype not in _HOLDS:
            raise TypeError(f"param_groups[{index}]['lr'] must be a float tensor or a number; "
                            f"got a tensor of dtype {lr.dtype}")
        if dtype is None:
            return _TORCH_FORMAT[lr.dtype]
        if dtype not in _HOLDS[lr.dtype]:
            raise ValueError(f"dtype={dtype!r} values are not exact in param_groups[{index}]"
                             f"['lr'], a {lr.dtype} tensor (they would be rounded again); give "
                             f"dtype={_TORCH_FORMAT[lr.dtype]!r} or None, or a wider lr tensor")
        return dtype
    return "float64" if dtype is None else dtype


class _Values:
    """Closed-form values of each group, evaluated WINDOW steps at a time."""

    WINDOW = 4096

    def __init__(self, key: tuple[Any, ...], schedules: list[ExponentialDecay], order: Order):
        self.key, self.schedules, self.order = key, schedules, order
        self.start: int | None = None
        self.windows: list[np.ndarray] = []

    def at(self, step: int) -> list[float]:
        start = self.start
        if start is None or not start <= step < start + self.WINDOW:
            steps = np.arange(step, step + self.WINDOW, dtype=np.int64)
            self.windows = [host_values(s, self.order, steps) for s in self.schedules]
            self.start = start = step
        return [float(w[step - start]) for w in self.windows]


#: scheduler -> its closed-form values (kept out of the scheduler's __dict__,
#: which torch's state_dict() copies and its tests compare).
_VALUES: weakref.WeakKeyDictionary[Any, _Values] = weakref.WeakKeyDictionary()


class _ClosedFormLR(LRScheduler):  # type: ignore[misc]
    """Common part of :class:`ExponentialLR` and :class:`StepLR`.

    Each step moves ``last_epoch`` from ``k - 1`` to ``k``.  When a group's
    ``lr`` still holds this scheduler's value for ``k - 1`` (bit for bit:
    nothing else changed it), the group gets the closed form for ``k``,
    ``initial_lr * gamma ** e(k)`` correctly rounded in the group's format.
    Otherwise (another scheduler or the user changed it) the update is
    torch's: the current ``lr`` times ``gamma`` when torch's class would
    decay at ``k``, else unchanged."""

    gamma: float
    dtype: str | None
    order: Order

    def _setup(self, optimizer: Any, dtype: Any, order: Any, last_epoch: Any) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer; got "
                            f"{type(optimizer).__name__}")
        order = check_order(order)
        _int_arg(last_epoch, "last_epoch", -1)
        name = None if dtype is None else get_format(dtype).name
        key = "lr" if last_epoch == -1 else "initial_lr"
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get(key, group["lr"])
            _group_format(lr, name, i)
            if not math.isfinite(_lr_value(lr)):
                raise ValueError(f"param_groups[{i}]['{key}'] must be finite; got {lr!r}")
        self.dtype, self.order = name, order

    # the schedule e(k) of the subclass -------------------------------------------------
    def _decay_steps(self) -> int:
        raise NotImplementedError

    def _decays_at(self, k: int) -> bool:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------
    def _values(self) -> _Values:
        # cheap to compare at every step: a base tensor is known by its
        # identity and its version counter (bumped by any in-place change)
        key = (self.dtype, self.order, self.gamma, self._decay_steps(),
               tuple((id(b), b._version) if isinstance(b, torch.Tensor) else b
                     for b in self.base_lrs))
        got = _VALUES.get(self)
        if got is None or got.key != key:
            fmts = tuple(_group_format(b, self.dtype, i) for i, b in enumerate(self.base_lrs))
            bases = tuple(_lr_value(b) for b in self.base_lrs)
            # staircase: the exponent is an integer, floor(k / D); for D = 1 it
            # is k either way, and the staircase path of the evaluator is faster
            schedules = [ExponentialDecay(b, self._decay_steps(), float(self.gamma), True,
                                          dtype=f) for b, f in zip(bases, fmts, strict=True)]
            got = _VALUES[self] = _Values(key, schedules, self.order)
        return got

    def closed_form(self, step: int) -> list[float]:
        """Each group's closed-form learning rate at ``step`` (exact Python floats
        of the group's format)."""
        return self._values().at(int(step))

    def _closed_pair(self, step: int) -> tuple[list[float], list[float]]:
        """:meth:`closed_form` at ``step - 1`` and ``step``."""
        values = self._values()
        return values.at(step - 1), values.at(step)

    @staticmethod
    def _like(lr: Any, value: float) -> Any:
        return torch.tensor(value, dtype=lr.dtype, device=lr.device) \
            if isinstance(lr, torch.Tensor) else value

    def get_lr(self) -> list[Any]:
        """The learning rates for ``last_epoch`` (already advanced by ``step()``)."""
        _warn_get_lr(self)
        k = self.last_epoch
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self._is_initial and k == 0:
            # a new schedule: the group starts at initial_lr in its format
            # (the same value unless dtype is narrower than the lr)
            start = self.closed_form(0)
            return [self._like(lr, v) if _lr_value(lr) == _lr_value(b) else _clone(lr)
                    for lr, v, b in zip(lrs, start, self.base_lrs, strict=True)]
        if (self._is_initial and self._keeps_initial) or not self._decays_at(k):
            return [_clone(lr) for lr in lrs]
        before, now = self._closed_pair(k)
        return [self._like(lr, v) if _lr_value(lr) == b else lr * self.gamma
                for lr, b, v in zip(lrs, before, now, strict=True)]

    _keeps_initial = False

    def _get_closed_form_lr(self) -> list[Any]:
        return [self._like(b, v) for b, v in
                zip(self.base_lrs, self.closed_form(self.last_epoch), strict=True)]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore every attribute saved by :meth:`state_dict` (``gamma``,
        ``step_size``, ``base_lrs``, the counters, ``dtype``, ``order``, ...)."""
        super().load_state_dict(state_dict)
        _real_arg(self.gamma, "gamma")
        check_order(self.order, "state_dict['order']")
        _VALUES.pop(self, None)


def _clone(lr: Any) -> Any:
    return lr.clone() if isinstance(lr, torch.Tensor) else lr


class ExponentialLR(_ClosedFormLR):
    """``torch.optim.lr_scheduler.ExponentialLR`` with expdecay's bits.

    Alone on its optimizer, ``last_epoch = k`` sets each group's ``lr`` to
    ``initial_lr * gamma ** k`` correctly rounded (order ``"exact"`` by
    default; ``"keras"`` rounds the inputs and each operation) in the group's
    format: ``dtype`` if given, else the dtype of the group's lr tensor, else
    float64 (a Python float lr).  ``dtype`` must be exact in the lr tensor
    (``ValueError`` otherwise: a float64 value written into a float32 tensor
    would be rounded a second time).  Composed with other schedulers it
    multiplies the current ``lr`` by ``gamma`` as torch's class does; see
    ``spec/training.md``."""

    _keeps_initial = True

    def __init__(self, optimizer: torch.optim.Optimizer, gamma: float, last_epoch: int = -1,
                 *, dtype: Any = None, order: Order = "exact") -> None:
        self._setup(optimizer, dtype, order, last_epoch)
        _real_arg(gamma, "gamma")
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _decay_steps(self) -> int:
        return 1

    def _decays_at(self, k: int) -> bool:
        return True


class StepLR(_ClosedFormLR):
    """``torch.optim.lr_scheduler.StepLR`` with expdecay's bits.

    Alone on its optimizer, ``last_epoch = k`` sets each group's ``lr`` to
    ``initial_lr * gamma ** (k // step_size)`` correctly rounded; formats,
    ``dtype``, ``order`` and composition as for :class:`ExponentialLR`."""

    def __init__(self, optimizer: torch.optim.Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1, *, dtype: Any = None, order: Order = "exact") -> None:
        self._setup(optimizer, dtype, order, last_epoch)
        _int_arg(step_size, "step_size", 1)
        _real_arg(gamma, "gamma")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _decay_steps(self) -> int:
        return int(self.step_size)

    def _decays_at(self, k: int) -> bool:
        return k != 0 and k % int(self.step_size) == 0

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        _int_arg(self.step_size, "step_size", 1)
