"""IBAN_CODE: country code, check digits, the country's BBAN structure and the ISO 13616 mod-97 check.

The BBAN structures are those of the SWIFT IBAN registry, written as ``<count><kind>`` items:
``n`` digits, ``a`` upper-case letters, ``c`` upper-case letters or digits. The IBAN length is
4 + the sum of the counts. An IBAN is written either without separators or in groups of four
separated by single spaces (or, less often, single hyphens; one kind per IBAN).
"""

from __future__ import annotations

import re

from llama_audit.analyzers.pii.recognizers import Recognizer
from llama_audit.analyzers.pii.spans import Span

BBAN_STRUCTURE: dict[str, str] = {
    "AD": "4n4n12c", "AE": "3n16n", "AL": "8n16c", "AT": "5n11n", "AZ": "4a20c",
    "BA": "3n3n8n2n", "BE": "3n7n2n", "BG": "4a4n2n8c", "BH": "4a14c", "BI": "5n5n11n2n",
    "BR": "8n5n10n1a1c", "BY": "4c4n16c", "CH": "5n12c", "CR": "4n14n", "CY": "3n5n16c",
    "CZ": "4n6n10n", "DE": "8n10n", "DJ": "5n5n11n2n", "DK": "4n9n1n", "DO": "4c20n",
    "EE": "2n2n11n1n", "EG": "4n4n17n", "ES": "4n4n1n1n10n", "FI": "3n11n", "FK": "2a12n",
    "FO": "4n9n1n", "FR": "5n5n11c2n", "GB": "4a6n8n", "GE": "2a16n", "GI": "4a15c",
    "GL": "4n9n1n", "GR": "3n4n16c", "GT": "4c20c", "HN": "4a20n", "HR": "7n10n",
    "HU": "3n4n1n15n1n", "IE": "4a6n8n", "IL": "3n3n13n", "IQ": "4a3n12n", "IS": "4n2n6n10n",
    "IT": "1a5n5n12c", "JO": "4a4n18c", "KW": "4a22c", "KZ": "3n13c", "LB": "4n20c",
    "LC": "4a24c", "LI": "5n12c", "LT": "5n11n", "LU": "3n13c", "LV": "4a13c",
    "LY": "3n3n15n", "MC": "5n5n11c2n", "MD": "2c18c", "ME": "3n13n2n", "MK": "3n10c2n",
    "MN": "4n12n", "MR": "5n5n11n2n", "MT": "4a5n18c", "MU": "4a2n2n12n3n3a", "NI": "4a20n",
    "NL": "4a10n", "NO": "4n6n1n", "OM": "3n16c", "PK": "4a16c", "PL": "8n16n",
    "PS": "4a21c", "PT": "4n4n11n2n", "QA": "4a21c", "RO": "4a16c", "RS": "3n13n2n",
    "RU": "9n5n15c", "SA": "2n18c", "SC": "4a2n2n16n3a", "SD": "2n12n", "SE": "3n16n1n",
    "SI": "5n8n2n", "SK": "4n6n10n", "SM": "1a5n5n12c", "SO": "4n3n12n", "ST": "4n4n11n2n",
    "SV": "4a20n", "TL": "3n14n2n", "TN": "2n3n13n2n", "TR": "5n1n16c", "UA": "6n19c",
    "VA": "3n15n", "VG": "4a16n", "XK": "4n10n2n", "YE": "4a4n18c",
}  # fmt: skip

_KIND = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


def _compile(structure: str) -> tuple[int, re.Pattern[str]]:
    items = re.findall(r"([0-9]+)([nac])", structure)
    length = 4 + sum(int(n) for n, _ in items)
    return length, re.compile("".join(f"{_KIND[k]}{{{n}}}" for n, k in items) + r"\Z")


_COUNTRIES: dict[str, tuple[int, re.Pattern[str]]] = {cc: _compile(s) for cc, s in BBAN_STRUCTURE.items()}

_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11,34}", re.ASCII)


def mod97_valid(compact: str) -> bool:
    """ISO 13616 / ISO 7064 MOD 97-10 on an IBAN without spaces (upper-case letters, digits)."""
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def iban_valid(compact: str) -> bool:
    """Country known, exact length, BBAN structure and check digits. ``compact``: no spaces."""
    spec = _COUNTRIES.get(compact[:2])
    if spec is None:
        return False
    length, bban = spec
    if len(compact) != length or not "02" <= compact[2:4] <= "98":
        return False
    return bban.match(compact, 4) is not None and mod97_valid(compact)


class IbanRecognizer(Recognizer):
    entity = "IBAN_CODE"
    line_local = True
    prefilter = ("regex", r"[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11}")

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _CANDIDATE.finditer(text):
            span = self._take(text, m.start(), m.group())
            if span is not None:
                spans.append(span)
        return spans

    def _take(self, text: str, start: int, candidate: str) -> Span | None:
        spec = _COUNTRIES.get(candidate[:2])
        if spec is None:
            return None
        length = spec[0]
        # Walk to the country's length in characters other than spaces.
        seen = 0
        end = 0
        for i, ch in enumerate(candidate):
            if ch != " " and ch != "-":
                seen += 1
                if seen == length:
                    end = i + 1
                    break
        if seen < length:
            return None
        written = candidate[:end]
        compact = written.replace(" ", "").replace("-", "")
        if len(compact) != len(written):
            sep = " " if " " in written else "-"
            groups = written.split(sep)
            if any(len(g) != 4 for g in groups[:-1]) or not 1 <= len(groups[-1]) <= 4:
                return None
        stop = start + end
        if stop < len(text) and text[stop].isalnum():
            return None  # the IBAN would end inside a longer word
        return (self.entity, start, stop) if iban_valid(compact) else None
