"""The ``expdecay`` command line.

The top layer of the package: the only code that reads argv, uses argparse,
prints results and chooses exit statuses.  Each subcommand is a module of this
package listed in :data:`COMMANDS` (``eval`` is here, ``vectors`` in
:mod:`.vectors`, ``check`` in :mod:`.check`, ``analyze`` and ``report`` in
:mod:`.analyze`); the library it drives never imports it.
Bad arguments and bad values print one line ``expdecay: error: ...`` on
stderr and exit with status 2; Ctrl-C ends every worker process, prints
``expdecay: interrupted`` and exits with status 130 (SIGTERM and SIGHUP:
``expdecay: terminated``, status 128 + the signal's number).

The library's messages name its Python arguments (``decay_steps must be
...``); each command shows them with its flags instead (``--decay-steps must
be ...``), through :func:`flags_in_errors`.

Resource requests are checked here, for every subcommand that takes them:
``--workers`` above :data:`MAX_WORKERS` is refused, and fewer workers than
asked are started when the process may use fewer cores (no point in forking
48 processes on 2 cores); ``--option`` values must be scalars.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from ..errors import ExpdecayError
from ..orders import ORDERS, Order, check_order
from ..resources import MissingExtraError

#: subcommand -> (module of :mod:`expdecay.cli` that provides it, one-line help).
#: A module provides ``add_<command>_arguments(parser)`` (or ``add_arguments``) and
#: ``run_<command>(args) -> int`` (or ``run``); it is imported when the parser is built.
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("expdecay.cli", "evaluate the schedule at one step, correctly rounded"),
    "vectors": ("expdecay.cli.vectors", "generate or validate conformance vector files"),
    "check": ("expdecay.cli.check", "check an implementation against the vectors"),
    "analyze": ("expdecay.cli.analyze", "precision analysis of a schedule and an implementation"),
    "report": ("expdecay.cli.analyze", "write a Markdown/HTML precision report"),
}


#: Most worker processes a command may ask for (``--workers``).
MAX_WORKERS = 256


def usable_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class UsageError(ExpdecayError):
    """A bad command-line argument or value: one line, exit status 2."""


#: An argument that begins with "-" but is a value, not an option: a negative
#: number, range or special value (``--steps -5:5``, ``--decay-rate -inf``).
_NEGATIVE_VALUE = re.compile(r"-(?:[0-9]|\.[0-9]|inf|nan|0x)", re.IGNORECASE)

#: reST inline literals (``x`` and `x`) in help texts written for Sphinx.
_REST_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain_help(text: str) -> str:
    """``text`` with reST literals shown as a terminal shows them.

    >>> plain_help("The ``expdecay`` command line, as for `expdecay check`")
    "The expdecay command line, as for 'expdecay check'"
    """
    return _REST_LITERAL.sub(lambda m: m.group(1) or f"'{m.group(2)}'", text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def format_help(self) -> str:
        return plain_help(super().format_help())

    def format_usage(self) -> str:
        return plain_help(super().format_usage())

    def _parse_optional(self, arg_string: str) -> Any:
        # argparse takes "-5:5" for an option (only "-5" and "-.5" count as
        # negative numbers), so "--steps -5:5" would need "--steps=-5:5".
        if _NEGATIVE_VALUE.match(arg_string):
            return None
        return super()._parse_optional(arg_string)


#: The flag of each Python argument of the schedule, as the commands spell them.
SCHEDULE_FLAGS: dict[str, str] = {
    name: "--" + name.replace("_", "-")
    for name in ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "dtype",
                 "step", "steps")
}


def as_flag(e: Exception, flags: Mapping[str, str]) -> Exception:
    """``e`` with the Python argument that begins its message replaced by its
    command-line flag (``flags`` maps one to the other), as an exception of
    the same type; ``e`` itself when its message begins with none of them.

    >>> as_flag(ValueError("decay_steps must be finite and > 0; got '0'"), SCHEDULE_FLAGS)
    ValueError("--decay-steps must be finite and > 0; got '0'")
    >>> as_flag(ValueError("steps must be START:STOP"), {"step": "--step"})
    ValueError('steps must be START:STOP')
    """
    text = str(e)
    for argument in sorted(flags, key=len, reverse=True):
        rest = text[len(argument):]
        if text.startswith(argument) and not (rest[:1].isalnum() or rest[:1] == "_"):
            try:
                return type(e)(flags[argument] + rest)
            except Exception:  # noqa: BLE001 - a type that needs other arguments
                return e
    return e


@contextmanager
def flags_in_errors(flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a ``ValueError`` or ``TypeError`` of the library with its
    argument named by its flag (:func:`as_flag`)."""
    try:
        yield
    except (ValueError, TypeError) as e:
        shown = as_flag(e, flags)
        if shown is e:
            raise
        raise shown from None


