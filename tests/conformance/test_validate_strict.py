"""`expdecay vectors validate` accepts only what expdecay itself writes.

Every test of a file is regenerated from its inputs and compared field by
field, so a deterministic set of small mutations of real vector files (an
expected bit pattern, a tolerance, a flag, valid <-> acceptable, a duplicate
key, ...) must each be rejected, with a one-line ``FILE: reason``.  Also:
files that are not regular files are refused without blocking, reads stop
after the size limit, and a missing file is a usage error.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from expdecay.cli import main
from expdecay.conformance import vectors
from expdecay.floats import get_format, next_up
from support.paths import ROOT

COMMITTED = ROOT / "conformance" / "vectors"

Doc = dict[str, Any]


def _load(theme: str) -> Doc:
    return json.loads((COMMITTED / f"{theme}.json").read_text())


def _trimmed(doc: Doc, keep: Callable[[dict[str, Any]], bool]) -> Doc:
    """The groups of ``doc`` for which ``keep`` holds, renumbered, with the
    notes of the flags still in use: a file expdecay could have written."""
    out = copy.deepcopy(doc)
    out["testGroups"] = [g for g in out["testGroups"] if keep(g)]
    n = 0
    used: set[str] = set()
    for g in out["testGroups"]:
        for t in g["tests"]:
            n += 1
            t["tcId"] = n
            used.update(t["flags"])
    out["numberOfTests"] = n
    out["notes"] = {k: v for k, v in doc["notes"].items() if k in used}
    return out


def _write(tmp_path: Path, doc: Doc | str, name: str = "v.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else vectors.dumps(doc))
    return path


def _test(doc: Doc, tc_id: int) -> dict[str, Any]:
    return next(t for _, t in vectors.iter_tests(doc) if t["tcId"] == tc_id)


def _last_valid(doc: Doc) -> dict[str, Any]:
    """The last test with expectations (far from any default sample's picks)."""
    return [t for _, t in vectors.iter_tests(doc) if t["result"] != "invalid"][-1]


# ---------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------


def _bump_bits(order: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        g = doc["testGroups"][-1]
        t = g["tests"][-1]
        fmt = get_format(g["dtype"])
        x = vectors.decode_result(t[order], fmt, "x")
        t[order] = vectors.encode_result(next_up(x, fmt), fmt)  # consistent bits and hex
    return mutate


def _set(path: tuple[str, ...], val: Any, which: Callable[[Doc], dict[str, Any]] = _last_valid
         ) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        obj = which(doc)
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = val
    return mutate


def _all_tolerances(doc: Doc) -> None:
    for _, t in vectors.iter_tests(doc):
        if "tolerance" in t:
            t["tolerance"] = {"exact": 1000, "keras": 1000}


def _flags(edit: Callable[[list[str]], list[str]], tc_id: int = 35) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        t = _test(doc, tc_id)
        t["flags"] = edit(t["flags"])
        used = {f for _, u in vectors.iter_tests(doc) for f in u["flags"]}
        for f in used - set(doc["notes"]):  # give a new flag its note: only the flag is wrong
            name = f if f in vectors.NOTES else "Example"
            doc["notes"][f] = dict(zip(("bugType", "description", "effect"),
                                       vectors.NOTES[name], strict=True))
    return mutate


def _note(doc: Doc) -> None:
    doc["notes"]["Example"]["effect"] = "None."


def _unused_note(doc: Doc) -> None:
    doc["notes"]["LargeStep"] = dict(zip(("bugType", "description", "effect"),
                                         vectors.NOTES["LargeStep"], strict=True))


def _theme(name: str) -> Callable[[Doc], None]:
    return _set(("theme",), name, lambda d: d)


def _negative_zero_step(doc: Doc) -> None:
    t = next(t for _, t in vectors.iter_tests(doc) if t["step"] == {"int": "0"})
    t["step"] = {"int": "-0"}  # the schema allows it; expdecay writes "0"


#: name -> (mutation of examples.json, words of the expected reason)
MUTATIONS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "exact bits": (_bump_bits("exact"), "exact bits"),
    "keras bits": (_bump_bits("keras"), "keras bits"),
    "value digits": (_set(("value",), "1.000000000000000000000000000000000000000e-1"),
                     "value"),
    "keras tolerance": (_set(("tolerance", "keras"), 1000), "tolerance"),
    "exact tolerance": (_set(("tolerance", "exact"), 1), "tolerance"),
    "every tolerance 1000": (_all_tolerances, "tolerance"),
    "derived flag removed": (_flags(lambda f: [x for x in f if x != "OrdersDiffer"]),
                             "flags"),
    "derived flag added": (_flags(lambda f: [*f, "Subnormal"]), "flags"),
    "flags reordered": (_flags(lambda f: [*f[1:], f[0]]), "flags"),
    "declared flag swapped": (_flags(lambda f: ["StepBoundary", *f[1:]]), "declared flags"),
    "declared flag added": (_flags(lambda f: ["Example", "LargeStep", *f[1:]]),
                            "declared flags"),
    "foreign flag": (_flags(lambda f: [*f, "Custom"]), "does not write"),
    "valid to acceptable": (_set(("result",), "acceptable"), "result"),
    "note edited": (_note, "note Example differs"),
    "note for no test": (_unused_note, "no test has"),
    "unknown theme": (_theme("custom"), "theme 'custom'"),
    "other theme": (_theme("boundaries"), "has no test with these inputs"),
    "non-canonical step": (_negative_zero_step, "step"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_mutation_is_rejected(tmp_path: Path, name: str) -> None:
    mutate, needle = MUTATIONS[name]
    doc = _load("examples")
    mutate(doc)
    assert doc != _load("examples")
    path = _write(tmp_path, doc)
    problems = vectors.validate_file(path)  # the default: every test
    assert problems, name
    assert all(p.startswith(f"{path}: ") and "\n" not in p for p in problems)
    assert any(needle in p for p in problems), problems


def test_the_unmutated_copy_validates(tmp_path: Path) -> None:
    assert vectors.validate_file(_write(tmp_path, _load("examples"))) == []


@pytest.fixture(scope="module")
def special() -> Doc:
    """special_values.json cut to its NaN-rate float32 groups: acceptable
    tests (negative and non-finite steps) and a valid file on its own."""
    return _trimmed(_load("special_values"),
                    lambda g: g["dtype"] == "float32" and g["comment"] == "r = NaN")


def test_a_theme_subset_validates(tmp_path: Path, special: Doc) -> None:
    assert 0 < special["numberOfTests"] < 30
    assert vectors.validate_file(_write(tmp_path, special)) == []


def test_acceptable_to_valid_is_rejected(tmp_path: Path, special: Doc) -> None:
    doc = copy.deepcopy(special)
    t = next(t for _, t in vectors.iter_tests(doc) if t["result"] == "acceptable")
    t["result"] = "valid"
    problems = vectors.validate_file(_write(tmp_path, doc))
    assert len(problems) == 1
    assert "result \"valid\" but expdecay writes \"acceptable\"" in problems[0]


def test_default_checks_every_test_and_sample_is_an_explicit_shortcut(tmp_path: Path) -> None:
    doc = _load("decay_rates")  # 672 tests
    _bump_bits("exact")(doc)  # the very last test
    path = _write(tmp_path, doc)
    [problem] = vectors.validate_file(path)
    assert "tcId 672: exact bits" in problem
    assert vectors.validate_file(path, sample=24) == []  # the old default missed it
    with pytest.raises(ValueError, match="sample"):
        vectors.validate_file(path, sample=0)


def test_search_files_keep_their_own_flags(tmp_path: Path) -> None:
    from expdecay.analysis.search import Finding, SearchResult, write_vectors
    from expdecay.analysis.sweep import Schedule

    found = SearchResult(2, [Finding(16777999, 3, 0.2, "worst-case")],
                         [Finding(16777001, 0, 0.01, "hard-to-round")])
    path = tmp_path / "found.json"
    write_vectors(Schedule(0.1, 1000, 0.999, True, "float32"), found, str(path))
    assert vectors.validate_file(path) == []
    doc = json.loads(path.read_text())
    assert [t["flags"][0] for _, t in vectors.iter_tests(doc)] == ["SearchWorstCase",
                                                                  "HardRounding"]
    doc["testGroups"][0]["tests"][0]["flags"][0] = "HardRounding"
    doc["testGroups"][0]["tests"][1]["flags"][0] = "SearchWorstCase"
    problems = vectors.validate_file(_write(tmp_path, doc, "swapped.json"))
    assert problems == []  # each flag alone is a valid finding: only the set is fixed
    doc["testGroups"][0]["tests"][0]["flags"][0] = "Example"
    doc["notes"]["Example"] = dict(zip(("bugType", "description", "effect"),
                                       vectors.NOTES["Example"], strict=True))
    problems = vectors.validate_file(_write(tmp_path, doc, "example.json"))
    assert any("declared flags [\"Example\"" in p for p in problems), problems


# ---------------------------------------------------------------------------
# JSON that must not be resolved silently
# ---------------------------------------------------------------------------


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    text = vectors.dumps(_load("examples"))
    bad = text.replace('"result": "valid"', '"result": "acceptable", "result": "valid"', 1)
    assert bad != text and json.loads(bad) == json.loads(text)  # what json.loads hides
    path = _write(tmp_path, bad)
    [problem] = vectors.validate_file(path)
    assert problem == f"{path}: duplicate key 'result' in a JSON object"
    bad = text.replace('"tolerance": {', '"tolerance": {"keras": 1000, ', 1)
    [problem] = vectors.validate_file(_write(tmp_path, bad))
    assert "duplicate key 'keras'" in problem


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ude00y", "\\ud83d"])
def test_lone_surrogates_are_rejected(tmp_path: Path, escape: str) -> None:
    text = vectors.dumps(_load("examples"))
    bad = text.replace('"comment": "', f'"comment": "{escape}', 1)
    path = _write(tmp_path, bad)
    [problem] = vectors.validate_file(path)
    assert problem.startswith(f"{path}: lone surrogate \\u")
    problem.encode("ascii")  # printable anywhere
    # a proper pair (what ensure_ascii writes for U+1F600) is text
    good = text.replace('"comment": "', '"comment": "\\ud83d\\ude00', 1)
    problems = vectors.validate_file(_write(tmp_path, good, "pair.json"))
    assert not any("surrogate" in p for p in problems)


def test_surrogate_in_a_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"\\udc80": 1}')
    assert vectors.validate_file(path) == [f"{path}: lone surrogate \\udc80 in a string "
                                           "(not Unicode text)"]


# ---------------------------------------------------------------------------
# What is read, and how much
# ---------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The command line in a child process (with 2 GiB of address space, so
    a read without limit fails fast rather than exhausting the machine)."""
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "expdecay.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          preexec_fn=limit if os.name == "posix" else None)


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and /dev/zero")
def test_fifo_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "vectors.json"
    os.mkfifo(fifo)  # no writer: reading it blocked forever
    paths = [str(fifo)] + (["/dev/zero"] if os.path.exists("/dev/zero") else [])
    proc = _cli("vectors", "validate", *paths)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{fifo}: not a regular file (a FIFO)"
    if len(paths) == 2:
        assert lines[1] == "/dev/zero: not a regular file (a character device)"
    assert len(lines) == len(paths) and proc.stderr == ""


def test_reads_stop_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular file whose size is not what stat says (/proc reports 0) is
    still read only up to the limit."""
    status = Path("/proc/self/status")
    if not status.exists() or status.stat().st_size != 0:
        pytest.skip("needs Linux /proc")
    monkeypatch.setattr(vectors.validation, "MAX_FILE_BYTES", 64)
    assert vectors.validate_file(status) == [f"{status}: larger than 64 bytes"]


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    absent = tmp_path / "absent.json"
    good = COMMITTED / "examples.json"
    assert main(["vectors", "validate", str(good), str(absent)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before validating anything
    assert err == f"expdecay: error: {absent}: no such file\n"


def test_sample_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "validate", "--sample", "0", str(COMMITTED / "examples.json")]) == 2
    assert "--sample must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["vectors", "validate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: every test" in text and "--sample N" in text
