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
import re
from typing import Any, Mapping, Sequence

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.report.section import (CSV_COLUMNS, PAPER_COLUMN, PAPER_CSV_COLUMN, DisplayTable, FigureSpec,
                                        ReportContext, printable, report_options_for)
from llama_audit.report.provenance import PROVENANCE, csv_rows as provenance_csv_rows, provenance_table
from llama_audit.report import grouped
from llama_audit.report.tables import CORPUS, is_skipped, paper_reference, section_owners

CORPUS_CSV_ROWS = ("documents", "bytes", "shards", "bad_records", "in_scope_documents")
#: the column beside the paper's: our number minus the paper's, in percentage points
PAPER_DELTA_COLUMN = "\u0394 (ours \u2212 Llama 2)"
#: the leading number of a cell (``18.00 (15.30–20.90)`` -> 18.00)
LEADING_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")
#: the paper the comparison columns come from (a citation link in HTML; nothing is loaded from it)
PAPER_CITATION = ("https://arxiv.org/abs/2307.09288", "Touvron et al. 2023, Llama 2, section 4.1")


def declared_values(analyzer: type[Analyzer], option_values: Mapping[str, Any]) -> dict[str, Any]:
    """The options given by field name that the analyzer's ``ReportOptions`` declares."""
    options_cls = getattr(analyzer, "ReportOptions", None) or AnalyzerOptions
    declared = {f.name for f in dataclasses.fields(options_cls)}
    return {k: v for k, v in option_values.items() if k in declared and v is not None}


def drawn_sections(report: dict, *, report_options: Mapping[str, AnalyzerOptions] | None = None,
                   paper: bool = False, owners: Mapping[str, type[Analyzer]] | None = None,
                   **option_values: Any) -> list[tuple[type[Analyzer], dict, ReportContext]]:
    """``(owner, section, context)`` of each section an analyzer draws (not the corpus, not the
    provenance, not the skipped ones), by ``report_order``, ties in the report's order.
    ``owners``: the section owners already looked up (the groups of ``report --group-by``)."""
    reference = paper_reference() if paper else None
    keys = [key for key, section in report.items()
            if key not in (CORPUS, PROVENANCE, *grouped.REPORT_KEYS) and not is_skipped(section)]
    owners = section_owners(keys) if owners is None or not set(keys) <= set(owners) else owners
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
    rows += [[f"  text from: {k}", v] for k, v in c.get("text_field_used", {}).items()]  # --text-field fallbacks
    note = "" if c.get("complete", True) else (
        f"PARTIAL: {c['shards_done']} of {c['shards']} shards done ({c['shards_failed']} failed); rerun scan to finish"
        + (f"; failed: {', '.join(c['failed_shards'])}" if c.get("failed_shards") else "")
        + ("; the summary covers the other shards (merge --allow-failed)" if c.get("summary_partial") else ""))
    return DisplayTable(CORPUS, "Corpus", ["", "value"], rows, note)


def display_tables(report: dict, **kw: Any) -> list[DisplayTable]:
    """The provenance (the header: which corpus, when, with what), the corpus, the analyzers that
    did not run (and why), then each analyzer's tables. Keywords: those of :func:`drawn_sections`."""
    out = [provenance_table(report[PROVENANCE])] if report.get(PROVENANCE) else []
    out.append(corpus_table(report[CORPUS]))
    out += [DisplayTable(key, f"{key}: skipped", ["reason"], [[section["reason"]]])
            for key, section in report.items() if is_skipped(section)]
    for cls, section, ctx in drawn_sections(report, **kw):
        out += cls.report_tables(section, ctx)
    out += grouped.display_tables(report, **kw)  # report --group-by / --top-hosts: after the whole corpus's
    return [with_paper_delta(t) for t in out]


def leading_number(cell: Any) -> float | None:
    m = LEADING_NUMBER.match(str(cell))
    return float(m.group(1)) if m else None


