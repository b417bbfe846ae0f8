"""``expdecay check``: check implementations against the conformance vectors.

The runner itself is :mod:`expdecay.conformance.runner`; this module reads
the arguments, prints the per-file report and the table, and turns the
outcome into an exit status: 0 every applicable test passed; 1 a test
failed or was not run (its worker crashed), or a vector file is unusable;
3 an implementation was unavailable (it could not start or did not answer
the hello line), whatever else happened; 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..conformance import runner
from ..conformance.adapters import (
    default_configurations,
    missing_configurations,
    parse_options,
)
from ..conformance.adapters.codec import MAX_TIMEOUT, STARTUP_FACTOR
from ..conformance.runner import (
    PROFILES,
    ImplementationReport,
    check_name,
    markdown_table,
    vector_paths,
)
from ..conformance.vectors import VectorFileError, load_vector_file
from ..fileio import atomic_write
from . import as_flag, to_stderr

__all__ = ["add_check_arguments", "run_check", "print_report", "print_table", "describe_case"]



def _fmt_ulps(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:g}"


def describe_case(entry: dict[str, Any]) -> str:
    i = entry["inputs"]
    head = (f"tcId {entry['tcId']}: {i['dtype']}{' staircase' if i['staircase'] else ''} "
            f"I={i['initial_learning_rate']} D={i['decay_steps']} r={i['decay_rate']} "
            f"step={i['step']}: got {entry['observed']} want {entry['expected']}")
    if entry.get("error"):
        head += f" ({entry['error'][:80]})"
    ids = "+".join(entry.get("causeIds") or []) or entry.get("diagnosis", "")
    if entry.get("alternatives"):
        ids = "ambiguous: " + " or ".join("+".join(a) for a in entry["alternatives"])
    return head + f" [{ids}: {'; '.join(entry['causes'])}]"


def print_report(rep: ImplementationReport, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"\n{rep.name} ({rep.version}), profile {rep.profile}"
          f"{', vectorised' if rep.vectorised else ''}", file=out)
    if rep.unavailable:
        print(f"  UNAVAILABLE: {rep.error} (nothing run, nothing passed)", file=out)
        return
    if rep.error:
        print(f"  error: {rep.error}", file=out)
    for f in rep.files:
        line = (f"  {f.file:<22} passed {f.passed:5d}  failed {f.failed:5d}  n/a {f.na:5d}  "
                f"max ulp {_fmt_ulps(f.max_ulps)}")
        if f.within_tolerance:
            line += f"  ({f.within_tolerance} within tolerance)"
        if f.not_run:
            line += f"  NOT RUN {f.not_run}"
        if f.process_state:
            line += f"  process state {f.process_state}"
        if f.nondeterministic:
            line += f"  nondeterministic {f.nondeterministic}"
        print(line, file=out)
        if f.worst is not None:
            print(f"    worst: {describe_case(f.worst)}", file=out)
        if f.not_run_tests:
            print(f"    not run: tcId {f.not_run_tests[0]['tcId']}: "
                  f"{f.not_run_tests[0]['reason'][:100]}", file=out)
        if f.state_tests:
            e = f.state_tests[0]
            seen = ", ".join(f"{p['observed']} ({p['pass']})" for p in e["passes"])
            print(f"    {e['state']}: tcId {e['tcId']}: got {seen}; want {e['expected']}",
                  file=out)
    if rep.classes:
        print("  failure classes: " + "; ".join(f"{k} x{v}" for k, v in
                                                rep.classes.most_common()), file=out)


def print_table(reports: list[ImplementationReport], out: Any = None,
                missing: list[tuple[str, str]] | None = None) -> None:
    out = out or sys.stdout
    print("\nConformance table", file=out)
    head = (f"{'implementation':<34} {'profile':<7} {'passed':>7} {'failed':>7} "
            f"{'not run':>7} {'state':>5} {'n/a':>6}  main failure classes")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in reports:
        classes = ", ".join(f"{k} ({v})" for k, v in r.classes.most_common(3))
        if r.unavailable:
            classes = f"UNAVAILABLE: {(r.error or '')[:60]}"
        print(f"{r.name:<34} {r.profile:<7} {r.passed:>7} {r.failed:>7} {r.not_run:>7} "
              f"{r.process_state + r.nondeterministic:>5} {r.na:>6}  {classes}", file=out)
    unavailable = sorted({r.name for r in reports if r.unavailable})
    if unavailable:
        print(f"\nFound but could not start: {', '.join(unavailable)}", file=out)
    if missing is not None:
        print("Looked for and not found: " + ("; ".join(f"{n}: {why}" for n, why in missing)
                                              or "none"), file=out)


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", action="append", metavar="NAME",
                   help="implementation: expdecay, keras, tf-keras, tf-compat-v1, optax, "
                   "jax-example-libraries, torch, timm, mlx, paddle, mindspore, "
                   "python:module:function or cmd:COMMAND (repeatable; default: every "
                   "installed implementation)")
    p.add_argument("--vectors", nargs="+", metavar="PATH",
                   help="vector files or directories (default: the vectors installed with "
                   "expdecay)")
    p.add_argument("--profile", choices=[*PROFILES, "both"], default="both",
                   help="expected order and tolerances (default: both)")
    p.add_argument("--report", metavar="FILE.json", help="write the full report as JSON")
    p.add_argument("--markdown", metavar="FILE.md", help="write the table as Markdown")
    p.add_argument("--backend", choices=["numpy", "jax", "torch", "tensorflow"],
                   help="Keras 3 backend (keras only)")
    p.add_argument("--x64", action="store_true",
                   help="enable JAX x64 (optax and jax-example-libraries)")
    p.add_argument("--step-mode", choices=["array", "scalar"],
                   help="one call per step array (default) or per step")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an adapter option, e.g. initial=numpy_scalar or floatx=float64 "
                   "(keras), count_dtype=int32 (optax), form=chainable (torch); repeatable")
    p.add_argument("--all-variants", action="store_true",
                   help="with no --impl: also scalar-step variants, torch's chainable form "
                   "and the dtype paths (keras initial=numpy_scalar and floatx=float64, "
                   "optax count_dtype)")
    p.add_argument("--no-rerun", action="store_true",
                   help="do not re-run failing groups in a fresh process (the verdicts are "
                   "the same; failures are then not labelled process-state or "
                   "nondeterministic)")
    p.add_argument("--isolate", action="store_true",
                   help="re-run each failing group in a fresh process of its own (slower; "
                   "the default re-runs them all in one fresh process, in reverse order)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="implementations checked at once (default: every one, up to "
                   f"{runner.usable_jobs()} on this machine)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed for each request to an implementation "
                   f"(default %(default)g, at most {MAX_TIMEOUT:g}); its start-up, up to "
                   f"its hello line, is allowed {STARTUP_FACTOR:g} times as long")
    r = p.add_argument_group("random campaign (spec/conformance.md section 8)")
    r.add_argument("--random", type=int, metavar="N", help="check N random cases drawn from "
                   "the hard regions and the whole domain instead of the vectors")
    r.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    r.add_argument("--dtype", action="append", metavar="DTYPE", help="formats --random draws "
                   "from (repeatable or comma-separated; default: those the implementation "
                   "expresses)")
    r.add_argument("--write-failures", metavar="FILE.json",
                   help="write the failing cases of --random as a vector file")
    r.add_argument("--max-failures", type=int, default=200, metavar="N",
                   help="failures of --random recorded, diagnosed and written (default 200)")



#: implementations taking the x64 and step_mode options
_X64 = ("optax", "jax-example-libraries")
_STEP_MODE = ("keras", "tf-keras", "tf-compat-v1", "optax", "jax-example-libraries")


def _options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    opts: dict[str, Any] = parse_options(args.option)
    if args.backend:
        if name != "keras":
            raise ValueError(f"--backend applies to keras only; got --impl {name}")
        opts["backend"] = args.backend
    if args.x64:
        if name not in _X64:
            raise ValueError(f"--x64 applies to {' and '.join(_X64)} only; got --impl {name}")
        opts["x64"] = True
    if args.step_mode:
        if name not in _STEP_MODE:
            raise ValueError(f"--step-mode applies to --impl {', '.join(_STEP_MODE)} only; "
                             f"got --impl {name}")
        opts["step_mode"] = args.step_mode
    return opts



#: Options that configure one implementation: each needs ``--impl``.
_NEEDS_IMPL = (("backend", "--backend", "keras"), ("x64", "--x64", " or ".join(_X64)),
               ("step_mode", "--step-mode", ", ".join(_STEP_MODE)))


def configurations(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    if not args.impl:
        for attr, flag, names in _NEEDS_IMPL:
            if getattr(args, attr):
                raise ValueError(f"{flag} needs --impl naming the implementation ({names})")
    if args.impl:
        out = []
        for name in args.impl:
            opts = _options(args, name)  # cheap checks before a python: module's probe
            try:
                out.append((check_name(name, args.timeout), opts))
            except ValueError as e:
                raise as_flag(e, {"impl": "--impl"}) from None
        return out
    configs = default_configurations()
    if args.all_variants:
        extra: list[tuple[str, dict[str, Any]]] = []
        for name, opts in configs:
            if name in _STEP_MODE:
                extra.append((name, {**opts, "step_mode": "scalar"}))
            if name == "torch":
                extra.append((name, {"form": "chainable"}))
        for name, opts in configs:  # the dtype paths
            if name == "keras" and opts.get("backend") == "torch":
                extra.append((name, {**opts, "initial": "numpy_scalar"}))
            if name == "keras" and opts.get("backend") in ("jax", "torch"):
                extra.append((name, {**opts, "floatx": "float64"}))
            if name == "optax" and opts.get("x64"):
                extra.append((name, {**opts, "count_dtype": "float32"}))
        configs = configs + extra
    return configs


def run_check(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise ValueError(f"--timeout must be > 0 and at most {MAX_TIMEOUT:g}; got {args.timeout}")
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    _check_outputs(args)
    if args.random is not None or args.write_failures or args.dtype:
        return _run_random(args, profiles)
    configs = configurations(args)
    docs: dict[str, dict[str, Any]] = {}
    bad_files = 0
    try:
        paths = vector_paths(args.vectors)
    except ValueError as e:
        raise as_flag(e, {"vectors": "--vectors"}) from None
    for path in paths:
        try:
            docs[path.name] = load_vector_file(path)
        except VectorFileError as e:
            print(f"expdecay check: {e}", file=sys.stderr)
            bad_files += 1
    if not docs:
        print("expdecay check: no usable vector file", file=sys.stderr)
        return 1
    reports: list[ImplementationReport] = []
    for reps in runner.check_implementations(configs, docs, profiles, args.timeout,
                                             progress=to_stderr, rerun=_rerun(args),
                                             jobs=args.jobs):
        for r in reps:  # in the order of configs; the checks run in parallel
            print_report(r)
        reports += reps
    missing = missing_configurations() if not args.impl else None
    print_table(reports, missing=missing)
    if args.report:
        doc = {"profiles": list(profiles), "vectorFiles": list(docs),
               "notFound": [{"implementation": n, "reason": why} for n, why in missing or []],
               "causeVocabulary": {**runner.CAUSES, **runner.FACTS, **runner.STATES},
               "implementations": [r.to_json() for r in reports]}
        _write(args.report, json.dumps(doc, indent=1) + "\n", "--report")
    if args.markdown:
        _write(args.markdown, markdown_table(reports), "--markdown")
    if any(r.unavailable for r in reports):
        return 3
    ok = bad_files == 0 and all(r.ok for r in reports)
    return 0 if ok else 1


def _rerun(args: argparse.Namespace) -> bool | str:
    if args.no_rerun and args.isolate:
        raise ValueError("--isolate re-runs the failing groups, --no-rerun does not: give one")
    return False if args.no_rerun else "isolate" if args.isolate else True


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output file that cannot be written."""
    for attr, flag in (("report", "--report"), ("markdown", "--markdown"),
                       ("write_failures", "--write-failures")):
        value = getattr(args, attr, None)
        if value is not None:
            runner.check_output_path(value, flag)


