"""The command line's messages: large step powers, ranges, skipped bounds,
singular and plural counts, plain help text, progress lines, missing extras."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from expdecay.cli import build_parser, main, plain_help
from expdecay.cli.analyze import LOG_PROGRESS_INTERVAL, stderr_progress

# -- the command line ---------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


SCHEDULE = ("--initial-learning-rate", "0.1", "--decay-steps", "1", "--decay-rate", "0.96")


# -- step powers, ranges, bounds, counts, help ----------------------------------


def test_eval_step_power_beyond_int64(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, "eval", "--initial-learning-rate", "0.1",
                               "--decay-steps", "10**29", "--decay-rate", "0.5",
                               "--step", "10**30")
    assert status == 0, err
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:4]}
    # exponent exactly 10: rnd32(0.1 * 2**-10) = rnd32(0.1) * 2**-10 = 0x1.99999ap-14
    assert "0x1.99999ap-14" in lines["exact"] and "0x1.99999ap-14" in lines["keras"]
    status, out, err = run_cli(capsys, "eval", *SCHEDULE, "--step", "10**10000000")
    assert status == 2 and out == "" and len(err.splitlines()) == 1 and "step" in err


def test_negative_range_without_equals(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, "analyze", *SCHEDULE, "--steps", "-5:5", "--quiet",
                               "--no-bound")
    assert status == 0, err
    assert "[-5, 5): 10 steps" in out
    status, out, err = run_cli(capsys, "eval", "--initial-learning-rate", "0.1",
                               "--decay-steps", "1", "--decay-rate", "0.5", "--step", "-2**3")
    assert status == 0, err
    assert "0x1.99999ap+4" in out  # 0.1 * 0.5**-8 = rnd32(0.1) * 256


def test_no_bound_says_it_was_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, "analyze", *SCHEDULE, "--steps", "1000", "--quiet",
                               "--no-bound")
    assert status == 0, err
    [line] = [ln for ln in out.splitlines() if ln.startswith("bound")]
    assert "not computed" in line and "--no-bound" in line
    assert "expdecay.bounds" not in out


def test_counts_of_one_are_singular(capsys: pytest.CaptureFixture[str]) -> None:
    # float32, D = 1000: step 16777999 (odd, above 2**24) rounds to 16778000,
    # so it is the one misfloor of this range: one step, one run.
    status, out, err = run_cli(capsys, "analyze", "--initial-learning-rate", "0.1",
                               "--decay-steps", "1000", "--decay-rate", "0.9999", "--staircase",
                               "--steps", "16777998:16778001", "--quiet")
    assert status == 0, err
    assert "misfloors 1 step in [16777998, 16778001) (1 early, 0 late, 0 non-finite; " \
           "1 run; exact enumeration)" in out
    status, out, err = run_cli(capsys, "analyze", *SCHEDULE, "--steps", "1000", "--quiet")
    assert "1 of 1 step off" in out and "(keras order, 1 sampled step)" in out
    assert not re.search(r"(?<![\d,])1 (steps|runs)\b", out), out


def test_help_has_no_rest_markup() -> None:
    parser = build_parser()
    texts = [parser.format_help()]
    sub = next(a for a in parser._actions if a.dest == "command")
    for p in sub.choices.values():  # type: ignore[union-attr]
        texts.append(p.format_help())
        for a in p._actions:
            if getattr(a, "choices", None) and isinstance(a.choices, dict):
                texts += [q.format_help() for q in a.choices.values()]
    assert len(texts) >= 8
    for t in texts:
        assert "`" not in t, t
    assert plain_help("``a`` and `b c`") == "a and 'b c'"


# -- progress -----------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_carriage_returns_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    show = stderr_progress("analyze")
    for i in range(1, 5):
        show(i * 25, 100, float(i))
    text = tty.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    show = stderr_progress("analyze")
    times = [0.5, 1.0, 2.0, LOG_PROGRESS_INTERVAL + 0.6, LOG_PROGRESS_INTERVAL + 1.0, 30.0]
    for i, t in enumerate(times, 1):
        show(i, len(times), t)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # the first, then one after the interval, then the last
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["1/6", "4/6", "6/6"]


def test_progress_singular_and_plural(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    stderr_progress("analyze")(1, 1, 1.0)
    stderr_progress("misfloors", "cells")(2_000, 2_000, 1.0)
    assert log.getvalue().splitlines() == [
        "analyze: 1/1 step (100%), 1 step/s",
        "misfloors: 2,000/2,000 cells (100%), 2,000 cells/s",
    ]


# -- optional extras ----------------------------------------------------------


def test_missing_plot_extra_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    status, out, err = run_cli(capsys, "analyze", *SCHEDULE, "--steps", "1000", "--quiet",
                               "--plot", str(tmp_path / "p.png"))
    assert (status, out) == (2, "")
    assert err == ("expdecay: error: --plot needs matplotlib, which is not installed: "
                   "pip install 'expdecay[plot]'\n")
    status, out, err = run_cli(capsys, "report", *SCHEDULE, "--steps", "1000", "--quiet",
                               "--output", str(tmp_path / "r.md"))
    assert status == 2 and "expdecay[plot]" in err and len(err.splitlines()) == 1


def test_missing_search_extra_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(__import__("sys").modules, "hypothesis", None)
    status, out, err = run_cli(capsys, "analyze", *SCHEDULE, "--steps", "0:100", "--quiet",
                               "--search", "5")
    assert (status, out) == (2, "")
    assert err == ("expdecay: error: --search needs hypothesis, which is not installed: "
                   "pip install 'expdecay[search]'\n")
