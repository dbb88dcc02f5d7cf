"""The one normalisation and tokenisation used by every lexicon analyzer (docs/methodology.md).

Text and lexicon terms go through the same steps, so a term matches a document when its token
sequence occurs contiguously among the document's tokens: hyphens, apostrophes and punctuation
are separators ("African-American" matches "african american"; "she's" contains "she").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Iterator

TOKEN_RE = re.compile(r"[^\W_]+")

#: Documents longer than this many characters are tokenised piece by piece (memory bounded by the
#: piece, not the document): a 200 MB single-line document would otherwise hold ~35 million token
#: objects at once (3 GB). Shorter documents take exactly the whole-document path.
LONG_DOC_CHARS = 1 << 22
#: Where a long text may be cut: before a whitespace character. Whitespace is a separator for our
#: tokens and for fastText's, has no NFKC decomposition and composes with nothing, so the pieces
#: give the same tokens as the whole text (fastText's whitespace: " \n\r\t\v\f\0").
_CUT_BEFORE = (" ", "\n", "\t", "\r", "\v", "\f", "\0")


def whitespace_pieces(text: str, size: int) -> Iterator[str]:
    """``text`` in consecutive slices of at most ``size`` characters, each cut made just before a
    whitespace character (the last space of the window, else another whitespace character), so
    that no token is split.

    A window with no whitespace after its first character (a run of ``size`` characters without
    any: a blob, not prose) is cut at ``size``, which splits that one run in two."""
    n = len(text)
    start = 0
    while n - start > size:
        end = start + size
        cut = -1
        for ch in _CUT_BEFORE:
            cut = text.rfind(ch, start + 1, end)
            if cut > start:
                break
        if cut <= start:
            cut = end
        yield text[start:cut]
        start = cut
    yield text[start:]


def utf8_size(text: str) -> int:
    """``len(text.encode("utf-8", "surrogatepass"))`` without encoding an ASCII text, and with at
    most ``LONG_DOC_CHARS`` characters encoded at a time (each code point's size is its own)."""
    if text.isascii():
        return len(text)
    return sum(len(text[a: a + LONG_DOC_CHARS].encode("utf-8", "surrogatepass"))
               for a in range(0, len(text), LONG_DOC_CHARS))


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

    A document longer than ``LONG_DOC_CHARS`` is tokenised in :func:`whitespace_pieces`: its
    ``tokens[i]`` is None (the token list is never held whole), its set is the whole document's,
    and its joined form is a :class:`Utf8Joined` of the same text (``needle in joined`` answers
    the same).
    """

    __slots__ = ("tokens", "sets", "is_bytes", "_joined", "_long")

    def __init__(self, texts: Iterable[str], mask: Iterable[bool] | None = None):
        findall, nfkc = TOKEN_RE.findall, unicodedata.normalize
        table = _ASCII_TABLE
        tokens: list = []
        sets: list[set] = []
        is_bytes: list[bool] = []
        self._long: dict[int, str] = {}  # document index -> text, for the long ones
        if mask is None:
            mask = [True] * len(texts)  # type: ignore[arg-type]
        for t, m in zip(texts, mask):
            if not m:
                tokens.append([])
                sets.append(set())
                is_bytes.append(False)
                continue
            if len(t) > LONG_DOC_CHARS:
                self._long[len(tokens)] = t
                distinct, as_bytes = _long_doc_set(t)
                tokens.append(None)
                sets.append(distinct)
                is_bytes.append(as_bytes)
                continue
            a = _fast_ascii(t)
            if a is not None:
                toks = a.encode("ascii").translate(table).split()
                is_bytes.append(True)
            else:
                toks = findall(nfkc("NFKC", t).casefold())
                is_bytes.append(False)
            tokens.append(toks)
            sets.append(set(toks))
        self.tokens = tokens
        self.is_bytes = is_bytes
        self.sets = sets
        self._joined: dict[int, str | bytes | Utf8Joined] = {}

    def joined(self, i: int) -> str | bytes | Utf8Joined:
        s = self._joined.get(i)
        if s is None:
            if i in self._long:
                s = _long_doc_joined(self._long[i], self.is_bytes[i])
            elif self.is_bytes[i]:
                s = b" " + b" ".join(self.tokens[i]) + b" "
            else:
                s = " " + " ".join(self.tokens[i]) + " "
            self._joined[i] = s
        return s


def _piece_tokens(piece: str, as_bytes: bool) -> list:
    """The tokens of one piece of a long document, as bytes (``as_bytes``: the piece is ASCII
    after :func:`_fast_ascii`) or as str (the same tokens, decoded, for an ASCII piece)."""
    a = _fast_ascii(piece)
    if a is not None:
        toks = a.encode("ascii").translate(_ASCII_TABLE).split()
        return toks if as_bytes else [tok.decode("ascii") for tok in toks]
    return TOKEN_RE.findall(unicodedata.normalize("NFKC", piece).casefold())


def _long_doc_set(text: str) -> tuple[set, bool]:
    """(distinct tokens, whether they are bytes) of a long document, one piece at a time. The
    document takes the bytes form only when every piece does, as the whole text would."""
    ascii_tokens: set[bytes] = set()
    str_tokens: set[str] = set()
    all_ascii = True
    for piece in whitespace_pieces(text, LONG_DOC_CHARS):
        a = _fast_ascii(piece)
        if a is not None:
            ascii_tokens.update(a.encode("ascii").translate(_ASCII_TABLE).split())
        else:
            all_ascii = False
            str_tokens.update(TOKEN_RE.findall(unicodedata.normalize("NFKC", piece).casefold()))
    if all_ascii:
        return ascii_tokens, True
    str_tokens.update(tok.decode("ascii") for tok in ascii_tokens)
    return str_tokens, False


class Utf8Joined:
    """The joined form of a long document, held as UTF-8 bytes (a str of the same text may take
    4 bytes per character). ``needle in joined`` takes a str or bytes needle: a UTF-8 needle
    starting and ending with a space occurs in the UTF-8 bytes exactly where the str occurs."""

    __slots__ = ("data",)

    def __init__(self, data: bytearray):
        self.data = data

    def __contains__(self, needle: str | bytes) -> bool:
        if isinstance(needle, str):
            needle = needle.encode("utf-8", "surrogatepass")
        return needle in self.data

    def decode(self) -> str:
        return self.data.decode("utf-8", "surrogatepass")


def _long_doc_joined(text: str, as_bytes: bool) -> Utf8Joined:
    """``" " + " ".join(tokens) + " "`` of a long document as UTF-8, built piece by piece (the
    text is tokenised a second time rather than its token list held)."""
    out = bytearray(b" ")
    for piece in whitespace_pieces(text, LONG_DOC_CHARS):
        toks = _piece_tokens(piece, True)
        if toks:
            if isinstance(toks[0], bytes):
                out += b" ".join(toks)
            else:
                out += " ".join(toks).encode("utf-8", "surrogatepass")
            out += b" "
    return Utf8Joined(out)


def tokenized(batch, in_scope) -> TokenizedBatch:
    """The batch's shared TokenizedBatch (documents outside the scope are not tokenised)."""
    cached = batch.cache.get("tokens")
    if cached is None:
        cached = batch.cache["tokens"] = TokenizedBatch(batch.texts, in_scope)
    return cached
