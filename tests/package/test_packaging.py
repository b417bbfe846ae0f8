"""The package as users get it: the wheel carries the vectors, the schema and
the licence, and the installed package runs its main job from any directory.

The wheel is built from this checkout (``pip wheel --no-build-isolation``,
so no download) and installed with ``--target`` into a temporary directory;
the commands then run from another temporary directory, with that
installation first on ``sys.path`` and the checkout nowhere on it.
(``.ci/run`` does the same in a fresh venv holding only the wheel's own
dependencies.)
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from expdecay import resources
from support.paths import ROOT

VECTORS = sorted((ROOT / "conformance" / "vectors").glob("*.json"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what a clone holds, so that a build/ directory left
    # in the checkout (stale modules included) cannot leak into the wheel.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "LICENSE", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "conformance" / "vectors", tree / "conformance" / "vectors")
    (tree / "spec").mkdir()
    for f in (ROOT / "spec").glob("*"):
        if f.is_file():
            shutil.copy2(f, tree / "spec")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(out), str(tree)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{r.stderr[-3000:]}")
    [whl] = out.glob("expdecay-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return target


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_wheel_carries_vectors_schema_and_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for v in VECTORS:
            assert z.read(f"expdecay/data/vectors/{v.name}") == v.read_bytes()
        assert z.read("expdecay/data/vectors.schema.json") == \
            (ROOT / "spec" / "vectors.schema.json").read_bytes()
        specs = sorted((ROOT / "spec").glob("*.md"))
        assert specs
        for md in specs:
            assert z.read(f"expdecay/data/spec/{md.name}") == md.read_bytes()
        [licence] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        text = z.read(licence).decode()
        assert "Apache License" in text and "Version 2.0, January 2004" in text
        assert text == (ROOT / "LICENSE").read_text(encoding="utf-8")
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        msg = email.message_from_bytes(z.read(meta))
    assert msg["License-Expression"] == "Apache-2.0"
    requires = msg.get_all("Requires-Dist") or []
    plain = [r for r in requires if "extra ==" not in r]
    for heavy in ("matplotlib", "hypothesis", "tensorflow", "torch", "jax"):
        assert not any(r.startswith(heavy) for r in plain), plain
    peers = [r.split(";")[0].split(">")[0].strip() for r in requires if "extra == \"peers\"" in r]
    assert "tensorflow" in peers and "tensorflow-cpu" not in peers, peers
    assert any(r.startswith("matplotlib") and 'extra == "plot"' in r for r in requires)
    assert any(r.startswith("hypothesis") and 'extra == "search"' in r for r in requires)


def test_installed_package_runs_its_main_job_from_anywhere(installed: Path,
                                                           tmp_path: Path) -> None:
    r = run_installed(installed, tmp_path, "-c",
                      "import expdecay.resources as r; print(r.vectors_dir()); "
                      "print(r.schema_path()); print(r.checkout_root()); print(r.spec_dir())")
    assert r.returncode == 0, r.stderr
    vdir, schema, root, spec = r.stdout.splitlines()
    assert Path(spec) == installed / "expdecay" / "data" / "spec"
    assert Path(vdir) == installed / "expdecay" / "data" / "vectors"
    assert Path(schema) == installed / "expdecay" / "data" / "vectors.schema.json"
    assert root == "None"

    r = run_installed(installed, tmp_path, "-m", "expdecay.cli", "check", "--impl", "expdecay",
                      "--profile", "exact")
    assert r.returncode == 0, r.stderr[-2000:]
    # Every packaged test passes: the count comes from the installed files.
    total = sum(json.loads(f.read_text())["numberOfTests"]
                for f in (installed / "expdecay" / "data" / "vectors").glob("*.json"))
    row = next(line.split() for line in r.stdout.splitlines()
               if line.split()[:2] == ["expdecay", "exact"])
    assert row[2:7] == [str(total), "0", "0", "0", "0"], row

    r = run_installed(installed, tmp_path, "-m", "expdecay.cli", "vectors", "validate",
                      "--sample", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(VECTORS)
    for line, v in zip(lines, VECTORS, strict=True):
        assert line == f"{installed / 'expdecay' / 'data' / 'vectors' / v.name}: ok"

    # What it generates, it validates (the schema is found, wherever it runs).
    r = run_installed(installed, tmp_path, "-m", "expdecay.cli", "vectors", "generate",
                      "--theme", "examples")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == "1 file written to conformance/vectors\n"  # not into the package
    generated = tmp_path / "conformance" / "vectors" / "examples.json"
    assert generated.read_bytes() == (ROOT / "conformance" / "vectors" / "examples.json") \
        .read_bytes()
    r = run_installed(installed, tmp_path, "-m", "expdecay.cli", "vectors", "validate",
                      str(generated))
    assert r.returncode == 0 and r.stdout == f"{generated}: ok\n", r.stdout + r.stderr


def test_checkout_finds_its_own_files_from_another_directory(tmp_path: Path) -> None:
    """In a source checkout (no data/ in the package) the repository's files are used."""
    assert not (ROOT / "src" / "expdecay" / "data").exists()
    assert resources.checkout_root() == ROOT
    assert resources.vectors_dir() == ROOT / "conformance" / "vectors"
    assert resources.schema_path() == ROOT / "spec" / "vectors.schema.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "expdecay.cli", "vectors", "validate", "--sample",
                        "1", str(ROOT / "conformance" / "vectors" / "examples.json")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
