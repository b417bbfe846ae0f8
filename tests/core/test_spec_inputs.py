"""What ``spec/exponential_decay.md`` §3 says the inputs are is what the code
takes, both ways.

The test reads the spec: the rows of the table of §3.1 (each input kind must
have samples here, and every kind sampled here must be a row there), the
examples written in its cells, the spellings of the special values, the
limits of §3.2 and the rows of §3.3.  Each sample's exact value is written
here by hand as a Fraction (or a signed zero, infinity or NaN).  Every kind
the spec does not list is refused with ``TypeError``, every string in none
of its forms with ``ValueError``, by :func:`expdecay.inputs.to_exact` and by
the oracle.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from expdecay import inputs, oracle
from expdecay.inputs import to_exact
from expdecay.resources import spec_dir

SPEC = (spec_dir() / "exponential_decay.md").read_text(encoding="utf-8")
NAN, INF = math.nan, math.inf


def section(number: str) -> str:
    """The text of section ``number`` (``"3.1"``) up to the next heading."""
    m = re.search(rf"^#+ {re.escape(number)}\.? .*?$(.*?)(?=^#+ )", SPEC, re.M | re.S)
    assert m, number
    return m.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # the header


def same(a: Any, b: Any) -> bool:
    """Equal exact values, signed zeros and NaN told apart."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                      math.copysign(1, b))
    return type(a) is type(b) and a == b


class IntSub(int):
    pass


class FloatSub(float):
    pass


#: Per row of the table of §3.1 (its first cell, as written): samples and the
#: exact value each denotes, derived by hand.
ACCEPTED: dict[str, list[tuple[Any, Any]]] = {
    "`int` (not `bool`)": [(7, Fraction(7)), (-3, Fraction(-3)), (0, 0.0),
                           (10**40, Fraction(10**40)), (IntSub(5), Fraction(5))],
    "`float`": [(0.1, Fraction(3602879701896397, 2**55)), (-0.0, -0.0), (0.0, 0.0),
                (INF, INF), (-INF, -INF), (NAN, NAN), (5e-324, Fraction(1, 2**1074)),
                (FloatSub(0.5), Fraction(1, 2))],
    "`fractions.Fraction`": [(Fraction(1, 3), Fraction(1, 3)), (Fraction(0), 0.0),
                             (Fraction(-7, 2), Fraction(-7, 2))],
    "`decimal.Decimal`": [(Decimal("0.96"), Fraction(24, 25)), (Decimal("NaN"), NAN),
                          (Decimal("-Infinity"), -INF), (Decimal("Infinity"), INF),
                          (Decimal("-0.00"), -0.0), (Decimal("1E+3"), Fraction(1000))],
    "`str`, decimal literal": [("0.96", Fraction(24, 25)), ("1e-3", Fraction(1, 1000)),
                               ("1_000.5", Fraction(2001, 2)), (".5", Fraction(1, 2)),
                               ("5.", Fraction(5)), ("+2E2", Fraction(200)),
                               ("-0", -0.0), ("0", 0.0), ("  0.25\n", Fraction(1, 4))],
    "`str`, hex float": [("0x1.8p-1", Fraction(3, 4)), ("-0X1P3", Fraction(-8)),
                         ("0x.8", Fraction(1, 2)), ("0x10", Fraction(16)),
                         ("0x1.000000000000000000001p0", 1 + Fraction(1, 2**84)),
                         ("-0x0p0", -0.0)],
    "`str`, ratio `\"a/b\"`": [("8/27", Fraction(8, 27)), ("-6/4", Fraction(-3, 2)),
                               (" 1 / 3 ", Fraction(1, 3)), ("0/5", 0.0)],
    "`str` `\"nan\"`, `\"inf\"`, `\"infinity\"`, each with an optional sign, in any case": [
        ("nan", NAN), ("-NaN", NAN), ("+nan", NAN), ("inf", INF), ("+Inf", INF),
        ("-inf", -INF), ("Infinity", INF), ("-INFINITY", -INF), ("+infinity", INF)],
    "numpy integer scalar": [(np.int8(-5), Fraction(-5)), (np.uint64(2**64 - 1),
                                                             Fraction(2**64 - 1)),
                             (np.int64(0), 0.0)],
    "numpy floating scalar (`ml_dtypes.bfloat16` included)": [
        (np.float32(0.1), Fraction(13421773, 2**27)), (np.float16(-0.0), -0.0),
        (ml_dtypes.bfloat16(0.1), Fraction(205, 2**11)), (np.float64(INF), INF),
        (np.float32(NAN), NAN), (np.longdouble(0.5), Fraction(1, 2))],
    "0-d numpy array of such a scalar type": [
        (np.array(0.5, np.float32), Fraction(1, 2)), (np.array(3, np.int16), Fraction(3)),
        (np.array(np.array(2.0), dtype=object), Fraction(2))],
}


