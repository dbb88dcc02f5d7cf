"""Renderers: the report object -> display tables -> terminal (rich), markdown, csv, html or json.

The core draws the corpus table and the analyzers that did not run; every other section is drawn
by the analyzer that owns it (its ``report_tables`` and ``report_csv``), in ``report_order``. So
every human format shows the same rows, and a third-party analyzer's section appears in each.

Report options: ``report_options`` gives them by analyzer name; options given by field name
(``top=5``, ``min_pct=0.005``: the command line's ``--top``, ``--min-pct``) apply to every
analyzer whose ``ReportOptions`` declares that field.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any, Mapping

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.report.section import CSV_COLUMNS, DisplayTable, ReportContext, printable, report_options_for
from llama_audit.report.tables import CORPUS, is_skipped, paper_reference, section_owners

CORPUS_CSV_ROWS = ("documents", "bytes", "shards", "bad_records", "in_scope_documents")


def declared_values(analyzer: type[Analyzer], option_values: Mapping[str, Any]) -> dict[str, Any]:
    """The options given by field name that the analyzer's ``ReportOptions`` declares."""
    options_cls = getattr(analyzer, "ReportOptions", None) or AnalyzerOptions
    declared = {f.name for f in dataclasses.fields(options_cls)}
    return {k: v for k, v in option_values.items() if k in declared and v is not None}


def drawn_sections(report: dict, *, report_options: Mapping[str, AnalyzerOptions] | None = None,
                   paper: bool = False, **option_values: Any) -> list[tuple[type[Analyzer], dict, ReportContext]]:
    """``(owner, section, context)`` of each section an analyzer draws (not the corpus, not the
    skipped ones), by ``report_order``, ties in the report's order."""
    reference = paper_reference() if paper else None
    keys = [key for key, section in report.items() if key != CORPUS and not is_skipped(section)]
    owners = section_owners(keys)
    drawn = []
    for key in sorted(keys, key=lambda k: owners[k].report_order):
        cls = owners[key]
        given = (report_options or {}).get(cls.name) or declared_values(cls, option_values)
        ctx = ReportContext(config={}, corpus=report[CORPUS], options=report_options_for(cls, given), paper=reference)
        drawn.append((cls, report[key], ctx))
    return drawn


def corpus_table(c: dict) -> DisplayTable:
    rows = [["documents", c["documents"]], ["bytes (UTF-8 text)", c["bytes"]], ["shards", c["shards"]],
            ["bad records", c["bad_records"]],
            [f"in-scope documents ({','.join(c.get('languages_in_scope', []))})", c["in_scope_documents"]]]
    rows += [[f"  bad: {k}", v] for k, v in c.get("bad_records_by_reason", {}).items()]
    note = "" if c.get("complete", True) else (
        f"PARTIAL: {c['shards_done']} of {c['shards']} shards done ({c['shards_failed']} failed); rerun scan to finish"
        + (f"; failed: {', '.join(c['failed_shards'])}" if c.get("failed_shards") else "")
        + ("; the summary covers the other shards (merge --allow-failed)" if c.get("summary_partial") else ""))
    return DisplayTable(CORPUS, "Corpus", ["", "value"], rows, note)


def display_tables(report: dict, **kw: Any) -> list[DisplayTable]:
    """The corpus, the analyzers that did not run (and why), then each analyzer's tables.
    Keywords: those of :func:`drawn_sections`."""
    out = [corpus_table(report[CORPUS])]
    out += [DisplayTable(key, f"{key}: skipped", ["reason"], [[section["reason"]]])
            for key, section in report.items() if is_skipped(section)]
    for cls, section, ctx in drawn_sections(report, **kw):
        out += cls.report_tables(section, ctx)
    return out


def render_terminal(report: dict, console, **kw) -> None:
    from rich.table import Table
    from rich.text import Text

    def literal(x: Any) -> Text:  # lexicon groups, terms, plugin labels: data, never markup or escapes
        return Text(printable(str(x)))

    for t in display_tables(report, **kw):
        table = Table(title=literal(t.title), title_justify="left", caption=literal(t.note) if t.note else None,
                      caption_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(literal(col), justify="left" if i == 0 or col in t.text_columns else "right")
        for row in t.rows:
            table.add_row(*[literal(x) for x in row])
        console.print(table)


def markdown_text(x: Any) -> str:
    """A user string (a lexicon group, a term, a plugin's label) as literal markdown: ``|`` cannot
    split a table cell, ``<`` and ``&`` cannot open HTML in a viewer, a control character is shown."""
    return printable(str(x)).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def render_markdown(report: dict, **kw) -> str:
    parts = []
    for t in display_tables(report, **kw):
        parts.append(f"### {markdown_text(t.title)}\n")
        parts.append("| " + " | ".join(markdown_text(c) or " " for c in t.columns) + " |")
        parts.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(t.columns))) + "|")
        for row in t.rows:
            parts.append("| " + " | ".join(markdown_text(x) for x in row) + " |")
        if t.note:
            parts.append(f"\n_{markdown_text(t.note)}_")
        parts.append("")
    return "\n".join(parts)


def render_csv(report: dict, **kw) -> str:
    """Long format for spreadsheets: one row per number, every table, no truncation."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    c = report[CORPUS]
    for k in CORPUS_CSV_ROWS:
        w.writerow([CORPUS, "", k, c[k], "", ""])
    for cls, section, ctx in drawn_sections(report, **kw):
        w.writerows(cls.report_csv(section, ctx))
    for key, section in report.items():
        if is_skipped(section):
            w.writerow([key, "skipped", section["reason"], "", "", ""])
    return buf.getvalue()


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_html(report: dict, **kw) -> str:
    """One self-contained HTML page (no scripts, no external assets)."""
    from html import escape as escape_html

    def escape(x: str) -> str:  # user strings: markup-free and with control characters shown
        return escape_html(printable(x))

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>llama-audit report</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:.2em .6em}td:not(:first-child){text-align:right}",
             "caption{text-align:left;font-weight:bold;padding:.3em 0}.note{color:#555;font-size:.9em}</style></head><body>",
             "<h1>llama-audit report</h1>"]
    for t in display_tables(report, **kw):
        parts.append(f"<table><caption>{escape(t.title)}</caption><tr>")
        parts.extend(f"<th>{escape(str(c))}</th>" for c in t.columns)
        parts.append("</tr>")
        for row in t.rows:
            parts.append("<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in row) + "</tr>")
        parts.append("</table>")
        if t.note:
            parts.append(f"<p class='note'>{escape(t.note)}</p>")
        parts.append(t.figure_svg)
    parts.append("</body></html>\n")
    return "".join(parts)
