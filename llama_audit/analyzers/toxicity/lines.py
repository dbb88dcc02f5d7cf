"""Documents -> lines, and line scores -> per-document statistics.

Methodology (docs/methodology.md, Toxicity): a document's text is split on ``"\\n"``; each line with at
least one non-whitespace character is scored; the document score is the mean of its line scores.
A line is scored with its surrounding whitespace stripped (BERT-style tokenizers ignore it, and
stripping lets ``"foo\\r"`` and ``"foo"`` share one cache entry). Characters that BERT's
tokenizer deletes — control, format (zero-width space and joiners, byte order mark, soft hyphen,
bidi marks), private-use, unassigned and surrogate code points, and U+FFFD — count as whitespace
here: a line of nothing else is blank, not an empty input scored as ``[CLS][SEP]``. Documents
with no non-blank line have no score.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

THRESHOLD = 0.5
INVISIBLE = ("\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
             "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff")
_STRIP = "".join(c for c in map(chr, range(0x3100)) if c.isspace()) + INVISIBLE  # all of str.isspace()


def document_lines(text: str | None) -> list[str]:
    """The lines of ``text`` that are scored: split on ``\\n``, stripped, non-blank ones kept."""
    if not text:
        return []
    out = []
    for line in text.split("\n"):
        s = line.strip(_STRIP)
        if s and (_visible(s[0]) or any(map(_visible, s))):  # s[0]: the common case, decided at once
            out.append(s)
    return out


def _visible(c: str) -> bool:
    """Not whitespace, not U+FFFD and not in a category C* (``str.isprintable`` is False for
    C* and for whitespace other than the space)."""
    return c.isprintable() and c != " " and c != "\ufffd"


def split_documents(texts: Iterable[str | None]) -> tuple[list[str], np.ndarray]:
    """Flatten documents into one list of lines; ``counts[i]`` = number of lines of document i."""
    flat: list[str] = []
    counts: list[int] = []
    for text in texts:
        lines = document_lines(text)
        flat.extend(lines)
        counts.append(len(lines))
    return flat, np.asarray(counts, dtype=np.int64)


def segment_stats(scores: Sequence[float] | np.ndarray, counts: np.ndarray,
                  threshold: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised per-document mean, max and share of lines >= ``threshold``.

    ``scores`` are the line scores in document order, ``counts`` the lines per document (summing to
    ``len(scores)``). Documents with zero lines get NaN in all three outputs. Sums are taken in
    float64; results are float64.
    """
    scores = np.asarray(scores, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(scores):
        raise ValueError(f"{len(scores)} line scores for {int(counts.sum())} lines")
    n = len(counts)
    mean = np.full(n, np.nan)
    mx = np.full(n, np.nan)
    frac = np.full(n, np.nan)
    if n == 0 or len(scores) == 0:
        return mean, mx, frac
    doc_of_line = np.repeat(np.arange(n), counts)
    sums = np.bincount(doc_of_line, weights=scores, minlength=n)
    ge = np.bincount(doc_of_line, weights=(scores >= threshold), minlength=n)
    has = counts > 0
    mean[has] = sums[has] / counts[has]
    frac[has] = ge[has] / counts[has]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[has]
    mx[has] = np.maximum.reduceat(scores, starts)
    return mean, mx, frac
