"""The data files the package needs at run time, and its optional extras.

The conformance vectors, the JSON Schema of vector files and the spec have one
copy in the repository (``conformance/vectors/*.json``,
``spec/vectors.schema.json``, ``spec/*.md``); building the wheel copies them
into the package as ``expdecay/data/vectors/``,
``expdecay/data/vectors.schema.json`` and ``expdecay/data/spec/``
(``setup.py``), so the ``spec/...`` files the docstrings cite are installed
too. They are found here through :mod:`importlib.resources`, so an installed
package finds them from any working directory. In a source checkout (an
editable install, or ``PYTHONPATH=src``) the package has no ``data/`` directory
and the repository's own files are used instead.

>>> sorted(p.name for p in vectors_dir().glob("*.json"))[:2]
['boundaries.json', 'decay_rates.json']
>>> schema_path().name
'vectors.schema.json'
>>> (spec_dir() / "exponential_decay.md").is_file()
True
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from types import ModuleType

from .errors import ExpdecayError

__all__ = [
    "MissingExtraError",
    "checkout_root",
    "require",
    "schema_path",
    "spec_dir",
    "vectors_dir",
]

#: The schema's file name, in the package and in the repository's ``spec/``.
SCHEMA_FILE = "vectors.schema.json"


def _packaged(*parts: str) -> Path | None:
    """``expdecay/data/<parts>`` of the installed package, or None when absent."""
    node = resources.files("expdecay").joinpath("data", *parts)
    # A regular install is a directory on disk (wheels are unpacked), so the
    # Traversable is a Path; a zip import has no place for generated files.
    if isinstance(node, Path) and node.exists():
        return node
    return None


def checkout_root() -> Path | None:
    """The repository holding this source file (``src/expdecay/`` below it),
    or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    if (root / "conformance" / "vectors").is_dir() and (root / "spec" / SCHEMA_FILE).is_file():
        return root
    return None


def vectors_dir() -> Path:
    """The directory of the conformance vector files the package ships."""
    packaged = _packaged("vectors")
    if packaged is not None:
        return packaged
    root = checkout_root()
    if root is not None:
        return root / "conformance" / "vectors"
    raise FileNotFoundError(
        "the conformance vectors are neither in the installed package (expdecay/data/vectors) "
        "nor in a source checkout; reinstall expdecay or name the vector files explicitly"
    )


def schema_path() -> Path:
    """The JSON Schema of vector files (``spec/vectors.schema.json``)."""
    packaged = _packaged(SCHEMA_FILE)
    if packaged is not None:
        return packaged
    root = checkout_root()
    if root is not None:
        return root / "spec" / SCHEMA_FILE
    raise FileNotFoundError(
        f"{SCHEMA_FILE} is neither in the installed package (expdecay/data) nor in a source "
        "checkout (spec/); reinstall expdecay"
    )


def spec_dir() -> Path:
    """The directory of the spec's Markdown files (``spec/`` of the repository)."""
    packaged = _packaged("spec")
    if packaged is not None:
        return packaged
    root = checkout_root()
    if root is not None:
        return root / "spec"
    raise FileNotFoundError(
        "the spec is neither in the installed package (expdecay/data/spec) nor in a source "
        "checkout (spec/); reinstall expdecay"
    )


class MissingExtraError(ExpdecayError, ModuleNotFoundError):
    """An optional dependency is not installed: the message names the extra
    that installs it, on one line."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra``.

    >>> require("json", "none", "reading JSON").__name__
    'json'
    >>> try:
    ...     require("no_such_module_here", "plot", "plotting")
    ... except MissingExtraError as e:
    ...     print(e)
    plotting needs no_such_module_here, which is not installed: pip install 'expdecay[plot]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the module is there but one of its own imports is broken
        raise MissingExtraError(
            f"{purpose} needs {top}, which is not installed: pip install 'expdecay[{extra}]'",
            name=top,
        ) from None
