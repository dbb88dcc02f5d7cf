"""The one normalisation and tokenisation used by every lexicon analyzer (docs/methodology.md).

Text and lexicon terms go through the same steps, so a term matches a document when its token
sequence occurs contiguously among the document's tokens: hyphens, apostrophes and punctuation
are separators ("African-American" matches "african american"; "she's" contains "she").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

TOKEN_RE = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(normalize(text))


def term_key(term: str) -> str:
    """Canonical name of a lexicon term: its tokens joined by one space ("LGBTQ+" -> "lgbtq")."""
    return " ".join(tokenize(term))


# ASCII fast path. For ASCII text NFKC is the identity, casefold is lower(), and [^\W_]+ tokens
# are the runs of [a-z0-9]; bytes.translate + split finds them without a regex. These common
# non-word characters are replaced by spaces first (a non-word character for another one changes
# no token), so most English web text takes the fast path.
_ASCII_TABLE = bytes((c + 32 if 65 <= c <= 90 else c) if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else 32
                     for c in range(256))
_NONWORD_PUNCT = ("\u2019", "\u2018", "\u201c", "\u201d", "\u2013", "\u2014", "\u2026", "\xa0", "\u00b7", "\u2022")


def _fast_ascii(text: str) -> str | None:
    if not text.isascii():
        for ch in _NONWORD_PUNCT:
            if ch in text:
                text = text.replace(ch, " ")
        if not text.isascii():
            return None
    return text


class TokenizedBatch:
    """Tokens of every document in a batch, computed once and shared by the lexicon analyzers.

    ``sets[i]`` is the set of distinct tokens of document i (for single-token terms); the joined
    form ``" " + " ".join(tokens) + " "`` is built lazily, only for documents that hold the first
    token of some multi-token term. Documents that are ASCII (after dropping common non-word
    punctuation) hold ``bytes`` tokens (``is_bytes[i]``), the others ``str`` tokens; both are
    exactly the tokens of :func:`tokenize`.
    """

    __slots__ = ("tokens", "sets", "is_bytes", "_joined")

    def __init__(self, texts: Iterable[str], mask: Iterable[bool] | None = None):
        findall, nfkc = TOKEN_RE.findall, unicodedata.normalize
        table = _ASCII_TABLE
        tokens: list = []
        is_bytes: list[bool] = []
        if mask is None:
            mask = [True] * len(texts)  # type: ignore[arg-type]
        for t, m in zip(texts, mask):
            if not m:
                tokens.append([])
                is_bytes.append(False)
                continue
            a = _fast_ascii(t)
            if a is not None:
                tokens.append(a.encode("ascii").translate(table).split())
                is_bytes.append(True)
            else:
                tokens.append(findall(nfkc("NFKC", t).casefold()))
                is_bytes.append(False)
        self.tokens = tokens
        self.is_bytes = is_bytes
        self.sets = [set(toks) for toks in tokens]
        self._joined: dict[int, str | bytes] = {}

    def joined(self, i: int) -> str | bytes:
        s = self._joined.get(i)
        if s is None:
            if self.is_bytes[i]:
                s = b" " + b" ".join(self.tokens[i]) + b" "
            else:
                s = " " + " ".join(self.tokens[i]) + " "
            self._joined[i] = s
        return s


def tokenized(batch, in_scope) -> TokenizedBatch:
    """The batch's shared TokenizedBatch (documents outside the scope are not tokenised)."""
    cached = batch.cache.get("tokens")
    if cached is None:
        cached = batch.cache["tokens"] = TokenizedBatch(batch.texts, in_scope)
    return cached
