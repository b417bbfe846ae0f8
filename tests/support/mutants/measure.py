"""Mutation score and labelling accuracy of the conformance runner.

Runs every mutant of a set (and its baseline) through the runner under both
profiles, on every vector file (or those given), and prints, per mutant:
killed or not, and how its failures under each profile were labelled.

``--set named`` (the default), :mod:`expdecay_mutants`: each mutant's defect
has a cause id.  A failure is proven with its own cause (alone, or joined
only by the order or a pow one ulp off), ambiguous with its cause among the
alternatives, proven with another cause, or unexplained.

``--set unnamed``, :mod:`unnamed_mutants`: no defect has a cause id.  A
failure is proven with a wrong cause (any id but the facts, the ids the
mutant lists, and under the exact profile ``keras-order``, which the
baseline is), ambiguous, unexplained, or proven right (a fact, or the
keras order where the defect did not act).

    PYTHONPATH=src python tests/support/mutants/measure.py [--set named|unnamed] [--json OUT]
        [--only NAMES] [VECTOR_FILE...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import expdecay_mutants  # noqa: E402
import unnamed_mutants  # noqa: E402

from expdecay.conformance import diagnosis  # noqa: E402
from expdecay.conformance.runner import check_implementation, vector_paths  # noqa: E402
from expdecay.conformance.vectors import load_vector_file  # noqa: E402

NEUTRAL = {"keras-order", "exact-order", "pow-not-correctly-rounded"}


def label_counts(report: Any, cause: str) -> dict[str, int]:
    """How the failures of one report were labelled, relative to ``cause``.

    ``own``: proven with the mutant's cause (alone, or joined only by the
    order or a pow one ulp off), or with a cause :data:`FINER` lists under
    it (also counted in ``finer``: where the outputs cannot tell the two
    apart, the narrower mistake is proven); ``order``: under the exact
    profile, proven to be the keras order alone (the baseline's order,
    where the defect did not act); ``other``: proven with a cause the
    mutant does not have; ``ambiguous``: the alternatives include the
    mutant's cause (``ambiguousOther``: they do not)."""
    out = {"own": 0, "finer": 0, "order": 0, "ambiguous": 0, "ambiguousOther": 0, "other": 0,
           "unexplained": 0}
    finer = set(getattr(diagnosis, "FINER", {}).get(cause, ()))
    for f in report.files:
        for e in f.failures:
            ids = set(e["causeIds"])
            if e["diagnosis"] == "proven":
                rest = ids - {cause} - NEUTRAL
                if cause in ids and not rest:
                    out["own"] += 1
                elif len(rest) == 1 and rest <= finer and cause not in ids:
                    out["own"] += 1
                    out["finer"] += 1
                elif report.profile == "exact" and ids == {"keras-order"}:
                    out["order"] += 1
                else:
                    out["other"] += 1
            elif e["diagnosis"] == "ambiguous":
                alts = [set(a) for a in e.get("alternatives", [])]
                out["ambiguous" if any(cause in a for a in alts) else "ambiguousOther"] += 1
            else:
                out["unexplained"] += 1
    return out


def unnamed_counts(report: Any, allowed: tuple[str, ...]) -> dict[str, int]:
    """How the failures of a mutant whose defect has no cause id were
    labelled: ``wrong`` is a proven cause the mutant does not have."""
    right = set(allowed) | set(diagnosis.FACTS)
    if report.profile == "exact":
        right.add("keras-order")
    out = {"right": 0, "wrong": 0, "ambiguous": 0, "unexplained": 0}
    for f in report.files:
        for e in f.failures:
            if e["diagnosis"] == "proven":
                out["right" if set(e["causeIds"]) <= right else "wrong"] += 1
            else:
                out[e["diagnosis"]] += 1
    return out


def measure(docs: dict[str, dict[str, Any]], names: list[str], rerun: bool = False,
            which: str = "named") -> dict[str, Any]:
    results: dict[str, Any] = {}
    module = "expdecay_mutants" if which == "named" else "unnamed_mutants"
    table: dict[str, Any] = (expdecay_mutants.MUTANTS if which == "named"
                             else unnamed_mutants.MUTANTS)
    for name in names:
        cause = table[name][1] if name in table else ""
        t0 = time.monotonic()
        reps = check_implementation(f"python:{module}:{name}", {}, docs,
                                    ("exact", "keras"), rerun=rerun)
        row: dict[str, Any] = {"cause": cause, "seconds": round(time.monotonic() - t0, 1)}
        for r in reps:
            if which == "named":
                labels = label_counts(r, cause) if cause else {}
            else:
                labels = unnamed_counts(r, cause) if name in table else {}
            row[r.profile] = {"passed": r.passed, "failed": r.failed, "notRun": r.not_run,
                              "processState": r.process_state, "labels": labels,
                              "classes": dict(r.classes.most_common(6))}
        # the baseline passes the keras profile: a mutant failing it is killed
        row["killed"] = row["keras"]["failed"] > 0 and name != "baseline"
        results[name] = row
        k = row["keras"]
        print(f"{name:<28} exact failed {row['exact']['failed']:5d}  keras failed "
              f"{k['failed']:5d}  labels(keras) {k['labels']}  labels(exact) "
              f"{row['exact']['labels']}  {row['seconds']} s", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("vectors", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--only", help="comma-separated mutant names")
    ap.add_argument("--set", choices=("named", "unnamed"), default="named",
                    help="the mutant set (default: named, expdecay_mutants)")
    args = ap.parse_args()
    table: dict[str, Any] = (expdecay_mutants.MUTANTS if args.set == "named"
                             else unnamed_mutants.MUTANTS)
    docs = {p.name: load_vector_file(p) for p in vector_paths(args.vectors or None)}
    names = args.only.split(",") if args.only else ["baseline", *table]
    res = measure(docs, names, which=args.set)
    mutants = [n for n in names if n in table]
    killed = sum(res[n]["killed"] for n in mutants)
    print(f"\nmutation score: {killed}/{len(mutants)} killed")
    totals = {}
    for profile in ("keras", "exact"):
        tot: dict[str, int] = {}
        for n in mutants:
            for k, v in res[n][profile]["labels"].items():
                tot[k] = tot.get(k, 0) + v
        n_fail = sum(v for k, v in tot.items() if k != "finer") or 1
        print(f"labelling of the mutants' failures under the {profile} profile: "
              + ", ".join(f"{k} {v} ({100 * v / n_fail:.1f}%)" for k, v in tot.items()))
        totals[profile] = tot
    if args.json:
        Path(args.json).write_text(json.dumps({"results": res, "score": [killed, len(mutants)],
                                               "labels": totals["keras"], "labelsByProfile":
                                               totals}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
