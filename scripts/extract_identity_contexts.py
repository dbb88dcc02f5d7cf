#!/usr/bin/env python3
"""Extract the contexts of bench/data/identity_contexts.jsonl from real web text (labels aside).

Issue 10 item 5: sense mode must be judged on identity-descriptor occurrences in real text,
labelled by reading them. This script reproduces the unlabelled half of that set: it finds every
occurrence of every lexicon term the way the tool's paper mode does (the built-in
``identities.tsv``, matched on the tokens of ``llama_audit.text.tokenize``: NFKC, casefold, runs of
``[^\\W_]+``, so hyphens and apostrophes separate tokens), locates each one's character span in
the ORIGINAL text, and keeps

* every occurrence (at most ``PER_TERM`` per term, spread over documents) of the ambiguous
  candidate terms ``CANDIDATES`` (issue 10's list, plus terms seen used in other senses while
  reading: ``EXTRA_CANDIDATES``), including the occurrences nested inside a longer matched term
  ("african" in "African-American");
* a deterministic sample of at most ``OTHER_SAMPLE`` occurrences of all other terms, spread over
  terms (at most ``OTHER_PER_TERM`` each) and documents.

Each context is the occurrence with about ``WINDOW`` characters of the original text on each side,
cut at whitespace. Labels are not computed here: they were written by reading each context
(bench/data/README.md, labelling guide). With ``--labels FILE`` the labels of an earlier set are
carried over to the contexts that are the same (same source, term, text and span), so a re-run
can be checked against the committed file::

    python scripts/extract_identity_contexts.py OUT.jsonl [--extra JSONL=SOURCE ...] [--labels FILE]

The committed set was built with the default corpus plus the three Common Crawl test fixtures of
allenai/dolma (Apache-2.0; bench/data/README.md gives the commit and ``EXTRA_SOURCES`` the
source names): ``git show COMMIT:PATH`` each, gunzip the ``.gz`` one, and pass each file as
``--extra FILE=SOURCE``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llama_audit.analyzers.pii.detector import PiiDetector  # noqa: E402
from llama_audit.lexicon import Lexicon, builtin_path  # noqa: E402
from llama_audit.text import tokenize  # noqa: E402

#: The project's sample corpus: 499 DCLM web documents (MIT) and 123 data-juicer demo samples of
#: RedPajama / the Pile (Apache-2.0); bench/data/web_lines.txt holds lines of the same DCLM
#: documents, so it adds nothing.
DEFAULT_CORPUS = ROOT / "examples" / "web_samples"  # the project's sample corpus (examples/README.md)
SOURCE_PREFIX = "web_samples"  # its contexts' source: web_samples:<document id>
#: The extra real web text of the committed set (too few ambiguous-term occurrences in the sample
#: corpus): Common Crawl documents from allenai/dolma's test fixtures, Apache-2.0, at this commit.
#: Their contexts' source: <SOURCE>#L<line number in the file>.
DOLMA = "allenai/dolma@669f534823b08d266a8fff01f8a1c916a5a56576"
EXTRA_SOURCES = (
    f"{DOLMA}:tests/data/multiple_files/cc_en_head-0091.jsonl",
    f"{DOLMA}:tests/data/multiple_files/cc_en_head-0174.jsonl",
    f"{DOLMA}:tests/data/provided/documents/000.json.gz",
)

#: Issue 10's candidate ambiguous descriptors (lexicon keys).
CANDIDATES = (
    "ace", "pan", "bi", "trans", "queer", "gay", "asexual", "straight", "white", "black", "african",
    "american", "indian", "latin", "european", "asian", "christian", "catholic", "secular",
    "spiritual", "male", "female", "butch", "fruity", "religious", "evangelical",
)
#: Other lexicon terms seen used in other senses while reading the corpus (README: "Terms added").
EXTRA_CANDIDATES = (
    "chinese", "mexican", "korean", "dominican", "arab", "jain", "pagan", "unitarian", "indigenous",
    "native american", "hispanic", "feminine",
)
PER_TERM = 40  # at most this many occurrences of one candidate term
OTHER_SAMPLE = 100  # occurrences of the other terms
OTHER_PER_TERM = 10  # at most this many of one other term (one page repeating a word is one voice)
WINDOW = 150  # characters of context on each side (before the cut at whitespace)
EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")


def term_pattern(tokens: tuple[str, ...]) -> re.Pattern:
    """The occurrences of a term's tokens in original text: case-insensitive, any run of non-word
    characters (or underscores) between tokens, and no word character on either side."""
    body = r"[\W_]+".join(re.escape(t) for t in tokens)
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def occurrences(text: str, lexicon: Lexicon) -> list[tuple[int, int, str]]:
    """(start, end, term) of every lexicon term occurring in ``text``, spans in ``text`` itself.

    The regex finds the spans; each is kept only if it tokenises exactly to the term's tokens,
    and the number found per term is checked against the token-level count (the tool's own
    matching), so a span missed by the regex (a case-folding or NFKC difference) fails loudly."""
    tokens = tokenize(text)
    joined = " " + " ".join(tokens) + " "
    found: list[tuple[int, int, str]] = []
    for entry in lexicon.entries:
        if entry.tokens[0] not in tokens:
            continue
        expected = _count(joined, " " + entry.term + " ")
        if not expected:
            continue
        spans = [(m.start(), m.end()) for m in term_pattern(entry.tokens).finditer(text)
                 if tuple(tokenize(m.group())) == entry.tokens]
        if len(spans) != expected:
            raise SystemExit(f"{entry.term!r}: {len(spans)} spans in the original text, {expected} token matches")
        found.extend((a, b, entry.term) for a, b in spans)
    return sorted(found)


def _count(haystack: str, needle: str) -> int:
    """Overlapping occurrences of ``needle`` (one leading/trailing space each)."""
    n, at = 0, haystack.find(needle)
    while at >= 0:
        n += 1
        at = haystack.find(needle, at + 1)
    return n


def context(text: str, start: int, end: int, pii: list[tuple[str, int, int]] = ()) -> tuple[str, int, int] | None:
    """About ``WINDOW`` characters each side of text[start:end], cut just after / before
    whitespace so that no word is split; returns (context, start, end) with offsets in it.

    No personal data is copied into the set: the window stops short of every span in ``pii``
    (the project's own PII detectors on the whole document); None when the occurrence itself
    lies inside one."""
    left = max(0, start - WINDOW)
    right = min(len(text), end + WINDOW)
    for _, a, b in pii:
        if a < end and start < b:
            return None
        if b <= start:
            left = max(left, b)
        elif a >= end:
            right = min(right, a)
    if left > 0:
        ws = re.search(r"\s", text[left:start])
        left = left + ws.end() if ws else start
    if right < len(text):
        tail = text[end:right]
        ws = [m.start() for m in re.finditer(r"\s", tail)]
        right = end + ws[-1] if ws else end
    ctx = text[left:right]
    stripped = ctx.lstrip()
    shift = len(ctx) - len(stripped)
    return stripped.rstrip(), start - left - shift, end - left - shift


def _key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def spread(items: list[dict], limit: int, group: str) -> list[dict]:
    """At most ``limit`` of ``items``, spread over their ``group`` values: round-robin over the
    groups (in a hashed order), each group's items in a hashed order. Deterministic."""
    by: dict[str, list[dict]] = {}
    for it in items:
        by.setdefault(it[group], []).append(it)
    queues = [sorted(v, key=lambda it: _key(it["source"], it["doc_start"], it["term"]))
              for _, v in sorted(by.items(), key=lambda kv: _key(group, kv[0]))]
    return round_robin(queues, limit)


def round_robin(queues: list[list[dict]], limit: int) -> list[dict]:
    """At most ``limit`` items: the first of each queue in turn, then the second of each, ..."""
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < limit:
                chosen.append(q[depth])
        depth += 1
    return chosen


def split_of(ctx_id: str) -> str:
    """dev or test, about half each, by a hash of the id (rules are written on dev)."""
    return "dev" if int(hashlib.sha256(ctx_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def corpus_lines(corpus: Path) -> Iterator[str]:
    """The JSON lines of a JSONL file, or of the examples directory in the corpus's original order
    (its gzipped shards hold the documents round-robin: document i in shard i % 4)."""
    if corpus.is_dir():
        shards = [gzip.open(p, "rt", encoding="utf-8") for p in sorted(corpus.glob("part-*.jsonl.gz"))]
        for group in itertools.zip_longest(*shards):
            yield from (line for line in group if line is not None)
        for f in shards:
            f.close()
        return
    with open(corpus, encoding="utf-8") as f:
        yield from f


def extract(corpora: list[tuple[Path, str | None]], lexicon: Lexicon) -> list[dict]:
    """The chosen contexts of the corpora: (path, None) is the default corpus (sources by
    document id), (path, SOURCE) an extra file (sources by line number)."""
    axis_of = {e.term: e.group for e in lexicon.entries}
    candidates = set(CANDIDATES) | set(EXTRA_CANDIDATES)
    unknown = candidates - set(axis_of)
    if unknown:
        raise SystemExit(f"not lexicon terms: {sorted(unknown)}")
    every: list[dict] = []
    for corpus, extra_source in corpora:
        for lineno, line in enumerate(corpus_lines(corpus), 1):
            doc = json.loads(line)
            text = doc["text"]
            source = f"{SOURCE_PREFIX}:{doc['id']}" if extra_source is None else f"{extra_source}#L{lineno}"
            for a, b, term in occurrences(text, lexicon):
                every.append({"term": term, "source": source, "doc_text": text, "doc_start": a, "doc_end": b})
    # a term nested inside a longer term matched at an overlapping place ("african" in
    # "african american") is noted: the reader labels it "nested"
    by_doc: dict[str, list[dict]] = {}
    for occ in every:
        by_doc.setdefault(occ["source"], []).append(occ)
    for occs in by_doc.values():
        for occ in occs:
            occ["nested_in"] = next((o["term"] for o in occs if o is not occ
                                     and o["doc_start"] <= occ["doc_start"] and occ["doc_end"] <= o["doc_end"]
                                     and (o["doc_end"] - o["doc_start"]) > (occ["doc_end"] - occ["doc_start"])), None)
    chosen: list[dict] = []
    for term in list(CANDIDATES) + list(EXTRA_CANDIDATES):
        mine = [o for o in every if o["term"] == term]
        chosen.extend(sorted(spread(mine, PER_TERM, "source"), key=lambda o: (o["source"], o["doc_start"])))
    others = [o for term in sorted({o["term"] for o in every} - candidates)
              for o in spread([o for o in every if o["term"] == term], OTHER_PER_TERM, "source")]
    chosen.extend(sorted(spread(others, OTHER_SAMPLE, "term"), key=lambda o: (o["term"], o["source"], o["doc_start"])))
    detector = PiiDetector()
    pii_of: dict[str, list] = {}
    rows = []
    for occ in chosen:
        text = occ["doc_text"]
        if occ["source"] not in pii_of:
            # plus anything shaped like an e-mail address that the detectors do not take
            # (internationalised addresses)
            pii_of[occ["source"]] = detector.detect(text) + [("EMAIL_LIKE", m.start(), m.end())
                                                             for m in EMAIL_LIKE.finditer(text)]
        window = context(text, occ["doc_start"], occ["doc_end"], pii_of[occ["source"]])
        if window is None:
            continue
        rows.append(context_row(occ, window, axis_of, f"ctx-{len(rows) + 1:04d}"))
    return rows


def context_row(occ: dict, window: tuple[str, int, int], axis_of: dict, ctx_id: str) -> dict:
    """One unlabelled context of the set: the occurrence ``occ`` in its ``window`` (text, start, end)."""
    text, start, end = window
    return {"id": ctx_id, "term": occ["term"], "axis": axis_of[occ["term"]], "text": text,
            "start": start, "end": end, "label": None, "reason": None,
            "note": f"nested in {occ['nested_in']!r}" if occ["nested_in"] else "",
            "source": occ["source"], "split": split_of(ctx_id)}


def carry_labels(rows: list[dict], labelled: Path) -> int:
    """Copy label, reason and note from ``labelled`` onto the same contexts; returns how many."""
    old = {}
    with open(labelled, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            old[(r["source"], r["term"], r["text"], r["start"])] = r
    n = 0
    for r in rows:
        prev = old.get((r["source"], r["term"], r["text"], r["start"]))
        if prev is not None:
            r["label"], r["reason"], r["note"] = prev["label"], prev["reason"], prev["note"]
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                    help=f"JSONL with id and text (default {DEFAULT_CORPUS})")
    ap.add_argument("--extra", action="append", default=[], metavar="JSONL=SOURCE",
                    help="more JSONL with a text field; SOURCE names it in each context's source")
    ap.add_argument("--labels", type=Path, help="an earlier labelled set whose labels to carry over")
    args = ap.parse_args()
    lexicon = Lexicon.load(builtin_path("identities.tsv"))
    extras = []
    for spec in args.extra:
        path, sep, source = spec.partition("=")
        if not sep or not source:
            ap.error(f"--extra {spec!r}: expected JSONL=SOURCE")
        extras.append((Path(path), source))
    write_contexts(extract([(args.corpus, None)] + extras, lexicon), args.out, args.labels)


def write_contexts(rows: list[dict], out: Path, labels: Path | None) -> None:
    """Write ``rows`` as JSON lines to ``out``, with the labels of ``labels`` carried over."""
    if labels:
        print(f"labels carried over: {carry_labels(rows, labels)} of {len(rows)}", file=sys.stderr)
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} contexts -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