def to_stderr(line: str) -> None:
    """Print a progress line on stderr at once (the library's ``progress`` callbacks)."""
    print(line, file=sys.stderr, flush=True)


def add_schedule_arguments(p: argparse.ArgumentParser, *, step: bool = True) -> None:
    """The schedule's parameters, shared by the subcommands."""
    p.add_argument("--initial-learning-rate", required=True, metavar="X")
    p.add_argument("--decay-steps", required=True, metavar="D")
    p.add_argument("--decay-rate", required=True, metavar="R")
    p.add_argument("--staircase", action="store_true")
    p.add_argument("--dtype", default="float32",
                   choices=["float16", "bfloat16", "float32", "float64"])
    p.add_argument(
        "--float64-inputs", action="store_true",
        help="read each number as the Python float it would be in source code "
        "(0.1 -> the double nearest 0.1) instead of as an exact decimal",
    )
    if step:
        p.add_argument("--step", required=True, metavar="N")


def schedule_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(initial_learning_rate, decay_steps, decay_rate)`` as the oracle takes them."""
    I, D, r = (number(getattr(args, k), args.float64_inputs, k)
               for k in ("initial_learning_rate", "decay_steps", "decay_rate"))
    return I, D, r


#: An integer power on the command line, as ``--steps`` takes it: ``10**30``, ``-2**31``.
_POWER = re.compile(r"([+-]?)([0-9](?:_?[0-9])*)\*\*([0-9](?:_?[0-9])*)")


def number(text: str, as_float: bool, name: str = "value") -> Any:
    """A command-line number: the exact decimal, or the nearest double.
    An integer power ``B**E`` is the integer it denotes (within the oracle's
    range of decimal exponents).

    >>> number("10**30", False, "step") == 10**30, number("-2**3", True, "step")
    (True, -8.0)
    """
    if m := _POWER.fullmatch(text.strip()):
        from ..inputs import MAX_DECIMAL_EXPONENT

        base, exp = int(m.group(2)), int(m.group(3))
        if base >= 2 and exp * math.log10(base) > MAX_DECIMAL_EXPONENT:
            raise ValueError(f"{name} must be below 10**{MAX_DECIMAL_EXPONENT}; got {text!r}")
        n = -(base**exp) if m.group(1) == "-" else base**exp
        if not as_float:
            return n
        try:
            return float(n)
        except OverflowError:
            raise ValueError(f"{name} is beyond the float64 range; got {text!r}") from None
    if not as_float:
        return text
    try:
        if text.lower().lstrip("+-").startswith("0x"):
            return float.fromhex(text)
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number; got {text!r}") from None


def _add_eval(p: argparse.ArgumentParser) -> None:
    add_schedule_arguments(p)
    p.add_argument("--order", default="both", choices=[*ORDERS, "both"])
    p.add_argument("--digits", type=int, default=40)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_eval(p)


#: The flags of ``expdecay eval`` for the library's arguments.
EVAL_FLAGS = {**SCHEDULE_FLAGS, "digits": "--digits", "order": "--order"}


def run(args: argparse.Namespace) -> int:
    with flags_in_errors(EVAL_FLAGS):
        return _run_eval(args)


def _run_eval(args: argparse.Namespace) -> int:
    from ..floats import get_format, to_bits, to_hex, ulp_distance
    from ..oracle import PrecisionError, evaluate, value

    I, D, r = schedule_inputs(args)
    s = number(args.step, args.float64_inputs, "step")
    fmt = get_format(args.dtype)
    orders: list[Order] = (list(ORDERS) if args.order == "both"
                           else [check_order(args.order)])
    try:
        exact_value = value(I, D, r, s, staircase=args.staircase, digits=args.digits)
    except PrecisionError as e:  # the rounded values below are still proven
        exact_value = f"not computed ({e})"
    out: dict[str, Any] = {
        "initial_learning_rate": args.initial_learning_rate,
        "decay_steps": args.decay_steps,
        "decay_rate": args.decay_rate,
        "step": args.step,
        "staircase": args.staircase,
        "dtype": fmt.name,
        "inputs": "float64" if args.float64_inputs else "exact-decimal",
        "exact": exact_value,
        "orders": {},
    }
    values = {}
    for order in orders:
        x = evaluate(I, D, r, s, staircase=args.staircase, dtype=fmt, order=order)
        f = float(x)
        values[order] = f
        out["orders"][order] = {
            "value": str(x),
            "hex": to_hex(f, fmt),
            "bits": f"0x{to_bits(f, fmt):0{fmt.width // 4}x}",
        }
    if len(values) == 2:
        try:
            out["ulp_keras_minus_exact"] = ulp_distance(values["exact"], values["keras"], fmt)
        except ValueError:
            out["ulp_keras_minus_exact"] = None
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"lr = {I} * {r} ** {'floor' if args.staircase else ''}({s} / {D})   [{fmt.name}]")
    print(f"  exact real value  {exact_value}")
    for order, o in out["orders"].items():
        print(f"  {order:<6} {o['value']:<26} {o['hex']:<24} {o['bits']}")
    if "ulp_keras_minus_exact" in out:
        print(f"  keras - exact: {out['ulp_keras_minus_exact']} ulp")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="expdecay", description=(__doc__ or "expdecay").splitlines()[0])
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"expdecay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, text) in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        sp.set_defaults(_module=module, _command=name)
        mod = importlib.import_module(module)
        adder = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
        adder(sp)
        _document_limits(sp)
    return parser


def _document_limits(p: argparse.ArgumentParser) -> None:
    """State in ``--help`` the limits :func:`_check_resources` enforces."""
    for action in p._actions:
        if action.dest == "workers":
            action.help = (f"worker processes (default: the cores this process may use, "
                           f"{usable_cores()} here; more are never started, and more than "
                           f"{MAX_WORKERS} is refused)")
        elif action.dest == "option":
            action.help = ("option of the implementation (repeatable); VALUE is a number, "
                           "string, true, false or null, never a list or object")


def _check_resources(args: argparse.Namespace) -> None:
    """Cap what a command may ask of the machine (see the module docstring)."""
    if hasattr(args, "workers"):
        cores = usable_cores()
        w = args.workers
        if w is None:
            args.workers = cores
        elif isinstance(w, int) and w > MAX_WORKERS:
            raise UsageError(f"argument --workers: at most {MAX_WORKERS}; got {w}")
        elif isinstance(w, int) and w >= 1:
            args.workers = min(w, cores)  # < 1 is left to the command's own check
    items = getattr(args, "option", None)
    if isinstance(items, list) and items:
        from ..conformance.adapters import parse_options

        try:
            parse_options(items)
        except ValueError as e:
            raise UsageError(f"argument --option: {e}") from None


def _end_workers() -> None:
    """End every worker process, deaf meanwhile to a second Ctrl-C or SIGTERM."""
    protocol = sys.modules.get("expdecay.conformance.adapters.client")
    if protocol is None:
        return  # no worker was ever started
    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, *_TERMINATING):
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass
    try:
        protocol.close_all_workers()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _is_own_runtime_error(e: RuntimeError) -> bool:
    """An adapter's error (the project's own type) or input nested too deeply."""
    if isinstance(e, RecursionError):
        return True
    base = sys.modules.get("expdecay.conformance.adapters.base")
    return base is not None and isinstance(e, base.AdapterError)


def _error_line(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "input nested too deeply (RecursionError)"
    text = str(e) or type(e).__name__
    return text.splitlines()[0]


class _Terminated(BaseException):
    """SIGTERM or SIGHUP received: end the workers, then exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated(signum)


