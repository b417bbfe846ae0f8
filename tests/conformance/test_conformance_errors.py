"""Errors of the conformance package: one base class, and messages that name
the Python argument in the library and the flag on the command line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import expdecay.conformance
from expdecay.cli import main
from expdecay.conformance.adapters import (
    AdapterError,
    ImplementationLookupError,
    NotApplicableError,
)
from expdecay.conformance.adapters.client import WorkerError
from expdecay.conformance.adapters.expdecay import ReferenceAdapter
from expdecay.conformance.campaign import parse_dtypes
from expdecay.conformance.runner import check_name, vector_paths
from expdecay.conformance.vectors import VectorFileError
from expdecay.errors import ExpdecayError
from expdecay.testing import assert_conforms

#: The built-in names, as the registry lists them (written out by hand).
NAMES = ("expdecay, keras, tf-keras, optax, torch, tf-compat-v1, jax-example-libraries, mlx, "
         "paddle, timm, mindspore")
UNKNOWN = f"must be one of {NAMES}, python:module:function or cmd:COMMAND; got 'nope'"


def conformance_modules() -> list[str]:
    """Every module of expdecay.conformance (the adapters of peer frameworks
    import their framework only when used, so all of them import here)."""
    names = [expdecay.conformance.__name__]
    for info in pkgutil.walk_packages(expdecay.conformance.__path__, "expdecay.conformance."):
        names.append(info.name)
    return names


def test_every_exception_class_of_the_package_derives_from_expdecay_error() -> None:
    found = []
    for name in conformance_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
    assert {c.__name__ for c in found} >= {
        "AdapterError", "NotApplicableError", "ImplementationLookupError", "WorkerError",
        "VectorFileError"}
    assert [c.__qualname__ for c in found if not issubclass(c, ExpdecayError)] == []


@pytest.mark.parametrize("cls, builtin", [
    (AdapterError, RuntimeError), (NotApplicableError, RuntimeError),
    (WorkerError, RuntimeError), (ImplementationLookupError, ValueError),
    (VectorFileError, ValueError)])
def test_each_keeps_its_builtin_base(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, ExpdecayError) and issubclass(cls, builtin)


# -- the library names its arguments ------------------------------------------


def test_check_name_names_impl() -> None:
    with pytest.raises(ImplementationLookupError) as e:
        check_name("nope")
    assert str(e.value) == "impl " + UNKNOWN


def test_check_name_of_a_missing_program_names_impl() -> None:
    with pytest.raises(ImplementationLookupError) as e:
        check_name("cmd:/nonexistent/program")
    assert str(e.value) == ("impl 'cmd:/nonexistent/program': no executable program "
                            "'/nonexistent/program'")


def test_vector_paths_names_vectors() -> None:
    with pytest.raises(ValueError) as e:
        vector_paths(["/nonexistent/vectors.json"])
    assert str(e.value) == "vectors: no such file or directory: /nonexistent/vectors.json"


def test_parse_dtypes_names_dtype() -> None:
    with pytest.raises(ValueError) as e:
        parse_dtypes(["float32,float8"])
    assert str(e.value) == ("dtype must be among float16, bfloat16, float32, float64; "
                            "got 'float8'")


def test_assert_conforms_names_its_argument_not_a_flag() -> None:
    with pytest.raises(ValueError) as e:
        assert_conforms("nope")
    assert str(e.value) == "impl " + UNKNOWN


def test_the_reference_adapter_checks_its_order() -> None:
    assert ReferenceAdapter("keras").order == "keras"
    with pytest.raises(ValueError, match=r"^order must be 'exact' or 'keras'; got 'Keras'$"):
        ReferenceAdapter("Keras")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^order must be a str"):
        ReferenceAdapter(1)  # type: ignore[arg-type]


# -- the command line names its flags -------------------------------------------


@pytest.mark.parametrize("argv, line", [
    (["check", "--impl", "nope"], "--impl " + UNKNOWN),
    (["check", "--impl", "cmd:/nonexistent/program"],
     "--impl 'cmd:/nonexistent/program': no executable program '/nonexistent/program'"),
    (["check", "--vectors", "/nonexistent/vectors.json"],
     "--vectors: no such file or directory: /nonexistent/vectors.json"),
    (["check", "--random", "5", "--impl", "expdecay", "--dtype", "float8"],
     "--dtype must be among float16, bfloat16, float32, float64; got 'float8'"),
])
def test_expdecay_check_translates_to_its_flags(argv: list[str], line: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"expdecay: error: {line}\n"
