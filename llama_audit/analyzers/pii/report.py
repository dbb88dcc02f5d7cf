"""The PII analyzer's report section: matches and documents per type, and how dense PII is.

The Llama 2 paper (section 4.1) reports no PII table; this one answers the question it raises
(how much personal data a corpus holds) with counts only: values never leave the detector.
"""

from __future__ import annotations

from collections import Counter

from llama_audit.analyzers.pii.detector import NOT_PII, SPAN_TYPES
from llama_audit.report.section import DisplayTable, ReportContext, pct, pct_cell, wilson_ci95

MATCHES_PREFIX = "matches/"  # matches/<type>: spans of the type
DOCUMENTS_PREFIX = "documents/"  # documents/<type>: documents with a span of the type
# PII outside the text (docs/pii.md, "Other fields and ids"); keys are absent when zero
ID_DOCUMENTS_WITH_PII = "documents_with_pii_in_id"  # documents whose id holds personal data
ID_DOCUMENTS = "id/documents/"  # id/documents/<type>
FIELDS_MATCHES = "fields/matches/"  # fields/matches/<type>: spans in --pii-fields values
FIELDS_DOCUMENTS = "fields/documents/"  # fields/documents/<type>
FIELDS_DOCUMENTS_WITH_PII = "fields/documents_with_pii"  # in any field; + "/<path>": in that field
FIELDS_NOT_TEXT = "fields/not_text/"  # fields/not_text/<path>: a number, list, object there: not scanned
FIELDS_ABSENT = "fields/absent/"  # fields/absent/<path>: missing or null


def types_found(counts: Counter, prefixes: tuple[str, ...] = (MATCHES_PREFIX, DOCUMENTS_PREFIX)) -> list[str]:
    """The span types counted under ``prefixes``, in :data:`SPAN_TYPES` order (types it does not
    list last, by name)."""
    found = {key.removeprefix(prefix) for key in counts for prefix in prefixes if key.startswith(prefix)}
    return sorted(found, key=lambda t: (SPAN_TYPES.index(t) if t in SPAN_TYPES else len(SPAN_TYPES), t))


def _paths_under(counts: Counter, prefix: str) -> set[str]:
    return {key.removeprefix(prefix) for key in counts if key.startswith(prefix)}


def _documents(n: int) -> str:
    return f"{n:,} document" + ("" if n == 1 else "s")


