"""Review samples of identity descriptors: look before you trust a row of Table 9b.

The Llama 2 paper counts a HolisticBias descriptor wherever its tokens occur (section 4.1), and on
web text some descriptors are mostly other words ("ACE hardware", "frying pan", "bi-weekly": issue
10). ``scan --keep-examples K`` keeps, per descriptor and per document language, a deterministic
reservoir of K documents that mention it -- a reference (shard, row; the document id only where the
PII detectors find nothing in it) and a window of +-80 characters of the original text around the
first occurrence (in sense mode: the first that sense mode counts), in which every span the PII detectors find is replaced by its type
(``[EMAIL_ADDRESS]``). ``report --examples`` shows them, so a reviewer can check any row of the
table in a minute.

Which documents: the K with the smallest BLAKE2b hash of (shard, row, descriptor), per shard and
again across shards (the core's bottom-k, :mod:`llama_audit.review_samples`): a uniform sample of
the documents that mention the descriptor, the same whatever the workers or the slicing.

Masking does not depend on the ``pii`` analyzer being selected: the PII detectors themselves
(:class:`~llama_audit.analyzers.pii.detector.PiiDetector`, all types) run over the whole lines
that overlap the window (bounded to :data:`DETECT_MARGIN_CHARS` beyond it), so a span that
straddles the window's edge is found and masked whole, and the phone rules see the words before a
number as they do in a document.
"""

from __future__ import annotations

import bisect
import json
import re
import unicodedata
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa

from llama_audit.analyzers.language import LanguageAnalyzer
from llama_audit.analyzers.identities.senses import SenseMatcher
from llama_audit.analyzers.identities.senses import term_pattern as senses_term_pattern
from llama_audit.analyzers.pii.detector import PII_TYPES, RULES_VERSION, PiiDetector
from llama_audit.report.section import DisplayTable
from llama_audit.review_samples import LIMIT_KEY, ReviewSample, stable_order
from llama_audit.text import term_key
from llama_audit.types import ConfigError, DocBatch

CONTEXT_CHARS = 80  # characters of the original text kept on each side of the occurrence
DETECT_MARGIN_CHARS = 2000  # at most this far beyond the window the detectors read (a very long line)
MAX_KEEP_EXAMPLES = 1000  # samples per descriptor and language: for reading, not for statistics
UNDETERMINED_LANGUAGE = "und"  # ISO 639-2 "undetermined": the language analyzer did not run
ELLIPSIS = "\u2026"  # marks a window cut from a longer text
#: the document's language: the language analyzer's annotation (its scope column), when it ran
LANGUAGE_COLUMN = LanguageAnalyzer.scope_column
EXAMPLES_KEY = "examples"  # the identities section's key in the report JSON (report --examples)
# characters that would break a table row or a terminal line: shown as one space each (offsets kept)
_LAYOUT = {c: " " for c in range(0x20) if c != 0x09} | {0x09: " ", 0x7F: " ", 0x85: " ", 0x2028: " ",
                                                        0x2029: " "}


def check_keep_examples(value: int) -> str | None:
    if value < 0 or value > MAX_KEEP_EXAMPLES:
        return f"must be between 0 and {MAX_KEEP_EXAMPLES}"
    return None


def sampling_declaration(limit: int, region: str) -> dict[str, Any] | None:
    """What the identities analyzer's review samples are kept with (recorded in the configuration)."""
    if limit <= 0:
        return None
    return {LIMIT_KEY: limit, "context_chars": CONTEXT_CHARS, "pii_types": list(PII_TYPES),
            "pii_region": region, "pii_rules_version": RULES_VERSION}


def sample_group(mode: str, axis: str, term: str, language: str) -> str:
    return json.dumps([mode, axis, term, language], ensure_ascii=False)


