"""What an analyzer's report section is made of, and what it is drawn with.

Every analyzer owns its section of ``llama-audit report`` (the Llama 2 paper's Tables 9a, 9b and 10,
Figure 13, and the personal-data table are sections of built-in analyzers; a plugin's are its own): the JSON
section computed from its merged counts, the :class:`DisplayTable` s of the human formats, and the
rows of the long CSV (see the ``# -- report`` methods of
:class:`~llama_audit.analyzers.base.Analyzer`). The report runs without instantiating analyzers,
so those methods receive a :class:`ReportContext` instead of ``self``.

This module imports no analyzer, no registry and no renderer: analyzers import it without cycles.
"""

from __future__ import annotations

import dataclasses
import math
import re
from statistics import NormalDist
from typing import Any, Mapping

from llama_audit.analyzers.options import AnalyzerOptions, build

#: the heading of the column that shows the paper's number beside ours (``report --paper``)
PAPER_COLUMN = "Llama 2 %"
#: the columns of the long-format CSV; every analyzer's ``report_csv`` rows follow them (rows
#: with fewer cells, from an analyzer written before the interval columns, are padded with empty ones)
CSV_COLUMNS = ["table", "group", "label", "documents", "pct", "matches", "ci95_low", "ci95_high"]
#: the column after :data:`CSV_COLUMNS` with ``report --paper`` only (so that the CSV without it
#: stays as it was): the paper's number for the row's ``pct``, empty where the paper has none
PAPER_CSV_COLUMN = "paper_pct"
#: the JSON key of the paper's number beside one of ours with ``report --paper`` (beside ``pct``;
#: ``rows_paper_pct`` beside the pronoun ``rows``; ``paper_pct_ge_0_5`` beside ``pct_ge_0_5``)
PAPER_JSON_KEY = "paper_pct"
#: z_0.975, the standard normal quantile of a two-sided 95% interval (1.959963984540054)
Z_95 = NormalDist().inv_cdf(0.975)