def test_every_kind_of_the_spec_is_sampled_here_and_no_other() -> None:
    rows = [r[0] for r in table_rows(section("3.1"))]
    assert len(rows) == len(set(rows))
    assert sorted(rows) == sorted(ACCEPTED)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_each_kind_denotes_its_exact_value(kind: str) -> None:
    for x, want in ACCEPTED[kind]:
        assert same(to_exact(x, "x"), want), (kind, x)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_the_oracle_takes_each_kind_in_every_position(kind: str) -> None:
    """The oracle gives, for each sample, what it gives for its exact value
    (as a Fraction or float, the kinds of the table's first rows)."""
    for x, want in ACCEPTED[kind]:
        args = [Fraction(1, 2), 10, Fraction(1, 2), 3]
        for pos in (0, 2, 3):  # I, r, s take any value
            a = list(args)
            a[pos], ref = x, list(args)
            ref[pos] = want
            got = oracle.evaluate(*a, dtype="float32")
            expect = oracle.evaluate(*ref, dtype="float32")
            assert same(float(got), float(expect)), (kind, x, pos)
        if isinstance(want, Fraction) and want > 0:  # D: finite and > 0 (§3.3)
            got = oracle.evaluate(0.5, x, 0.5, 3, dtype="float32")
            assert same(float(got), float(oracle.evaluate(0.5, want, 0.5, 3,
                                                          dtype="float32")))


def test_the_examples_written_in_the_table_are_what_the_code_reads() -> None:
    """``"0.96"` = 24/25``, ``"0x1.8p-1"` = 3/4``, ``"8/27"``..., read from the spec."""
    text = section("3.1")
    pairs = re.findall(r'`"([^"`]+)"` = (\d+)/(\d+)', text)
    pairs += [(t, n, "1") for t, n in re.findall(r'`"([^"`]+)"` = (\d+)\b(?!/)', text)]
    float_pairs = re.findall(r"\(([0-9.]+) is (\d+)/2\*\*(\d+)\)", text)
    assert len(pairs) >= 4 and float_pairs
    for t, n, d in pairs:
        assert to_exact(t) == Fraction(int(n), int(d)), t
    for f, n, e in float_pairs:
        assert to_exact(float(f)) == Fraction(int(n), 2 ** int(e))
    ratio = re.search(r'ratio `"a/b"`.*?`"(\d+)/(\d+)"`', text)
    assert ratio and to_exact(f"{ratio[1]}/{ratio[2]}") == Fraction(int(ratio[1]),
                                                                    int(ratio[2]))


def test_the_special_spellings_of_the_spec_and_only_they() -> None:
    row = next(r for r in table_rows(section("3.1")) if '"nan"' in r[0])
    words = re.findall(r'`"([a-z]+)"`', row[0])
    assert words == ["nan", "inf", "infinity"]
    for w in words:
        for spelled in (w, w.upper(), w.capitalize(), "+" + w, "-" + w):
            v = to_exact(spelled)
            assert isinstance(v, float) and not math.isfinite(v), spelled
            if w != "nan":
                assert v == (-INF if spelled.startswith("-") else INF)
    for near_miss in ("infinit", "nan1", "nann", "in f", "+-inf", "snan", "Inf1", "∞"):
        with pytest.raises(ValueError, match="must be a number"):
            to_exact(near_miss)


# ---------------------------------------------------------------------------
# Refused: §3.2, and everything the table does not list
# ---------------------------------------------------------------------------

#: Kinds outside the table of §3.1: TypeError (§3.2, "every type not in §3.1").
NOT_LISTED: list[Any] = [
    True, False, np.bool_(True), None, 1j, np.complex64(1), np.array(1 + 0j), [1], (1,),
    {1}, {"a": 1}, b"1", bytearray(b"1"), object(), np.str_("1"), np.bytes_(b"1"),
    np.datetime64("2020-01-01"), np.timedelta64(3, "s"), np.void(b"\x00"),
    np.array([1.0]), np.array([[1]]), np.array("1"), np.array(True), range(1),
    np.array(None, dtype=object),
]


@pytest.mark.parametrize("x", NOT_LISTED, ids=lambda x: type(x).__name__)
def test_kinds_the_spec_does_not_list_are_type_errors(x: Any) -> None:
    with pytest.raises(TypeError, match="initial_learning_rate"):
        to_exact(x, "initial_learning_rate")
    for pos, name in enumerate(("initial_learning_rate", "decay_steps", "decay_rate", "step")):
        args: list[Any] = [0.5, 10, 0.5, 3]
        args[pos] = x
        with pytest.raises(TypeError, match=name):
            oracle.evaluate(*args)


#: Strings in none of the forms of §3.1: ValueError.
NOT_A_FORM = ["", " ", "0.1.2", "1e", "e5", "0x", "0xg", "0x1.8p", "1/2/3", "1/-2", "1.5/2",
              "--1", "+-1", "0b101", "0o7", "1j", "1 000", "1__0", "_1", "1_", "1/0",
              "0x1p1.5", "nan0", "one", "1,5", "0x-1"]


