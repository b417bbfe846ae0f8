"""The ``expdecay eval`` command: output, JSON form, and one-line errors with
exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from expdecay.cli import main

EXAMPLE = ["eval", "--initial-learning-rate", "0.1", "--decay-steps", "100000",
           "--decay-rate", "0.96", "--step", "1000000"]


def test_eval_example(capsys):
    assert main(EXAMPLE) == 0
    out = capsys.readouterr().out
    # 0.1 * 0.96 ** 10 = 0.066483263599150104576 exactly (exact decimals).
    assert "6.648326359915010457600000000000000000000e-2" in out
    # float32 neighbours of that value: 0x1.1050c2p-4 is the nearest.
    assert "0x1.1050c2p-4" in out and "0x3d882861" in out
    assert "keras - exact:" in out


def test_eval_json_both_orders():
    proc = subprocess.run([sys.executable, "-m", "expdecay.cli", *EXAMPLE, "--json",
                           "--dtype", "float64"], capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)
    assert doc["dtype"] == "float64" and set(doc["orders"]) == {"exact", "keras"}
    # The exact decimal rounds to the double nearest 0.066483263599150104576.
    assert float.fromhex(doc["orders"]["exact"]["hex"]) == 0.066483263599150104576
    assert isinstance(doc["ulp_keras_minus_exact"], int)


def test_float64_inputs_flag(capsys):
    # 0.1 as a double is 0.1000000000000000055511151231257827...
    assert main(["eval", "--initial-learning-rate", "0.1", "--decay-steps", "1",
                 "--decay-rate", "1", "--step", "0", "--float64-inputs", "--order", "exact",
                 "--json", "--digits", "20"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["exact"] == "1.0000000000000000555e-1"


@pytest.mark.parametrize("argv,needle", [
    (["eval", "--initial-learning-rate", "0.1", "--decay-steps", "0", "--decay-rate", "0.9",
      "--step", "1"], "--decay-steps must be finite and > 0; got '0'"),
    (["eval", "--initial-learning-rate", "x", "--decay-steps", "1", "--decay-rate", "0.9",
      "--step", "1"], "--initial-learning-rate must be a number"),
    (["eval", "--initial-learning-rate", "0.1", "--decay-steps", "1", "--decay-rate", "0.9",
      "--step", "1", "--dtype", "float8"], "invalid choice: 'float8'"),
    (["eval", "--initial-learning-rate", "0.1", "--decay-steps", "1"], "required"),
    (["eval", "--initial-learning-rate", "0.1", "--decay-steps", "1", "--decay-rate", "0.9",
      "--step", "1", "--digits", "0"], "--digits must be an int in [1, 10000]; got 0"),
    (["nonsense"], "invalid choice"),
])
def test_bad_arguments_one_line_exit_2(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "expdecay.cli", *argv],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expdecay: error:"), proc.stderr
    assert needle in lines[0]
    assert proc.stdout == ""


def test_library_names_arguments_and_the_command_line_its_flags(capsys):
    """One bad value, two wordings: the Python argument from the library, the
    flag from ``expdecay eval`` and ``expdecay analyze``."""
    from expdecay.oracle import evaluate, value

    with pytest.raises(ValueError) as lib:
        evaluate(0.1, 0, 0.9, 1)
    assert str(lib.value) == "decay_steps must be finite and > 0; got 0"
    with pytest.raises(ValueError) as lib:
        value(0.1, 1, 0.9, 1, digits=0)
    assert str(lib.value) == "digits must be an int in [1, 10000]; got 0"
    assert main([*EXAMPLE[:4], "0", *EXAMPLE[5:]]) == 2
    assert capsys.readouterr().err == (
        "expdecay: error: --decay-steps must be finite and > 0; got '0'\n")
    assert main(["analyze", "--initial-learning-rate", "0.1", "--decay-steps", "-1",
                 "--decay-rate", "0.5", "--steps", "0:10", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "expdecay: error: --decay-steps must be finite and > 0; got '-1'\n")


def test_as_flag_only_rewrites_a_leading_argument_name():
    from expdecay.cli import SCHEDULE_FLAGS, as_flag

    def shown(e):
        return type(e), str(e)

    assert shown(as_flag(TypeError("staircase must be a bool; got int 1"), SCHEDULE_FLAGS)) \
        == (TypeError, "--staircase must be a bool; got int 1")
    assert shown(as_flag(ValueError("step: bad"), SCHEDULE_FLAGS)) == (ValueError, "--step: bad")
    # the longest name wins; a longer word or a name later in the text is left alone
    assert shown(as_flag(ValueError("steps must be A:B"), SCHEDULE_FLAGS)) == (
        ValueError, "--steps must be A:B")
    assert shown(as_flag(ValueError("stepping must be"), SCHEDULE_FLAGS)) == (
        ValueError, "stepping must be")
    assert shown(as_flag(ValueError("decay_steps_x must be"), SCHEDULE_FLAGS)) == (
        ValueError, "decay_steps_x must be")
    assert shown(as_flag(ValueError("the step must be"), SCHEDULE_FLAGS)) == (
        ValueError, "the step must be")
    e = ValueError("nothing to do")
    assert as_flag(e, SCHEDULE_FLAGS) is e


def test_command_line_module_loads_no_heavy_dependency():
    """``import expdecay.cli`` (what the console script does before ``main``)
    loads neither SymPy nor numpy, so Ctrl-C during start-up reaches ``main``'s
    handler instead of printing a traceback from inside an import."""
    import subprocess
    import sys

    code = ("import sys, expdecay.cli; "
            "print(sorted(m for m in ('sympy', 'numpy', 'mpmath') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_lazy_public_names_match_all():
    """Every name of ``expdecay.__all__`` loads on first use, as the object of
    the module the type checkers are told it comes from (the ``TYPE_CHECKING``
    imports of ``expdecay/__init__.py``, read from its source)."""
    import ast
    import importlib
    from pathlib import Path

    import expdecay

    tree = ast.parse(Path(expdecay.__file__).read_text(encoding="utf-8"))
    owners = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                owners.update({a.name: imp.module for a in imp.names})
    assert sorted(expdecay.__all__) == sorted([*owners, "__version__"])
    assert set(expdecay.__all__) <= set(dir(expdecay))
    for name, module in owners.items():
        owner = importlib.import_module(f"expdecay.{module}")
        assert getattr(expdecay, name) is getattr(owner, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        expdecay.nope  # noqa: B018
