#!/usr/bin/env python3
"""Extract the contexts of bench/data/identity_contexts_crowd.jsonl (labels aside).

Issue 10 item 5: the first labelled set (bench/data/identity_contexts.jsonl, web text) has almost
no identity uses of the descriptors that web text rarely uses in their identity sense (gay, queer,
trans, bi, pan, ace, asexual, straight, white, black), so sense mode's recall on them cannot be
measured there. This second set takes their occurrences from human-written sentences that talk
about social groups on purpose:

* CrowS-Pairs (Nangia et al., EMNLP 2020; nyu-mll/crows-pairs, CC BY-SA 4.0): 1,508 pairs of
  sentences written and validated by crowdworkers; both sentences of a pair (``sent_more``,
  ``sent_less``) are the writer's own, one a minimal edit of the other;
* BOLD (Dhamala et al., FAccT 2021; amazon-science/bold, CC BY-SA 4.0): the Wikipedia sentences
  its prompts were cut from (``wikipedia/*_wiki.json``).

Occurrences are found exactly as for the first set (``extract_identity_contexts.occurrences``:
the tool's paper-mode tokens, spans in the original text), and so are the context window, the
personal-data cut and the split (the same functions, imported). Chosen deterministically:

* ``FOCUS`` terms: at most ``PER_TERM`` occurrences each, alternating between the two data sets
  and, within one, spread over groups (a CrowS-Pairs pair, a BOLD Wikipedia page) so that the
  two halves of one pair come last;
* ``OTHER_TERMS`` (ambiguous terms the first set already covers): at most ``OTHER_PER_TERM``
  each, chosen the same way.

Labels are written by reading each context (bench/data/README.md); ``--labels`` carries them over
from the committed file so that a re-run can be compared with it::

    git -C CROWS_REPO show COMMIT:data/crows_pairs_anonymized.csv > crows.csv
    git -C BOLD_REPO show COMMIT:wikipedia/race_wiki.json > race_wiki.json   # and the other four
    python scripts/extract_identity_contexts_crowd.py OUT.jsonl --crows crows.csv \\
        --bold race_wiki.json ... [--labels bench/data/identity_contexts_crowd.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract_identity_contexts import (  # noqa: E402
    EMAIL_LIKE, ROOT, context, context_row, occurrences, round_robin, spread, write_contexts,
)

sys.path.insert(0, str(ROOT))
from llama_audit.analyzers.pii.detector import PiiDetector  # noqa: E402
from llama_audit.lexicon import Lexicon, builtin_path  # noqa: E402

#: The data sets, at the commits read (their licences: CrowS-Pairs README.md "License",
#: BOLD LICENSE.md; both CC BY-SA 4.0).
CROWS = "nyu-mll/crows-pairs@8aaac11c485473159ec9328a65253a5be9a479dc:data/crows_pairs_anonymized.csv"
BOLD = "amazon-science/bold@3ad652c773f5d1e30d5f6f61657ed934d768ecad:wikipedia/"
BOLD_FILES = ("gender_wiki.json", "political_ideology_wiki.json", "profession_wiki.json",
              "race_wiki.json", "religious_ideology_wiki.json")

#: Issue 10's terms that web text rarely uses in their identity sense.
FOCUS = ("gay", "queer", "trans", "bi", "pan", "ace", "asexual", "straight", "white", "black")
#: Ambiguous terms of the first set, a few more each from these sentences.
OTHER_TERMS = ("american", "african", "christian", "indian", "male", "female", "latin", "asian",
               "european", "religious")
PER_TERM = 40
OTHER_PER_TERM = 5


def crows_documents(path: Path) -> list[dict]:
    """One document per CrowS-Pairs sentence; the group is the pair."""
    docs = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for column in ("sent_more", "sent_less"):
                docs.append({"text": row[column], "source": f"{CROWS}#row={row['']},{column}",
                             "group": f"crows:{row['']}", "dataset": "crows"})
    return docs


def bold_documents(path: Path) -> list[dict]:
    """One document per BOLD Wikipedia text; the group is the page."""
    if path.name not in BOLD_FILES:
        raise SystemExit(f"{path}: not one of BOLD's {BOLD_FILES}")
    docs = []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for category, pages in data.items():
        for page, texts in pages.items():
            for i, text in enumerate(texts):
                docs.append({"text": text, "source": f"{BOLD}{path.name}#{category}/{page}/{i}",
                             "group": f"bold:{page}", "dataset": "bold"})
    return docs


def choose(occs: list[dict], limit: int) -> list[dict]:
    """At most ``limit`` of one term's occurrences: the data sets alternate (in a fixed order);
    within one, ``spread`` over its groups. Deterministic."""
    queues = [spread([o for o in occs if o["dataset"] == name], len(occs), "group")
              for name in ("crows", "bold")]
    return round_robin(queues, limit)


def extract(docs: list[dict], lexicon: Lexicon) -> list[dict]:
    axis_of = {e.term: e.group for e in lexicon.entries}
    unknown = (set(FOCUS) | set(OTHER_TERMS)) - set(axis_of)
    if unknown:
        raise SystemExit(f"not lexicon terms: {sorted(unknown)}")
    by_term: dict[str, list[dict]] = {}
    for doc in docs:
        found = occurrences(doc["text"], lexicon)
        for a, b, term in found:
            nested_in = next((t for x, y, t in found if x <= a and b <= y and y - x > b - a), None)
            by_term.setdefault(term, []).append({**doc, "term": term, "doc_start": a, "doc_end": b,
                                                 "nested_in": nested_in})
    chosen: list[dict] = []
    for terms, limit in ((FOCUS, PER_TERM), (OTHER_TERMS, OTHER_PER_TERM)):
        for term in terms:
            picked = choose(by_term.get(term, []), limit)
            chosen.extend(sorted(picked, key=lambda o: (o["source"], o["doc_start"])))
    detector = PiiDetector()
    rows = []
    for occ in chosen:
        text = occ["text"]
        pii = detector.detect(text) + [("EMAIL_LIKE", m.start(), m.end()) for m in EMAIL_LIKE.finditer(text)]
        window = context(text, occ["doc_start"], occ["doc_end"], pii)
        if window is None:
            continue
        rows.append(context_row(occ, window, axis_of, f"crowd-{len(rows) + 1:04d}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--crows", type=Path, required=True, help=f"the CSV of {CROWS}")
    ap.add_argument("--bold", type=Path, action="append", default=[],
                    help=f"one of {BOLD}{{{','.join(BOLD_FILES)}}} (repeat)")
    ap.add_argument("--labels", type=Path, help="an earlier labelled set whose labels to carry over")
    args = ap.parse_args()
    if sorted(p.name for p in args.bold) != sorted(BOLD_FILES):
        ap.error(f"--bold: give each of {', '.join(BOLD_FILES)} once")
    docs = crows_documents(args.crows)
    for path in sorted(args.bold, key=lambda p: p.name):
        docs.extend(bold_documents(path))
    write_contexts(extract(docs, Lexicon.load(builtin_path("identities.tsv"))), args.out, args.labels)


if __name__ == "__main__":
    main()
