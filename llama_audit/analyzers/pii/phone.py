"""PHONE_NUMBER: digit-group candidates validated by Google's libphonenumber (``phonenumbers``).

Why a library: which digit strings are real phone numbers depends on per-country numbering plans
(lengths, area codes, mobile ranges, trunk prefixes) that change several times a year;
``phonenumbers`` ships that metadata and its ``VALID`` leniency also rejects national numbers
written without a required trunk prefix (``917 123 4567`` in the Philippines) and date/time
look-alikes.

Flow per document: one regex finds digit-group chunks (``+`` optional, groups joined by a single
``space . - /`` or a parenthesised area code); cheap checks drop what cannot be a number in the
default region (digit count outside the region's lengths, decimals such as ``0.1234567``);
only survivors are handed to :class:`phonenumbers.PhoneNumberMatcher`, on the chunk alone.
Numbers starting with ``+`` (or an ``00`` international prefix) are validated for whatever country
they name; other numbers are validated for the default region only.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher

from llama_audit.analyzers.pii.recognizers import Recognizer, glued_before
from llama_audit.analyzers.pii.spans import Span

# Digit groups joined by one ``space . - /`` or a parenthesised group. {min_digits} is filled in
# per region. The leading look-ahead is a cheap rejection of short numbers; the left boundary is
# checked in Python so that the pattern starts with a plain character class (fast skipping).
_CHUNK = (
    r"(?=[+(0-9])(?=\+|(?:[ .\-/()]{{0,4}}[0-9]){{{min_digits}}})"
    r"(?:\+[ ]?)?"
    r"(?:\([0-9]{{1,5}}\)[ .\-]?|[0-9])"
    r"(?>[0-9]+|[ .\-/](?=[0-9]|\([0-9])|[ ]?\([0-9]{{1,5}}\)[ .\-]?)*+"
    r"(?![\w]|:[0-9])"  # not followed by letters or a time (":30")
)
_DELETE_DIGITS = str.maketrans("", "", "0123456789")
_KEEP_DIGITS = str.maketrans("", "", " .-/()+")
_DATE = re.compile(
    r"(?:[0-9]{1,2}([.\-/])[0-9]{1,2}\1[0-9]{2}(?:[0-9]{2})?|[0-9]{4}([.\-/])[0-9]{1,2}\2[0-9]{1,2})\Z"
)
_SINGLE_DIGIT_GROUP = re.compile(r"(?<![0-9])[0-9](?![0-9])")
_MAX_CHUNK_DIGITS = 40  # longer runs are tables of numbers, not phone lists
_MIN_DIGITS = 7


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


class PhoneRecognizer(Recognizer):
    entity = "PHONE_NUMBER"
    line_local = True

    def __init__(self, region: str = "US"):
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {region!r}")
        self.region = region
        self._lengths = region_lengths(region)
        self._max_len = max(self._lengths, default=_MIN_DIGITS)
        # Fewest digits a reportable chunk has: a national number of this region, or "+" / "00"
        # followed by a country code and a subscriber number (>= 7 and >= 10 digits).
        self.min_digits = min(min(self._lengths, default=_MIN_DIGITS), 10)
        self._chunk = re.compile(_CHUNK.format(min_digits=self.min_digits), re.ASCII)
        # Necessary condition for a document to hold such a chunk (RE2 syntax, for the batch
        # prefilter): enough digits with at most four separator characters between two digits.
        self.prefilter = (
            "regex",
            rf"\+[ ]?[0-9(](?:[ .\-/()]{{0,4}}[0-9]){{{_MIN_DIGITS - 1}}}"
            rf"|[0-9](?:[ .\-/()]{{0,4}}[0-9]){{{self.min_digits - 1}}}",
        )

    def __repr__(self) -> str:
        return f"PhoneRecognizer(region={self.region!r})"

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in self._chunk.finditer(text):
            if glued_before(text, m.start(), "+.,/-"):
                continue  # glued to a word or to another number
            chunk = m.group()
            ndigits = len(chunk) - len(chunk.translate(_DELETE_DIGITS))
            if ndigits > _MAX_CHUNK_DIGITS or not self._plausible(chunk, ndigits):
                continue
            spans.extend(self._validate(chunk, m.start()))
        return spans

    def _plausible(self, chunk: str, ndigits: int) -> bool:
        """Cheap structural checks before the (slow) library call."""
        # Decimals and dotted numbers: "0.1234567", "12.0440422". Dotted phone numbers use short
        # groups ("505.562.2229", "532.123.45.67").
        if "." in chunk and any(len(g) > 4 or len(g) == 0 for g in chunk.lstrip("+ ").split(".")):
            return False
        if chunk[0] == "+":
            return ndigits >= _MIN_DIGITS  # validated for the country it names
        if len(set(chunk.translate(_KEEP_DIGITS))) <= 2:
            return False  # "0000 0000 0000", "111 1111 1111": fillers, masks, binary
        if _DATE.match(chunk) is not None:
            return False  # "07-30-2008", "2015.11.06"
        if len(_SINGLE_DIGIT_GROUP.findall(chunk)) >= 3:
            return False  # "0 3 4 5 1 2 6 7": digit tables, not a written number
        if chunk.startswith("00"):
            # 00 + country code (never starting with 0) + subscriber number
            return ndigits >= 10 and chunk[2:3] in "123456789"
        if ndigits in self._lengths:
            return True
        # Longer chunks may hold several numbers ("555-0100 / 555-0199"): worth the matcher only
        # when written with phone punctuation, not as space-separated digit tables.
        return ndigits > self._max_len and any(c in chunk for c in "-.()/")

    def _validate(self, chunk: str, offset: int) -> list[Span]:
        out: list[Span] = []
        try:
            for match in PhoneNumberMatcher(chunk, self.region, leniency=Leniency.VALID):
                start, end = match.start, match.end
                digits = len(match.raw_string) - len(match.raw_string.translate(_DELETE_DIGITS))
                if digits < _MIN_DIGITS:
                    continue  # a short inner match ("1642" of "713 798 1642")
                # An unbalanced "(" at the start belongs to the prose, not the number.
                if chunk[start] == "(" and ")" not in chunk[start:end]:
                    start += 1
                out.append((self.entity, offset + start, offset + end))
        except Exception:  # noqa: BLE001 - the library must never fail a scan; values stay private
            return []
        return out
