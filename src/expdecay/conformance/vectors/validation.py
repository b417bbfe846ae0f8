"""Loading and validation of vector files.

Validation reads only regular files of bounded size, refuses duplicate keys
and lone surrogates, checks the schema, then regenerates every test from its
inputs with the generator's own code (:func:`~.expectations.make_tests`) and
compares it field by field: a file validates only if every expectation,
tolerance, flag and result is exactly what expdecay writes for those inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from ... import resources
from ...errors import ExpdecayError
from ...fileio import ReadRefusedError, read_limited
from ...floats import get_format
from .expectations import (
    ANALYSIS_NOTES,
    DERIVED_FLAGS,
    NOTES,
    OTHER_THEMES,
    Case,
    Group,
    declared_flags,
    decode_number,
    decode_result,
    encode_number,
    make_tests,
    valid_decay_steps,
)
from .generation import THEMES

__all__ = ["VectorFileError", "MAX_FILE_BYTES", "MAX_PROBLEMS", "default_vectors_dir", "schema",
           "load_vector_file", "check_schema", "iter_tests", "group_inputs", "lint",
           "validate_file"]

#: Largest vector file accepted (bytes).
MAX_FILE_BYTES = 64 << 20

class VectorFileError(ExpdecayError, ValueError):
    """A vector file that cannot be used: ``str()`` gives the file and reason."""


def default_vectors_dir() -> Path:
    """The vector files shipped with the package (:func:`expdecay.resources.vectors_dir`)."""
    return resources.vectors_dir()


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of vector files (:func:`expdecay.resources.schema_path`)."""
    doc: dict[str, Any] = json.loads(resources.schema_path().read_text(encoding="utf-8"))
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


class _RejectedJSONError(ExpdecayError, ValueError):
    """Well-formed JSON that a vector file must not contain."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys silently; a tampered file
    # could hide a value behind a second key, so duplicates are refused.
    obj: dict[str, Any] = {}
    for key, val in pairs:
        if key in obj:
            raise _RejectedJSONError(f"duplicate key {ascii(key[:60])} in a JSON object")
        obj[key] = val
    return obj


def _lone_surrogate(doc: Any) -> str | None:
    """The first lone surrogate (``\\ud800`` escapes decode to one) in a key or
    string of ``doc``, or None.  Iterative: the depth is not bounded yet."""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and not x.isascii():
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                return x[e.start]
    return None


def _parse_json(text: str) -> Any:
    doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    bad = _lone_surrogate(doc)
    if bad is not None:
        raise _RejectedJSONError(f"lone surrogate \\u{ord(bad):04x} in a string (not Unicode text)")
    return doc


def load_vector_file(path: Path | str) -> dict[str, Any]:
    """Read and schema-check a vector file; :class:`VectorFileError` otherwise.

    Only a regular file is read, and at most ``MAX_FILE_BYTES + 1`` bytes of
    it (:func:`expdecay.fileio.read_limited`): a FIFO or a device is refused
    without blocking.  Duplicate keys and lone surrogates are refused.
    """
    p = Path(path)
    try:
        raw = read_limited(p, MAX_FILE_BYTES)
    except ReadRefusedError as e:
        raise VectorFileError(str(e)) from None
    except OSError as e:
        raise VectorFileError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        doc = _parse_json(text)
    except UnicodeDecodeError:
        raise VectorFileError(f"{p}: not UTF-8 text") from None
    except RecursionError:
        raise VectorFileError(f"{p}: JSON nested too deeply") from None
    except _RejectedJSONError as e:
        raise VectorFileError(f"{p}: {e}") from None
    except ValueError as e:
        raise VectorFileError(f"{p}: not valid JSON: {str(e)[:200]}") from None
    check_schema(doc, p)
    return doc  # type: ignore[no-any-return]


def check_schema(doc: Any, p: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    except RecursionError:
        raise VectorFileError(f"{p}: JSON nested too deeply") from None
    if error is not None:
        where = "/".join(str(x) for x in error.absolute_path) or "(top level)"
        raise VectorFileError(f"{p}: schema: at {where}: {error.message[:200]}")


def iter_tests(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for g in doc["testGroups"]:
        for t in g["tests"]:
            yield g, t


def group_inputs(g: dict[str, Any], where: str) -> tuple[int | float, int | float, int | float]:
    return (decode_number(g["initialLearningRate"], f"{where}: initialLearningRate"),
            decode_number(g["decaySteps"], f"{where}: decaySteps"),
            decode_number(g["decayRate"], f"{where}: decayRate"))


#: Problems listed per file before the rest are summarised.
MAX_PROBLEMS = 50


def _number_key(x: int | float) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(encode_number(x).items()))


def _case_key(dtype: str, staircase: bool | int | str | None, I: int | float, D: int | float,
              r: int | float, s: int | float) -> tuple[Any, ...]:
    return (dtype, staircase, *(_number_key(x) for x in (I, D, r, s)))


@cache
def _theme_index(theme: str) -> dict[tuple[Any, ...], frozenset[tuple[str, ...]]]:
    """For a built-in theme: inputs of each of its tests -> the declared flags
    the theme gives them (more than one when two groups share the inputs)."""
    index: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
    for g in THEMES[theme][0]():
        for c in g.cases:
            key = _case_key(g.dtype, g.staircase, g.initial_learning_rate, g.decay_steps,
                            g.decay_rate, c.step)
            index.setdefault(key, set()).add(tuple(declared_flags(g, c)))
    return {k: frozenset(v) for k, v in index.items()}


def _check_declared(theme: str, key: tuple[Any, ...], declared: list[str], valid: bool,
                    where: str, staircase_ok: bool = True) -> list[str]:
    """The declared flags of a test against what its theme declares."""
    out = []
    if ("InvalidDecaySteps" in declared) == valid:
        out.append(f"{where}: decay_steps is {'valid' if valid else 'invalid'} but the "
                   f"InvalidDecaySteps flag is {'present' if valid else 'missing'}")
    if ("InvalidStaircase" in declared) == staircase_ok:
        out.append(f"{where}: staircase is {'a bool' if staircase_ok else 'not a bool'} but "
                   f"the InvalidStaircase flag is {'present' if staircase_ok else 'missing'}")
    allowed: frozenset[tuple[str, ...]]
    if theme in OTHER_THEMES:
        allowed = frozenset(OTHER_THEMES[theme])
    elif theme in THEMES:
        found = _theme_index(theme).get(key)
        if found is None:
            return out + [f"{where}: theme {theme!r} has no test with these inputs"]
        allowed = found
    else:
        return out  # an unknown theme is reported once for the file
    if tuple(declared) not in allowed:
        want = " or ".join(_short(list(a)) for a in sorted(allowed))
        out.append(f"{where}: declared flags {_short(declared)} but theme {theme!r} "
                   f"gives {want}")
    return out


def _short(x: Any) -> str:
    text = json.dumps(x, separators=(",", ":"), ensure_ascii=True)
    return text if len(text) <= 120 else text[:117] + "..."


_MISSING = object()

#: Fields of a test in the order problems are reported.
_TEST_FIELDS = ("tcId", "comment", "step", "result", "flags", "exact", "keras", "value",
                "tolerance")


def _compare(want: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
    """Field-by-field differences between the regenerated and the file's test."""
    out = []
    keys = [*_TEST_FIELDS, *sorted((set(want) | set(got)) - set(_TEST_FIELDS))]
    for key in keys:
        w, g = want.get(key, _MISSING), got.get(key, _MISSING)
        if w == g:
            continue
        if w is _MISSING:
            out.append(f"{where}: {key} {_short(g)} where expdecay writes none")
        elif g is _MISSING:
            out.append(f"{where}: {key} missing; expdecay writes {_short(w)}")
        elif key in ("exact", "keras", "value"):
            gv, wv = (g["bits"], w["bits"]) if key != "value" else (g, w)
            out.append(f"{where}: {key} {'bits ' if key != 'value' else ''}{gv} but the "
                       f"oracle gives {wv}")
        else:
            out.append(f"{where}: {key} {_short(g)} but expdecay writes {_short(w)}")
    return out


