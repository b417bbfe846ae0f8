"""``expdecay vectors generate`` and ``expdecay vectors validate``.

Generation and validation live in :mod:`expdecay.conformance.vectors`; this
module reads the arguments, prints one line per file and sets the exit
status (0: every file valid, 1: a problem found, 2: a missing file).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..conformance.vectors import THEMES, default_vectors_dir, validate_file, write_vectors
from ..resources import checkout_root
from . import to_stderr

__all__ = ["add_vectors_arguments", "run_vectors"]



def add_vectors_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="vectors_action", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="write the vector files (deterministic)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: conformance/vectors of the source "
                   "checkout expdecay runs from, else conformance/vectors below the working "
                   "directory; never the installed package)")
    g.add_argument("--theme", action="append", choices=list(THEMES),
                   help="only this theme (repeatable)")
    v = sub.add_parser(
        "validate", help="check vector files: schema, then every test regenerated and compared",
        description="Check vector files: size, UTF-8, JSON without duplicate keys or lone "
        "surrogates, the schema, then every test regenerated from its inputs and compared "
        "field by field (bits of both orders, exact value, tolerances, result, flags).")
    v.add_argument("files", nargs="*", metavar="FILE",
                   help="vector files (default: the vectors installed with expdecay)")
    v.add_argument("--sample", type=int, default=None, metavar="N",
                   help="opt-in shortcut: regenerate only N tests per file (every k-th), the "
                   "others get structural checks only (default: every test)")


def run_vectors(args: argparse.Namespace) -> int:
    if args.vectors_action == "generate":
        root = checkout_root()
        out = Path(args.out) if args.out else (
            root / "conformance" / "vectors" if root else Path("conformance", "vectors"))
        paths = write_vectors(out, args.theme, progress=to_stderr)
        print(f"{len(paths)} file{'' if len(paths) == 1 else 's'} written to {out}")
        return 0
    if args.sample is not None and args.sample < 1:
        raise ValueError(f"--sample must be >= 1; got {args.sample}")
    if not args.files:
        args.files = [str(p) for p in sorted(default_vectors_dir().glob("*.json"))]
    for f in args.files:  # a missing file is a usage error: exit 2 before any output
        try:
            os.stat(f)
        except (FileNotFoundError, NotADirectoryError):
            raise ValueError(f"{f}: no such file") from None
        except OSError:
            pass  # reported by validate_file ("cannot read")
    bad = 0
    for f in args.files:
        problems = validate_file(f, args.sample)
        if problems:
            bad += 1
            for m in problems:
                print(m)
        else:
            print(f"{f}: ok")
    return 1 if bad else 0
