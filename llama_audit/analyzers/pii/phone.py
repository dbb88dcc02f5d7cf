"""PHONE_NUMBER: digit-group candidates validated by Google's libphonenumber (``phonenumbers``).

Why a library: which digit strings are real phone numbers depends on per-country numbering plans
(lengths, area codes, mobile ranges, trunk prefixes) that change several times a year;
``phonenumbers`` ships that metadata and its ``VALID`` leniency also rejects national numbers
written without a required trunk prefix (``917 123 4567`` in the Philippines) and date/time
look-alikes.

Flow per document:

1. Unicode decimal digits (full-width ``０-９``, Arabic-Indic, Devanagari, ...) and the full-width
   forms of ``+ ( ) - . /`` and the ideographic space are mapped to ASCII, one code point for one,
   so every offset found in the mapped text is an offset into the original text;
2. a fast regex finds runs of digits and phone punctuation; inside them one regex finds
   digit-group chunks (``+`` optional, groups joined by a single ``space . - /`` or a
   parenthesised group, an international prefix possibly in parentheses: ``(+44)``, ``(0044)``,
   and an optional extension: ``x123``, ``ext. 123``, ``EXT123``, ``extension 123``);
3. cheap checks drop what cannot be a number in the default region (digit count outside the
   region's lengths, decimals such as ``0.1234567``, dates, digit tables);
4. the words before the chunk decide what it is: a catalogue label (``ISBN``, ``ISSN``, ``LCCN``,
   ``OCLC``, "Library of Congress Control Number", ...) on the same line, or ending the previous
   line, makes it a catalogue number and it is dropped, unless a phone word (``tel``, ``phone``,
   ``call``, ``fax``, ...) comes after the label; 13 digits starting 978/979 with a valid ISBN-13
   check digit, and an ISBN-10 hyphenated as one (``7-309-04547-5``) with a valid check digit, are
   a book whatever the context;
5. survivors are handed to :class:`phonenumbers.PhoneNumberMatcher` on the chunk alone, with
   ``VALID`` leniency; after a phone word, a number that is only *possible* for its region (right
   length, but an unassigned range such as area code 555) is accepted too.

Numbers starting with ``+`` (or an ``00`` international prefix) are validated for whatever country
they name; other numbers are validated for the default region only. A reported span covers the
number and its extension.
"""

from __future__ import annotations

import array
import re
import sys
import unicodedata

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher

from llama_audit.analyzers.pii.recognizers import Recognizer, glued_before
from llama_audit.analyzers.pii.spans import Span


def _non_ascii_digit_ranges() -> list[tuple[int, int]]:
    """Code-point ranges of the Unicode decimal digits (category Nd) other than ASCII 0-9.

    Found by the regex engine's ``\\d`` (Unicode category Nd for ``str`` patterns) over one string
    of every code point above ASCII, made in C from an array: a Python loop calling
    ``unicodedata.category`` on each of the 1.1M code points took 1.6 s at every import (a
    test checks both give the same table)."""
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    every = array.array("I", range(0x80, sys.maxunicode + 1)).tobytes().decode(codec, "surrogatepass")
    return [(m.start() + 0x80, m.end() - 1 + 0x80) for m in re.finditer(r"\d+", every)]


_DIGIT_RANGES = _non_ascii_digit_ranges()
# Full-width forms of the characters a phone number is written with (U+FF01..U+FF5E are the
# full-width ASCII forms, so letters of "ｅｘｔ" map too) and the ideographic space.
_TO_ASCII: dict[int, int] = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_TO_ASCII[0x3000] = ord(" ")
for _lo, _hi in _DIGIT_RANGES:
    for _cp in range(_lo, _hi + 1):
        _TO_ASCII[_cp] = ord("0") + unicodedata.decimal(chr(_cp))
# The same digits as an RE2 character class (prefilter) and as UTF-8 byte sequences (to decide
# whether a text needs mapping): built from one table so that the prefilter and ``find`` agree on
# what a digit is.
_RE2_NON_ASCII_DIGITS = "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _DIGIT_RANGES)