def _write(path: str, text: str, flag: str) -> None:
    """Write an output file; an error names the user's path."""
    try:
        atomic_write(Path(path), text)
    except OSError as e:
        raise ValueError(f"{flag}: cannot write {path!r}: "
                         f"{e.strerror or type(e).__name__}") from None


def _run_random(args: argparse.Namespace, profiles: tuple[str, ...]) -> int:
    """``--random N``: a campaign per implementation (spec/conformance.md §8)."""
    from ..conformance import campaign

    if args.random is None:
        raise ValueError("--write-failures and --dtype need --random N")
    if not 1 <= args.random <= 10**9:
        raise ValueError(f"--random must be between 1 and 10**9; got {args.random}")
    if not 0 <= args.seed < 2**128:
        raise ValueError(f"--seed must be >= 0 and below 2**128; got {args.seed}")
    if args.vectors:
        raise ValueError("--random checks random cases, not --vectors; give one of them")
    if args.jobs is not None:
        raise ValueError("--jobs applies to checks of the vectors; --random checks one "
                         "implementation after another")
    if args.isolate:
        raise ValueError("--isolate applies to checks of the vectors; --random does not "
                         "re-run")
    if args.write_failures and len(args.impl or []) != 1:
        raise ValueError("--write-failures needs exactly one --impl")
    try:
        dtypes = campaign.parse_dtypes(args.dtype)
    except ValueError as e:
        raise as_flag(e, {"dtype": "--dtype"}) from None
    reports: list[ImplementationReport] = []
    for name, opts in configurations(args):
        reps, _ = campaign.check_random(name, opts, args.random, args.seed, profiles, dtypes,
                                        timeout=args.timeout, max_failures=args.max_failures,
                                        write=args.write_failures, progress=to_stderr)
        for r in reps:
            print_report(r)
        reports += reps
    print_table(reports)
    if args.report:
        doc = {"profiles": list(profiles), "random": {"cases": args.random, "seed": args.seed},
               "causeVocabulary": {**runner.CAUSES, **runner.FACTS, **runner.STATES},
               "implementations": [r.to_json() for r in reports]}
        _write(args.report, json.dumps(doc, indent=1) + "\n", "--report")
    if args.markdown:
        _write(args.markdown, markdown_table(reports), "--markdown")
    if any(r.unavailable for r in reports):
        return 3
    return 0 if all(r.ok for r in reports) else 1
