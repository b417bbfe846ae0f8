"""``expdecay.torch.ExponentialLR`` / ``StepLR`` as drop-ins for torch's classes
of those names: used alone they set the closed form correctly rounded (bits
from exact rationals, rounded by ``tests/support/arb_oracle.py``); composed with other
schedulers (compound use, ``ChainedScheduler``, ``SequentialLR``, built after
another) they follow torch's own classes, used here as the reference within
the tolerance of torch's own tests; checkpoints restore every attribute; bad
input is named.  Also the fixes to ``ExponentialDecayLR``."""

from __future__ import annotations

import io
import math
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from support.bits import require_peers

require_peers("torch", needed_by="the torch drop-ins")
import torch  # noqa: E402
import torch.optim.lr_scheduler as tl  # noqa: E402

import expdecay.torch as et  # noqa: E402
from support.arb_oracle import round_fraction  # noqa: E402

#: torch's own lr scheduler tests compare with atol=1e-5, rtol=0; the
#: composed schedules below are held to much tighter relative tolerances, per
#: group: the float64 group (a Python float lr) and the float32 tensor group.
RTOL = (1e-12, 1e-6)


def optimizer(lr32: Any = None) -> Any:
    """Two groups, as torch's tests use: a Python float lr and a float32 tensor lr."""
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [a]},
                            {"params": [b], "lr": torch.tensor(0.5 if lr32 is None else lr32)}],
                           lr=0.05)


def lrs(opt: Any) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


def closed(base: Any, gamma: float, e: int, fmt: str) -> float:
    """``base * gamma ** e`` correctly rounded in ``fmt``, from exact rationals."""
    return round_fraction(Fraction(base) * Fraction(gamma) ** e, fmt)


def base32(x: float) -> float:
    return float(np.float32(x))


def run(opt: Any, scheds: list[Any], n: int) -> list[list[float]]:
    seen = []
    for _ in range(n):
        seen.append(lrs(opt))
        opt.step()
        for s in scheds:
            s.step()
    return seen


# ---------------------------------------------------------------------------
# alone: the closed form, correctly rounded, bit for bit
# ---------------------------------------------------------------------------


def test_exponential_lr_alone_is_the_closed_form() -> None:
    opt = optimizer()
    sched = et.ExponentialLR(opt, gamma=0.9)
    seen = run(opt, [sched], 60)
    for k, (a, b) in enumerate(seen):
        assert a == closed(0.05, 0.9, k, "float64"), k
        assert b == closed(base32(0.5), 0.9, k, "float32"), k
    assert isinstance(opt.param_groups[1]["lr"], torch.Tensor)
    assert opt.param_groups[1]["lr"].dtype == torch.float32
    assert sched.get_last_lr()[0] == closed(0.05, 0.9, 60, "float64")