def _utf8_digit_pattern() -> re.Pattern[bytes]:
    """The UTF-8 encodings of the non-ASCII digits, as a bytes regex. Searching the UTF-8 bytes
    (which Arrow has already made and Python caches) is several times faster than a ``str``
    regex with a large character class, which matters on web text full of curly quotes."""
    tails: dict[bytes, set[int]] = {}
    for lo, hi in _DIGIT_RANGES:
        for cp in range(lo, hi + 1):
            b = chr(cp).encode("utf-8")
            tails.setdefault(b[:-1], set()).add(b[-1])
    return re.compile(
        b"|".join(re.escape(head) + b"[" + b"".join(re.escape(bytes([t])) for t in sorted(last)) + b"]"
                  for head, last in sorted(tails.items()))
    )


_NON_ASCII_DIGIT_UTF8 = _utf8_digit_pattern()


def _has_non_ascii_digit(text: str) -> bool:
    return _NON_ASCII_DIGIT_UTF8.search(text.encode("utf-8", "surrogatepass")) is not None


def ascii_digits(text: str) -> str:
    """``text`` with Unicode decimal digits and full-width punctuation mapped to ASCII, one code
    point for one (offsets unchanged). Texts without a non-ASCII digit are returned as they are."""
    if text.isascii() or not _has_non_ascii_digit(text):
        return text
    return text.translate(_TO_ASCII)


# Extension after the number: "x123", "x. 123", "ext123", "Ext. 123", "ext: 123", "EXTENSION 123",
# optionally after a comma. At most 6 digits.
_EXT = r"(?P<ext>(?i:,?[ ]?(?:ext(?:ension)?|x)\.?:?[ ]?)[0-9]{{1,6}})"  # braces: see _CHUNK
# Digit groups joined by one ``space . - /`` or a parenthesised group; an international prefix
# may be written in parentheses. {min_digits} is filled in per region. The leading look-ahead is a
# cheap rejection of short numbers; the left boundary is checked in Python.
_CHUNK = (
    r"(?=[+(0-9])(?=\+|\(\+|(?:[ .\-/()]{{0,4}}[0-9]){{{min_digits}}})"
    r"(?P<num>"
    r"(?:\+[ ]?|\(\+[0-9]{{1,3}}\)[ .\-]?)?"
    r"(?:\([0-9]{{1,5}}\)[ .\-]?|[0-9])"
    r"(?>[0-9]+|[ .\-/](?=[0-9]|\([0-9])|[ ]?\([0-9]{{1,5}}\)[ .\-]?)*+"
    r")"
    + _EXT
    + r"?(?![\w]|:[0-9])"  # not followed by letters or a time (":30")
)
_DELETE_DIGITS = str.maketrans("", "", "0123456789")
_KEEP_DIGITS = str.maketrans("", "", " .-/()+")
_DATE = re.compile(
    r"(?:[0-9]{1,2}([.\-/])[0-9]{1,2}\1[0-9]{2}(?:[0-9]{2})?|[0-9]{4}([.\-/])[0-9]{1,2}\2[0-9]{1,2})\Z"
)
_SINGLE_DIGIT_GROUP = re.compile(r"(?<![0-9])[0-9](?![0-9])")
_MAX_CHUNK_DIGITS = 40  # longer runs are tables of numbers, not phone lists
_MIN_DIGITS = 7

# What the words before a chunk say it is. Catalogue labels: book, serial, music and library
# catalogue numbers. Phone words: a number right after them is offered as a phone number. "call
# number" / "call no." is a library shelf mark, not a phone word. The last keyword wins.
_KEYWORD = re.compile(
    r"\b(?:"
    r"(?P<catalogue>(?:[ep]-?)?(?:isbn|issn|ismn|lccn|oclc)(?:[- ]?1[03])?"
    r"|lc[ ]?control[ ]?n(?:o|umber)"
    r"|library[ ]of[ ]congress[ ](?:control|catalog(?:ue)?)[ ](?:card[ ])?n(?:o|umber))"
    r"|(?P<phone>tel|t[eé]l[eé]phone|telefon|phones?|fax|call|mobile|cell(?:phone)?)"
    r"(?![ ]?(?:number|no|#)\b)"
    r")\b",
    re.IGNORECASE,
)
# Substrings every keyword contains: a fast necessary test before the regex.
_KEYWORD_HINT = re.compile(r"isbn|issn|ismn|lccn|oclc|control|catalog|t[eé]l|phone|fax|call|mobile|cell")
_FULLWIDTH_LETTER = re.compile("[\uff21-\uff3a\uff41-\uff5a]")
_CONTEXT_CHARS = 48  # how far back the words before a chunk are read
_LINE_TAIL = re.compile(r"[\s:.#\-]*\Z")  # what may follow a keyword that ends the previous line


