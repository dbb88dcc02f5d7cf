"""The PII detector: runs the selected recognizers over texts, one document or a whole batch.

Batch detection is where the speed comes from. Each recognizer declares a prefilter (a necessary
condition for it to find anything); the prefilters of a batch are evaluated by Arrow's C++ string
kernels (RE2), first all of them combined, then one by one on the documents that passed, so
Python-level regexes and validators only ever see documents that can contain a candidate.
``detect_batch(texts)`` returns exactly ``[detect(t) for t in texts]``.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.analyzers.pii.iban import IbanRecognizer
from llama_audit.analyzers.pii.phone import PhoneRecognizer
from llama_audit.analyzers.pii.recognizers import (
    IP_PRIVATE,
    CreditCardRecognizer,
    EmailRecognizer,
    IPv4Recognizer,
    IPv6Recognizer,
    Recognizer,
    UsSsnRecognizer,
)
from llama_audit.analyzers.pii.secret_keys import SecretRecognizer
from llama_audit.analyzers.pii.spans import Span, resolve_overlaps

# The types a user can select (``--pii-types``), in report order.
PII_TYPES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "SECRET",
)
# The types that can appear in spans: selecting IP_ADDRESS also yields IP_ADDRESS_PRIVATE spans
# (private, loopback, link-local, documentation, multicast and other non-global addresses).
# Also the order of the rows of the report's PII table.
SPAN_TYPES: tuple[str, ...] = PII_TYPES + (IP_PRIVATE,)
# Span types that are not personal data by themselves: listed in spans, not counted as PII.
NOT_PII: frozenset[str] = frozenset({IP_PRIVATE})

# Bump when a change to any pattern, validator or table can change the spans found.
# 2026.1: invisible characters (below) no longer hide PII.
RULES_VERSION = "2026.1"

#: characters a reader does not see, which split a token for a regex: the soft hyphen (inserted by
#: hyphenation, and by writers who obfuscate addresses), zero-width space, non-joiner and joiner,
#: word joiner, and the zero-width no-break space (a byte-order mark inside a text). Detection
#: runs on the text without them; spans are mapped back to the original code points and cover the
#: invisible characters inside them.
INVISIBLE_CHARS = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")
_INVISIBLE_RE2 = f"[{INVISIBLE_CHARS}]"


def strip_invisible(text: str) -> tuple[str, np.ndarray | None]:
    """``text`` without :data:`INVISIBLE_CHARS`, and what :func:`spans_in_original` needs to map
    its offsets back (None: there were none). The map holds, for each removed character, its
    index in the stripped text (``position - rank``): a stripped index ``s`` is original index
    ``s + #(map <= s)``."""
    positions = [m.start() for m in _INVISIBLE.finditer(text)]
    if not positions:
        return text, None
    return _INVISIBLE.sub("", text), np.asarray(positions, dtype=np.int64) - np.arange(len(positions))


def spans_in_original(spans: list[Span], removed: np.ndarray) -> list[Span]:
    """Spans of a stripped text (:func:`strip_invisible`) on the original text: from the original
    index of the first character to just after the original index of the last one."""
    if not spans:
        return spans
    starts = np.array([a for _, a, _ in spans], dtype=np.int64)
    lasts = np.array([b - 1 for _, _, b in spans], dtype=np.int64)
    starts += np.searchsorted(removed, starts, side="right")
    lasts += np.searchsorted(removed, lasts, side="right")
    return [(t, int(a), int(b) + 1) for (t, _, _), a, b in zip(spans, starts.tolist(), lasts.tolist())]


def _stripped(texts: list[str], candidates) -> dict[int, np.ndarray]:
    """Strip the invisible characters of ``texts[i]`` for ``i`` in ``candidates`` in place; the
    maps of those that had some."""
    removed = {}
    for i in candidates:
        visible, gone = strip_invisible(texts[i])
        if gone is not None:
            texts[i] = visible
            removed[i] = gone
    return removed


def normalize_types(types: Sequence[str] | None) -> tuple[str, ...]:
    """Upper-cased, de-duplicated, in PII_TYPES order; None means all. Unknown names raise
    ValueError naming them (type names are not PII)."""
    if types is None:
        return PII_TYPES
    if isinstance(types, str):
        types = types.split(",")
    wanted = {t.strip().upper() for t in types if t.strip()}
    unknown = sorted(wanted - set(PII_TYPES))
    if unknown:
        raise ValueError(f"unknown PII type(s) {', '.join(unknown)}; known: {', '.join(PII_TYPES)}")
    if not wanted:
        raise ValueError(f"no PII type selected; known: {', '.join(PII_TYPES)}")
    return tuple(t for t in PII_TYPES if t in wanted)


def _re2(prefilter: tuple[str, str]) -> str:
    kind, pattern = prefilter
    return re.escape(pattern) if kind == "substring" else pattern


