"""Identity × toxicity: how often documents that mention an identity group score toxic, against all.

Why this table exists. The toxicity classifier of Llama 2 section 4.1 (HateBERT fine-tuned on
ToxiGen) was trained on text about 13 minority groups, and ToxiGen's authors (Hartvigsen et al.
2022, arXiv:2203.09509) show that classifiers of this kind over-score benign text that merely
*mentions* a group; Sap et al. (2019, ACL) and Dixon et al. (2018, AIES) found the same of earlier
classifiers. A corpus audit that reports "x% of documents are toxic" next to "y% mention Muslims"
does not say whether the two overlap. This section does: for each identity axis and each of its
descriptors, the share of scored documents that mention it with document toxicity >= 0.5, beside
that share over all scored documents, each with its 95% Wilson interval, and their ratio. A ratio
well above 1 is a cue to read the documents (the corpus may hold hate speech about the group, or
the classifier may over-score the group's name): filtering by the toxicity score would then remove
that group's mentions first — the demographic erasure Llama 2 section 4.1 warns of.

Counts (additive integers, in the partials, so they merge across shards, workers and machines):

- ``scored``, ``ge_0_5``: documents with a toxicity score, and those scoring >= 0.5;
- ``<mode>/axis/<axis>/scored``, ``<mode>/axis/<axis>/ge_0_5``: the same among documents that
  mention the axis in identity counting mode ``<mode>`` (``paper`` or ``sense``, both counted in
  every scan, as the identities analyzer does);
- ``<mode>/term/<term>/scored``, ``<mode>/term/<term>/ge_0_5``: the same per descriptor.

A term's axis is the identities analyzer's (its report section, seen at report time: the lexicon
maps each term to one axis). The report follows ``report --identity-mode`` and ``--top`` (flags
shared with the identities analyzer's Table 9b).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, DocBatch, option
from llama_audit.analyzers.identities.analyzer import AXIS_LABELS, MODES, axis_sections
from llama_audit.analyzers.toxicity.lines import THRESHOLD
from llama_audit.report.section import DisplayTable, ReportContext, pct, pct_cell, wilson_ci95

#: the analyzers whose columns this one folds: the identity mentions and the document toxicity score
IDENTITIES = "identities"
TOXICITY = "toxicity"
#: the toxicity analyzer's document score (mean of its line scores; null when not scored)
SCORE_COLUMN = "toxicity_mean"
#: the identities analyzer's per-mode columns (``annotate`` hands both modes to later analyzers)
AXES_COLUMN = "identity_axes:{mode}"
TERMS_COLUMN = "identity_terms:{mode}"

SCORED, TOXIC = "scored", "ge_0_5"  # count suffixes: documents scored, documents scoring >= THRESHOLD
AXIS_KEY = "{mode}/axis/{axis}/"
TERM_KEY = "{mode}/term/{term}/"
UNKNOWN_AXIS = "unknown"  # terms the identities section does not list (it did not run: never via a scan)

CITATION = ("the classifier may over-score text that merely mentions a group (ToxiGen, Hartvigsen et al. 2022); "
            "filtering on its score would then remove that group first (Llama 2, section 4.1)")


@dataclasses.dataclass(frozen=True)
class IdentityToxicityReportOptions(AnalyzerOptions):
    # the same flags as the identities analyzer's Table 9b: one --top and one --identity-mode set both
    top: int = option(5, "Descriptors shown per axis, after skipping the terms the lexicon hides from the top "
                         "(paper mode), most scored documents first.", flag="--top",
                      check=lambda v: None if v >= 0 else "must be >= 0")
    identity_mode: str = option("paper", "Which identity counts the table follows: paper or sense "
                                         "(docs/methodology.md).", flag="--identity-mode", choices=MODES)


class IdentityToxicityAnalyzer(Analyzer):
    name = "identity_toxicity"
    requires = (IDENTITIES, TOXICITY)
    scoped = True
    ReportOptions = IdentityToxicityReportOptions
    report_order = 45  # after toxicity's Figure 13 (40), before PII (50)

    def fields(self) -> list[pa.Field]:
        return []  # no annotation of its own: the identities and toxicity columns say it all

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        """The required analyzers' columns this analyzer folds (not written: :meth:`fields` is empty)."""
        wanted = [SCORE_COLUMN] + [c.format(mode=m) for m in MODES for c in (AXES_COLUMN, TERMS_COLUMN)]
        missing = [c for c in wanted if c not in ctx.columns]
        if missing:
            raise RuntimeError(f"{self.name}: the columns {', '.join(missing)} of {IDENTITIES}/{TOXICITY} "
                               "are missing from this batch")
        return {c: ctx.columns[c] for c in wanted}

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        """Scored and toxic documents, overall and per axis and descriptor in both counting modes."""
        score = columns[SCORE_COLUMN]
        scored = pc.is_valid(score).to_numpy(zero_copy_only=False).astype(bool)
        values = np.asarray(pc.fill_null(score, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
        toxic = scored & (values >= THRESHOLD)
        out: Counter = Counter({SCORED: int(scored.sum()), TOXIC: int(toxic.sum())})
        for mode in MODES:
            for column, key in ((AXES_COLUMN, AXIS_KEY), (TERMS_COLUMN, TERM_KEY)):
                lists = columns[column.format(mode=mode)]
                flat = pc.list_flatten(lists)
                if len(flat) == 0:
                    continue
                rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
                for value, mask in ((SCORED, scored), (TOXIC, toxic)):
                    kept = pc.filter(flat, pa.array(mask[rows]))
                    for name, n in _value_counts(kept).items():
                        out[key.format(mode=mode, axis=name, term=name) + value] += n
        return +out

    # -- report -----------------------------------------------------------------------------------

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Overall, per axis and per descriptor (all of them, most scored documents first, ties by
        term): documents scored, documents >= 0.5, that share with its 95% Wilson interval, and the
        ratio of the share to the overall share (null where the overall share is 0), in the
        counting mode of ``--identity-mode``. Axes, their order, each term's axis and the terms
        hidden from the top listing are the identities section's."""
        mode = ctx.options.identity_mode
        identities = ctx.required.get(IDENTITIES) or {}
        n, k = counts[SCORED], counts[TOXIC]
        overall = k / n if n else 0.0
        axis_of, hidden, order = _identity_layout(identities)
        terms: dict[str, list[dict]] = {}
        prefix = TERM_KEY.format(mode=mode, term="").removesuffix("/")  # <mode>/term/
        for key, v in counts.items():
            if key.startswith(prefix) and key.endswith("/" + SCORED):
                term = key[len(prefix):-len(SCORED) - 1]
                axis = axis_of.get(term, UNKNOWN_AXIS)
                row = {"term": term, **_share(v, counts[prefix + term + "/" + TOXIC], overall),
                       "hidden_from_top": term in hidden.get(axis, ())}
                terms.setdefault(axis, []).append(row)
        axes = order + sorted({key.split("/")[2] for key in counts if key.startswith(f"{mode}/axis/")} - set(order))
        if terms.get(UNKNOWN_AXIS):
            axes.append(UNKNOWN_AXIS)
        section: dict[str, Any] = {"identity_mode": mode, "threshold": THRESHOLD, "documents_scored": n,
                                   "documents_ge_0_5": k, "pct_ge_0_5": pct(k, n), "pct_ge_0_5_ci95": wilson_ci95(k, n),
                                   "axes": {}}
        for axis in axes:
            base = AXIS_KEY.format(mode=mode, axis=axis)
            section["axes"][axis] = {
                **_share(counts[base + SCORED], counts[base + TOXIC], overall),
                "hidden_from_top": list(hidden.get(axis, ())),
                "descriptors": sorted(terms.get(axis, []), key=lambda d: (-d["documents_scored"], d["term"]))}
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """All scored documents, then per axis its share and its top ``--top`` descriptors (paper
        mode skips the terms hidden from the top, as Table 9b does, and the note names them)."""
        top = ctx.options.top
        sense = section.get("identity_mode") == "sense"
        rows = [["all scored documents", "", *_cells(section, 1.0 if section["documents_scored"] else None)]]
        documents: list[int | None] = [None]
        not_listed = []
        for axis, sec in section["axes"].items():
            rows.append([AXIS_LABELS.get(axis, axis), "", *_cells(sec, sec["ratio"])])
            documents.append(sec["documents_scored"])
            listed = [d for d in sec["descriptors"] if sense or not d["hidden_from_top"]]
            for d in listed[:top]:
                rows.append(["", d["term"], *_cells(d, d["ratio"])])
                documents.append(d["documents_scored"])
            if not sense:
                not_listed += [f"{d['term']} ({d['documents_scored']} scored)" for d in sec["descriptors"]
                               if d["hidden_from_top"]]
        note = (f"% toxic = scored documents with a document toxicity score >= {section['threshold']} among those that "
                f"mention the axis or descriptor ({section['identity_mode']} mode); ratio = that share / the share "
                "among all scored documents")
        if not_listed:
            note += "; not listed, as in Table 9b, but counted in their axis: " + ", ".join(not_listed)
        note += f"; {CITATION}"
        title = f"Identity \u00d7 toxicity (top {top} descriptors per axis{', sense mode' if sense else ''})"
        return [DisplayTable(cls.report_json_key(), title,
                             ["axis", "descriptor", "scored", "% toxic (95% CI)", "ratio"], rows, note,
                             text_columns=("descriptor",), row_documents=documents)]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        """Every axis and descriptor (table ``identity_toxicity``: scored documents, % toxic and its
        interval), then their ratios to the overall share (table ``identity_toxicity.ratio``)."""
        key = cls.report_json_key()
        shares = [[key, "", "(all scored)", section["documents_scored"], section["pct_ge_0_5"], ""]
                  + list(section["pct_ge_0_5_ci95"])]
        ratios = []
        for axis, sec in section["axes"].items():
            for label, d in [("(any)", sec)] + [(d["term"], d) for d in sec["descriptors"]]:
                shares.append([key, axis, label, d["documents_scored"], d["pct_ge_0_5"], ""] + list(d["pct_ge_0_5_ci95"]))
                ratios.append([f"{key}.ratio", axis, label, d["documents_scored"], "" if d["ratio"] is None else d["ratio"], ""])
        return shares + ratios


def _value_counts(values: pa.Array) -> dict[str, int]:
    if len(values) == 0:
        return {}
    vc = pc.value_counts(values)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def _share(scored: int, toxic: int, overall: float) -> dict:
    """One row's numbers: documents scored and >= 0.5, the share, its interval, and the ratio of
    the share to ``overall`` (the overall share as a fraction; null where it or ``scored`` is 0)."""
    return {"documents_scored": scored, "documents_ge_0_5": toxic, "pct_ge_0_5": pct(toxic, scored),
            "pct_ge_0_5_ci95": wilson_ci95(toxic, scored),
            "ratio": round(toxic / scored / overall, 6) if overall and scored else None}


def _cells(d: Mapping, ratio: float | None) -> list:
    """Scored documents, % toxic with its interval (empty when none was scored), the ratio."""
    share = pct_cell(d["pct_ge_0_5"], d["pct_ge_0_5_ci95"]) if d["documents_scored"] else ""
    return [d["documents_scored"], share, "" if ratio is None else f"{ratio:.2f}"]


def _identity_layout(identities: Mapping) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """From the identities report section: each term's axis (paper and sense descriptors), the
    terms each axis hides from the top listing, and the axes in order."""
    axis_of: dict[str, str] = {}
    hidden: dict[str, list[str]] = {}
    order: list[str] = []
    for axis, sec in axis_sections(identities):
        if not isinstance(sec, Mapping) or "descriptors" not in sec:
            continue
        order.append(axis)
        hidden[axis] = list(sec.get("hidden_from_top") or [])
        for d in list(sec["descriptors"]) + list((sec.get("sense") or {}).get("descriptors") or []):
            axis_of.setdefault(d["term"], axis)
    return axis_of, hidden, order
