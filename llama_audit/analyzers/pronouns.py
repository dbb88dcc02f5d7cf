"""Pronoun representation (Llama 2 Table 9a), over in-scope documents.

Column ``pronoun_groups``: the groups (she, he, unspecified, 1st, 2nd, 3rd) whose words occur in
the document; null for out-of-scope documents. Counts: documents per group, plus the two
headers (``gender``: any she/he/unspecified word; ``person``: any 1st/2nd/3rd word).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import pyarrow as pa

from llama_audit.analyzers._columns import count_rows_with_any, count_values
import dataclasses

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, DocBatch, option
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.report.section import (DisplayTable, FigurePanel, FigureSeries, FigureSpec, ReportContext, pct,
                                         pct_cell, wilson_ci95)
from llama_audit.text import tokenized

GENDER_GROUPS = ["she", "he", "unspecified"]
PERSON_GROUPS = ["1st", "2nd", "3rd"]
#: Table 9a's two headers and the groups each one counts
HEADERS = {"gender": GENDER_GROUPS, "person": PERSON_GROUPS}
DOCUMENTS_PREFIX = "documents/"  # documents/<group> and documents/<header>
#: Table 9a's rows: each group's name in the paper and the words it counts (shown in its label)
GROUP_ROWS = dict(zip(GENDER_GROUPS + PERSON_GROUPS, [
    ("She", "she, her, hers, herself"), ("He", "he, him, his, himself"), ("Unspecified", "they, them, their, ..."),
    ("1st", "I, me, my, mine, myself, ..."), ("2nd", "you, your, yours, ..."),
    ("3rd", "it, its, itself, she, her, he, him, ...")], strict=True))
#: per header: its row label, and its number in the paper's table
HEADER_ROWS = {"gender": ("Gender pronouns (of in-scope docs)", "gender_pronouns_header_pct_all_docs"),
               "person": ("Grammatical person (of in-scope docs)", "grammatical_person_header_pct_all_docs")}
PAPER_TABLE = "table9a_pronouns"  # the paper's Table 9a in the reference numbers


BUILTIN_LEXICON = "pronouns.tsv"


@dataclasses.dataclass(frozen=True)
class PronounOptions(AnalyzerOptions):
    lexicon: str | None = option(None, "Pronoun lexicon TSV (group, word) replacing the paper's lists.",
                                 flag="--pronoun-lexicon", metavar="FILE")


class PronounAnalyzer(Analyzer):
    name = "pronouns"
    scoped = True
    Options = PronounOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.lexicon = Lexicon.load(self.options.lexicon or builtin_path(BUILTIN_LEXICON), allow_multi_group=True)

    def config(self) -> dict:
        return {"lexicon": self.lexicon.source if self.options.lexicon else BUILTIN_LEXICON,
                "lexicon_sha256": self.lexicon.sha256}

    def fields(self) -> list[pa.Field]:
        return [pa.field("pronoun_groups", pa.list_(pa.string()))]

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """``<group>`` (``she``, ``he``, ``unspecified``, ``1st``, ...): ``[[0, chars, 1.0]]`` for each
        group whose words occur; nothing out of scope."""
        if "pronoun_groups" not in columns:
            return None
        return [{g: [[0, n, 1.0]] for g in groups or ()}
                for groups, n in zip(columns["pronoun_groups"].to_pylist(), columns["chars"].to_pylist())]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        tb = tokenized(batch, ctx.in_scope)
        entries, groups = self.lexicon.entries, self.lexicon.groups
        order = {g: k for k, g in enumerate(groups)}
        out: list[list[str] | None] = []
        for i, scoped in enumerate(ctx.in_scope):
            if not scoped:
                out.append(None)
                continue
            found = {entries[j].group for j in self.lexicon.match(tb, i)}
            out.append(sorted(found, key=order.__getitem__))
        return {"pronoun_groups": pa.array(out, pa.list_(pa.string()))}

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        col = columns["pronoun_groups"]
        out = count_values(col, DOCUMENTS_PREFIX)
        out["documents"] = int(ctx.in_scope.sum())
        for header, groups in HEADERS.items():
            out[DOCUMENTS_PREFIX + header] = count_rows_with_any(col, groups)
        return +out

    # -- report (Table 9a) ------------------------------------------------------------------------

    report_order = 10

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Table 9a: for each header, the share of in-scope documents with one of its words, and
        the share of those documents per group (a document can count in several groups), each with
        its 95% Wilson interval (``ci95``, ``rows_ci95``) and its documents (``rows_documents``).
        With ``--paper``, the paper's numbers beside ours (``paper_pct``, ``rows_paper_pct``)."""
        n = counts["documents"]
        paper = ctx.paper_table(PAPER_TABLE)
        section: dict = {"documents": n}
        for header, groups in HEADERS.items():
            with_header = counts[DOCUMENTS_PREFIX + header]
            in_group = {g: counts[DOCUMENTS_PREFIX + g] for g in groups}
            section[header] = {"pct": pct(with_header, n), "ci95": wilson_ci95(with_header, n),
                               **ctx.paper_json(paper.get(HEADER_ROWS[header][1])),
                               "documents": with_header,
                               "rows": {g: pct(k, with_header) for g, k in in_group.items()},
                               "rows_ci95": {g: wilson_ci95(k, with_header) for g, k in in_group.items()},
                               "rows_documents": in_group}
            if ctx.paper is not None:  # beside rows_ci95, the groups the paper has a number for
                paper_rows = {g: cls.paper_row(paper, g) for g in in_group}
                section[header]["rows_paper_pct"] = {g: v for g, v in paper_rows.items() if v is not None}
        return section

    @staticmethod
    def paper_row(paper: Mapping, group: str) -> float | None:
        """The paper's Table 9a number of one of our groups (None for a group it has not: a
        ``--pronoun-lexicon`` of other groups)."""
        return paper.get("rows_pct", {}).get(GROUP_ROWS[group][0]) if group in GROUP_ROWS else None

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        paper = ctx.paper_table(PAPER_TABLE)
        rows, documents = [], []
        for header in HEADERS:
            label, paper_key = HEADER_ROWS[header]
            sec = section[header]
            rows.append([label, pct_cell(sec["pct"], sec["ci95"])] + ctx.paper_cells(paper.get(paper_key)))
            documents.append(sec["documents"])
            for group, value in sec["rows"].items():
                paper_row, words = GROUP_ROWS[group]
                rows.append([f"  {paper_row} ({words})", pct_cell(value, sec["rows_ci95"][group])]
                            + ctx.paper_cells(paper.get("rows_pct", {}).get(paper_row)))
                documents.append(sec["rows_documents"][group])
        return [DisplayTable(cls.report_json_key(), "Table 9a: pronouns",
                             ["Gender pronouns / grammatical person", "% docs (95% CI)"] + ctx.paper_heading(), rows,
                             "row % = share of the documents counted in the header above it",
                             row_documents=documents)]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        paper = ctx.paper_table(PAPER_TABLE)
        rows = []
        for header in HEADERS:
            sec = section[header]
            rows.append([key, header, "(any)", sec["documents"], sec["pct"], ""] + sec["ci95"]
                        + ctx.paper_csv_cells(paper.get(HEADER_ROWS[header][1])))
            rows += [[key, header, group, sec["rows_documents"][group], value, ""] + sec["rows_ci95"][group]
                     + ctx.paper_csv_cells(cls.paper_row(paper, group))
                     for group, value in sec["rows"].items()]
        return rows

    @classmethod
    def report_figures(cls, section: dict, ctx: ReportContext) -> list[FigureSpec]:
        """Table 9a as bars: per header, the share of its documents in each group with its 95%
        interval, the paper's shares as markers (unless ``--no-paper``)."""
        paper_rows = ctx.paper_table(PAPER_TABLE).get("rows_pct", {})
        panels = []
        for header in HEADERS:
            sec = section[header]
            names = tuple(GROUP_ROWS[g][0] for g in sec["rows"])
            ci = sec.get("rows_ci95", {})
            series = [FigureSeries("this corpus (95% CI)", tuple(sec["rows"].values()),
                                   tuple(tuple(ci[g]) if g in ci else None for g in sec["rows"]))]
            if ctx.paper is not None:
                series.append(FigureSeries("Llama 2 (Table 9a)", tuple(paper_rows.get(n) for n in names), style="markers"))
            panels.append(FigurePanel(tuple(series), categories=names, title=HEADER_ROWS[header][0].split(" (")[0],
                                      y_label=f"% of the {sec['documents']:,} documents with one"))
        caption = (f"Of {section['documents']:,} in-scope documents, {section['gender']['documents']:,} have a gender "
                   f"pronoun and {section['person']['documents']:,} a grammatical-person pronoun; each bar is the share "
                   "of those documents with a word of the group (a document counts in several groups)")
        return [FigureSpec(cls.report_json_key(), cls.report_json_key(), "bars", "Pronouns (as Llama 2 Table 9a)",
                           caption, tuple(panels))]

