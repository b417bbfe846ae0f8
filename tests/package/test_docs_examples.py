"""Every console example of the documentation runs, and prints what it shows.

The convention, for anyone writing documentation here
=====================================================

Files: ``README.md``, ``conformance/README.md`` and ``spec/*.md``.

* A console example is a fenced block opened by exactly ```` ```console ````.
  Other blocks (```` ```sh ````, ```` ```python ````, ...) are not run: use
  ```` ```sh ```` for commands that cannot run here (installs, your own
  programs).
* In it, a line starting with ``$ `` is a command, run by ``bash`` (a line
  ending in ``\\`` continues on the next one).  The lines up to the next
  ``$ `` line or the end of the block are its expected output.
* Commands run one after the other, in a fresh temporary directory holding a
  copy of the repository's ``conformance/`` and ``spec/`` directories
  (so ``conformance/vectors/boundaries.json`` can be read, and whatever an
  example writes lands in the copy, never in the checkout).  ``expdecay``
  and ``python`` are the ones under test.
* Expected output is compared with the command's stdout; when the command
  exits with a non-zero status, its stderr is appended (an example of an
  error shows the error line).  Progress lines, written on stderr, are thus
  left out of successful examples.
* **Elision**: ``...`` stands for any text (doctest's ELLIPSIS): inside a
  line it skips part of that line (with the blanks around it: ``33 ulp ...
  worst`` fits ``33 ulp, mean 3; worst``); a line holding only ``...``
  skips any number of lines, none included.  Write it wherever output is
  trimmed, so that a trimmed example says so.
* Timings are masked on both sides before comparing: ``0.7 s``, ``12 ms``
  and rates such as ``722,600 steps/s`` compare equal to any other value.
* An example whose commands need a peer framework (``--impl`` or
  ``--implementation`` keras, tf-keras, optax or torch) is skipped, with
  that reason, where the framework is not installed.
* An example taking more than a few seconds goes to the slow tier
  (``--tier slow``): put the line ``<!-- console: slow -->`` just before its
  fence (invisible on a rendered page).
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.paths import ROOT

SRC = ROOT / "src"
DOCS = ["README.md", "conformance/README.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "spec").glob("*.md"))]
SLOW_MARK = "<!-- console: slow -->"
PEERS = {"keras": "keras", "tf-keras": "tf_keras", "optax": "optax", "torch": "torch"}
TIMEOUT = 600  # seconds per command: nothing may hang the suite


@dataclass
class Command:
    text: str
    expected: str


@dataclass
class Block:
    doc: str
    line: int
    commands: list[Command]
    slow: bool


def parse_blocks(doc: str, text: str) -> list[Block]:
    """The console blocks of a Markdown text (see the module docstring)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        start = i + 1
        slow = i > 0 and lines[i - 1].strip() == SLOW_MARK
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{doc}:{start}: console block never closed")
        i += 1
        commands: list[Command] = []
        j = 0
        while j < len(body):
            if not body[j].startswith("$ "):
                raise ValueError(f"{doc}:{start + j + 1}: output before any '$ ' command")
            cmd = [body[j][2:]]
            while cmd[-1].endswith("\\") and j + 1 < len(body):
                j += 1
                cmd.append(body[j])
            j += 1
            out: list[str] = []
            while j < len(body) and not body[j].startswith("$ "):
                out.append(body[j])
                j += 1
            commands.append(Command("\n".join(cmd), "\n".join(out)))
        blocks.append(Block(doc, start, commands, slow))
    return blocks


def all_blocks() -> list[Block]:
    out: list[Block] = []
    for doc in DOCS:
        out += parse_blocks(doc, (ROOT / doc).read_text(encoding="utf-8"))
    return out


_TIME = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)? ?(?:s|ms|us|µs)\b")
_RATE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)? [A-Za-z]+/s\b")


def normalise(text: str) -> str:
    """Timings masked, trailing blanks dropped, one final newline."""
    text = _RATE.sub("<rate>/s", text)  # "1 step/s" and "722,600 steps/s" alike
    text = _TIME.sub("<time>", text)
    lines = [ln.rstrip() for ln in text.strip("\n").splitlines()]
    return "\n".join(lines) + "\n" if lines else ""