def _mask(arr: pa.Array, prefilter: tuple[str, str]) -> np.ndarray:
    kind, pattern = prefilter
    if kind == "substring":
        hit = pc.match_substring(arr, pattern)
    else:
        hit = pc.match_substring_regex(arr, pattern)
    return hit.fill_null(False).to_numpy(zero_copy_only=False)


class PiiDetector:
    def __init__(self, types: Sequence[str] | None = None, region: str = "US"):
        self.types = normalize_types(types)
        self.region = region.upper()
        candidates: list[Recognizer] = [
            SecretRecognizer(),
            EmailRecognizer(),
            IPv4Recognizer(),
            IPv6Recognizer(),
            CreditCardRecognizer(),
            UsSsnRecognizer(),
            IbanRecognizer(),
            PhoneRecognizer(self.region),
        ]
        self.recognizers: tuple[Recognizer, ...] = tuple(r for r in candidates if r.entity in self.types)
        self._combined = "|".join(f"(?:{_re2(r.prefilter)})" for r in self.recognizers)
        # the batch prefilter: some recognizer may match, or an invisible character may hide a match
        self._prefilter = f"{self._combined}|{_INVISIBLE_RE2}"
        # Unanchored prefilters match inside a text exactly when they match inside that text joined
        # to others with newlines (a match across a newline only costs the slow path): one search
        # over a joined batch of short strings then rules them all out at once.
        self._joinable = not re.search(r"\^|\$|\\[AzZB]", self._combined)

    def __repr__(self) -> str:
        return f"PiiDetector(types={self.types!r}, region={self.region!r})"

    def detect(self, text: str) -> list[Span]:
        """Spans in ``text``, overlaps resolved, sorted by start. No prefilter involved. Invisible
        characters do not hide anything (:data:`INVISIBLE_CHARS`)."""
        visible, removed = strip_invisible(text if isinstance(text, str) else "")
        spans = self._run(visible, self.recognizers)
        return spans if removed is None else spans_in_original(spans, removed)

    def _run(self, text: str, recognizers: Sequence[Recognizer]) -> list[Span]:
        spans: list[Span] = []
        for r in recognizers:
            spans.extend(r.find(text))
        return resolve_overlaps(spans)

    def detect_sparse(self, texts: Sequence[str]) -> dict[int, list[Span]]:
        """``{i: self.detect(texts[i])}`` for the texts with a span only: for many short strings
        that rarely hold PII (document ids, metadata fields), where building an empty list per
        text costs more than the one combined prefilter that rules most of them out."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts or not self.recognizers:
            return {}
        if self._joinable:
            try:
                joined = pa.array(["\n".join(texts)], type=pa.large_string())
            except (UnicodeEncodeError, pa.ArrowException):
                pass  # a lone surrogate: the per-text path below handles it
            else:
                if not _mask(joined, ("regex", self._prefilter))[0]:
                    return {}
        arr, forced = _to_arrow(texts)
        hit = np.flatnonzero(_mask(arr, ("regex", self._prefilter)))
        if forced:
            hit = np.union1d(hit, np.asarray(forced, dtype=np.int64))
        rows = hit.tolist()
        return {i: spans for i, spans in zip(rows, self.detect_batch([texts[i] for i in rows])) if spans}

    def detect_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """``[self.detect(t) for t in texts]``, computed with batch prefilters.

        Stage 1: one RE2 pass of all prefilters combined over the batch. Stage 2: each
        recognizer's prefilter over the documents that passed. Stage 3: for line-local
        recognizers, the prefilter again over the lines of the documents that passed, so their
        Python regexes scan only the lines that can hold a candidate.
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        n = len(texts)
        out: list[list[Span]] = [[] for _ in range(n)]
        if n == 0 or not self.recognizers:
            return out
        arr, forced = _to_arrow(texts)
        hit = np.flatnonzero(_mask(arr, ("regex", self._prefilter)))
        if forced:
            hit = np.union1d(hit, np.asarray(forced, dtype=np.int64))
        if hit.size == 0:
            return out
        doc_ids = hit.tolist()
        sub = arr if hit.size == n else arr.take(pa.array(hit))  # take copies the texts: skip it when all pass
        # invisible characters (rare): strip them from those texts, detect on the stripped batch,
        # map the spans back to the original offsets
        removed = _stripped(texts, [doc_ids[j] for j in np.flatnonzero(_mask(sub, ("regex", _INVISIBLE_RE2)))]
                            + forced)
        if removed:
            return [spans if i not in removed else spans_in_original(spans, removed[i])
                    for i, spans in enumerate(self.detect_batch(texts))]
        forced_set = set(forced)
        recs = self.recognizers
        # doc_masks[k][j]: recognizer k may find something in document doc_ids[j]
        doc_masks = [_mask(sub, r.prefilter) for r in recs]
        for j, i in enumerate(doc_ids):
            if i in forced_set:
                for m in doc_masks:
                    m[j] = True

        spans_by_doc: dict[int, list[Span]] = {}
        # Whole-document recognizers.
        for k, r in enumerate(recs):
            if r.line_local:
                continue
            for j in np.flatnonzero(doc_masks[k]).tolist():
                i = doc_ids[j]
                spans_by_doc.setdefault(i, []).extend(r.find(texts[i]))
        # Line-local recognizers: split the documents that need them into lines, a bounded group
        # of lines at a time (one huge document must not be copied line by line all at once).
        local = [k for k, r in enumerate(recs) if r.line_local]
        if local:
            need = np.zeros(len(doc_ids), dtype=bool)
            for k in local:
                need |= doc_masks[k]
            del arr, sub  # the whole batch as Arrow is not needed any more
            group = _LineGroup()
            for j in np.flatnonzero(need).tolist():
                offset = 0
                for part in iter_lines(texts[doc_ids[j]]):
                    group.add(part, j, offset)
                    offset += len(part)
                    if group.chars >= LINE_GROUP_CHARS:
                        self._find_in_lines(group, local, doc_masks, doc_ids, spans_by_doc, texts)
                        group = _LineGroup()
            self._find_in_lines(group, local, doc_masks, doc_ids, spans_by_doc, texts)
        for i, spans in spans_by_doc.items():
            out[i] = resolve_overlaps(spans)
        return out


    def _find_in_lines(self, group: "_LineGroup", local: list[int], doc_masks: list[np.ndarray],
                       doc_ids: list[int], spans_by_doc: dict[int, list[Span]], texts: list[str]) -> None:
        """Stage 3 over one group of lines: each line-local recognizer's prefilter over the lines,
        then its Python regex on the lines that pass (``find_line``, which may read the document
        before the line), with offsets back into the document."""
        if not group.lines:
            return
        line_arr, line_forced = _to_arrow(group.lines)
        line_doc_arr = np.asarray(group.doc, dtype=np.int64)
        for k in local:
            r = self.recognizers[k]
            lm = _mask(line_arr, r.prefilter)
            if line_forced:
                lm[np.asarray(line_forced, dtype=np.int64)] = True
            lm &= doc_masks[k][line_doc_arr]
            for li in np.flatnonzero(lm).tolist():
                base = group.start[li]
                i = doc_ids[group.doc[li]]
                found = r.find_line(group.lines[li], texts[i], base)
                spans_by_doc.setdefault(i, []).extend((t, base + a, base + b) for t, a, b in found)


