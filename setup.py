"""Build hook: copy the run-time data files into the package being built.

The conformance vectors (``conformance/vectors/*.json``), their JSON Schema
(``spec/vectors.schema.json``) and the spec (``spec/*.md``) have one copy in
the repository, where people look for them. Building a wheel (or an sdist's
wheel) copies them into the built package as ``expdecay/data/``, where
:mod:`expdecay.resources` finds them through ``importlib.resources``. An
editable install needs no copy: the package then runs from ``src/`` and uses
the repository's files directly. Everything else is declared in
``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: source in the repository (a file, or a directory and the pattern of its
#: files) -> destination below expdecay/data/
DATA = {
    ("conformance/vectors", "*.json"): "vectors",
    ("spec/vectors.schema.json", None): "vectors.schema.json",
    ("spec", "*.md"): "spec",  # the normative text the docstrings cite
}


class BuildPyWithData(build_py):
    """``build_py`` plus the copy of :data:`DATA` into ``expdecay/data/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, "expdecay", "data")
        for (source, pattern), dest in DATA.items():
            src = ROOT / source
            if pattern is not None:
                files = sorted(src.glob(pattern))
                if not files:
                    raise FileNotFoundError(f"{src}: no {pattern} files to package")
                (target / dest).mkdir(parents=True, exist_ok=True)
                for f in files:
                    shutil.copyfile(f, target / dest / f.name)
            elif src.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target / dest)
            else:
                raise FileNotFoundError(f"{src}: needed in the package, missing from the tree")


setup(cmdclass={"build_py": BuildPyWithData})
