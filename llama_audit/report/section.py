"""What an analyzer's report section is made of, and what it is drawn with.

Every analyzer owns its section of ``llama-audit report`` (the Llama 2 paper's Tables 9a, 9b and 10,
Figure 13, and the PII table are sections of built-in analyzers; a plugin's are its own): the JSON
section computed from its merged counts, the :class:`DisplayTable` s of the human formats, and the
rows of the long CSV (see the ``# -- report`` methods of
:class:`~llama_audit.analyzers.base.Analyzer`). The report runs without instantiating analyzers,
so those methods receive a :class:`ReportContext` instead of ``self``.

This module imports no analyzer, no registry and no renderer: analyzers import it without cycles.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from llama_audit.analyzers.options import AnalyzerOptions, build

#: the heading of the column that shows the paper's number beside ours (``report --paper``)
PAPER_COLUMN = "Llama 2 %"
#: the columns of the long-format CSV; every analyzer's ``report_csv`` rows follow them
CSV_COLUMNS = ["table", "group", "label", "documents", "pct", "matches"]


def pct(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when there is no whole), rounded for stable JSON."""
    return round(100.0 * part / whole, 6) if whole else 0.0


def two_decimals(x: float | None) -> str:
    """A percentage as the tables print it; an empty cell when there is no number."""
    return "" if x is None else f"{x:.2f}"


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters (a terminal escape in a group name or a file name,
    a newline that would split a table row) shown as ``\\xNN``: user strings reach terminals and
    documents, where they must be seen, not obeyed. Tabs stay."""
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclasses.dataclass
class DisplayTable:
    """One table of the human formats: the terminal (rich), markdown and HTML draw the same rows."""

    key: str  # the report section it draws
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""  # printed under the table
    text_columns: tuple[str, ...] = ()  # columns of labels, left-aligned like the first one
    figure_svg: str = ""  # an inline SVG figure drawn under the table in HTML (e.g. a histogram)


@dataclasses.dataclass(frozen=True)
class ReportContext:
    """What an analyzer's report methods see besides its counts or its section.

    ``config``: the analyzer's configuration recorded in the manifest
    (``manifest["config"]["analyzers"][name]``). Only ``report_section`` sees it: the human
    formats are drawn from the report object alone, where it is empty, so a section keeps what its
    tables need (a threshold, a model name).
    ``corpus``: the report's corpus section (documents, chars, ...).
    ``options``: the analyzer's report options (its ``ReportOptions``: how many rows to show...).
    ``paper``: the Llama 2 reference numbers (``report --paper``), or None; each analyzer reads its
    own table of it.
    """

    config: Mapping[str, Any]
    corpus: Mapping[str, Any]
    options: AnalyzerOptions
    paper: Mapping[str, Any] | None = None

    def paper_table(self, key: str) -> Mapping[str, Any]:
        """The paper's numbers for one table of the reference (empty without ``--paper``)."""
        return (self.paper or {}).get(key, {})

    def paper_heading(self) -> list[str]:
        """The paper column's heading with ``--paper``, else no column."""
        return [PAPER_COLUMN] if self.paper is not None else []

    def paper_cells(self, value: float | None) -> list[str]:
        """The paper's number beside one of ours with ``--paper`` (empty when the paper has none),
        else no cell."""
        return [two_decimals(value)] if self.paper is not None else []


def report_options_for(analyzer: type, given: AnalyzerOptions | Mapping[str, Any] | None) -> AnalyzerOptions:
    """An analyzer's report options: an instance as given, else built and checked from
    ``{key: value}`` (None: the defaults). Analyzers without ``ReportOptions`` get an empty one."""
    if isinstance(given, AnalyzerOptions):
        return given
    return build(getattr(analyzer, "ReportOptions", None) or AnalyzerOptions, analyzer.name, given)


def section_counts(section: Mapping[str, Any]) -> Mapping[str, Any]:
    """The (key, value) pairs the default table and CSV show: the default section's ``counts``,
    or the top-level values of a section an analyzer shaped itself."""
    return section.get("counts", section)