def test_step_lr_alone_is_the_closed_form() -> None:
    opt = optimizer(0.1)
    sched = et.StepLR(opt, step_size=3, gamma=0.1)
    seen = run(opt, [sched], 40)
    for k, (a, b) in enumerate(seen):
        assert a == closed(0.05, 0.1, k // 3, "float64"), k
        assert b == closed(base32(0.1), 0.1, k // 3, "float32"), k


def test_alone_it_is_closer_than_torch_running_product() -> None:
    """torch multiplies the rounded running value; the closed form does not
    accumulate: after 500 steps torch's value is off, expdecay's is exact."""
    mine, theirs = optimizer(), optimizer()
    a, b = et.ExponentialLR(mine, gamma=0.99), tl.ExponentialLR(theirs, gamma=0.99)
    run(mine, [a], 500)
    run(theirs, [b], 500)
    exact = closed(0.05, 0.99, 500, "float64")
    assert lrs(mine)[0] == exact
    assert lrs(theirs)[0] != exact
    assert math.isclose(lrs(theirs)[0], exact, rel_tol=1e-12)


def test_step_with_an_epoch_sets_the_closed_form() -> None:
    opt = optimizer()
    sched = et.ExponentialLR(opt, gamma=0.9)
    with pytest.warns(UserWarning, match="epoch"):
        sched.step(7)
    assert lrs(opt) == [closed(0.05, 0.9, 7, "float64"), closed(base32(0.5), 0.9, 7, "float32")]


def test_float32_tensor_lr_and_dtype() -> None:
    """A float32 lr tensor holds float32 values: by default the value is
    correctly rounded to float32 once; a float64 dtype is refused (it would be
    rounded a second time on the way into the tensor)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.1))
    with pytest.raises(ValueError, match="dtype"):
        et.ExponentialLR(opt, gamma=0.96, dtype="float64")
    sched = et.ExponentialLR(opt, gamma=0.96)
    for k in range(1, 30):
        opt.step()
        sched.step()
        assert float(opt.param_groups[0]["lr"]) == closed(base32(0.1), 0.96, k, "float32")


def test_narrower_dtype_on_a_float_lr() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = et.StepLR(opt, 2, 0.5, dtype="float16")
    got = run(opt, [sched], 6)
    assert [g[0] for g in got] == [closed(0.1, 0.5, k // 2, "float16") for k in range(6)]


# ---------------------------------------------------------------------------
# composed: torch's behaviour
# ---------------------------------------------------------------------------


def compare(build: Any, n: int = 20) -> list[list[float]]:
    """Run ``build(opt, module)`` with torch's classes and with expdecay's;
    the learning rates agree within RTOL at every step."""
    results = []
    for module in (tl, et):
        opt = optimizer()
        scheds = build(opt, module)
        results.append(run(opt, scheds, n))
    for k, (want, got) in enumerate(zip(*results, strict=True)):
        for w, g, rtol in zip(want, got, RTOL, strict=True):
            assert math.isclose(g, w, rel_tol=rtol, abs_tol=0.0), (k, want, got)
    return results[1]


def test_compound_step_and_multistep() -> None:
    compare(lambda o, m: [m.StepLR(o, 3, 0.1), tl.MultiStepLR(o, [2, 5, 9], 0.1)])


def test_compound_exponential_and_constant() -> None:
    compare(lambda o, m: [m.ExponentialLR(o, 0.9), tl.ConstantLR(o, factor=0.2, total_iters=4)])


def test_compound_step_and_exponential_both_expdecay() -> None:
    compare(lambda o, m: [m.StepLR(o, 3, 0.1), m.ExponentialLR(o, 0.9)])


def test_chained_scheduler() -> None:
    compare(lambda o, m: [tl.ChainedScheduler([m.ExponentialLR(o, 0.9),
                                              tl.ConstantLR(o, factor=0.2, total_iters=4),
                                              m.StepLR(o, 3, 0.1)])])


def test_built_after_constant_lr() -> None:
    """Built after ConstantLR(factor=0.1), the decay is of initial_lr (the
    group's lr at that moment is a tenth of it)."""
    got = compare(lambda o, m: [tl.ConstantLR(o, factor=0.1, total_iters=3),
                                m.ExponentialLR(o, 0.9)])
    assert math.isclose(got[5][0], 0.05 * 0.9**5, rel_tol=RTOL[0])


def test_sequential_lr_starts_from_initial_lr() -> None:
    """After the milestone the schedule is alone again: the closed form from
    initial_lr, bit for bit."""
    got = compare(lambda o, m: [tl.SequentialLR(o, [tl.ConstantLR(o, factor=0.1, total_iters=3),
                                                   m.ExponentialLR(o, 0.9)], milestones=[3])])
    for k in range(3, 20):
        assert got[k][0] == closed(0.05, 0.9, k - 3, "float64"), k
        assert got[k][1] == closed(base32(0.5), 0.9, k - 3, "float32"), k


def test_sequential_lr_of_two_expdecay_schedulers() -> None:
    compare(lambda o, m: [tl.SequentialLR(o, [m.ExponentialLR(o, 0.8), m.StepLR(o, 4, 0.1)],
                                         milestones=[3])])


def test_a_changed_lr_is_multiplied_as_torch_does() -> None:
    opt = optimizer()
    sched = et.ExponentialLR(opt, gamma=0.9)
    run(opt, [sched], 3)
    opt.param_groups[0]["lr"] = 0.3
    opt.step()
    sched.step()
    assert lrs(opt)[0] == 0.3 * 0.9  # torch's update: the current lr times gamma


# ---------------------------------------------------------------------------
# state: attributes, state_dict keys, checkpoints
# ---------------------------------------------------------------------------


def test_attributes_and_state_dict_keys_are_torchs() -> None:
    for name, args in (("ExponentialLR", (0.9,)), ("StepLR", (3, 0.1))):
        mine = getattr(et, name)(optimizer(), *args)
        theirs = getattr(tl, name)(optimizer(), *args)
        assert isinstance(mine, tl.LRScheduler)
        assert set(theirs.state_dict()) <= set(mine.state_dict())
        assert set(mine.state_dict()) - set(theirs.state_dict()) == {"dtype", "order"}
        for key in theirs.state_dict():
            if key != "base_lrs":
                assert mine.state_dict()[key] == theirs.state_dict()[key], (name, key)


def test_load_state_dict_restores_every_attribute() -> None:
    opt = optimizer()
    sched = et.StepLR(opt, step_size=3, gamma=0.1)
    run(opt, [sched], 10)
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    opt2 = optimizer()
    copy = et.StepLR(opt2, step_size=1, gamma=0.005, order="keras")
    copy.load_state_dict(torch.load(buf, weights_only=True))
    for key, value in vars(sched).items():
        if key != "optimizer":
            assert vars(copy)[key] == value, key
    assert (copy.gamma, copy.step_size, copy.order) == (0.1, 3, "exact")
    # the restored scheduler continues with the restored schedule
    opt2.load_state_dict(opt.state_dict())
    run(opt2, [copy], 3)
    assert lrs(opt2)[0] == closed(0.05, 0.1, 13 // 3, "float64")


def test_resume_with_last_epoch() -> None:
    opt = optimizer()
    sched = et.ExponentialLR(opt, gamma=0.9)
    run(opt, [sched], 4)
    opt2 = optimizer()
    opt2.load_state_dict(opt.state_dict())
    sched2 = et.ExponentialLR(opt2, gamma=0.9, last_epoch=3)
    assert sched2.last_epoch == 4
    assert lrs(opt2) == lrs(opt)
    run(opt2, [sched2], 2)
    assert lrs(opt2)[0] == closed(0.05, 0.9, 6, "float64")


def test_get_lr_outside_step_warns_as_torch() -> None:
    sched = et.ExponentialLR(optimizer(), gamma=0.9)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()


def test_no_warning_in_the_usual_loop() -> None:
    opt = optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = et.StepLR(opt, 3)
        run(opt, [sched], 5)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "error", "name"), [
    (lambda o: et.ExponentialLR(o, gamma=-0.5), ValueError, "gamma"),
    (lambda o: et.ExponentialLR(o, gamma=math.nan), ValueError, "gamma"),
    (lambda o: et.ExponentialLR(o, gamma="0.9"), TypeError, "gamma"),
    (lambda o: et.ExponentialLR(o, gamma=True), TypeError, "gamma"),
    (lambda o: et.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: et.StepLR(o, step_size=2.5), TypeError, "step_size"),
    (lambda o: et.StepLR(o, 3, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: et.StepLR(o, 3, last_epoch=1.0), TypeError, "last_epoch"),
    (lambda o: et.StepLR(o, 3, order="fast"), ValueError, "order"),
    (lambda o: et.StepLR(o, 3, dtype="int8"), ValueError, "int8"),
    (lambda o: et.ExponentialLR("sgd", 0.9), TypeError, "optimizer"),
])
def test_bad_arguments_are_named(build: Any, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        build(optimizer())


# ---------------------------------------------------------------------------
# ExponentialDecayLR
# ---------------------------------------------------------------------------


def test_exponential_decay_lr_refuses_a_narrower_lr_tensor() -> None:
    """A float64 schedule written into a float32 lr tensor was silently
    rounded to float32."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.1))
    with pytest.raises(ValueError, match="dtype"):
        et.ExponentialDecayLR(opt, 1000, 0.96, dtype="float64")


def test_exponential_decay_lr_load_restores_its_attributes() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = et.ExponentialDecayLR(opt, 1000, 0.96, True, dtype="float64")
    other = et.ExponentialDecayLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                                  10, 0.5)
    other.load_state_dict(sched.state_dict())
    assert (other.decay_steps, other.decay_rate, other.staircase, other.dtype) == \
        (1000, 0.96, True, "float64")