# -- where a descriptor occurs ------------------------------------------------------------------------
# The occurrences of the term's tokens, separated by non-word characters, between word boundaries,
# in the NFKC case-folded text (text.py's tokenisation), mapped back to offsets of the original
# text. A paper-mode sample shows the first; a sense-mode sample the first that sense mode counts
# (decided by identities/senses.py on the text around it), so the reviewer reads what was counted.

_pattern_cache: dict[str, re.Pattern] = {}


def term_pattern(term: str) -> re.Pattern:
    """The occurrences of a lexicon key (tokens joined by one space), sense mode's pattern."""
    pattern = _pattern_cache.get(term)
    if pattern is None:
        pattern = _pattern_cache[term] = senses_term_pattern(term.split(" "))
    return pattern


def _normalized_with_offsets(text: str) -> tuple[str, list[int]]:
    """``text`` NFKC-normalised and case-folded a base character with its combining marks at a
    time (as the tokenizer composes them: "gay" + U+0301 is "gaý", no occurrence of "gay"), and
    for each character of the result the offset of the original character it came from (plus
    ``len(text)`` at the end)."""
    out: list[str] = []
    origin: list[int] = []
    i, size = 0, len(text)
    while i < size:
        j = i + 1
        while j < size and unicodedata.combining(text[j]):
            j += 1
        part = text[i:j]
        n = part.lower() if part.isascii() else unicodedata.normalize("NFKC", part).casefold()
        out.append(n)
        origin.extend([i] * len(n))
        i = j
    origin.append(size)
    return "".join(out), origin


FIND_PIECE_CHARS = 1 << 16  # a long document is searched a piece at a time (the first match is usually early)


def find_occurrences(text: str, term: str) -> Iterator[tuple[int, int]]:
    """Character offsets ``(start, end)`` in ``text`` of the occurrences of ``term`` (a lexicon
    key: tokens joined by one space), in text order, a piece of the text at a time."""
    pattern = term_pattern(term)
    step = FIND_PIECE_CHARS
    overlap = len(term) * 4 + 64  # an occurrence cut by a piece boundary is found in the next piece
    last_end = -1
    for base in range(0, max(len(text), 1), step):
        lead = 1 if base else 0  # the character before the piece: the word boundary sees it
        piece = text[base - lead: base + step + overlap]
        at = base - lead
        if piece.isascii():
            spans = ((at + m.start(), at + m.end()) for m in pattern.finditer(piece.lower(), lead))
        else:
            normalized, origin = _normalized_with_offsets(piece)
            first = bisect.bisect_left(origin, lead)  # (origin never decreases)
            spans = ((at + origin[m.start()], at + origin[m.end() - 1] + 1)
                     for m in pattern.finditer(normalized, first))
        for a, b in spans:
            if a >= base + step:
                break  # the next piece finds it
            if a > last_end or last_end < 0:
                last_end = b
                yield a, b


def find_occurrence(text: str, term: str) -> tuple[int, int] | None:
    """The first of :func:`find_occurrences`, or None."""
    return next(find_occurrences(text, term), None)


SENSE_CONTEXT_CHARS = 400  # text on each side of an occurrence that sense mode's decision reads (it reads 120)
MAX_SENSE_TRIES = 64  # occurrences tried, in text order, for one that sense mode counts


def find_counted_occurrence(text: str, term: str, matcher: SenseMatcher) -> tuple[int, int] | None:
    """The first occurrence of ``term`` in ``text`` that sense mode counts (decided by ``matcher``
    on the text around it, as it decides in the whole document), or None."""
    for tried, (a, b) in enumerate(find_occurrences(text, term)):
        if tried >= MAX_SENSE_TRIES:
            break
        base = max(0, a - SENSE_CONTEXT_CHARS)
        local = text[base: b + SENSE_CONTEXT_CHARS]
        found = [o for o in matcher.occurrences(local) if matcher.lexicon.entries[o.entry].term == term]
        if not found:
            continue
        # offsets agree when the local text is NFKC-stable; else they index its NFKC form: the nearest
        nearest = min(found, key=lambda o: abs(o.start - (a - base)))
        if nearest.counted:
            return a, b
    return None