def with_paper_delta(t: DisplayTable) -> DisplayTable:
    """``t`` with a Δ column after the paper's (``--paper``): our number minus the paper's. Ours
    is the nearest column on the paper column's left whose heading has a ``%`` (Tables 9a, 9b, 10
    and a plugin's table alike); an empty cell where either number is missing."""
    if PAPER_COLUMN not in t.columns or PAPER_DELTA_COLUMN in t.columns:
        return t
    at = t.columns.index(PAPER_COLUMN)
    ours = next((i for i in range(at - 1, -1, -1) if "%" in str(t.columns[i])), None)
    if ours is None:
        return t

    def delta(row: list) -> str:
        a, b = (leading_number(row[i]) if i < len(row) and row[i] != "" else None for i in (ours, at))
        return "" if a is None or b is None else f"{a - b:+.2f}"

    rows = [row[:at + 1] + [delta(row)] + row[at + 1:] for row in t.rows]
    return dataclasses.replace(t, columns=t.columns[:at + 1] + [PAPER_DELTA_COLUMN] + t.columns[at + 1:], rows=rows)


def cell_text(x: Any) -> str:
    """A table cell as every human format prints it: counts with thousands separators."""
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x)


def is_sub_row(row: list) -> bool:
    """A row under the one above it (a pronoun group under its header, a descriptor under its
    axis): its first cell is empty or starts with spaces."""
    return bool(row) and len(row) > 1 and (str(row[0]) == "" or str(row[0]).startswith(" "))


def figure_specs(report: dict, **kw: Any) -> list[FigureSpec]:
    """The figures each drawn section's owner declares (``report_figures``), in the tables'
    order, with distinct names. Keywords: those of :func:`drawn_sections`."""
    from llama_audit.report.figures import unique_names  # no matplotlib: plain data

    return unique_names(spec for cls, section, ctx in drawn_sections(report, **kw)
                        for spec in cls.report_figures(section, ctx))


def drawn_figures(report: dict, **kw: Any) -> list:
    """The report's figures drawn (:class:`~llama_audit.report.figures.DrawnFigure`), or none
    without matplotlib. Keywords: those of :func:`drawn_sections`."""
    from llama_audit.report import figures

    return [figures.draw(spec) for spec in figure_specs(report, **kw)] if figures.available() else []


def rows_with_enough_documents(t: DisplayTable, min_docs: int) -> list[bool]:
    """Per row of ``t``: whether it has at least ``min_docs`` documents (``report --min-docs``);
    a row without a count of its own (``row_documents`` None or absent: a total) always has."""
    docs = t.row_documents
    return [i >= len(docs) or docs[i] is None or docs[i] >= min_docs for i in range(len(t.rows))]


def few_documents_note(t: DisplayTable, min_docs: int, below: int, done: str) -> str:
    """The table's note, and how many rows had fewer than ``min_docs`` documents and what was done."""
    if not below:
        return t.note
    said = f"{below} row{'' if below == 1 else 's'} with fewer than {min_docs:,} documents {done} (--min-docs)"
    return f"{t.note}; {said}" if t.note else said


def shown_rows(t: DisplayTable, min_docs: int) -> tuple[list[list[Any]], str]:
    """The rows the terminal and markdown draw (those below ``--min-docs`` hidden) and the note."""
    keep = rows_with_enough_documents(t, min_docs)
    return [row for row, k in zip(t.rows, keep) if k], few_documents_note(t, min_docs, keep.count(False), "hidden")