def _regenerate(group: Group, picked: list[dict[str, Any]]) -> list[str]:
    """Compare the picked tests of a group with :func:`make_tests`' records."""
    from ...oracle import PrecisionError

    try:
        records = make_tests(group, [t["tcId"] for t in picked])
    except (ArithmeticError, ValueError, TypeError):
        if len(picked) == 1:
            raise
        # Find the test(s) at fault; the others are still compared.
        out = []
        for case, t in zip(group.cases, picked, strict=True):
            one = Group(group.dtype, group.staircase, group.initial_learning_rate,
                        group.decay_steps, group.decay_rate, [case])
            try:
                out += _regenerate(one, [t])
            except PrecisionError as e:
                out.append(f"tcId {t['tcId']}: oracle undecided: {str(e)[:200]}")
            except (ArithmeticError, ValueError, TypeError) as e:
                out.append(f"tcId {t['tcId']}: cannot regenerate: {str(e)[:200]}")
        return out
    out = []
    for want, got in zip(records, picked, strict=True):
        out += _compare(want, got, f"tcId {got['tcId']}")
    return out


def _selection(count: int, sample: int | None) -> range:
    """Indices of the tests that are regenerated: all, or ``sample`` of them
    spread evenly (every k-th)."""
    if sample is None:
        return range(count)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample must be None (every test) or an int >= 1; got {sample!r}")
    return range(0, count, max(1, count // sample))[:sample]


def _lint_notes(doc: dict[str, Any]) -> list[str]:
    used = {f for _, t in iter_tests(doc) for f in t["flags"]}
    known = {**NOTES, **ANALYSIS_NOTES}
    out = []
    foreign = sorted(used - set(known))
    if foreign:
        out.append(f"flags expdecay does not write: {', '.join(foreign[:10])}")
    for name, note in doc["notes"].items():
        if name not in used:
            out.append(f"note {name} is for a flag no test has")
        elif name in known and note != dict(zip(("bugType", "description", "effect"),
                                               known[name], strict=True)):
            out.append(f"note {name} differs from expdecay's")
    return out


def lint(doc: dict[str, Any], p: Path, sample: int | None = None) -> list[str]:
    """Semantic problems of a schema-valid document (empty when fine).

    Every test (or, with ``sample``, that many of them) is regenerated from
    its inputs by :func:`make_tests`, the code that writes vector files, and
    compared field by field: expected bits of both orders, the exact value,
    tolerances, result and every flag.  Flags derived from the inputs must be
    exactly those computed; declared flags must be the ones the file's theme
    gives those inputs.  Notes must be expdecay's, and only for flags in use.
    """
    problems: list[str] = []
    tests = [t for _, t in iter_tests(doc)]
    ids = [t["tcId"] for t in tests]
    if ids != list(range(1, len(ids) + 1)):
        dup = len(ids) - len(set(ids))
        problems.append(f"tcIds must run 1..{len(ids)} in order"
                        + (f" ({dup} duplicated)" if dup else ""))
    if doc["numberOfTests"] != len(ids):
        problems.append(f"numberOfTests is {doc['numberOfTests']} but there are {len(ids)} tests")
    theme = doc["theme"]
    if theme not in THEMES and theme not in OTHER_THEMES:
        problems.append(f"theme {theme!r} is not one expdecay writes "
                        f"({', '.join([*THEMES, *OTHER_THEMES])}), so its flags cannot be "
                        "checked")
    problems += _lint_notes(doc)
    selected = set(_selection(len(tests), sample))
    first = 0
    for number, g in enumerate(doc["testGroups"], 1):
        problems += _lint_group(g, number, first, selected, theme, doc["notes"])
        first += len(g["tests"])
        if len(problems) > MAX_PROBLEMS:
            return problems[:MAX_PROBLEMS] + ["(more problems not listed)"]
    return problems


def _lint_group(g: dict[str, Any], number: int, first: int, selected: set[int], theme: str,
                notes: dict[str, Any]) -> list[str]:
    """Problems of one test group; ``first`` is the index of its first test."""
    where_g = f"group {number}"
    try:
        I, D, r = group_inputs(g, where_g)
    except ValueError as e:
        return [str(e)[:300]]
    problems = []
    for name, x in (("initialLearningRate", I), ("decaySteps", D), ("decayRate", r)):
        if encode_number(x) != g[name]:
            problems.append(f"{where_g}: {name} {_short(g[name])} but expdecay writes "
                            f"{_short(encode_number(x))}")
    valid_d = valid_decay_steps(D)
    staircase_ok = isinstance(g["staircase"], bool)
    valid = valid_d and staircase_ok
    fmt = get_format(g["dtype"])
    cases: list[Case] = []
    picked: list[dict[str, Any]] = []
    for j, t in enumerate(g["tests"]):
        where = f"tcId {t['tcId']}"
        unnoted = [f for f in t["flags"] if f not in notes]
        if unnoted:
            problems.append(f"{where}: flags without a note: {', '.join(unnoted[:5])}")
        try:
            s = decode_number(t["step"], f"{where}: step")
            if (t["result"] == "invalid") == valid:
                why = ("decay_steps is valid and staircase a bool" if valid else
                       "decay_steps is invalid" if not valid_d else
                       f"staircase {_short(g['staircase'])} is not a bool")
                problems.append(f"{where}: result {t['result']!r} but {why}")
                continue
            if valid:
                decode_result(t["exact"], fmt, f"{where}: exact")
                decode_result(t["keras"], fmt, f"{where}: keras")
        except ValueError as e:
            problems.append(str(e)[:300])
            continue
        declared = [f for f in t["flags"] if f not in DERIVED_FLAGS]
        key = _case_key(g["dtype"], g["staircase"], I, D, r, s)
        problems += _check_declared(theme, key, declared, valid_d, where, staircase_ok)
        if first + j in selected:
            cases.append(Case(s, t["comment"], tuple(declared)))
            picked.append(t)
    if cases:
        group = Group(g["dtype"], g["staircase"], I, D, r, cases, comment=g["comment"])
        problems += _regenerate(group, picked)
    return problems


def validate_file(path: Path | str, sample: int | None = None) -> list[str]:
    """Problems of a vector file, each ``"FILE: reason"`` (empty when valid).

    ``sample=None`` (the default) regenerates and compares every test;
    ``sample=N`` only N of them, evenly spread (faster, weaker: the other
    tests get only the structural checks).  Never raises for a bad file:
    malformed JSON, wrong types, huge numbers or deep nesting are reported as
    problems.
    """
    _selection(0, sample)  # a bad sample is the caller's error, not the file's
    p = Path(path)
    try:
        doc = load_vector_file(p)
        return [f"{p}: {m}" for m in lint(doc, p, sample)]
    except VectorFileError as e:
        return [str(e)]
    except (RecursionError, MemoryError):
        return [f"{p}: document too deep or too large"]
    except Exception as e:  # noqa: BLE001 - a report, never a traceback
        return [f"{p}: unusable ({type(e).__name__}: {str(e)[:200]})"]
