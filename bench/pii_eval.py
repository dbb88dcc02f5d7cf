#!/usr/bin/env python
"""Accuracy of the PII detectors on labelled cases.

    python bench/pii_eval.py [CASES.jsonl] [--json] [--region US] [--show-errors]

CASES (default: bench/data/pii_dev_cases.jsonl) has one JSON object per line: ``text``,
``entities`` [{type, start, end, ...}], ``scope`` [types], ``negative``, optionally
``presidio_weak_match`` (such cases are skipped) and ``region``.

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
import sys
from pathlib import Path

from llama_audit.analyzers.pii import PiiDetector

REPORTED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")
TYPE_MAP = {
    "PH_MOBILE_NUMBER": "PHONE_NUMBER",
    "TR_PHONE_NUMBER": "PHONE_NUMBER",
    "IP_ADDRESS_PRIVATE": "IP_ADDRESS",
}
REGION_BY_TYPE = {"PH_MOBILE_NUMBER": "PH", "TR_PHONE_NUMBER": "TR"}
DEFAULT_CASES = Path(__file__).resolve().parent / "data" / "pii_dev_cases.jsonl"


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


def evaluate(cases_path: Path, region: str, show_errors: bool = False) -> dict[str, dict[str, float]]:
    detectors: dict[str, PiiDetector] = {}
    stats = {t: {"tp": 0, "fp": 0, "fn": 0, "exact": 0, "cases": 0} for t in REPORTED}
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
                st = stats[t]
                st["cases"] += 1
                st["tp"] += matched
                st["fp"] += len(pred) - matched
                st["fn"] += len(gold) - matched
                st["exact"] += exact
                if show_errors and (len(pred) != matched or len(gold) != matched):
                    print(f"line {lineno}: {t} gold={gold} predicted={pred}", file=sys.stderr)
    result: dict[str, dict[str, float]] = {}
    for t, st in stats.items():
        tp, fp, fn = st["tp"], st["fp"], st["fn"]
        result[t] = {
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "exact": st["exact"],
            "cases": st["cases"],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="?", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--json", action="store_true", help='print {TYPE: {"precision","recall","tp","fp","fn"}}')
    ap.add_argument("--region", default="US", help="default phone region (default US)")
    ap.add_argument("--show-errors", action="store_true", help="list mismatches (line numbers and offsets) on stderr")
    args = ap.parse_args(argv)
    if not args.cases.exists():
        ap.error(f"no such file: {args.cases}")
    result = evaluate(args.cases, args.region.upper(), args.show_errors)
    if args.json:
        keys = ("precision", "recall", "tp", "fp", "fn")
        print(json.dumps({t: {k: r[k] for k in keys} for t, r in result.items()}, indent=2))
        return 0
    print(f"cases: {args.cases}")
    print(f"{'type':<15} {'precision':>9} {'recall':>7} {'tp':>5} {'fp':>4} {'fn':>4} {'exact':>6} {'cases':>6}")
    for t, r in result.items():
        print(
            f"{t:<15} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['tp']:>5} {r['fp']:>4} {r['fn']:>4}"
            f" {r['exact']:>6} {r['cases']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
