"""Recognizers: a fast candidate pattern plus a validator per entity type.

Each recognizer has

* ``entity``: the PII type it detects (what ``--pii-types`` selects);
* ``prefilter``: a cheap, necessary condition for a document to contain a candidate, as
  ``("substring", s)`` or ``("regex", re2_pattern)``. The analyzer evaluates prefilters for a whole
  batch at once with Arrow's C++ string kernels (RE2), so most documents never reach Python. A
  prefilter only decides *whether* ``find`` runs, never what it finds: for every text,
  ``find(text)`` returns the same spans whether or not the prefilter was consulted;
* ``find(text)``: the validated spans ``(type, start, end)`` in code points.

Validators never raise on odd input and never put the candidate into an exception message.
Email, IP, credit card and SSN live here; phone numbers, IBANs and secrets have their own modules.
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar

from llama_audit.analyzers.pii.spans import Span


class Recognizer:
    entity: ClassVar[str]
    prefilter: ClassVar[tuple[str, str]]
    # True when no candidate, and no context the validator looks at, crosses a line break
    # (str.splitlines boundaries): the batch path may then run ``find`` on single lines.
    line_local: ClassVar[bool] = False

    def find(self, text: str) -> list[Span]:  # pragma: no cover - abstract
        raise NotImplementedError

    def find_line(self, line: str, text: str, start: int) -> list[Span]:
        """``find`` on one line of a line-local recognizer: ``line`` is ``text[start:start +
        len(line)]``, offsets are relative to ``line``. A recognizer whose validator also reads
        the words before a candidate across the line break (the phone recognizer: a catalogue
        label ending the line above) overrides this and reads them from ``text``."""
        return self.find(line)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(entity={self.entity!r})"


def glued_before(text: str, start: int, chars: str) -> bool:
    """True when the character before ``start`` is a word character or one of ``chars``.

    Candidate regexes start with a plain character class (so the regex engine can skip ahead
    quickly) and the left boundary is checked here instead of with a look-behind."""
    if start == 0:
        return False
    prev = text[start - 1]
    return prev.isalnum() or prev == "_" or prev in chars


# --------------------------------------------------------------------------------------------
# EMAIL_ADDRESS
# --------------------------------------------------------------------------------------------

# Local part, matched backwards from the '@' (on the reversed text before it): unicode word
# characters and . % + -
_EMAIL_LOCAL_REV = re.compile(r"[\w.%+\-]{1,65}")
# Domain, matched forwards from the '@': dot-separated labels (unicode letters/digits, inner
# hyphens), a last label that is alphabetic (>= 2 letters) or punycode (xn--...).
_EMAIL_DOMAIN = re.compile(
    r"(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}"
    r"(?:xn--[a-z0-9\-]{1,59}|[^\W\d_]{2,63})"
    r"(?![\w\-]|\.[^\W_])"
)
_LOCAL_RARE = frozenset("!$^*{}|~`")  # address characters that are not also URL/prose separators
# Last labels that are file extensions, not top-level domains: "logo@2x.png", "icon@3x.webp".
_NOT_TLDS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff css js mjs ts json html htm php asp aspx xml "
    "txt pdf md yml yaml".split()
)


# Local parts that are SSH service logins of code hosts, everywhere in code corpora: not personal.
_SERVICE_USERS = frozenset({"git"})


class EmailRecognizer(Recognizer):
    """``local@domain.tld``. Found from each '@' outwards, so text without '@' costs nothing."""

    entity = "EMAIL_ADDRESS"
    prefilter = ("substring", "@")

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        at = text.find("@")
        while at != -1:
            span = self._at(text, at)
            if span is not None:
                spans.append(span)
            at = text.find("@", at + 1)
        return spans

    def _at(self, text: str, at: int) -> Span | None:
        if at == 0 or at + 1 >= len(text):
            return None
        before, after = text[at - 1], text[at + 1]
        # Cheap rejections first: handles ("@user"), decorators, " @ ", "@@".
        if not (before.isalnum() or before in "._%+-") or not after.isalnum():
            return None
        m = _EMAIL_LOCAL_REV.match(text[at - 1 : max(0, at - 66) or None : -1])
        if m is None or m.end() > 64:
            return None  # no local part, or longer than 64 characters
        start = at - m.end()
        # A local part cut short by a rarer address character ("c40sdm$mov$1@host", typical of
        # Message-IDs) is not reported: the address would be something else.
        if start > 0 and text[start - 1] in _LOCAL_RARE:
            return None
        # The local part may not start with '.', nor end with one, nor contain '..'.
        while start < at and text[start] == ".":
            start += 1
        if start == at or before == "." or ".." in text[start:at]:
            return None
        if text[start:at].lower() in _SERVICE_USERS:
            return None  # "git@github.com:org/repo.git", "ssh -T git@gitlab.com": a login, not a person
        d = _EMAIL_DOMAIN.match(text, at + 1)
        if d is None:
            return None
        tld = text[text.rfind(".", at, d.end()) + 1 : d.end()]
        if tld.lower() in _NOT_TLDS:
            return None
        return (self.entity, start, d.end())


# --------------------------------------------------------------------------------------------
# IP_ADDRESS (public) / IP_ADDRESS_PRIVATE (private, loopback, link-local, reserved, ...)
# --------------------------------------------------------------------------------------------

IP_PRIVATE = "IP_ADDRESS_PRIVATE"

_IPV4 = re.compile(
    r"((?:[0-9]{1,3}\.){3}[0-9]{1,3})"
    r"(?:/([0-9]{1,3})(?![0-9]))?",
    re.ASCII,
)
_IPV4_AFTER = re.compile(r"\w|\.[0-9]")  # "1.2.3.4.5" (SNMP OIDs, long versions) is no address
# Words that make a dotted quad a version number: "version 1.2.3.4", "v1.2.3.4", "build 10.0.0.1".
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bver|\bversion|\brelease|\brev|\brevision|\bbuild|\bfirmware|\bupdate)[ \t:.#]{0,3}\Z",
    re.IGNORECASE,
)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")  # starts with a literal: a fast scan
_IPV6 = re.compile(
    r"(?<![\w:.%])"
    r"([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3})"
    r"(%[0-9A-Za-z]{1,15})?"  # zone id: fe80::1%eth0
    r"(?:/([0-9]{1,3}))?"
    r"(?![\w:])",
    re.ASCII,
)
_HEX = frozenset("0123456789abcdefABCDEF")
_COLONS = re.compile(":+")


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast (IPv4-mapped IPv6 judged by its IPv4 address). Private, loopback,
    link-local, shared (CGNAT), documentation, reserved, unspecified and multicast are not."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def _ip_type(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return "IP_ADDRESS" if _is_public(ip) else IP_PRIVATE


class IPv4Recognizer(Recognizer):
    """Dotted quads validated by :mod:`ipaddress` (no leading zeros, octets <= 255), with an
    optional valid CIDR suffix. Not glued to letters or further dotted numbers; not preceded by a
    version word."""

    entity = "IP_ADDRESS"
    line_local = True
    prefilter = ("regex", r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _IPV4.finditer(text):
            start = m.start()
            if glued_before(text, start, "."):
                continue
            end = m.end(1)
            prefix = m.group(2)
            if prefix is not None and int(prefix) <= 32:
                end = m.end(2)
            if _IPV4_AFTER.match(text, end) is not None:
                continue
            try:
                ip = ipaddress.IPv4Address(m.group(1))
            except ValueError:
                continue
            if _VERSION_CONTEXT.search(text, max(0, start - 12), start) is not None:
                continue
            spans.append((_ip_type(ip), start, end))
        return spans


class IPv6Recognizer(Recognizer):
    """Colon-hex addresses (compressed, IPv4-embedded, zone ids, CIDR) validated by
    :mod:`ipaddress`. A candidate must contain a decimal digit, so C++/Haskell ``::`` and
    all-letter look-alikes (``dead::beef``, ``Abc::Def``) are not addresses; times (``12:34:56``),
    ratios (``1:2:3:4``) and MAC addresses (six groups, no ``::``) fail validation."""

    entity = "IP_ADDRESS"
    prefilter = ("regex", r":[0-9A-Fa-f]{0,4}:")

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        pos = 0
        while True:
            hint = _IPV6_HINT.search(text, pos)
            if hint is None:
                return spans
            # An address starts at most one hex group before its first colon.
            start = hint.start()
            while start > hint.start() - 4 and start > 0 and text[start - 1] in _HEX:
                start -= 1
            m = _IPV6.match(text, start)
            if m is None:
                pos = hint.start() + 1
                if text.startswith("::", pos):
                    pos = _COLONS.match(text, pos).end()  # ":::" never occurs in an address
                continue
            pos = m.end()
            span = self._validate(m)
            if span is not None:
                spans.append(span)

    def _validate(self, m: re.Match[str]) -> Span | None:
        addr = m.group(1)
        if not any(c.isdigit() for c in addr):
            return None
        zone = m.group(2) or ""
        try:
            ip = ipaddress.IPv6Address(addr + zone)
        except ValueError:
            return None
        end = m.end(2) if zone else m.end(1)
        prefix = m.group(3)
        if prefix is not None and int(prefix) <= 128:
            end = m.end(3)
        return (_ip_type(ip), m.start(), end)


# --------------------------------------------------------------------------------------------
# CREDIT_CARD
# --------------------------------------------------------------------------------------------

# A run of digit groups joined by single spaces or hyphens; card numbers are then tiled out of
# the run's groups (a run can hold several cards: "4111 1111 1111 1111 5500-0000-0000-0004").
_CARD_RUN = re.compile(
    r"[0-9](?=(?:[ \-]?[0-9]){12})"  # at least 13 digits ahead
    r"[0-9]*+(?:[ \-][0-9]++)*+"
    r"(?![\w]|[.,/\-][0-9])",
    re.ASCII,
)
_GROUP = re.compile(r"[0-9]+", re.ASCII)
# Every card shape has a group of four or a single block of 13-19 digits.
_CARD_GROUP_HINT = re.compile(r"(?<![0-9])(?:[0-9]{4}|[0-9]{13,19})(?![0-9])", re.ASCII)
# Group lengths a written card number can have, most groups first: one block of 13-19 digits,
# groups of four (the last one 1-4 digits), or the 4-6-5 / 4-6-4 of Amex and Diners.
_CARD_SHAPES: tuple[tuple[int, ...], ...] = (
    (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4, 4, 1),
    (4, 4, 4, 4), (4, 4, 4, 3), (4, 4, 4, 2), (4, 4, 4, 1), (4, 6, 5), (4, 6, 4),
)  # fmt: skip

# Issuer identification number prefixes -> allowed lengths (ISO/IEC 7812 as published by the
# networks). Ranges are inclusive, compared on the same number of leading digits.
_CARD_ISSUERS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (300, 305, frozenset({14, 16, 17, 18, 19})),  # Diners Club
    (36, 36, frozenset({14, 15, 16, 17, 18, 19})),
    (38, 39, frozenset({14, 15, 16, 17, 18, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (50, 50, frozenset(range(12, 20))),  # Maestro / Dankort
    (56, 58, frozenset(range(12, 20))),  # Maestro
    (60, 69, frozenset(range(12, 20))),  # Maestro and other 6-series
    (1, 1, frozenset({15})),  # UATP
    (2200, 2204, frozenset({16, 17, 18, 19})),  # Mir
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check on a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# (prefix length, low, high, lengths) with low/high as equal-length digit strings, so the prefix
# test is a string comparison.
_ISSUER_TABLE = tuple(
    (len(str(lo)), str(lo), str(hi), lengths) for lo, hi, lengths in _CARD_ISSUERS
)


def card_issuer_ok(digits: str) -> bool:
    n = len(digits)
    for k, lo, hi, lengths in _ISSUER_TABLE:
        if n in lengths and lo <= digits[:k] <= hi:
            return True
    return False


def card_number_valid(digits: str) -> bool:
    """13-19 digits, not one repeated digit, a known issuer prefix with a length it issues, Luhn."""
    if not 13 <= len(digits) <= 19 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    return card_issuer_ok(digits) and luhn_valid(digits)


def _cards_in_run(run: str) -> list[tuple[int, int]]:
    """(start, end) offsets in ``run`` of the valid card numbers tiled from its digit groups,
    left to right, longest shape first, one separator kind per card."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    lens = tuple(e - s for s, e in groups)
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        g0, g1 = groups[i]
        if 13 <= lens[i] <= 19:
            if card_number_valid(run[g0:g1]):
                found.append((g0, g1))
            i += 1
            continue
        if lens[i] != 4:  # every grouped shape starts with four digits
            i += 1
            continue
        for shape in _CARD_SHAPES:
            k = len(shape)
            if lens[i : i + k] != shape:
                continue
            end = groups[i + k - 1][1]
            written = run[g0:end]
            sep = run[g1]
            if written.count(sep) != k - 1:
                continue  # mixed separators
            if card_number_valid(written.replace(sep, "")):
                found.append((g0, end))
                i += k
                break
        else:
            i += 1
    return found


