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


# ASCII fast path. For ASCII text NFKC is the identity, casefold is lower(), and [^\W_]+ tokens
# are the runs of [a-z0-9]; bytes.translate + split finds them without a regex.
#
# Most English web text is ASCII but for a few symbols (curly quotes, dashes, £, ©, ™, ...). Each
# distinct non-ASCII character c is replaced by NFKC(c).casefold() when that is ASCII (™ -> "tm",
# ﬁ -> "fi", ß -> "ss"), or by a space when c is not a word character and does not become one
# (’ — £ © ■ …): a non-word character for another one changes no token. Without combining marks
# nothing composes across characters, so the result is exactly NFKC(text).casefold() up to
# non-word characters. Any other character (é, 中, a combining mark) sends the document to the
# regex path. Decisions are cached per character.
_ASCII_TABLE = bytes((c + 32 if 65 <= c <= 90 else c) if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else 32
                     for c in range(256))
_COMMON = ("\u2019", "\u2018", "\u201c", "\u201d", "\u2013", "\u2014", "\u2026", "\xa0")
_CHAR_MAP: dict[str, str | None] = {}


def _ascii_replacement(ch: str) -> str | None:
    r = _CHAR_MAP.get(ch, "")
    if r != "":
        return r
    if unicodedata.combining(ch) or unicodedata.category(ch).startswith("M"):
        r = None
    else:
        n = unicodedata.normalize("NFKC", ch).casefold()
        if n.isascii():
            r = n
        elif not TOKEN_RE.search(n):
            r = " "
        else:
            r = None
    if len(_CHAR_MAP) < 65536:
        _CHAR_MAP[ch] = r
    return r


def _fast_ascii(text: str) -> str | None:
    """``text`` made ASCII without changing its tokens, or None when that is not possible."""
    if text.isascii():
        return text
    for ch in _COMMON:
        if ch in text:
            text = text.replace(ch, " ")
    if text.isascii():
        return text
    for ch in {c for c in text if c > "\x7f"}:
        r = _ascii_replacement(ch)
        if r is None:
            return None
        text = text.replace(ch, r)
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