# Stage 3 handles at most about this many characters of lines at once: bounded memory for one
# huge document, large enough that the per-group Arrow and numpy overhead does not matter.
LINE_GROUP_CHARS = 1 << 22
_LINE_CHUNK_CHARS = 1 << 20


class _LineGroup:
    """Lines of one or more documents, with the document (index into ``doc_ids``) and the
    code-point offset of each line in its document."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.doc: list[int] = []
        self.start: list[int] = []
        self.chars = 0

    def add(self, line: str, doc: int, start: int) -> None:
        self.lines.append(line)
        self.doc.append(doc)
        self.start.append(start)
        self.chars += len(line)


def iter_lines(text: str, chunk_chars: int | None = None):
    """``text.splitlines(keepends=True)``, produced lazily: the text is split a chunk at a time, so
    a huge document is never copied into one list of lines. A line cut by a chunk boundary (and a
    ``\r\n`` cut between its two characters) is carried into the next chunk, so the lines are
    exactly those of ``splitlines``."""
    chunk_chars = chunk_chars or _LINE_CHUNK_CHARS
    if len(text) <= chunk_chars:
        yield from text.splitlines(keepends=True)
        return
    pending: list[str] = []  # pieces of a line that a chunk boundary cut (joined once, never re-copied)
    for pos in range(0, len(text), chunk_chars):
        chunk = text[pos:pos + chunk_chars]
        if pending and pending[-1].endswith("\r"):  # a \r at the end of the last chunk: is it \r\n?
            if chunk.startswith("\n"):
                pending.append("\n")
                chunk = chunk[1:]
            yield "".join(pending)
            pending = []
        parts = chunk.splitlines(keepends=True)
        for index, part in enumerate(parts):
            pending.append(part)
            if index < len(parts) - 1 or (part[-1] in _LINE_BREAKS and part[-1] != "\r"):
                yield "".join(pending)
                pending = []
    if pending:
        yield "".join(pending)


_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _to_arrow(texts: Sequence[str]) -> tuple[pa.Array, list[int]]:
    """The texts as an Arrow string array for the prefilters, and the indices of texts Arrow
    cannot hold (lone surrogates): those get an empty placeholder and skip the prefilters."""
    try:
        return pa.array(texts, type=pa.large_string()), []
    except (UnicodeEncodeError, pa.ArrowException, TypeError):
        pass  # the exception names the text; it is dropped here on purpose
    safe: list[str] = []
    forced: list[int] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            safe.append("")
            continue
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            forced.append(i)
            safe.append("")
            continue
        safe.append(t)
    return pa.array(safe, type=pa.large_string()), forced
