"""Where things are in the checkout, for tests that run children or read files."""

from __future__ import annotations

from pathlib import Path

#: The tests folder.
TESTS = Path(__file__).resolve().parents[1]
#: The root of the checkout (pyproject.toml, README.md, spec/, conformance/).
ROOT = TESTS.parent
#: The package sources.
SRC = ROOT / "src"
#: The test helpers (this folder).
SUPPORT = TESTS / "support"
#: The mutant implementations of the conformance tests.
MUTANT_DIR = SUPPORT / "mutants"
