"""Mutation score and labelling accuracy of the conformance runner.

Runs every mutant of :mod:`expdecay_mutants` (and the baseline) through the
runner under both profiles, on every vector file (or those given), and
prints, per mutant: killed or not, and how its failures under each profile
were labelled: proven with its own cause (alone, or joined only by the
order or a pow one ulp off), ambiguous with its cause among the
alternatives, proven with another cause, or unexplained.

    PYTHONPATH=src python tests/mutants/measure.py [--json OUT] [VECTOR_FILE...]
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

from expdecay.conformance.runner import check_implementation, vector_paths  # noqa: E402
from expdecay.conformance.vectors import load_vector_file  # noqa: E402

NEUTRAL = {"keras-order", "exact-order", "pow-not-correctly-rounded"}


def label_counts(report: Any, cause: str) -> dict[str, int]:
    """How the failures of one report were labelled, relative to ``cause``."""
    out = {"own": 0, "ambiguous": 0, "other": 0, "unexplained": 0}
    for f in report.files:
        for e in f.failures:
            ids = set(e["causeIds"])
            if e["diagnosis"] == "proven":
                rest = ids - {cause} - NEUTRAL
                out["own" if cause in ids and not rest else "other"] += 1
            elif e["diagnosis"] == "ambiguous":
                alts = [set(a) for a in e.get("alternatives", [])]
                out["ambiguous" if any(cause in a for a in alts) else "other"] += 1
            else:
                out["unexplained"] += 1
    return out


def measure(docs: dict[str, dict[str, Any]], names: list[str], rerun: bool = False
            ) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        cause = expdecay_mutants.MUTANTS[name][1] if name in expdecay_mutants.MUTANTS else ""
        t0 = time.monotonic()
        reps = check_implementation(f"python:expdecay_mutants:{name}", {}, docs,
                                    ("exact", "keras"), rerun=rerun)
        row: dict[str, Any] = {"cause": cause, "seconds": round(time.monotonic() - t0, 1)}
        for r in reps:
            row[r.profile] = {"passed": r.passed, "failed": r.failed, "notRun": r.not_run,
                              "processState": r.process_state,
                              "labels": label_counts(r, cause) if cause else {},
                              "classes": dict(r.classes.most_common(6))}
        # the baseline passes the keras profile: a mutant failing it is killed
        row["killed"] = row["keras"]["failed"] > 0 and name != "baseline"
        results[name] = row
        k = row["keras"]
        print(f"{name:<28} exact failed {row['exact']['failed']:5d}  keras failed "
              f"{k['failed']:5d}  labels(keras) {k['labels']}  {row['seconds']} s",
              flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("vectors", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--only", help="comma-separated mutant names")
    args = ap.parse_args()
    docs = {p.name: load_vector_file(p) for p in vector_paths(args.vectors or None)}
    names = args.only.split(",") if args.only else ["baseline", *expdecay_mutants.MUTANTS]
    res = measure(docs, names)
    mutants = [n for n in names if n in expdecay_mutants.MUTANTS]
    killed = sum(res[n]["killed"] for n in mutants)
    tot = {k: 0 for k in ("own", "ambiguous", "other", "unexplained")}
    for n in mutants:
        for k, v in res[n]["keras"]["labels"].items():
            tot[k] += v
    n_fail = sum(tot.values()) or 1
    print(f"\nmutation score: {killed}/{len(mutants)} killed")
    print("labelling of the mutants' failures under the keras profile: "
          + ", ".join(f"{k} {v} ({100 * v / n_fail:.1f}%)" for k, v in tot.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": res, "score": [killed, len(mutants)],
                                               "labels": tot}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
