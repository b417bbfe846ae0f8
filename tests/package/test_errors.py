"""Every exception class expdecay defines derives from
:class:`expdecay.errors.ExpdecayError`, and keeps the built-in base a caller
expects.

The modules are found by walking the package (not listed by hand), so a class
added anywhere later is checked too.  A module that imports an optional
framework when it loads (the drop-ins) is read as source instead: importing
TensorFlow or torch costs more than the rest of the check, and they may be
missing.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import expdecay
from expdecay.errors import ExpdecayError

SRC = Path(expdecay.__file__).resolve().parent

#: The optional frameworks (the ``peers`` extra).
PEERS = {"keras", "tensorflow", "tf_keras", "jax", "jaxlib", "optax", "torch", "mlx",
         "paddle", "timm", "mindspore"}


def module_names() -> list[str]:
    names = ["expdecay"]
    for info in pkgutil.walk_packages(expdecay.__path__, "expdecay."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # importing one runs the command
            names.append(info.name)
    return names


def source_of(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    for p in (SRC / rel / "__init__.py", (SRC / rel).with_suffix(".py")):
        if p.is_file():
            return p
    raise AssertionError(f"no source for {name}")


def imports_a_peer(source: str) -> bool:
    """Whether the module's top level (try blocks included) imports a framework."""
    def top(nodes: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for n in nodes:
            out.append(n)
            if isinstance(n, ast.Try):
                out += top(n.body)
        return out

    for n in top(ast.parse(source).body):
        names = ([a.name for a in n.names] if isinstance(n, ast.Import) else
                 [n.module or ""] if isinstance(n, ast.ImportFrom) and n.level == 0 else [])
        if any(m.split(".")[0] in PEERS for m in names):
            return True
    return False


def classes_by_import() -> tuple[list[type], list[str]]:
    """The exception classes of every module imported here, and the modules
    read as source (they import a framework)."""
    found: list[type] = []
    missing: list[str] = []
    for name in module_names():
        if imports_a_peer(source_of(name).read_text(encoding="utf-8")):
            missing.append(name)
            continue
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
    return found, missing


def test_every_exception_class_derives_from_expdecay_error() -> None:
    found, missing = classes_by_import()
    names = {c.__qualname__ for c in found}
    # the classes of the core modules, at least (importable on any install)
    assert names >= {"PrecisionError", "ReadRefusedError", "MissingExtraError",
                     "ConformanceError", "EvaluationError", "UsageError"}
    errors = [c for c in found if issubclass(c, Exception)]
    assert [f"{c.__module__}.{c.__qualname__}" for c in errors
            if not issubclass(c, ExpdecayError)] == []
    # BaseException but not Exception: control flow (a signal received), never
    # an error a caller handles; each is private to its module.
    control = [c for c in found if not issubclass(c, Exception)]
    assert all(c.__name__.startswith("_") for c in control), control
    # The drop-ins, read as source: the same rule.
    assert {"expdecay.keras", "expdecay.torch", "expdecay.optax"} <= set(missing)
    known = {c.__name__ for c in found if issubclass(c, ExpdecayError)} | {"ExpdecayError"}
    for name in missing:
        assert source_offenders(source_of(name).read_text(encoding="utf-8"), known) == [], name


def source_offenders(source: str, known: set[str]) -> list[str]:
    """The classes of ``source`` whose bases name an exception class (a name
    ending in Error, Exception or Warning) but none of ``known``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            if any(b.endswith(("Error", "Exception", "Warning")) for b in bases) and not (
                    known & set(bases)):
                out.append(node.name)
    return out


def test_source_check_of_modules_that_are_not_imported() -> None:
    assert imports_a_peer("import numpy\ntry:\n    import torch\nexcept ImportError: pass\n")
    assert imports_a_peer("from keras.src import ops\n")
    assert not imports_a_peer("def f():\n    import torch\nfrom . import keras\n")

    source = (
        "import errors\n"
        "class A(ExpdecayError, ValueError): pass\n"
        "class B(errors.ExpdecayError): pass\n"
        "class C(A): pass\n"
        "class D(ValueError): pass\n"
        "class E(RuntimeWarning): pass\n"
        "class F(Exception): pass\n"
        "class G: pass\n"
    )
    assert source_offenders(source, {"ExpdecayError", "A"}) == ["D", "E", "F"]


@pytest.mark.parametrize(("path", "builtin"), [
    ("expdecay.oracle.PrecisionError", ArithmeticError),
    ("expdecay.fileio.ReadRefusedError", ValueError),
    ("expdecay.resources.MissingExtraError", ModuleNotFoundError),
    ("expdecay.testing.items.ConformanceError", AssertionError),
    ("expdecay.testing.items.EvaluationError", RuntimeError),
    ("expdecay.cli.UsageError", Exception),
])
def test_each_keeps_its_builtin_base(path: str, builtin: type[BaseException]) -> None:
    module, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, ExpdecayError) and issubclass(cls, builtin)


def test_caught_as_expdecay_error() -> None:
    """A library error raised by a public call is caught by ``except ExpdecayError``."""
    from expdecay.oracle import PrecisionError, value
    from expdecay.resources import MissingExtraError, require

    with pytest.raises(ExpdecayError) as e:
        require("no_such_module_for_this_test", "plot", "plotting")
    assert isinstance(e.value, MissingExtraError) and isinstance(e.value, ImportError)
    # |p ln r| ~ 2**300: beyond what value() evaluates (oracle.MAX_DECIMAL_AMPLIFICATION)
    with pytest.raises(ExpdecayError) as p:
        value(1, 1, 2, 2**300)
    assert isinstance(p.value, PrecisionError) and isinstance(p.value, ArithmeticError)