class PiiReport:
    """Report methods of :class:`~llama_audit.analyzers.pii.PiiAnalyzer` (mixed into it)."""

    report_order = 50

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Share of documents with PII, matches per million characters of the corpus, and per
        type, each share with its 95% Wilson interval over all documents (``pct_documents_ci95``).
        ``IP_ADDRESS_PRIVATE`` rows are listed (they are redacted) but not counted as PII."""
        n = counts["documents"]
        matches = sum(v for key, v in counts.items()
                      if key.startswith(MATCHES_PREFIX) and key.removeprefix(MATCHES_PREFIX) not in NOT_PII)
        corpus_chars = ctx.corpus["chars"]
        section = {
            "documents": n, "documents_with_pii": counts["documents_with_pii"],
            "pct_documents": pct(counts["documents_with_pii"], n),
            "pct_documents_ci95": wilson_ci95(counts["documents_with_pii"], n),
            "matches": matches,
            "matches_per_million_chars": round(matches * 1e6 / corpus_chars, 6) if corpus_chars else 0.0,
            "by_type": [{"type": t, "matches": counts[MATCHES_PREFIX + t], "documents": counts[DOCUMENTS_PREFIX + t],
                         "pct_documents": pct(counts[DOCUMENTS_PREFIX + t], n),
                         "pct_documents_ci95": wilson_ci95(counts[DOCUMENTS_PREFIX + t], n),
                         "personal": t not in NOT_PII}
                        for t in types_found(counts)],
        }
        # Present only when there is something to say (a default report stays byte-identical).
        scanned = list(ctx.config.get("fields") or ())
        if counts[ID_DOCUMENTS_WITH_PII] or scanned:
            section[ID_DOCUMENTS_WITH_PII] = counts[ID_DOCUMENTS_WITH_PII]
        if scanned or any(key.startswith("fields/") for key in counts):
            section["fields"] = cls._fields_section(counts, scanned, n)
        return section

    @staticmethod
    def _fields_section(counts: Counter, scanned: list[str], n: int) -> dict:
        """PII in the ``--pii-fields`` values: per type, and per field with what was not scanned."""
        paths = scanned or sorted(_paths_under(counts, FIELDS_DOCUMENTS_WITH_PII + "/")
                                  | _paths_under(counts, FIELDS_NOT_TEXT) | _paths_under(counts, FIELDS_ABSENT))
        types = types_found(counts, (FIELDS_MATCHES, FIELDS_DOCUMENTS))
        with_pii = counts[FIELDS_DOCUMENTS_WITH_PII]
        return {
            "scanned": paths,
            "documents_with_pii": with_pii, "pct_documents": pct(with_pii, n),
            "pct_documents_ci95": wilson_ci95(with_pii, n),
            "matches": sum(counts[FIELDS_MATCHES + t] for t in types if t not in NOT_PII),
            "by_type": [{"type": t, "matches": counts[FIELDS_MATCHES + t], "documents": counts[FIELDS_DOCUMENTS + t],
                         "pct_documents": pct(counts[FIELDS_DOCUMENTS + t], n),
                         "pct_documents_ci95": wilson_ci95(counts[FIELDS_DOCUMENTS + t], n),
                         "personal": t not in NOT_PII}
                        for t in types],
            "by_field": [{"field": p, "documents_with_pii": counts[f"{FIELDS_DOCUMENTS_WITH_PII}/{p}"],
                          "pct_documents": pct(counts[f"{FIELDS_DOCUMENTS_WITH_PII}/{p}"], n),
                          "pct_documents_ci95": wilson_ci95(counts[f"{FIELDS_DOCUMENTS_WITH_PII}/{p}"], n),
                          "not_text": counts[FIELDS_NOT_TEXT + p], "absent": counts[FIELDS_ABSENT + p]}
                         for p in paths],
        }

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        rows = [[r["type"], r["matches"], r["documents"], pct_cell(r["pct_documents"], r["pct_documents_ci95"])]
                for r in section["by_type"]]
        rows.append(["any", section["matches"], section["documents_with_pii"],
                     pct_cell(section["pct_documents"], section["pct_documents_ci95"])])
        documents = [r["documents"] for r in section["by_type"]] + [None]  # the total is never hidden
        note = f"{section['matches_per_million_chars']:.2f} matches per million characters; values are never stored"
        if section.get(ID_DOCUMENTS_WITH_PII):
            note += (f"; {_documents(section[ID_DOCUMENTS_WITH_PII])} with PII in the document id "
                     "(ids are never rewritten)")
        key = cls.report_json_key()
        tables = [DisplayTable(key, "Personal data (PII)", ["type", "matches", "documents", "% documents (95% CI)"],
                               rows, note, text_columns=("type",), row_documents=documents)]
        fields = section.get("fields")
        if fields:
            rows = [[r["type"], r["matches"], r["documents"], pct_cell(r["pct_documents"], r["pct_documents_ci95"])]
                    for r in fields["by_type"]]
            rows.append(["any", fields["matches"], fields["documents_with_pii"],
                         pct_cell(fields["pct_documents"], fields["pct_documents_ci95"])])
            tables.append(DisplayTable(key, "PII in other fields (--pii-fields)",
                                       ["type", "matches", "documents", "% documents (95% CI)"], rows,
                                       "fields scanned: " + ", ".join(fields["scanned"]), text_columns=("type",),
                                       row_documents=[r["documents"] for r in fields["by_type"]] + [None]))
            # every field asked for stays listed, whatever --min-docs: what was not scanned is the point
            rows = [[r["field"], r["documents_with_pii"], pct_cell(r["pct_documents"], r["pct_documents_ci95"]),
                     r["not_text"], r["absent"]] for r in fields["by_field"]]
            tables.append(DisplayTable(key, "PII per field (--pii-fields)",
                                       ["field", "documents with PII", "% documents (95% CI)", "not text (not scanned)",
                                        "absent"],
                                       rows, "a number, list or object at a field is not scanned for PII",
                                       text_columns=("field",)))
        return tables

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = [[key, "", r["type"], r["documents"], r["pct_documents"], r["matches"]] + r["pct_documents_ci95"]
                for r in section["by_type"]]
        rows.append([key, "", "any", section["documents_with_pii"], section["pct_documents"], section["matches"]]
                    + section["pct_documents_ci95"])
        if ID_DOCUMENTS_WITH_PII in section:
            in_id, n = section[ID_DOCUMENTS_WITH_PII], section["documents"]
            rows.append([key, "id", "any", in_id, pct(in_id, n), ""] + wilson_ci95(in_id, n))
        fields = section.get("fields")
        if fields:
            rows += [[key, "fields", r["type"], r["documents"], r["pct_documents"], r["matches"]]
                     + r["pct_documents_ci95"] for r in fields["by_type"]]
            rows.append([key, "fields", "any", fields["documents_with_pii"], fields["pct_documents"], fields["matches"]]
                        + fields["pct_documents_ci95"])
            rows += [[key, "field", r["field"], r["documents_with_pii"], r["pct_documents"], ""]
                     + r["pct_documents_ci95"] for r in fields["by_field"]]
        return rows

    @classmethod
    def scan_warnings(cls, counts: Counter) -> list[str]:
        """What the scan must tell its user about PII outside the text, from the merged counts:
        documents whose id holds PII (ids are never rewritten), ``--pii-fields`` paths that no
        document has (a typo), and values at them that are not text (not scanned). Counts, types
        and field paths only, never a value."""
        n = counts["documents"]
        messages = []
        in_id = counts[ID_DOCUMENTS_WITH_PII]
        if in_id:
            types = ", ".join(t for t in SPAN_TYPES if counts[ID_DOCUMENTS + t])
            messages.append(f"{in_id:,} of {_documents(n)} have personal data ({types}) in their document id: ids "
                            "are copied as they are into annotations, --emit output and filtered corpora and are "
                            "never rewritten (see docs/pii.md)")
        for path in sorted(_paths_under(counts, FIELDS_ABSENT)):
            if n and counts[FIELDS_ABSENT + path] >= n:
                messages.append(f"--pii-fields {path!r}: no document has this field (absent or null in all "
                                f"{_documents(n)}); is the path right?")
        for path in sorted(_paths_under(counts, FIELDS_NOT_TEXT)):
            messages.append(f"--pii-fields {path!r}: {_documents(counts[FIELDS_NOT_TEXT + path])} hold a number, "
                            "list or object there, not text: not scanned for PII (and not redacted)")
        return messages
