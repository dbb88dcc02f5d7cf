"""The one normalisation and tokenisation used by every lexicon analyzer (DESIGN.md, Methodology).

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


class TokenizedBatch:
    """Tokens of every document in a batch, computed once and shared by the lexicon analyzers.

    ``sets[i]`` is the set of distinct tokens of document i (for single-token terms); the joined
    form ``" " + " ".join(tokens) + " "`` is built lazily, only for documents that hold the first
    token of some multi-token term.
    """

    __slots__ = ("tokens", "sets", "_joined")

    def __init__(self, texts: Iterable[str], mask: Iterable[bool] | None = None):
        findall, nfkc = TOKEN_RE.findall, unicodedata.normalize
        if mask is None:
            self.tokens = [findall(nfkc("NFKC", t).casefold()) for t in texts]
        else:
            self.tokens = [findall(nfkc("NFKC", t).casefold()) if m else [] for t, m in zip(texts, mask)]
        self.sets = [set(toks) for toks in self.tokens]
        self._joined: dict[int, str] = {}

    def joined(self, i: int) -> str:
        s = self._joined.get(i)
        if s is None:
            s = self._joined[i] = " " + " ".join(self.tokens[i]) + " "
        return s


def tokenized(batch, in_scope) -> TokenizedBatch:
    """The batch's shared TokenizedBatch (documents outside the scope are not tokenised)."""
    cached = batch.cache.get("tokens")
    if cached is None:
        cached = batch.cache["tokens"] = TokenizedBatch(batch.texts, in_scope)
    return cached
