#!/usr/bin/env python
"""Accuracy of the PII detectors on labelled cases, optionally beside an earlier version.

    python bench/pii_eval.py [CASES.jsonl ...] [--json] [--region US] [--show-errors]
                             [--by-kind] [--before GIT_REF_OR_DIR]

CASES (default: bench/data/pii_dev_cases.jsonl and bench/data/phone_cases.jsonl, each scored on
its own) has one JSON object per line: ``text``, ``entities`` [{type, start, end, ...}], ``scope``
[types], ``negative``, optionally ``presidio_weak_match`` (such cases are skipped), ``region``
and ``kind`` (a label for ``--by-kind``: which shape of number a phone case tests).

``--before REF`` scores the same cases with the detectors of an earlier version (a git ref of
this repository, unpacked with ``git archive`` into a temporary directory, or a directory holding
such a copy) in a subprocess, and prints both side by side: "before" and "after" come from one
run, on the same cases, with the same scoring code.

Scoring (documented in docs/pii.md):

* Presidio type names are mapped to ours (PH_MOBILE_NUMBER, TR_PHONE_NUMBER -> PHONE_NUMBER;
  our IP_ADDRESS_PRIVATE -> IP_ADDRESS); types we do not detect are ignored.
* A case is scored only for the reported types in its ``scope``; predictions of other types in it
  are not counted (the case says nothing about them). A negative case is negative only for its scope.
* A predicted span matches a gold span of the same type when they overlap; matching is one-to-one
  (largest overlap first). tp = matched pairs, fp = unmatched predictions, fn = unmatched gold.
  ``exact`` (table only) counts matched pairs whose boundaries are identical.
* Phone numbers are validated for a default region. Presidio's PH_MOBILE_NUMBER and
  TR_PHONE_NUMBER recognizers are country-specific, so their cases are scored with region PH and
  TR respectively (what a user auditing such a corpus passes as ``--pii-region``); a case's own
  ``region`` field wins; everything else uses ``--region``.

The detectors run with all types enabled, so overlap resolution between types is exercised.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from llama_audit.analyzers.pii import PiiDetector

REPORTED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")
TYPE_MAP = {
    "PH_MOBILE_NUMBER": "PHONE_NUMBER",
    "TR_PHONE_NUMBER": "PHONE_NUMBER",
    "IP_ADDRESS_PRIVATE": "IP_ADDRESS",
}
REGION_BY_TYPE = {"PH_MOBILE_NUMBER": "PH", "TR_PHONE_NUMBER": "TR"}
DATA = Path(__file__).resolve().parent / "data"
DEFAULT_CASES = (DATA / "pii_dev_cases.jsonl", DATA / "phone_cases.jsonl")
REPO = Path(__file__).resolve().parent.parent


def _match(gold: list[tuple[int, int]], pred: list[tuple[int, int]]) -> tuple[int, int]:
    """One-to-one overlap matching, largest overlap first. Returns (matched, exact)."""
    pairs = []
    for gi, (gs, ge) in enumerate(gold):
        for pi, (ps, pe) in enumerate(pred):
            overlap = min(ge, pe) - max(gs, ps)
            if overlap > 0:
                pairs.append((-overlap, gi, pi))
    pairs.sort()
    used_g: set[int] = set()
    used_p: set[int] = set()
    exact = 0
    for _, gi, pi in pairs:
        if gi in used_g or pi in used_p:
            continue
        used_g.add(gi)
        used_p.add(pi)
        exact += gold[gi] == pred[pi]
    return len(used_g), exact


def _empty() -> dict[str, int]:
    return {"tp": 0, "fp": 0, "fn": 0, "exact": 0, "cases": 0}


def _rates(st: dict[str, int]) -> dict[str, float]:
    tp, fp, fn = st["tp"], st["fp"], st["fn"]
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        **st,
    }


def evaluate(cases_path: Path, region: str, show_errors: bool = False) -> dict[str, dict[str, float]]:
    """{TYPE: figures} plus {"TYPE/kind": figures} for the cases that carry a ``kind``."""
    detectors: dict[str, PiiDetector] = {}
    stats = {t: _empty() for t in REPORTED}
    by_kind: dict[str, dict[str, int]] = {}
    with open(cases_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            case = json.loads(line)
            if case.get("presidio_weak_match"):
                continue
            scope = {TYPE_MAP.get(t, t) for t in case.get("scope", [])} & set(REPORTED)
            if not scope:
                continue
            case_region = case.get("region") or next(
                (REGION_BY_TYPE[t] for t in case.get("scope", []) if t in REGION_BY_TYPE), region
            )
            det = detectors.get(case_region)
            if det is None:
                det = detectors[case_region] = PiiDetector(None, case_region)
            predicted = det.detect(case["text"])
            for t in sorted(scope):
                gold = [(e["start"], e["end"]) for e in case.get("entities", []) if TYPE_MAP.get(e["type"], e["type"]) == t]
                pred = [(s, e) for typ, s, e in predicted if TYPE_MAP.get(typ, typ) == t]
                matched, exact = _match(gold, pred)
                targets = [stats[t]]
                if case.get("kind"):
                    targets.append(by_kind.setdefault(f"{t}/{case['kind']}", _empty()))
                for st in targets:
                    st["cases"] += 1
                    st["tp"] += matched
                    st["fp"] += len(pred) - matched
                    st["fn"] += len(gold) - matched
                    st["exact"] += exact
                if show_errors and (len(pred) != matched or len(gold) != matched):
                    print(f"{cases_path.name} line {lineno}: {t} gold={gold} predicted={pred}", file=sys.stderr)
    result = {t: _rates(st) for t, st in stats.items()}
    result.update((k, _rates(st)) for k, st in sorted(by_kind.items()))
    return result


def _checkout(ref: str) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """A directory holding the package of ``ref``: the directory itself, or ``git archive`` of a
    git ref of this repository unpacked into a temporary directory."""
    if Path(ref).is_dir():
        return Path(ref), None
    blob = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref, "llama_audit"],
                          capture_output=True, check=False)
    if blob.returncode != 0:
        raise SystemExit(f"--before: {ref!r} is neither a directory nor a git ref of {REPO}")
    tmp = tempfile.TemporaryDirectory(prefix="pii_eval_before_")
    with tarfile.open(fileobj=BytesIO(blob.stdout)) as tar:
        tar.extractall(tmp.name, filter="data")
    return Path(tmp.name), tmp


def evaluate_before(root: Path, cases_path: Path, region: str) -> dict[str, dict[str, float]]:
    """``evaluate`` run in a subprocess that imports the package from ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONSAFEPATH="1")
    proc = subprocess.run(
        [sys.executable, "-P", __file__, str(cases_path), "--region", region, "--json", "--all-fields"],
        capture_output=True, text=True, env=env, cwd=root, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"--before: scoring with {root} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)[str(cases_path)]


def _row(name: str, r: dict[str, float]) -> str:
    return (f"{name:<32} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['tp']:>5} {r['fp']:>4} {r['fn']:>4}"
            f" {r['exact']:>6} {r['cases']:>6}")


def _show(name: str, r: dict[str, float], before: dict[str, dict[str, float]] | None) -> bool:
    """Types with no case in this file are left out (their rows would say nothing)."""
    if r["cases"] == 0 and (before is None or before.get(name, {}).get("cases", 0) == 0):
        return False
    return "/" not in name or SHOW_KINDS


SHOW_KINDS = False


def main(argv: list[str] | None = None) -> int:
    global SHOW_KINDS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="*", type=Path, default=list(DEFAULT_CASES))
    ap.add_argument("--json", action="store_true", help='print {FILE: {TYPE: {"precision","recall","tp","fp","fn"}}}')
    ap.add_argument("--all-fields", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--region", default="US", help="default phone region (default US)")
    ap.add_argument("--show-errors", action="store_true", help="list mismatches (line numbers and offsets) on stderr")
    ap.add_argument("--by-kind", action="store_true", help="also a row per type and case kind")
    ap.add_argument("--before", metavar="REF", help="also score with the package of this git ref or directory")
    args = ap.parse_args(argv)
    SHOW_KINDS = args.by_kind
    for path in args.cases:
        if not path.exists():
            ap.error(f"no such file: {path}")
    region = args.region.upper()
    results = {str(p): evaluate(p, region, args.show_errors) for p in args.cases}
    if args.json:
        keys = None if args.all_fields else ("precision", "recall", "tp", "fp", "fn")
        print(json.dumps({p: {t: (r if keys is None else {k: r[k] for k in keys}) for t, r in res.items()}
                          for p, res in results.items()}, indent=2))
        return 0
    befores: dict[str, dict[str, dict[str, float]]] = {}
    if args.before:
        root, tmp = _checkout(args.before)
        try:
            befores = {str(p): evaluate_before(root, p.resolve(), region) for p in args.cases}
        finally:
            if tmp is not None:
                tmp.cleanup()
    header = f"{'type':<32} {'precision':>9} {'recall':>7} {'tp':>5} {'fp':>4} {'fn':>4} {'exact':>6} {'cases':>6}"
    for path in args.cases:
        result, before = results[str(path)], befores.get(str(path))
        print(f"cases: {path}")
        if before is None:
            print(header)
            for t, r in result.items():
                if _show(t, r, None):
                    print(_row(t, r))
        else:
            print(f"{'':<7}{header}")
            for t, r in result.items():
                if not _show(t, r, before):
                    continue
                b = before.get(t)
                if b is not None:
                    print(f"{'before':<7}{_row(t, b)}")
                print(f"{'after':<7}{_row(t, r)}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