def matches(expected: str, actual: str) -> bool:
    # An inline "..." takes the blanks around it along (see the module docstring).
    want = re.sub(r"(?<=\S) \.\.\.", "...", normalise(expected))
    want = re.sub(r"\.\.\. (?=\S)", "...", want)
    got = normalise(actual)
    return doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS)


def missing_peer(block: Block) -> str | None:
    for c in block.commands:
        for name in re.findall(r"--impl(?:ementation)?[ =]\"?([\w-]+)", c.text):
            module = PEERS.get(name)
            if module and importlib.util.find_spec(module) is None:
                return f"needs {module} (the peers extra), not installed here"
    return None


def environment(bin_dir: Path) -> dict[str, str]:
    """``expdecay`` and ``python`` of the code under test, first on PATH."""
    bin_dir.mkdir()
    shim = bin_dir / "expdecay"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m expdecay.cli "$@"\n')
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "100"  # argparse wraps --help text to the terminal width
    return env


def run_block(block: Block, workdir: Path) -> list[str]:
    """Run the block's commands; the mismatches, as readable reports."""
    for sub in ("conformance", "spec"):
        shutil.copytree(ROOT / sub, workdir / sub)
    env = environment(workdir / ".bin")
    problems = []
    for c in block.commands:
        r = subprocess.run(["bash", "-c", c.text], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT)
        actual = r.stdout + (r.stderr if r.returncode else "")
        if not matches(c.expected, actual):
            example = doctest.Example(c.text, normalise(c.expected))
            diff = doctest.OutputChecker().output_difference(
                example, normalise(actual), doctest.ELLIPSIS)
            problems.append(f"$ {c.text}\n(exit status {r.returncode})\n{diff}"
                            + (f"\nstderr:\n{r.stderr[-1500:]}" if r.returncode else ""))
    return problems


BLOCKS = all_blocks()


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=f"{b.doc}:{b.line}", marks=[pytest.mark.slow] if b.slow else [])
     for b in BLOCKS])
def test_console_example(block: Block, tmp_path: Path) -> None:
    reason = missing_peer(block)
    if reason:
        pytest.skip(reason)
    problems = run_block(block, tmp_path)
    assert not problems, f"{block.doc}:{block.line}\n" + "\n\n".join(problems)


def test_every_document_is_searched() -> None:
    """The README has console examples, so the parser finds what it should."""
    assert any(b.doc == "README.md" for b in BLOCKS)
    assert all(b.commands for b in BLOCKS)


# The runner itself: it must be able to fail.

def test_parser_reads_commands_continuations_and_output() -> None:
    text = ("intro\n" + SLOW_MARK + "\n```console\n$ echo a \\\n    b\na b\n$ true\n```\n"
            "```sh\n$ not run\n```\n")
    [b] = parse_blocks("x.md", text)
    assert b.slow and b.line == 3
    assert [(c.text, c.expected) for c in b.commands] == [("echo a \\\n    b", "a b"),
                                                        ("true", "")]


def test_matching_masks_timings_and_honours_elision() -> None:
    assert matches("took 0.1 s, 103 steps/s\n", "took 46.4 s, 722,600 steps/s\n")
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert matches("max 33 ulp ... worst at 7\n", "max 33 ulp, mean 3; worst at 7\n")
    assert matches("max 0 ulp ...\nb\n", "max 0 ulp, mean 0\nb\n")
    assert not matches("a\nd\n", "a\nb\nd\n")  # trimmed without saying so
    assert not matches("max 33 ulp\n", "max 34 ulp\n")
    assert not matches("1 steps\n", "1 step\n")


def test_runner_reports_wrong_output(tmp_path: Path) -> None:
    [good, bad] = parse_blocks("x.md", "```console\n$ echo hello\nhello\n```\n"
                                       "```console\n$ echo hello\nhullo\n```\n")
    assert run_block(good, tmp_path / "good") == []
    [problem] = run_block(bad, tmp_path / "bad")
    assert "hullo" in problem and "hello" in problem


def test_examples_write_into_the_temporary_directory(tmp_path: Path) -> None:
    [b] = parse_blocks("x.md", "```console\n$ touch spec/new_file && pwd\n...\n```\n")
    assert run_block(b, tmp_path) == []
    assert (tmp_path / "spec" / "new_file").exists()
    assert not (ROOT / "spec" / "new_file").exists()