def region_lengths(region: str) -> frozenset[int]:
    """Digit counts a valid national number of ``region`` can have, with or without its trunk
    prefix, from the libphonenumber metadata."""
    md = PhoneMetadata.metadata_for_region(region)
    if md is None:
        raise ValueError("unknown phone region")
    lengths = set(md.general_desc.possible_length)
    if md.national_prefix:
        lengths |= {n + len(md.national_prefix) for n in list(lengths)}
    return frozenset(n for n in lengths if n >= _MIN_DIGITS)


def _is_wide(char: str) -> bool:
    """A wide (CJK) character: scripts that write no space between a word and a number."""
    return not char.isascii() and unicodedata.east_asian_width(char) in ("W", "F")


def isbn13_valid(digits: str) -> bool:
    """13 ASCII digits with a Bookland prefix (978/979) and a valid ISBN-13 check digit."""
    if len(digits) != 13 or digits[:3] not in ("978", "979"):
        return False
    return sum((ord(c) - 48) * (3 if i & 1 else 1) for i, c in enumerate(digits)) % 10 == 0


def isbn10_valid(digits: str) -> bool:
    """10 ASCII digits with a valid ISBN-10 check digit (a check digit "X" never reaches here)."""
    if len(digits) != 10:
        return False
    return sum((10 - i) * (ord(c) - 48) for i, c in enumerate(digits)) % 11 == 0


# How ISBN-10s are hyphenated: group, publisher, title, one check digit ("7-309-04547-5").
# Phone numbers do not end in a one-digit group.
_ISBN10_SHAPE = re.compile(r"[0-9]{1,5}([ \-])[0-9]{1,7}\1[0-9]{1,7}\1[0-9]\Z")


def is_book_number(chunk: str, digits: str) -> bool:
    """An ISBN whatever the context: 13 digits 978/979 with a valid ISBN-13 check digit, or an
    ISBN-10 hyphenated as one with a valid check digit."""
    if isbn13_valid(digits):
        return True
    return _ISBN10_SHAPE.match(chunk) is not None and isbn10_valid(digits)


def context_before(text: str, start: int) -> str | None:
    """``"catalogue"``, ``"phone"`` or None: what the last keyword before ``start`` says. A keyword
    counts on the same line (up to ``_CONTEXT_CHARS`` back), or at the end of the previous
    non-blank line when nothing but spaces and punctuation precedes the chunk on its own line
    ("ISBN-10:" above "0596520689" in a scraped table)."""
    window = text[max(0, start - _CONTEXT_CHARS) : start]
    if not window.isascii() and _FULLWIDTH_LETTER.search(window) is not None:
        window = window.translate(_TO_ASCII)  # "ＩＳＢＮ", "ＴＥＬ"
    if _KEYWORD_HINT.search(window.lower()) is None:
        return None  # most chunks: no keyword at all (cheaper than the full regex)
    cut = max(window.rfind("\n"), window.rfind("\r"))
    line = window[cut + 1 :]
    last = None
    for last in _KEYWORD.finditer(line):
        pass
    if last is not None:
        return "catalogue" if last.group("catalogue") else "phone"
    if cut < 0 or line.strip(" \t:#-(") != "":
        return None
    above = window[:cut].rstrip()
    above = above[max(above.rfind("\n"), above.rfind("\r")) + 1 :]
    for last in _KEYWORD.finditer(above):
        pass
    if last is None or _LINE_TAIL.match(above, last.end()) is None:
        return None
    return "catalogue" if last.group("catalogue") else "phone"