def render_terminal(report: dict, console, *, min_docs: int = 0, tables: list[DisplayTable] | None = None,
                    **kw) -> None:
    """``tables``: draw these instead of the report's own (``report --against``: report/diff.py)."""
    from rich.table import Table
    from rich.text import Text

    def literal(x: Any) -> Text:  # lexicon groups, terms, plugin labels: data, never markup or escapes
        return Text(printable(str(x)))

    for t in display_tables(report, **kw) if tables is None else tables:
        rows, note = shown_rows(t, min_docs)
        table = Table(title=literal(t.title), title_justify="left", caption=literal(note) if note else None,
                      caption_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(literal(col), justify="left" if i == 0 or col in t.text_columns else "right")
        for row in rows:
            table.add_row(*[literal(cell_text(x)) for x in row])
        console.print(table)


def markdown_text(x: Any) -> str:
    """A user string (a lexicon group, a term, a plugin's label) as literal markdown: ``|`` cannot
    split a table cell, ``<`` and ``&`` cannot open HTML in a viewer, a control character is shown."""
    return printable(str(x)).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def render_markdown(report: dict, *, min_docs: int = 0, tables: list[DisplayTable] | None = None, **kw) -> str:
    """``tables``: draw these instead of the report's own (``report --against``: report/diff.py)."""
    parts = []
    for t in display_tables(report, **kw) if tables is None else tables:
        parts.append(f"### {markdown_text(t.title)}\n")
        parts.append("| " + " | ".join(markdown_text(c) or " " for c in t.columns) + " |")
        parts.append("|" + "|".join("---" if i == 0 or c in t.text_columns else "---:" for i, c in enumerate(t.columns))
                     + "|")
        rows, note = shown_rows(t, min_docs)
        for row in rows:
            cells = [markdown_text(cell_text(x)) for x in row]
            if cells:  # a sub-row's leading spaces, which markdown would drop, as em spaces
                cells[0] = re.sub(r"^ +", lambda m: "&emsp;" * -(-len(m.group()) // 2), cells[0])
            parts.append("| " + " | ".join(cells) + " |")
        if note:
            parts.append(f"\n_{markdown_text(note)}_")
        parts.append("")
    return "\n".join(parts)


def csv_row(row: list, columns: Sequence[str] = CSV_COLUMNS) -> list:
    """A CSV row with every column: an analyzer that gives fewer cells (a plugin written before
    the interval columns, or one that knows no paper's numbers) gets empty ones."""
    return list(row) + [""] * (len(columns) - len(row))


def csv_columns(paper: bool = False) -> list[str]:
    """The CSV's columns: :data:`CSV_COLUMNS`, then the paper's number with ``--paper``."""
    return CSV_COLUMNS + [PAPER_CSV_COLUMN] if paper else list(CSV_COLUMNS)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula


def spreadsheet_safe(cell: Any) -> Any:
    """A cell a spreadsheet shows as text: a string that would start a formula (``=``, ``+``,
    ``-``, ``@``, tab, CR) gets a leading ``'`` unless it is a number. The CSV carries text from
    the corpus (``--group-by`` values, hosts, lexicon terms), and a cell such as ``=HYPERLINK(...)``
    would otherwise run when the report is opened (OWASP "CSV injection")."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        try:
            float(cell)
            return cell
        except ValueError:
            return "'" + cell
    return cell


class SafeCsvWriter:
    """``csv.writer`` whose every cell passes :func:`spreadsheet_safe`."""

    def __init__(self, buf: io.StringIO):
        self._writer = csv.writer(buf, lineterminator="\n")

    def writerow(self, row) -> None:
        self._writer.writerow([spreadsheet_safe(c) for c in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def render_csv(report: dict, *, min_docs: int = 0, **kw) -> str:
    """Long format for spreadsheets: one row per number, every table, no truncation (``min_docs``
    is accepted for one call shape with the other formats, and ignored: the CSV keeps every row).
    With ``paper=True`` a last column, :data:`PAPER_CSV_COLUMN`, holds the paper's number where
    the row's analyzer has one (its ``report_csv``)."""
    buf = io.StringIO()
    w = SafeCsvWriter(buf)
    columns = csv_columns(kw.get("paper", False))
    is_grouped = any(report.get(k) is not None for k in grouped.REPORT_KEYS)
    if is_grouped:  # report --group-by / --top-hosts: one more column, the group of each row ("" overall)
        columns = columns + [grouped.CSV_GROUP_COLUMN]
    w.writerow(columns)
    w.writerows(csv_row(row, columns) for row in provenance_csv_rows(report.get(PROVENANCE) or {}))
    c = report[CORPUS]
    for k in CORPUS_CSV_ROWS:
        w.writerow(csv_row([CORPUS, "", k, c[k]], columns))
    for cls, section, ctx in drawn_sections(report, **kw):
        w.writerows(csv_row(row, columns) for row in cls.report_csv(section, ctx))
    for key, section in report.items():
        if is_skipped(section):
            w.writerow(csv_row([key, "skipped", section["reason"]], columns))
    if is_grouped:
        w.writerows(csv_row(row, columns[:-1]) + [cell] for row, cell in grouped.csv_rows(report, **kw))
    return buf.getvalue()


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_html(report: dict, *, min_docs: int = 0, tables: list[DisplayTable] | None = None, paper: bool = True,
                figures: Sequence | None = None, **kw) -> str:
    """One self-contained HTML page (no scripts, no external assets: figures are ``data:`` images,
    the only links are citations) that reads like the paper's appendix: sub-rows indented, numbers
    right-aligned with separators, the paper's column and Δ shown unless ``paper=False``
    (``--no-paper``), print-friendly. Rows below ``min_docs`` documents stay, greyed (class
    ``few-docs``). ``figures``: drawn figures (:func:`drawn_figures`) shown under their section's
    tables in place of a table's own ``figure_svg``; None: drawn here when matplotlib is installed."""
    from html import escape as escape_html

    from llama_audit.report.figures import html_figure

    if figures is None:
        figures = drawn_figures(report, paper=paper, **kw) if tables is None else []
    if tables is None:
        tables = display_tables(report, paper=paper, **kw)
    last_of_section = {t.key: i for i, t in enumerate(tables)}
    figures_after = {}  # index of a section's last table -> its figures (a figure of no table: at the end)
    for figure in figures:
        figures_after.setdefault(last_of_section.get(figure.spec.table, len(tables) - 1), []).append(figure)
    with_figures = {figure.spec.table for figure in figures}

    def escape(x: str) -> str:  # user strings: markup-free and with control characters shown
        return escape_html(printable(x))

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>llama-audit report</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:.2em .6em}td{text-align:right;font-variant-numeric:tabular-nums}",
             "td.text{text-align:left}tr.sub td.label{padding-left:1.8em}th{background:#f4f4f4}",
             "figure.chart{margin:1em 0 2em}figure.chart img{max-width:100%;height:auto}",
             "figcaption,.cite{color:#555;font-size:.9em}",
             "@media print{body{margin:0;max-width:none;font-size:10pt}table,figure{break-inside:avoid}",
             "caption{break-after:avoid}a{color:inherit;text-decoration:none}h1{font-size:16pt}}",
             "caption{text-align:left;font-weight:bold;padding:.3em 0}.note{color:#555;font-size:.9em}.few-docs{color:#999}",
             "details.collapsible td{text-align:left}summary{cursor:pointer;font-weight:bold}</style></head><body>",
             "<h1>llama-audit report</h1>"]
    if any(PAPER_COLUMN in t.columns for t in tables):
        parts.append(f"<p class='cite'>{escape(PAPER_COLUMN)}: the paper's numbers, "
                     f"<a href='{PAPER_CITATION[0]}'>{escape(PAPER_CITATION[1])}</a>; "
                     f"{escape(PAPER_DELTA_COLUMN)} in percentage points.</p>")
    for index, t in enumerate(tables):  # tables: the report's own, or report --against's
        if t.collapsible:  # folded until clicked (review samples: long, and read one at a time)
            parts.append(f"<details class='collapsible'><summary>{escape(t.title)}</summary>")
        parts.append(f"<table><caption>{escape(t.title)}</caption><tr>")
        parts.extend(f"<th>{escape(str(c))}</th>" for c in t.columns)
        parts.append("</tr>")
        keep = rows_with_enough_documents(t, min_docs)
        text = [i == 0 or c in t.text_columns for i, c in enumerate(t.columns)]
        for row, enough in zip(t.rows, keep):
            parts.append(html_row(row, text, enough, escape))
        parts.append("</table>")
        note = few_documents_note(t, min_docs, keep.count(False), "greyed")
        if note:
            parts.append(f"<p class='note'>{escape(note)}</p>")
        if t.key not in with_figures:
            parts.append(t.figure_svg)
        if t.collapsible:
            parts.append("</details>")
        parts.extend(html_figure(figure) for figure in figures_after.get(index, []))
    parts.append("</body></html>\n")
    return "".join(parts)


def html_row(row: list, text_columns: list[bool], enough: bool, escape) -> str:
    """One ``<tr>``: text cells left-aligned (class ``text``), numbers right-aligned; a sub-row
    (:func:`is_sub_row`) has class ``sub`` and its label indented (its first cell's, or the first
    cell after an empty one); a row below ``--min-docs`` has class ``few-docs``."""
    sub = is_sub_row(row)
    label = 0 if not sub or str(row[0]).strip() else 1
    classes = " ".join(c for c, on in (("sub", sub), ("few-docs", not enough)) if on)
    cells = []
    for i, x in enumerate(row):
        value = cell_text(x).strip() if sub and i == label else cell_text(x)
        kinds = " ".join(k for k, on in (("text", i < len(text_columns) and text_columns[i]),
                                         ("label", sub and i == label)) if on)
        cells.append(f"<td class='{kinds}'>{escape(value)}</td>" if kinds else f"<td>{escape(value)}</td>")
    return (f"<tr class='{classes}'>" if classes else "<tr>") + "".join(cells) + "</tr>"
