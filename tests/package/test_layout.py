"""The layout of the package matches its map, and names keep to their tiers.

* Every module under ``src/expdecay`` is named in ``ARCHITECTURE.md``, and every
  module the map names exists.
* Every test folder is described in ``tests/README.md``, and every folder it
  describes exists.
* A leading underscore means module-private: no such name is imported from, or
  looked up on, another module of the package, and no module file is named
  with one (shared code has plain names; the public API is what ``__all__``
  lists, ARCHITECTURE.md says which modules are internal).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from support.paths import ROOT, SRC, TESTS

PACKAGE = SRC / "expdecay"


def module_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_reach(source: str, path: Path) -> list[str]:
    """Private names of other package modules that ``source``, the text of the
    module file ``path``, imports or looks up."""
    tree = ast.parse(source)
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules: dict[str, str] = {}  # local name -> package module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            if not base.startswith("expdecay"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                 f"from {base} import {alias.name}")
                modules[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("expdecay"):
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                         f"{node.value.id}.{node.attr}")
    return found


def test_the_private_reach_check_can_fail() -> None:
    source = ("from .. import fast as f\nfrom ..floats import _order_key, ulp_keys\n"
              "import expdecay.oracle\nx = f._plan(1) + f.plan(2)\ny = expdecay._cache\n")
    found = private_reach(source, PACKAGE / "analysis" / "example.py")
    assert sorted(hit.split(": ", 1)[1] for hit in found) == [
        "expdecay._cache", "f._plan", "from expdecay.floats import _order_key"]


def test_no_private_name_crosses_modules() -> None:
    found = [hit for path in module_files() for hit in private_reach(path.read_text(), path)]
    assert found == [], "\n".join(found)


def test_no_module_file_is_named_private() -> None:
    named = [str(p.relative_to(SRC)) for p in module_files()
             if p.name.startswith("_") and p.name not in ("__init__.py", "__main__.py")]
    assert named == []


def map_modules() -> set[str]:
    """The module paths ``ARCHITECTURE.md`` names, as ``expdecay/...py`` (a package is
    named by its folder, ``expdecay/fast/``)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = re.findall(r"`(expdecay/[\w./]*)`", text)
    return {n for n in named if n.endswith((".py", "/"))}


def test_every_module_is_in_the_map() -> None:
    named = map_modules()
    files = set()
    for p in module_files():
        rel = p.relative_to(SRC).as_posix()
        files.add(rel[: -len("__init__.py")] if p.name == "__init__.py" else rel)
    assert sorted(files - named) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(named - files) == [], "ARCHITECTURE.md names modules that do not exist"


def test_every_test_folder_is_described() -> None:
    text = (TESTS / "README.md").read_text()
    described = set(re.findall(r"`tests/(\w+)/`", text))
    folders = {p.name for p in TESTS.iterdir()
               if p.is_dir() and p.name != "__pycache__" and not p.name.startswith(".")}
    assert described == folders


@pytest.mark.parametrize("folder", sorted(
    p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in ("__pycache__", "support")
    and not p.name.startswith(".")))
def test_test_folders_hold_only_tests(folder: str) -> None:
    stray = [p.name for p in (TESTS / folder).glob("*.py") if not p.name.startswith("test_")]
    assert stray == [], f"helpers belong in tests/support/: {stray}"