@pytest.mark.parametrize("text", NOT_A_FORM)
def test_strings_in_no_form_of_the_spec_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="step must be a number; got the string"):
        to_exact(text, "step")
    with pytest.raises(ValueError, match="decay_rate"):
        oracle.evaluate(0.5, 10, text, 3)


def test_the_limits_of_the_spec_are_the_code_s() -> None:
    text = " ".join(section("3.2").split())
    chars = re.search(r"string longer than ([\d,]+) characters", text)
    dec = re.search(r"exponent is beyond 10\*\*±(\d+)", text)
    hexa = re.search(r"a hex float: 2\*\*±(\d+)", text)
    deep = re.search(r"more than (\d+) deep", text)
    assert chars and dec and hexa and deep
    n_chars, n_dec, n_hex, n_deep = (int(m[1].replace(",", "")) for m in (chars, dec, hexa,
                                                                          deep))
    assert (inputs.MAX_INPUT_CHARS, inputs.MAX_DECIMAL_EXPONENT, inputs.MAX_BINARY_EXPONENT,
            inputs.MAX_NESTING) == (n_chars, n_dec, n_hex, n_deep)
    # at each limit: taken; one beyond: ValueError (TypeError for the nesting)
    assert to_exact("7" * n_chars) == (10**n_chars - 1) // 9 * 7  # 77...7, n_chars digits
    with pytest.raises(ValueError, match=f"longer than {n_chars} characters"):
        to_exact("7" * (n_chars + 1))
    assert to_exact(f"1e-{n_dec}") == Fraction(1, 10**n_dec)
    assert to_exact(Decimal(f"1e{n_dec}")) == 10**n_dec
    for bad in (f"1e{n_dec + 1}", f"1e-{n_dec + 1}", Decimal(f"1e{n_dec + 1}")):
        with pytest.raises(ValueError, match=f"beyond 10\\*\\*\\+-{n_dec}"):
            to_exact(bad)
    assert to_exact(f"0x1p{n_hex}") == 2**n_hex
    assert to_exact(f"0x1p-{n_hex}") == Fraction(1, 2**n_hex)
    for bad in (f"0x1p{n_hex + 1}", f"0x1p-{n_hex + 1}", f"-0x1p+{n_hex + 3}"):
        with pytest.raises(ValueError, match=f"beyond 2\\*\\*\\+-{n_hex}"):
            to_exact(bad)
    x: Any = np.array(1.5)
    for _ in range(n_deep - 1):
        box = np.empty((), dtype=object)
        box[()] = x
        x = box
    assert to_exact(x) == Fraction(3, 2)  # the float array inside n_deep - 1 boxes
    box = np.empty((), dtype=object)
    box[()] = x
    with pytest.raises(TypeError, match=f"nested more than {n_deep} deep"):
        to_exact(box)


# ---------------------------------------------------------------------------
# §3.3: the other arguments
# ---------------------------------------------------------------------------

#: Per argument of §3.3: accepted values, and refused ones with their exception.
OTHER_ARGUMENTS: dict[str, tuple[list[Any], list[tuple[Any, type[Exception]]]]] = {
    "decay_steps": ([1, 0.5, "1e9", Fraction(1, 3)],
                    [(NAN, ValueError), (INF, ValueError), (-INF, ValueError),
                     (0, ValueError), (-0.0, ValueError), (-1, ValueError)]),
    "staircase": ([True, False, np.bool_(True)],
                  [("False", TypeError), (0, TypeError), (1, TypeError), (None, TypeError)]),
    "dtype": (["float16", "bfloat16", np.float32, np.dtype("float64"), ml_dtypes.bfloat16],
              [("float8", ValueError), (np.int32, ValueError), (object(), TypeError)]),
    "order": (["exact", "keras"],
              [("Keras", ValueError), ("both", ValueError), (1, TypeError),
               (None, TypeError)]),
}


def test_the_rows_of_the_other_arguments() -> None:
    rows = {r[0].strip("`"): r for r in table_rows(section("3.3"))}
    assert sorted(rows) == sorted(OTHER_ARGUMENTS)
    for name, (_, refused) in OTHER_ARGUMENTS.items():
        said = set(re.findall(r"`(TypeError|ValueError)`", rows[name][2]))
        assert said == {exc.__name__ for _, exc in refused}, name


@pytest.mark.parametrize("name", sorted(OTHER_ARGUMENTS))
def test_the_other_arguments_accept_and_refuse_as_the_spec_says(name: str) -> None:
    accepted, refused = OTHER_ARGUMENTS[name]

    def call(v: Any) -> Any:
        kw: dict[str, Any] = {"staircase": False, "dtype": "float32", "order": "exact"}
        args: list[Any] = [0.5, 10, 0.5, 3]
        if name == "decay_steps":
            args[1] = v
        else:
            kw[name] = v
        return oracle.evaluate(*args, **kw)

    for v in accepted:
        call(v)
    for v, exc in refused:
        with pytest.raises(exc, match=rf"{name}.*{re.escape(repr(v))}") as e:
            call(v)
        assert type(e.value) is exc, (v, e.value)
