"""Identity descriptors (Llama 2 Table 9b) on the five HolisticBias axes, over in-scope documents.

Columns: ``identity_axes`` (axes mentioned) and ``identity_terms`` (canonical terms mentioned,
tokens joined by a space), both null for out-of-scope documents. Counts: documents per axis
(``axis/<axis>``) and per term (``term/<axis>/<term>``). ``--lexicon FILE`` swaps in a user's
lexicon in the same format (other axes, other languages).

Terms the lexicon marks ``hidden_from_top`` (built in: straight, white, black) are counted like any
other -- toward their axis, in the descriptor shares' denominator, in the full descriptor list --
and only left out of the top-N tables: that is what the Llama 2 paper did (docs/methodology.md
shows it from the paper's own numbers), so our axis percentages compare with its.
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
    top: int = option(5, "Descriptors shown per axis (Table 9b), after skipping the terms the lexicon hides from "
                         "the top (built in: straight, white, black, as in the paper).", flag="--top",
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
                "lexicon_sha256": self.lexicon.sha256, "axes": self.lexicon.groups,
                # the report runs from OUT without the lexicon: it learns which terms to hide here
                "hidden_from_top": self.lexicon.hidden_from_top()}

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
        the documents mentioning the axis. Terms hidden from the top listing are counted and
        listed here like the others, marked ``hidden_from_top``; each axis names its hidden terms
        (an OUT scanned before terms could be hidden has none)."""
        n = counts["documents"]
        hidden: Mapping[str, list[str]] = ctx.config.get("hidden_from_top") or {}
        terms: dict[str, list[tuple[str, int]]] = {}
        for key, v in counts.items():
            if key.startswith(TERM_PREFIX):
                axis, term = key.removeprefix(TERM_PREFIX).split("/", 1)
                terms.setdefault(axis, []).append((term, v))
        section = {}
        for axis in ctx.config.get("axes") or AXES:
            docs = counts[AXIS_PREFIX + axis]
            rows = sorted(terms.get(axis, []), key=lambda tv: (-tv[1], tv[0]))
            hidden_here = list(hidden.get(axis, []))
            section[axis] = {"pct": pct(docs, n), "documents": docs, "hidden_from_top": hidden_here,
                             "descriptors": [{"term": t, "documents": v, "pct": pct(v, docs),
                                              "hidden_from_top": t in hidden_here} for t, v in rows]}
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """The top ``--top`` descriptors per axis, skipping those hidden from the top (the note
        names them with their documents); the paper shows 5 (the JSON and CSV have them all)."""
        top = ctx.options.top
        paper = ctx.paper_table(PAPER_TABLE)
        rows = []
        not_listed = []  # "axis: term (n documents), ..." per axis with hidden terms
        for axis, sec in section.items():
            label = AXIS_LABELS.get(axis, axis)
            rows.append([label, "", two_decimals(sec["pct"]), sec["documents"]]
                        + ctx.paper_cells(paper.get("axis_pct_of_all_docs", {}).get(label)))
            paper_terms = dict(paper.get("top5_pct_of_docs_mentioning_axis", {}).get(label, []))
            listed = [d for d in sec["descriptors"] if not d.get("hidden_from_top")]
            for d in listed[:top]:
                rows.append(["", d["term"], two_decimals(d["pct"]), d["documents"]]
                            + ctx.paper_cells(paper_terms.get(d["term"])))
            if sec.get("hidden_from_top"):
                found = {d["term"]: d["documents"] for d in sec["descriptors"]}
                not_listed.append(f"{label}: " + ", ".join(f"{t} ({found.get(t, 0)} documents)"
                                                          for t in sec["hidden_from_top"]))
        note = "axis % = of in-scope documents; descriptor % = of documents mentioning the axis"
        if not_listed:
            note += ("; not listed, as in the paper, but counted in their axis % and in the descriptor % "
                     "denominator: " + "; ".join(not_listed))
        return [DisplayTable(cls.report_json_key(), f"Table 9b: identity descriptors (top {top} per axis)",
                             ["axis", "descriptor", "%", "documents"] + ctx.paper_heading(), rows, note,
                             text_columns=("descriptor",))]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = []
        for axis, sec in section.items():
            rows.append([key, axis, "(any)", sec["documents"], sec["pct"], ""])
            rows += [[key, axis, d["term"], d["documents"], d["pct"], ""] for d in sec["descriptors"]]
        return rows