# -- the masked context window ------------------------------------------------------------------------

def masked_context(text: str, start: int, end: int, detector: PiiDetector,
                   width: int = CONTEXT_CHARS) -> tuple[str, int, int]:
    """The window of ``width`` characters on each side of ``text[start:end]``, every PII span
    the detector finds overlapping it replaced by ``[TYPE]`` (whole, also where it crosses the
    window's edge), layout characters shown as spaces, an ellipsis where the text goes on; and the
    occurrence's offsets in that string (a masked occurrence: the mask's)."""
    win_a, win_b = max(0, start - width), min(len(text), end + width)
    # the detector reads the whole lines overlapping the window, at most DETECT_MARGIN_CHARS beyond it
    line_a = max(text.rfind("\n", 0, win_a) + 1, win_a - DETECT_MARGIN_CHARS, 0)
    line_b = text.find("\n", win_b)
    line_b = len(text) if line_b < 0 else line_b
    line_b = min(line_b, win_b + DETECT_MARGIN_CHARS)
    spans = [(t, a + line_a, b + line_a) for t, a, b in detector.detect(text[line_a:line_b])]
    spans = [(t, a, b) for t, a, b in spans if a < win_b and b > win_a]
    out: list[str] = []
    length = 0
    match_a = match_b = None
    pos = win_a
    for t, a, b in spans + [(None, win_b, win_b)]:
        a = max(a, pos)
        if a > pos:  # plain text before the span
            plain = text[pos:a].translate(_LAYOUT)
            if match_a is None and pos <= start < a:
                match_a = length + start - pos
            if match_b is None and pos < end <= a:
                match_b = length + end - pos
            out.append(plain)
            length += len(plain)
        if t is None:
            break
        mask = f"[{t}]"
        if match_a is None and a <= start < b:
            match_a = length
        if match_b is None and start < b and end <= b:
            match_b = length + len(mask)
        out.append(mask)
        length += len(mask)
        pos = max(b, a)
    context = "".join(out)
    match_a = match_a if match_a is not None else 0
    match_b = match_b if match_b is not None else length
    if win_a > 0:
        context, match_a, match_b = ELLIPSIS + context, match_a + 1, match_b + 1
    if win_b < len(text):
        context += ELLIPSIS
    return context, match_a, match_b


# -- candidates of one batch ---------------------------------------------------------------------------

class ExampleSampler:
    """Offers the core one candidate per (document, descriptor found in it); its payload (the
    masked window) is built only for the candidates the core keeps."""

    def __init__(self, axis_of: Mapping[str, str], region: str, matcher: SenseMatcher):
        self.axis_of = axis_of
        self.matcher = matcher
        self.detector = PiiDetector(PII_TYPES, region)  # every type, whatever --pii-types says

    def candidates(self, batch: DocBatch, terms_by_mode: Mapping[str, pa.Array],
                   languages: pa.Array | None) -> Iterator[ReviewSample]:
        """Per counting mode (paper, sense: each keeps its own samples, of the documents it counts),
        one candidate per document and descriptor; the same document ranks the same in both."""
        langs = languages.to_pylist() if languages is not None else None
        for mode, terms in terms_by_mode.items():
            for i, found in enumerate(terms.to_pylist()):
                if not found:
                    continue
                row = int(batch.rows[i])
                language = (langs[i] if langs is not None else None) or UNDETERMINED_LANGUAGE
                for term in dict.fromkeys(found):
                    axis = self.axis_of.get(term, "")
                    yield ReviewSample(sample_group(mode, axis, term, language), stable_order(batch.shard, row, term),
                                       _Payload(self, batch, i, axis, term, language, mode))

    def payload(self, batch: DocBatch, i: int, axis: str, term: str, language: str, mode: str) -> dict[str, Any]:
        cache = batch.cache.setdefault("identity_examples", {})
        key = (i, term, mode)
        if key not in cache:
            cache[key] = self._payload(batch, i, axis, term, language, mode)
        return cache[key]

    def _payload(self, batch: DocBatch, i: int, axis: str, term: str, language: str, mode: str) -> dict[str, Any]:
        text = batch.texts[i] if isinstance(batch.texts[i], str) else ""
        doc_id = batch.doc_ids[i]
        # the id only when the detectors find nothing in it (ids are never masked piecemeal)
        shown_id = doc_id if isinstance(doc_id, str) and not self.detector.detect(doc_id) else None
        if mode == "sense":
            where = find_counted_occurrence(text, term, self.matcher)
        else:
            where = find_occurrence(text, term)
        if where is None:  # not located (a casefold that changes lengths): the reference alone
            context, a, b = "", 0, 0
        else:
            context, a, b = masked_context(text, *where, self.detector)
        return {"shard": batch.shard, "row": int(batch.rows[i]), "id": shown_id, "axis": axis, "term": term,
                "language": language, "context": context, "match": [a, b]}


