"""The PII analyzer's report section: matches and documents per type, and how dense PII is.

The Llama 2 paper (section 4.1) reports no PII table; this one answers the question it raises
(how much personal data a corpus holds) with counts only: values never leave the detector.
"""

from __future__ import annotations

from collections import Counter

from llama_audit.analyzers.pii.detector import NOT_PII, SPAN_TYPES
from llama_audit.report.section import DisplayTable, ReportContext, pct, two_decimals

MATCHES_PREFIX = "matches/"  # matches/<type>: spans of the type
DOCUMENTS_PREFIX = "documents/"  # documents/<type>: documents with a span of the type


def types_found(counts: Counter) -> list[str]:
    """The span types counted, in :data:`SPAN_TYPES` order (types it does not list last, by name)."""
    found = {key.removeprefix(prefix) for key in counts for prefix in (MATCHES_PREFIX, DOCUMENTS_PREFIX)
             if key.startswith(prefix)}
    return sorted(found, key=lambda t: (SPAN_TYPES.index(t) if t in SPAN_TYPES else len(SPAN_TYPES), t))


class PiiReport:
    """Report methods of :class:`~llama_audit.analyzers.pii.PiiAnalyzer` (mixed into it)."""

    report_order = 50

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Share of documents with PII, matches per million characters of the corpus, and per
        type. ``IP_ADDRESS_PRIVATE`` rows are listed (they are redacted) but not counted as PII."""
        n = counts["documents"]
        matches = sum(v for key, v in counts.items()
                      if key.startswith(MATCHES_PREFIX) and key.removeprefix(MATCHES_PREFIX) not in NOT_PII)
        corpus_chars = ctx.corpus["chars"]
        return {
            "documents": n, "documents_with_pii": counts["documents_with_pii"],
            "pct_documents": pct(counts["documents_with_pii"], n),
            "matches": matches,
            "matches_per_million_chars": round(matches * 1e6 / corpus_chars, 6) if corpus_chars else 0.0,
            "by_type": [{"type": t, "matches": counts[MATCHES_PREFIX + t], "documents": counts[DOCUMENTS_PREFIX + t],
                         "pct_documents": pct(counts[DOCUMENTS_PREFIX + t], n), "personal": t not in NOT_PII}
                        for t in types_found(counts)],
        }

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        rows = [[r["type"], r["matches"], r["documents"], two_decimals(r["pct_documents"])] for r in section["by_type"]]
        rows.append(["any", section["matches"], section["documents_with_pii"], two_decimals(section["pct_documents"])])
        note = f"{section['matches_per_million_chars']:.2f} matches per million characters; values are never stored"
        return [DisplayTable(cls.report_json_key(), "Personal data (PII)", ["type", "matches", "documents", "% documents"],
                             rows, note, text_columns=("type",))]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = [[key, "", r["type"], r["documents"], r["pct_documents"], r["matches"]] for r in section["by_type"]]
        rows.append([key, "", "any", section["documents_with_pii"], section["pct_documents"], section["matches"]])
        return rows
