"""spec/kernels.md section 2 is the one statement of what
:func:`expdecay.fast.evaluate_array` takes as a schedule parameter: this test
reads its table and checks the code against it both ways (every kind marked
accepted is accepted, with the oracle's bits; every kind marked refused is
refused with the error the table names, naming the argument)."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from expdecay import oracle
from expdecay.fast import evaluate_array
from expdecay.floats import get_format, to_bits
from support.paths import ROOT

SPEC = ROOT / "spec" / "kernels.md"
HEADER = "| parameter kind | example | accepted |"
PARAMS = ("initial_learning_rate", "decay_steps", "decay_rate")
BASE: dict[str, Any] = {"initial_learning_rate": 0.1, "decay_steps": 1000, "decay_rate": 0.96}
STEPS = np.array([0, 2500], np.int64)


def spec_rows() -> list[tuple[str, str, str | None]]:
    """``(kind, example, error)`` for every row of the table; ``error`` is None
    for an accepted kind, else the exception class name the table gives."""
    lines = SPEC.read_text().splitlines()
    start = lines.index(HEADER) + 2  # the header, then the separator row
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        kind, example, verdict = (c.strip() for c in line.strip("|").split("|"))
        m = re.fullmatch(r"`(.+)`", example)
        assert m, line
        if verdict == "yes":
            rows.append((kind, m.group(1), None))
        else:
            err = re.fullmatch(r"no: `(\w+)`", verdict)
            assert err, line
            rows.append((kind, m.group(1), err.group(1)))
    return rows


ROWS = spec_rows()


def test_the_table_covers_the_kinds_that_drifted() -> None:
    """Lists and tuples (which an earlier text accepted and the code refused),
    numpy arrays and plain numbers are all stated."""
    kinds = {kind for kind, _, _ in ROWS}
    assert {"list", "tuple", "numpy array", "int", "float"} <= kinds
    assert len(ROWS) >= 10


def _value(example: str) -> Any:
    return eval(example, {"np": np, "Fraction": Fraction, "Decimal": Decimal})  # noqa: S307


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize(("kind", "example", "error"), ROWS, ids=[r[0] for r in ROWS])
def test_code_accepts_what_the_spec_accepts(param: str, kind: str, example: str,
                                            error: str | None) -> None:
    args = dict(BASE, **{param: _value(example)})
    call = (args["initial_learning_rate"], args["decay_steps"], args["decay_rate"], STEPS)
    if error is not None:
        with pytest.raises(Exception) as info:  # noqa: PT011 - the class is checked below
            evaluate_array(*call, dtype="float64", order="exact")
        assert type(info.value).__name__ == error, info.value
        assert param in str(info.value)
        return
    got = evaluate_array(*call, dtype="float64", order="exact")
    # The reference: the oracle, one element at a time, on the parameter's
    # element (an array parameter broadcasts against the steps).
    shape = np.broadcast_shapes(*(np.shape(v) for v in call))
    assert got.shape == shape
    flat = [np.broadcast_to(np.asarray(v, dtype=object), shape).reshape(-1) for v in call]
    for i, (I, D, r, s) in enumerate(zip(*flat, strict=True)):
        want = oracle.evaluate(I, D, r, int(s), dtype="float64", order="exact")
        f64 = get_format("float64")
        assert to_bits(float(got.reshape(-1)[i]), f64) == to_bits(float(want), f64)