#: Signals that end the command like Ctrl-C does.  Workers run in their own
#: sessions, so a closed terminal's SIGHUP no longer reaches them: the runner
#: must end them itself.
_TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _default_in_child() -> None:
    """A forked child (a process pool's worker) dies of SIGTERM as usual
    instead of running the runner's clean-up."""
    for sig in _TERMINATING:
        if signal.getsignal(sig) is _terminate:
            signal.signal(sig, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_in_child)


def main(argv: Sequence[str] | None = None) -> int:
    previous: dict[int, Any] = {}
    try:
        for sig in _TERMINATING:
            previous[sig] = signal.signal(sig, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return _main(argv)
    except _Terminated as e:
        _end_workers()
        try:
            print("expdecay: terminated", file=sys.stderr)
        except OSError:  # the terminal is gone
            pass
        return 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            default = "check" if "check" in COMMANDS else None
            if default is None:
                parser.print_help()
                return 2
            args = parser.parse_args([default, *(argv or [])])
        _check_resources(args)
        mod = importlib.import_module(args._module)
        runner = getattr(mod, f"run_{args._command}", None) or mod.run
        return int(runner(args) or 0)
    except UsageError as e:
        print(f"expdecay: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ArithmeticError, OSError, MemoryError) as e:
        # Bad values (ImplementationLookupError among them: an unknown
        # implementation, a python: module that cannot be imported), unreadable
        # files, a precision cap reached, an impossible request: one line, status 2.
        print(f"expdecay: error: {_error_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not _is_own_runtime_error(e):
            raise  # a bug: keep its traceback
        print(f"expdecay: error: {_error_line(e)}", file=sys.stderr)
        return 2
    except MissingExtraError as e:  # an optional dependency: name the extra, one line
        print(f"expdecay: error: {_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_workers()
        print("expdecay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
