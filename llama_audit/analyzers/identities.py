"""Identity descriptors (Llama 2 Table 9b) on the five HolisticBias axes, over in-scope documents.

Columns: ``identity_axes`` (axes mentioned) and ``identity_terms`` (canonical terms mentioned,
tokens joined by a space), both null for out-of-scope documents. Counts: documents per axis
(``axis/<axis>``) and per term (``term/<axis>/<term>``). ``--lexicon FILE`` swaps in a user's
lexicon in the same format (other axes, other languages).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import pyarrow as pa

from llama_audit.analyzers._columns import count_values
import dataclasses

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, DocBatch, option
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.report.section import DisplayTable, ReportContext, pct, two_decimals
from llama_audit.text import tokenized

#: the five HolisticBias axes of Table 9b (the built-in lexicon's groups) and their names in the paper
AXIS_LABELS = {"religion": "Religion", "gender_and_sex": "Gender and Sex", "nationality": "Nationality",
               "race_ethnicity": "Race and Ethnicity", "sexual_orientation": "Sexual Orientation"}
AXES = tuple(AXIS_LABELS)
AXIS_PREFIX = "axis/"  # axis/<axis>: documents mentioning the axis
TERM_PREFIX = "term/"  # term/<axis>/<term>: documents mentioning the term
PAPER_TABLE = "table9b_identities"  # the paper's Table 9b in the reference numbers

BUILTIN_LEXICON = "identities.tsv"


@dataclasses.dataclass(frozen=True)
class IdentityOptions(AnalyzerOptions):
    lexicon: str | None = option(None, "Identity lexicon TSV (axis, descriptor) replacing HolisticBias.",
                                 flag="--lexicon", metavar="FILE")


@dataclasses.dataclass(frozen=True)
class IdentityReportOptions(AnalyzerOptions):
    top: int = option(5, "Descriptors shown per axis (Table 9b).", flag="--top",
                      check=lambda v: None if v >= 0 else "must be >= 0")


class IdentityAnalyzer(Analyzer):
    name = "identities"
    scoped = True
    Options = IdentityOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.lexicon = Lexicon.load(self.options.lexicon or builtin_path(BUILTIN_LEXICON))
        self._axis_of = {e.term: e.group for e in self.lexicon.entries}

    def config(self) -> dict:
        return {"lexicon": self.lexicon.source if self.options.lexicon else BUILTIN_LEXICON,
                "lexicon_sha256": self.lexicon.sha256, "axes": self.lexicon.groups}

    def fields(self) -> list[pa.Field]:
        return [pa.field("identity_axes", pa.list_(pa.string())),
                pa.field("identity_terms", pa.list_(pa.string()))]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        tb = tokenized(batch, ctx.in_scope)
        entries = self.lexicon.entries
        axes_out: list[list[str] | None] = []
        terms_out: list[list[str] | None] = []
        for i, scoped in enumerate(ctx.in_scope):
            if not scoped:
                axes_out.append(None)
                terms_out.append(None)
                continue
            hits = self.lexicon.match(tb, i)
            terms_out.append([entries[j].term for j in hits])
            axes: list[str] = []
            for j in hits:
                if entries[j].group not in axes:
                    axes.append(entries[j].group)
            axes_out.append(axes)
        return {"identity_axes": pa.array(axes_out, pa.list_(pa.string())),
                "identity_terms": pa.array(terms_out, pa.list_(pa.string()))}

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        out = count_values(columns["identity_axes"], AXIS_PREFIX)
        terms = count_values(columns["identity_terms"], "")
        for term, n in terms.items():
            out[f"{TERM_PREFIX}{self._axis_of[term]}/{term}"] = n
        out["documents"] = int(ctx.in_scope.sum())
        return +out

    # -- report (Table 9b) ------------------------------------------------------------------------

    ReportOptions = IdentityReportOptions
    report_order = 20

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Table 9b: per axis of the lexicon (recorded at scan time), the share of in-scope
        documents mentioning it, and every descriptor found, most frequent first, as a share of
        the documents mentioning the axis."""
        n = counts["documents"]
        terms: dict[str, list[tuple[str, int]]] = {}
        for key, v in counts.items():
            if key.startswith(TERM_PREFIX):
                axis, term = key.removeprefix(TERM_PREFIX).split("/", 1)
                terms.setdefault(axis, []).append((term, v))
        section = {}
        for axis in ctx.config.get("axes") or AXES:
            docs = counts[AXIS_PREFIX + axis]
            rows = sorted(terms.get(axis, []), key=lambda tv: (-tv[1], tv[0]))
            section[axis] = {"pct": pct(docs, n), "documents": docs,
                             "descriptors": [{"term": t, "documents": v, "pct": pct(v, docs)} for t, v in rows]}
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """The top ``--top`` descriptors per axis; the paper shows 5 (the CSV has them all)."""
        top = ctx.options.top
        paper = ctx.paper_table(PAPER_TABLE)
        rows = []
        for axis, sec in section.items():
            label = AXIS_LABELS.get(axis, axis)
            rows.append([label, "", two_decimals(sec["pct"]), sec["documents"]]
                        + ctx.paper_cells(paper.get("axis_pct_of_all_docs", {}).get(label)))
            paper_terms = dict(paper.get("top5_pct_of_docs_mentioning_axis", {}).get(label, []))
            for d in sec["descriptors"][:top]:
                rows.append(["", d["term"], two_decimals(d["pct"]), d["documents"]]
                            + ctx.paper_cells(paper_terms.get(d["term"])))
        return [DisplayTable(cls.report_json_key(), f"Table 9b: identity descriptors (top {top} per axis)",
                             ["axis", "descriptor", "%", "documents"] + ctx.paper_heading(), rows,
                             "axis % = of in-scope documents; descriptor % = of documents mentioning the axis",
                             text_columns=("descriptor",))]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = []
        for axis, sec in section.items():
            rows.append([key, axis, "(any)", sec["documents"], sec["pct"], ""])
            rows += [[key, axis, d["term"], d["documents"], d["pct"], ""] for d in sec["descriptors"]]
        return rows
