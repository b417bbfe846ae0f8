"""No test assumes the CPU it was written on.

The test machines differ (AVX-512 Intel and AMD, AVX2-only AMD), and CI runs
on one of them, so a test that hard-codes what one CPU does passes there and
fails elsewhere.  Two guards:

* Register names (``xmm``, ``ymm``, ``zmm``) appear in code only in
  ``kernel_asm.py``, which reads the width each CPU target uses from a control
  compiled for that target.  Any other test that writes one into a string or
  a regular expression fails here (docstrings may mention them).
* The tests that read the CPU (its features, numpy's SIMD dispatch targets,
  numba's CPU name) are the audited ones listed in :data:`CPU_READERS`, each
  deriving its expectation from what the host reports or covering a list of
  targets.  A new one fails here until it is audited and added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REGISTER = re.compile(r"[xyz]mm")
CPU_READING = re.compile(r"get_host_cpu|__cpu_features__|__cpu_dispatch__|__cpu_baseline__"
                         r"|NUMBA_CPU_NAME|NUMBA_CPU_FEATURES|NPY_DISABLE_CPU_FEATURES"
                         r"|/proc/cpuinfo|cpuinfo")

#: Files allowed to name registers in code: the one that reads widths from
#: targets, and this one (its self-test holds an offending line).
REGISTER_OWNERS = {"support/kernel_asm.py", "fast/test_cpu_assumptions.py"}

#: The audited tests that read the CPU, and what each does with it.
CPU_READERS = {
    # host features from LLVM, TARGETS with each target's features, widths read
    # from control loops compiled per target
    "support/kernel_asm.py": "helpers: host features, named targets, register widths per target",
    # numpy's dispatch targets available here, switched off in a child
    "fast/test_fast_reproducible.py": "same bits with numpy's targets off and kernels per target",
    # the same, for the campaign's case generator
    "conformance/test_campaign.py": "same cases with numpy's dispatch targets off",
    # this file: the patterns it looks for
    "fast/test_cpu_assumptions.py": "the guard itself",
}


def register_names_in_code(source: str) -> list[tuple[int, str]]:
    """(line, string) for every string constant of ``source``, other than a
    docstring, that names an x86 vector register."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    hits = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings and REGISTER.search(node.value)):
            hits.append((node.lineno, node.value))
    return hits


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_register_guard_can_fail() -> None:
    written_on_one_cpu = 'assert re.search(r"\\bvmulpd\\s+%ymm", asm)\n'
    assert register_names_in_code(written_on_one_cpu) == [(1, r"\bvmulpd\s+%ymm")]
    assert register_names_in_code('"""Packed products on ymm registers."""\n') == []


def test_no_test_names_a_register_width() -> None:
    offenders = {}
    for path in _test_files():
        if str(path.relative_to(TESTS)) in REGISTER_OWNERS:
            continue
        hits = register_names_in_code(path.read_text())
        if hits:
            offenders[str(path.relative_to(TESTS))] = hits
    assert not offenders, ("register widths must be read from the target "
                           f"(kernel_asm.packed_product_widths): {offenders}")


def test_every_test_reading_the_cpu_is_audited() -> None:
    readers = {str(p.relative_to(TESTS)) for p in _test_files()
               if CPU_READING.search(p.read_text())}
    assert readers == set(CPU_READERS), (
        "a test that reads the CPU must derive its expectation from what the host reports "
        "or cover kernel_asm.TARGETS; audit it and list it in CPU_READERS: "
        f"{sorted(readers ^ set(CPU_READERS))}")
