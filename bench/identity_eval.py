#!/usr/bin/env python3
"""Identity descriptors: precision and recall of paper mode and sense mode, side by side, on the
labelled real contexts of bench/data/identity_contexts.jsonl (web text) and
identity_contexts_crowd.jsonl (human-written sentences from CrowS-Pairs and BOLD that use the
sexual-orientation and colour terms in their identity sense, which web text rarely does); issue
10; labelling guide in bench/data/README.md.

Every context is an occurrence paper mode counts (the set was extracted that way), labelled true
when it mentions the identity on the term's axis. For each occurrence sense mode's decision is
read from :meth:`SenseMatcher.occurrences` on the context text (a nested occurrence is decided
against the longer term in the same context). Printed per split (dev: the rules were written
from it; test: held out) and overall:

- the ten terms issue 10 names (ace, pan, bi, trans, queer, gay, asexual, straight, white,
  black); ambiguous terms (the terms the sense rules name, plus occurrences nested in a longer
  term): precision of paper mode (every occurrence counted) and of sense mode, and sense mode's
  recall;
- all terms: precision of both modes, and sense mode's recall of the true mentions paper mode
  finds (paper mode's recall is 1 by construction);
- per term: contexts, true, kept by sense mode, its true and false positives (``--per-term``).

    python bench/identity_eval.py [--data web|crowd|both] [--rules FILE] [--per-term] [--show-errors]

``--show-errors`` prints the contexts sense mode gets wrong (real text: published web pages and
data sets, cut before any personal data the PII detectors find; see bench/data/README.md).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from llama_audit.analyzers.identities.senses import BUILTIN_SENSES, SenseRules
from llama_audit.lexicon import Lexicon, builtin_path

DATA = Path(__file__).resolve().parent / "data"
#: the labelled sets: web text (DCLM, RedPajama, dolma fixtures) and human-written sentences that
#: use the sexual-orientation and colour terms in their identity sense (CrowS-Pairs, BOLD)
DATA_FILES = {"web": DATA / "identity_contexts.jsonl", "crowd": DATA / "identity_contexts_crowd.jsonl"}
#: the terms issue 10 names as mostly other words on web text (its precision target includes them)
ISSUE_TERMS = ("ace", "pan", "bi", "trans", "queer", "gay", "asexual", "straight", "white", "black")


def sense_decision(matcher, lexicon, ctx: dict) -> tuple[bool, str]:
    """Whether sense mode counts the labelled occurrence, and why."""
    same_term = [o for o in matcher.occurrences(ctx["text"]) if lexicon.entries[o.entry].term == ctx["term"]]
    if not same_term:
        raise SystemExit(f"{ctx['id']}: sense mode finds no occurrence of {ctx['term']!r}")
    # offsets agree unless the context is not NFKC-stable (then they index its NFKC form): the nearest
    o = min(same_term, key=lambda o: abs(o.start - ctx["start"]))
    return o.counted, o.why


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", help="sense rules TSV (default: the built-in lexicons/identity_senses.tsv)")
    ap.add_argument("--per-term", action="store_true", help="print a row per term")
    ap.add_argument("--show-errors", action="store_true", help="print the contexts sense mode gets wrong")
    ap.add_argument("--data", choices=("web", "crowd", "both"), default="both", help="which labelled set")
    args = ap.parse_args()
    lexicon = Lexicon.load(builtin_path("identities.tsv"))
    rules = SenseRules.load(args.rules or builtin_path(BUILTIN_SENSES))
    matcher = rules.bind(lexicon)
    names = list(DATA_FILES) if args.data == "both" else [args.data]
    contexts = [dict(json.loads(line), set=name) for name in names
                for line in DATA_FILES[name].read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for ctx in contexts:
        kept, why = sense_decision(matcher, lexicon, ctx)
        ambiguous = ctx["term"] in rules.rules or why == "nested"
        rows.append((ctx, kept, why, ambiguous))

    print(f"{len(contexts)} labelled contexts, {sum(c['label'] for c in contexts)} true; sense rules {rules.version} "
          f"({len(rules.rules)} terms)")
    print(f"{'split':6s} {'set':10s} {'n':>4s} {'true':>5s} | {'paper P':>8s} | {'sense P':>8s} {'sense R':>8s} "
          f"{'kept':>5s} {'TP':>4s} {'FP':>4s} {'FN':>4s}")
    sets = (("issue's 10", lambda r: r[0]["term"] in ISSUE_TERMS),  # the terms issue 10 names as mostly other words
            ("ambiguous", lambda r: r[3]), ("all terms", lambda r: True))
    for split in ("dev", "test", "all"):
        if split == "all":
            print("-" * 90)
        for name, wanted in sets:
            sel = [r for r in rows if (split == "all" or r[0]["split"] == split) and wanted(r)]
            n = len(sel)
            true = sum(r[0]["label"] for r in sel)
            tp = sum(r[0]["label"] and r[1] for r in sel)
            fp = sum((not r[0]["label"]) and r[1] for r in sel)
            fn = sum(r[0]["label"] and not r[1] for r in sel)
            print(f"{split:6s} {name:10s} {n:4d} {true:5d} | {ratio(true, n):>8s} | {ratio(tp, tp + fp):>8s} "
                  f"{ratio(tp, true):>8s} {tp + fp:5d} {tp:4d} {fp:4d} {fn:4d}")
    if args.per_term:
        by_term = defaultdict(list)
        for r in rows:
            by_term[r[0]["term"]].append(r)
        print(f"\n{'term':22s} {'rule':>4s} {'n':>4s} {'true':>5s} {'kept':>5s} {'TP':>4s} {'FP':>4s} {'FN':>4s}")
        for term, sel in sorted(by_term.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            tp = sum(r[0]["label"] and r[1] for r in sel)
            fp = sum((not r[0]["label"]) and r[1] for r in sel)
            fn = sum(r[0]["label"] and not r[1] for r in sel)
            print(f"{term:22s} {'yes' if term in rules.rules else '':>4s} {len(sel):4d} {sum(r[0]['label'] for r in sel):5d} "
                  f"{tp + fp:5d} {tp:4d} {fp:4d} {fn:4d}")
    if args.show_errors:
        print()
        for ctx, kept, why, _ in rows:
            if kept != ctx["label"]:
                a, b = ctx["start"], ctx["end"]
                window = ctx["text"][max(0, a - 70): a] + "[[" + ctx["text"][a:b] + "]]" + ctx["text"][b: b + 70]
                print(f"{ctx['id']} {ctx['split']} {'FP' if kept else 'FN'} {why:11s} {ctx['reason']:12s} "
                      f"{' '.join(window.split())}")


if __name__ == "__main__":
    main()
