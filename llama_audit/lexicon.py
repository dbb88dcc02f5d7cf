"""Lexicons as data: loading, validation and matching against tokenised documents.

A lexicon file is tab-separated text: a header line naming at least two columns (the group,
e.g. an axis or a pronoun group, then the term), then one row per term; '#' starts a comment.
The same file format serves the built-in pronoun and identity lexicons and a user's own
(``--lexicon FILE``: other axes, other languages). Errors name the file, the line and the problem.

A lexicon is configuration, not data: it is read whole, so its size is bounded (bytes, groups,
terms per group, characters per group name and term) and a file that is no lexicon (``/dev/zero``,
a corpus shard given by mistake) is refused in milliseconds with a one-line error. Group names are
printed in every report: control characters (terminal escapes, bidirectional overrides) are
refused, and ``/`` too (it separates group and term in the counts).

An optional column named ``listing`` in the header marks a term ``hidden_from_top``: it is counted
like every other term (toward its group and in the full lists), and left out of top-N tables. The
built-in identity lexicon marks straight, white and black so, as the Llama 2 paper listed them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from importlib import resources
from pathlib import Path

from llama_audit.types import ConfigError
from llama_audit.text import TokenizedBatch, tokenize

# Limits, far above any real lexicon (the built-in identities.tsv, from HolisticBias, is 7.8 KB:
# 5 axes, 187 terms) and far below what would strain memory or the report.
MAX_LEXICON_BYTES = 64 * 2**20
MAX_GROUPS = 500_000
MAX_TERMS_PER_GROUP = 1_000_000
MAX_GROUP_CHARS = 200  # a group is a row label of the report
MAX_TERM_CHARS = 500  # a descriptor or phrase, not a document

LISTING_COLUMN = "listing"  # the optional header column that may hide a term from top-N tables
HIDDEN_FROM_TOP = "hidden_from_top"  # its one non-empty value

# Characters that a terminal or a text viewer obeys instead of showing: C0/C1 controls and DEL,
# and the bidirectional embeddings, overrides and isolates (text that reads other than it is).
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _first_invisible(text: str) -> str | None:
    """The first control character of ``text`` as U+XXXX (None: there is none)."""
    found = _INVISIBLE.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("llama_audit") / "lexicons" / name))


@dataclasses.dataclass(frozen=True)
class Entry:
    group: str
    term: str  # canonical key: tokens joined by one space
    tokens: tuple[str, ...]
    hidden_from_top: bool = False  # counted, but left out of top-N listings (the `listing` column)


class Lexicon:
    """A validated lexicon plus a matcher built for set lookups (one C-level set intersection per
    document for single-token terms; a substring test on the joined tokens for multi-token ones)."""

    def __init__(self, entries: list[Entry], source: str, sha256: str, groups: list[str]):
        self.entries = entries
        self.source = source
        self.sha256 = sha256
        self.groups = groups  # in first-seen order
        self._single: dict[str, list[int]] = {}
        self._multi: dict[str, list[tuple[str, int]]] = {}
        for idx, e in enumerate(entries):
            if len(e.tokens) == 1:
                self._single.setdefault(e.tokens[0], []).append(idx)
            else:
                self._multi.setdefault(e.tokens[0], []).append((" " + e.term + " ", frozenset(e.tokens[1:]), idx))
        # the same keys as bytes, for documents tokenised on the ASCII fast path
        self._single.update({k.encode(): v for k, v in self._single.items() if k.isascii()})
        self._multi.update({k.encode(): [(n.encode(), frozenset(t.encode() for t in rest), i)
                                         for n, rest, i in v if n.isascii()]
                            for k, v in self._multi.items() if k.isascii()})
        self._single_keys = frozenset(k for k in self._single if isinstance(k, str))
        self._multi_keys = frozenset(k for k in self._multi if isinstance(k, str))
        self._single_keys_b = frozenset(k for k in self._single if isinstance(k, bytes))
        self._multi_keys_b = frozenset(k for k in self._multi if isinstance(k, bytes))

    @classmethod
    def load(cls, path: str | Path, *, allow_multi_group: bool = False) -> "Lexicon":
        """Parse and validate a lexicon file.

        ``allow_multi_group``: a term may belong to several groups (pronouns: "she" is also 3rd
        person). Identity lexicons forbid it: a term counts under one axis only.
        """
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_LEXICON_BYTES + 1)  # never more: /dev/zero or a huge file by mistake
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read lexicon ({exc.strerror or exc})") from None
        if len(raw) > MAX_LEXICON_BYTES:
            raise ConfigError(f"{path}: lexicon is larger than {MAX_LEXICON_BYTES // 2**20} MiB; is it a lexicon "
                              "(tab-separated group and term per line)?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: lexicon is not UTF-8 (byte {exc.start})") from None
        entries: list[Entry] = []
        terms_in: dict[str, int] = {}  # group -> its number of terms; the groups in first-seen order
        seen: dict[tuple[str, str], int] = {}  # (group, term) -> line
        term_line: dict[str, tuple[str, int]] = {}  # term -> (group, line)
        header_seen = False
        listing_at = None  # index of the `listing` column, if the header names one
        # lines end at "\n" only (as editors and `sed -n Np` count them); other line breaks that
        # str.splitlines() knows are control characters inside a field
        for lineno, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if not header_seen:
                header_seen = True
                if len(fields) < 2:
                    raise ConfigError(f"{path}:{lineno}: header must name at least two tab-separated columns (group, term)")
                listing_at = next((at for at, name in enumerate(fields) if at >= 2
                                   and name.strip().casefold() == LISTING_COLUMN), None)
                continue
            if len(fields) < 2:
                raise ConfigError(f"{path}:{lineno}: expected at least 2 tab-separated fields (group, term), got {len(fields)}")
            group, term = fields[0].strip(), fields[1].strip()
            if not group:
                raise ConfigError(f"{path}:{lineno}: empty group")
            for what, value in (("group", group), ("term", term)):
                bad = _first_invisible(value)
                if bad:
                    raise ConfigError(f"{path}:{lineno}: {what} has the control character {bad}; groups and "
                                      "terms are printed in reports, so they must be plain text")
            if "/" in group:
                raise ConfigError(f"{path}:{lineno}: group name contains '/', which separates group and term "
                                  "in the counts; use another character")
            if len(group) > MAX_GROUP_CHARS:
                raise ConfigError(f"{path}:{lineno}: group name of {len(group)} characters (at most {MAX_GROUP_CHARS})")
            if len(term) > MAX_TERM_CHARS:
                raise ConfigError(f"{path}:{lineno}: term of {len(term)} characters (at most {MAX_TERM_CHARS})")
            listing = fields[listing_at].strip() if listing_at is not None and listing_at < len(fields) else ""
            if listing not in ("", HIDDEN_FROM_TOP):
                raise ConfigError(f"{path}:{lineno}: listing {listing[:40]!r} is not known; leave it empty or write "
                                  f"{HIDDEN_FROM_TOP!r} (counted, but not shown in top-N tables)")
            tokens = tuple(tokenize(term))
            if not tokens:
                raise ConfigError(f"{path}:{lineno}: term {term!r} has no word characters")
            key = " ".join(tokens)
            if (group, key) in seen:
                continue  # same token sequence in one group (e.g. LGBTQ and LGBTQ+): one term
            if not allow_multi_group and key in term_line and term_line[key][0] != group:
                other_group, other_line = term_line[key]
                raise ConfigError(
                    f"{path}:{lineno}: term {term!r} is already under {other_group!r} (line {other_line}); "
                    "a term counts under one group only"
                )
            if group not in terms_in and len(terms_in) >= MAX_GROUPS:
                raise ConfigError(f"{path}:{lineno}: more than {MAX_GROUPS} groups")
            if terms_in.get(group, 0) >= MAX_TERMS_PER_GROUP:
                raise ConfigError(f"{path}:{lineno}: group {group!r} has more than {MAX_TERMS_PER_GROUP} terms")
            seen[(group, key)] = lineno
            term_line.setdefault(key, (group, lineno))
            terms_in[group] = terms_in.get(group, 0) + 1  # a dict: the membership test is O(1)
            entries.append(Entry(group, key, tokens, listing == HIDDEN_FROM_TOP))
        if not header_seen or not entries:
            raise ConfigError(f"{path}: lexicon has no terms")
        return cls(entries, str(path), hashlib.sha256(raw).hexdigest(), list(terms_in))

    def hidden_from_top(self) -> dict[str, list[str]]:
        """The terms hidden from top-N listings, sorted, per group that has any (in group order)."""
        hidden: dict[str, list[str]] = {}
        for e in self.entries:
            if e.hidden_from_top:
                hidden.setdefault(e.group, []).append(e.term)
        return {g: sorted(hidden[g]) for g in self.groups if g in hidden}

    def match(self, tb: TokenizedBatch, i: int) -> list[int]:
        """Indices of the entries that occur in document i, in lexicon order."""
        s = tb.sets[i]
        if not s:
            return []
        hits: list[int] = []
        if tb.is_bytes[i]:
            single_keys, multi_keys = self._single_keys_b, self._multi_keys_b
        else:
            single_keys, multi_keys = self._single_keys, self._multi_keys
        for tok in s & single_keys:
            hits.extend(self._single[tok])
        for tok in s & multi_keys:
            for needle, rest, idx in self._multi[tok]:
                # every token present (a set test) before the contiguity test on the joined text
                if rest <= s and needle in tb.joined(i):
                    hits.append(idx)
        hits.sort()
        return hits
