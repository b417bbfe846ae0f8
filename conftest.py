"""Pytest configuration of the whole checkout: the doctests of the package.

``--doctest-modules`` imports every module of ``src/expdecay`` to collect its
doctests, and the drop-ins import their framework when imported (importing
``expdecay.keras`` without Keras raises ``ImportError``).  Where a drop-in's
framework is missing, its doctests are skipped with the missing framework as
the reason, or fail where ``EXPDECAY_REQUIRE_FRAMEWORKS=1`` (or ``CI=true``)
says every framework must be there: the same rule, and the same helper
(``tests/support/bits.py``), as the test modules that need a framework.
The other configuration of the suite is in ``tests/conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT / "tests") not in sys.path:  # the test helpers, as the test modules see them
    sys.path.insert(0, str(ROOT / "tests"))

from support.bits import missing_peers, require_peers  # noqa: E402

#: The package's modules that import a framework when imported (the drop-ins),
#: and the top-level modules each one imports.
NEEDS = {
    "expdecay/keras.py": ("keras",),
    "expdecay/optax.py": ("jax",),
    "expdecay/torch.py": ("torch",),
}


class FrameworkMissing(pytest.File):
    """Stands for a module whose framework is not installed (and so for its
    doctests): collecting it skips them, naming the framework, or fails where
    every framework is required."""

    def __init__(self, *, module: str, frameworks: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.module, self.frameworks = module, frameworks

    def collect(self) -> Iterable[pytest.Item]:
        # skips, or raises ImportError
        require_peers(*self.frameworks, needed_by=f"the doctests of {self.module}")
        raise AssertionError(f"{self.path}: {self.frameworks} were found missing, then present")


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    collected = yield
    try:
        key = file_path.resolve().relative_to(ROOT / "src").as_posix()
    except ValueError:
        return collected
    frameworks = NEEDS.get(key, ())
    if not collected or not missing_peers(*frameworks):
        return collected
    # The module cannot be imported: one node stands for whatever would have
    # collected it (the doctest plugin, or the Python one when named on the
    # command line).
    return [FrameworkMissing.from_parent(parent, path=file_path, module=key,
                                         frameworks=frameworks)]