class _Payload:
    """A deferred payload (a callable the core calls only when it keeps the candidate)."""

    __slots__ = ("sampler", "batch", "i", "axis", "term", "language", "mode")

    def __init__(self, sampler: ExampleSampler, batch: DocBatch, i: int, axis: str, term: str, language: str,
                 mode: str):
        self.sampler, self.batch, self.i, self.axis, self.term = sampler, batch, i, axis, term
        self.language, self.mode = language, mode

    def __call__(self) -> dict[str, Any]:
        return self.sampler.payload(self.batch, self.i, self.axis, self.term, self.language, self.mode)


# -- the report ------------------------------------------------------------------------------------

def report_examples(samples: Mapping[str, list], mode: str, wanted: Sequence[str], known_terms: set[str]) -> list[dict]:
    """The section's ``examples``: the samples of the documents counting ``mode`` counts (paper,
    sense); one entry per (axis, descriptor, language) with samples, sorted,
    each ``{"axis", "term", "language", "samples": [payload, ...]}``; only the ``wanted`` terms
    when given (spelled as in a lexicon: "African-American" is "african american"). A wanted term
    that no document of the scan mentions is a ConfigError (a typo must not print nothing)."""
    keys = [term_key(t) for t in wanted]
    unknown = [t for t, k in zip(wanted, keys) if k not in known_terms]
    if unknown:
        raise ConfigError(f"--examples-terms: no document of this scan mentions {', '.join(map(repr, unknown))}"
                          + (" in sense mode" if mode == "sense" else ""))
    entries = []
    for group, payloads in samples.items():
        group_mode, axis, term, language = json.loads(group)
        if group_mode != mode or (keys and term not in keys):
            continue
        entries.append({"axis": axis, "term": term, "language": language, "samples": list(payloads)})
    entries.sort(key=lambda e: (e["axis"], e["term"], e["language"]))
    return entries


def example_tables(key: str, examples: list[dict], axis_labels: Mapping[str, str]) -> list[DisplayTable]:
    """One folded table per descriptor and language: where each sample is, and its masked window."""
    tables = []
    for e in examples:
        rows = [[s["shard"], s["row"], s["id"] if s.get("id") is not None else "(withheld)", s["context"]]
                for s in e["samples"]]
        label = axis_labels.get(e["axis"], e["axis"])
        tables.append(DisplayTable(
            key, f"Review samples: {e['term']} ({label}, language {e['language']}, {len(rows)} shown)",
            ["shard", "row", "id", "context (PII masked)"], rows,
            "a uniform sample of the documents that mention it (scan --keep-examples); "
            "id withheld where it holds personal data", text_columns=("id", "context (PII masked)"),
            collapsible=True))
    return tables


def check_region(value: str) -> str | None:
    import phonenumbers

    return None if value.upper() in phonenumbers.SUPPORTED_REGIONS else "is not a two-letter region such as US, GB, DE"