class CreditCardRecognizer(Recognizer):
    """Payment card numbers: written as one block or in the usual groups, Luhn-valid, with an
    issuer prefix (Visa, Mastercard, Amex, Diners, Discover, JCB, UnionPay, Maestro, Mir, UATP)
    and a length that issuer uses."""

    entity = "CREDIT_CARD"
    line_local = True
    prefilter = ("regex", r"[0-9](?:[ \-]?[0-9]){12}")

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _CARD_RUN.finditer(text):
            if glued_before(text, m.start(), ".,+/-"):
                continue
            run = m.group()
            if _CARD_GROUP_HINT.search(run) is None:
                continue
            base = m.start()
            spans.extend((self.entity, base + s, base + e) for s, e in _cards_in_run(run))
        return spans


# --------------------------------------------------------------------------------------------
# US_SSN
# --------------------------------------------------------------------------------------------

_SSN = re.compile(r"([0-9]{3})([ .\-])([0-9]{2})\2([0-9]{4})", re.ASCII)
_SSN_AFTER = re.compile(r"\w|[.,/\-][0-9]")


def _ssn_isolated(text: str, start: int, end: int, sep: str) -> bool:
    """Not glued to words or other numbers ("1078-05-1123", "078-05-1123-4"); when the groups are
    separated by spaces, not part of a longer run of space-separated numbers ("12 078 05 1123")."""
    if glued_before(text, start, ".,+/-") or _SSN_AFTER.match(text, end) is not None:
        return False
    if sep == " ":
        if start >= 2 and text[start - 1] == " " and text[start - 2].isdigit():
            return False
        if text[end : end + 1] == " " and text[end + 1 : end + 2].isdigit():
            return False
    return True


# Numbers published in advertising / documentation, never valid for a person.
_SSN_DENY = frozenset({"078051120", "219099999", "123456789"})


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000; not a published
    sample number; not one repeated digit."""
    if area == "000" or area == "666" or area[0] == "9":
        return False
    if group == "00" or serial == "0000":
        return False
    number = area + group + serial
    return number not in _SSN_DENY and len(set(number)) > 1


class UsSsnRecognizer(Recognizer):
    """``AAA-GG-SSSS`` with one consistent separator (``-``, space or ``.``). Nine bare digits are
    not reported: without a separator (or a context word) they are mostly other identifiers."""

    entity = "US_SSN"
    line_local = True
    prefilter = ("regex", r"[0-9]{3}[ .\-][0-9]{2}[ .\-][0-9]{4}")

    def find(self, text: str) -> list[Span]:
        return [
            (self.entity, m.start(), m.end())
            for m in _SSN.finditer(text)
            if _ssn_isolated(text, m.start(), m.end(), m.group(2)) and ssn_valid(m.group(1), m.group(3), m.group(4))
        ]