def pct(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when there is no whole), rounded for stable JSON."""
    return round(100.0 * part / whole, 6) if whole else 0.0


def two_decimals(x: float | None) -> str:
    """A percentage as the tables print it; an empty cell when there is no number."""
    return "" if x is None else f"{x:.2f}"


def wilson_ci95(successes: int, trials: int) -> list[float]:
    """The 95% Wilson score interval of the share ``successes / trials``, in percent, as
    ``[low, high]`` rounded like :func:`pct` (6 decimals) for stable JSON; ``[0.0, 0.0]`` when
    there are no trials (like :func:`pct`, which gives 0 there: read ``documents`` to tell).

    Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA
    22:209-212: the shares p whose score test does not reject the observed one, i.e. the roots of
    (k/n - p)^2 = z^2 p (1 - p) / n. Brown, Cai & DasGupta (2001), "Interval estimation for a
    binomial proportion", Statistical Science 16:101-133, recommend it over the normal (Wald)
    interval, whose coverage collapses for rare shares (the paper's 0.2% toxic documents) and small
    counts (a descriptor in 3 documents) and which can leave [0, 100]; Wilson's stays inside it and
    is not empty at 0 or n successes. Closed form, so no statistics library is needed."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"a share needs 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return [0.0, 0.0]
    p, z2 = successes / trials, Z_95 * Z_95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z_95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return [round(100.0 * low, 6), round(100.0 * high, 6)]


def pct_cell(value: float | None, ci95: list[float] | None) -> str:
    """A percentage and its 95% interval as every human format prints them:
    ``18.00 (15.30–20.90)``; the bare number without an interval, an empty cell without a number."""
    if value is None:
        return ""
    return two_decimals(value) if ci95 is None else f"{value:.2f} ({ci95[0]:.2f}\u2013{ci95[1]:.2f})"


# C0/C1 controls (a tab stays) and the bidirectional embeddings, overrides and isolates (text
# that reads other than it is: the same range lexicons refuse)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with its control characters (a terminal escape in a group name or a file name,
    a newline that would split a table row) shown as ``\\xNN``: user strings reach terminals and
    documents, where they must be seen, not obeyed. Tabs stay."""
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                              else f"\\u{ord(m.group()):04x}", text)


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
    #: the documents behind each row (its own count: a language's, a descriptor's), compared with
    #: ``report --min-docs``; None for a row it does not apply to (a total, a summary); empty: none
    row_documents: list[int | None] = dataclasses.field(default_factory=list)
    #: drawn folded in HTML (a ``<details>`` element opened by a click: e.g. review samples)
    collapsible: bool = False


#: what a figure can be: ``histogram`` (values over bins between ``edges``, e.g. the paper's
#: Figure 13) or ``bars`` (one value per category, e.g. Table 9a's rows)
FIGURE_KINDS = ("histogram", "bars")
#: a figure's ``name`` is the stem of the files it is written to (``NAME.svg``, ``NAME.png``)
FIGURE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclasses.dataclass(frozen=True)
class FigureSeries:
    """One set of values of a panel. ``style``: ``bars`` (ours, with the 95% ``intervals`` drawn as
    error bars where given: ``(low, high)`` per value, or None) or ``markers`` (reference values
    drawn over the bars, e.g. the Llama 2 paper's). A value of None is not drawn."""

    label: str
    values: tuple[float | None, ...]
    intervals: tuple[tuple[float, float] | None, ...] = ()
    style: str = "bars"


@dataclasses.dataclass(frozen=True)
class FigurePanel:
    """One plot of a figure. Bars: a label per value in ``categories`` (``horizontal`` for long
    labels). Histogram: the bin ``edges`` (one more than the values). ``log_y``: the value axis is
    logarithmic (rare shares beside common ones: the paper's Figure 13, Table 10). ``thresholds``:
    ``(x, label)`` vertical lines on a histogram's axis (Figure 13's 0.5)."""

    series: tuple[FigureSeries, ...]
    categories: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    log_y: bool = False
    horizontal: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A figure an analyzer declares for its section (its ``report_figures``), as plain data: the
    report draws it with matplotlib when installed (:mod:`llama_audit.report.figures`), writes it
    as ``NAME.svg`` and ``NAME.png`` and shows it in HTML under the tables of section ``table``,
    with ``caption`` under it (say the counts there: a figure alone hides how many documents it is of)."""

    name: str
    table: str
    kind: str
    title: str
    caption: str
    panels: tuple[FigurePanel, ...]

    def __post_init__(self):
        if not FIGURE_NAME.fullmatch(self.name):
            raise ValueError(f"figure name {self.name!r}: lower-case letters, digits, '_' and '-' only "
                             "(it names the figure's files)")
        if self.kind not in FIGURE_KINDS:
            raise ValueError(f"figure {self.name!r}: kind {self.kind!r} is not one of {', '.join(FIGURE_KINDS)}")


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
    ``samples``: the analyzer's review samples merged over the shards (``{group: [payload, ...]}``,
    smallest order first; empty unless it declared ``review_sampling`` at scan time). Like
    ``config``, only ``report_section`` sees them: a section keeps what its tables show.
    """

    config: Mapping[str, Any]
    corpus: Mapping[str, Any]
    options: AnalyzerOptions
    paper: Mapping[str, Any] | None = None
    samples: Mapping[str, list] = dataclasses.field(default_factory=dict)
    #: the report sections of the analyzers this one ``requires`` (built before it), by analyzer
    #: name: what it reads of theirs (e.g. each identity term's axis). Only ``report_section`` sees them.
    required: Mapping[str, Any] = dataclasses.field(default_factory=dict)

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

    def paper_json(self, value: Any, key: str = PAPER_JSON_KEY) -> dict[str, float]:
        """``{key: value}`` to put beside one of our numbers in the JSON with ``--paper`` when the
        paper has a number there, else ``{}`` (so that the JSON without ``--paper`` is unchanged)."""
        if self.paper is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            return {}
        return {key: value}

    def paper_csv_cells(self, value: float | None) -> list:
        """The ``paper_pct`` cell (:data:`PAPER_CSV_COLUMN`) of a CSV row with ``--paper`` (empty
        when the paper has no number), else no cell. It follows a row with every cell of
        :data:`CSV_COLUMNS`."""
        return ["" if value is None else value] if self.paper is not None else []


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