def _library_form(chunk: str) -> tuple[str, int]:
    """The chunk as ``phonenumbers`` reads it, same length: an international prefix in
    parentheses or written ``00`` becomes ``+`` (``(+44) 20`` -> `` +44  20``, ``(0044)`` ->
    ``  +44 ``, ``0044`` -> `` +44``). Also returns the end of that prefix (0 if none): a number
    found starting inside it starts at the chunk's first character."""
    if chunk.startswith("(+"):
        close = chunk.find(")")
        return " " + chunk[1:close] + " " + chunk[close + 1 :], close + 1
    if chunk.startswith("(00") and chunk[3:4] in "123456789":
        close = chunk.find(")")
        return "  +" + chunk[3:close] + " " + chunk[close + 1 :], close + 1
    if chunk.startswith("00") and chunk[2:3] in "123456789":
        return " +" + chunk[2:], 2
    return chunk, 0


class PhoneRecognizer(Recognizer):
    entity = "PHONE_NUMBER"
    # Chunks never cross a line break; the words before one may (a label ending the line above):
    # the batch path calls ``find_line`` with the whole document for that.
    line_local = True

    def __init__(self, region: str = "US"):
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {region!r}")
        self.region = region
        self._lengths = region_lengths(region)
        self._max_len = max(self._lengths, default=_MIN_DIGITS)
        md = PhoneMetadata.metadata_for_region(region)
        # National numbers that can be possible (not necessarily valid): their digit counts,
        # without and with the trunk prefix. A cheap test before the library parses a chunk.
        self._possible_national = frozenset(md.general_desc.possible_length)
        self._trunk_prefix = md.national_prefix or ""
        # Fewest digits a reportable chunk has: a national number of this region, or "+" / "00"
        # followed by a country code and a subscriber number (>= 7 and >= 10 digits).
        self.min_digits = min(min(self._lengths, default=_MIN_DIGITS), 10)
        self._chunk = re.compile(_CHUNK.format(min_digits=self.min_digits), re.ASCII)
        # Necessary condition for a text to hold such a chunk (RE2 syntax, for the batch
        # prefilter): enough ASCII digits with at most four separator characters between two
        # digits, or any other decimal digit (a line with one is mapped to ASCII before the chunk
        # regex runs; the whole class of digits inside the repetition makes RE2 compile slowly).
        self.prefilter = (
            "regex",
            rf"\+[ ]?[0-9(](?:[ .\-/()]{{0,4}}[0-9]){{{_MIN_DIGITS - 1}}}"
            rf"|[0-9](?:[ .\-/()]{{0,4}}[0-9]){{{self.min_digits - 1}}}"
            rf"|[{_RE2_NON_ASCII_DIGITS}]",
        )

    def __repr__(self) -> str:
        return f"PhoneRecognizer(region={self.region!r})"

    def find(self, text: str) -> list[Span]:
        if text.isascii() or not _has_non_ascii_digit(text):
            return self.find_line(text, text, 0)
        # Digits are mapped line by line, as the batch path sees them.
        spans: list[Span] = []
        start = 0
        for line in text.splitlines(keepends=True):
            spans.extend((t, start + a, start + b) for t, a, b in self.find_line(line, text, start))
            start += len(line)
        return spans

    def find_line(self, line: str, text: str, start: int) -> list[Span]:
        """Spans in ``line`` (offsets into it), the part of ``text`` that starts at ``start``: the
        words before a chunk are read from ``text``, so a label ending the line above counts."""
        spans: list[Span] = []
        line = ascii_digits(line)
        for m in self._chunk.finditer(line):
            if glued_before(line, m.start(), "+.,/-") and not _is_wide(line[m.start() - 1]):
                continue  # glued to a word or to another number (CJK text has no spaces: "電話03…")
            spans.extend(self._chunk_spans(m, text, start))
        return spans

    def _chunk_spans(self, m: re.Match[str], text: str, line_start: int) -> list[Span]:
        chunk = m.group("num")
        ndigits = len(chunk) - len(chunk.translate(_DELETE_DIGITS))
        if ndigits > _MAX_CHUNK_DIGITS or not self._plausible(chunk, ndigits):
            return []
        if (ndigits == 13 or ndigits == 10) and is_book_number(chunk, chunk.translate(_KEEP_DIGITS)):
            return []  # "978-1-4028-9462-6", "7-309-04547-5"
        # The words before the chunk are read only when they can change the outcome.
        spans = self._validate(chunk, m.start())
        if spans:
            if context_before(text, line_start + m.start()) == "catalogue":
                return []  # "ISBN 4-19-830127-1", "LCCN 2019123456", "ISSN 2049-3630"
        elif self._may_be_possible(chunk) and context_before(text, line_start + m.start()) == "phone":
            spans = self._possible(chunk, m.start())
        if spans and m.group("ext") is not None and spans[-1][2] == m.end("num"):
            spans[-1] = (self.entity, spans[-1][1], m.end("ext"))  # "(212) 555-0123 ext. 123"
        return spans

    def _plausible(self, chunk: str, ndigits: int) -> bool:
        """Cheap structural checks before the (slow) library call."""
        # Decimals and dotted numbers: "0.1234567", "12.0440422". Dotted phone numbers use short
        # groups ("505.562.2229", "532.123.45.67").
        if "." in chunk and any(len(g) > 4 or len(g) == 0 for g in chunk.lstrip("+ ").split(".")):
            return False
        if chunk[0] == "+" or chunk.startswith("(+"):
            return ndigits >= _MIN_DIGITS  # validated for the country it names
        if len(set(chunk.translate(_KEEP_DIGITS))) <= 2:
            return False  # "0000 0000 0000", "111 1111 1111": fillers, masks, binary
        if _DATE.match(chunk) is not None:
            return False  # "07-30-2008", "2015.11.06"
        if len(_SINGLE_DIGIT_GROUP.findall(chunk)) >= 3:
            return False  # "0 3 4 5 1 2 6 7": digit tables, not a written number
        if chunk.startswith(("00", "(00")):
            # 00 + country code (never starting with 0) + subscriber number
            return ndigits >= 10 and chunk.lstrip("(")[2:3] in "123456789"
        if ndigits in self._lengths:
            return True
        # Longer chunks may hold several numbers ("555-0100 / 555-0199"): worth the matcher only
        # when written with phone punctuation, not as space-separated digit tables.
        return ndigits > self._max_len and any(c in chunk for c in "-.()/")

    def _possible(self, chunk: str, offset: int) -> list[Span]:
        """The whole chunk as one number that is possible (right length for its country or the
        default region) though not valid: only asked after a phone word."""
        try:
            number = phonenumbers.parse(_library_form(chunk)[0], self.region)
            if not phonenumbers.is_possible_number(number):
                return []
        except Exception:  # noqa: BLE001 - the library must never fail a scan; values stay private
            return []
        return [(self.entity, offset, offset + len(chunk))]  # a chunk's "(" is always closed

    def _may_be_possible(self, chunk: str) -> bool:
        """Cheap test before ``_possible``: an international number, or a national one with a
        digit count a possible number of the region has (its trunk prefix not counted)."""
        probe = _library_form(chunk)[0]
        if probe.lstrip(" (")[:1] == "+":
            return True
        digits = probe.translate(_KEEP_DIGITS)
        if self._trunk_prefix and digits.startswith(self._trunk_prefix):
            if len(digits) - len(self._trunk_prefix) in self._possible_national:
                return True
        return len(digits) in self._possible_national

    def _validate(self, chunk: str, offset: int) -> list[Span]:
        out: list[Span] = []
        probe, prefix_end = _library_form(chunk)
        try:
            for match in PhoneNumberMatcher(probe, self.region, leniency=Leniency.VALID):
                start, end = match.start, match.end
                digits = len(match.raw_string) - len(match.raw_string.translate(_DELETE_DIGITS))
                if digits < _MIN_DIGITS:
                    continue  # a short inner match ("1642" of "713 798 1642")
                if start < prefix_end:
                    start = 0  # "(+44) 20 7946 0958": the prefix as written belongs to the span
                # An unbalanced "(" at the start belongs to the prose, not the number.
                elif chunk[start] == "(" and ")" not in chunk[start:end]:
                    start += 1
                out.append((self.entity, offset + start, offset + end))
        except Exception:  # noqa: BLE001 - the library must never fail a scan; values stay private
            return []
        return out
