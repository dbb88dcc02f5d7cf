"""Spans and the deterministic resolution of overlapping detections.

A span is a plain ``(type, start, end)`` tuple: code-point offsets into the document text. No
span ever carries the matched value, so spans can be logged, written and printed freely.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable

Span = tuple[str, int, int]

# When two spans of the same length overlap, the earlier type in this list wins. Structured,
# checksum-validated types come first; phone numbers (the loosest validator) come last.
PRIORITY: tuple[str, ...] = (
    "SECRET",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "EMAIL_ADDRESS",
    "IP_ADDRESS",
    "IP_ADDRESS_PRIVATE",
    "PHONE_NUMBER",
)
_RANK = {t: i for i, t in enumerate(PRIORITY)}


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Drop spans that overlap a better one; return the survivors sorted by start.

    Better = longer; on equal length, the type earlier in :data:`PRIORITY`; then the earlier
    start. So a credit card number is never also reported as a phone number, and an IPv4 address
    embedded in a longer IPv6 address is reported once, as the IPv6 address. O(n log n) in the
    number of spans.
    """
    spans = sorted(set(spans), key=lambda s: (s[1], s[2], s[0]))
    if all(spans[i][2] <= spans[i + 1][1] for i in range(len(spans) - 1)):
        return spans  # the common case: nothing overlaps
    ranked = sorted(spans, key=lambda s: (s[1] - s[2], _RANK.get(s[0], len(_RANK)), s[1], s[0]))
    starts: list[int] = []  # kept spans never overlap, so sorting by start also sorts the ends
    kept: list[Span] = []
    for span in ranked:
        _, start, end = span
        i = bisect_right(starts, start)
        if i > 0 and kept[i - 1][2] > start:
            continue  # overlaps the kept span starting at or before it
        if i < len(kept) and kept[i][1] < end:
            continue  # overlaps the kept span starting after it
        starts.insert(i, start)
        kept.insert(i, span)
    return kept
