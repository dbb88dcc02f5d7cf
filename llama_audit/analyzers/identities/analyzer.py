"""Identity descriptors (Llama 2 Table 9b) on the five HolisticBias axes, over in-scope documents.

Columns: ``identity_axes`` (axes mentioned) and ``identity_terms`` (canonical terms mentioned,
tokens joined by a space), both null for out-of-scope documents. Counts: documents per axis
(``axis/<axis>``) and per term (``term/<axis>/<term>``). ``--lexicon FILE`` swaps in a user's
lexicon in the same format (other axes, other languages).

Two counting modes (docs/methodology.md): ``paper`` counts a descriptor wherever its tokens occur,
as the Llama 2 paper did; ``sense`` counts only occurrences that mention the identity (the rules
of ``lexicons/identity_senses.tsv``, :mod:`.senses`). Every scan counts both, in one pass, into
the same partials (``sense/axis/...``, ``sense/term/...``), so ``report --identity-mode`` can show
either from the same OUT; ``scan --identity-mode`` chooses which one the annotation columns follow.

Terms the lexicon marks ``hidden_from_top`` (built in: straight, white, black) are counted like any
other -- toward their axis, in the descriptor shares' denominator, in the full descriptor list --
and only left out of the top-N tables: that is what the Llama 2 paper did (docs/methodology.md
shows it from the paper's own numbers), so our axis percentages compare with its.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Mapping

import pyarrow as pa

from llama_audit.analyzers._columns import count_values
from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, DocBatch, option
from llama_audit.analyzers.identities.senses import BUILTIN_SENSES, SenseRules
from llama_audit.analyzers.identities import examples as review  # review samples (--keep-examples, --examples)
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.types import ConfigError
from llama_audit.report.section import DisplayTable, ReportContext, pct, pct_cell, wilson_ci95
from llama_audit.text import tokenized

#: the five HolisticBias axes of Table 9b (the built-in lexicon's groups) and their names in the paper
AXIS_LABELS = {"religion": "Religion", "gender_and_sex": "Gender and Sex", "nationality": "Nationality",
               "race_ethnicity": "Race and Ethnicity", "sexual_orientation": "Sexual Orientation"}
AXES = tuple(AXIS_LABELS)
AXIS_PREFIX = "axis/"  # axis/<axis>: documents mentioning the axis
TERM_PREFIX = "term/"  # term/<axis>/<term>: documents mentioning the term
SENSE_PREFIX = "sense/"  # sense/axis/..., sense/term/...: the same counts in sense mode
MODES = ("paper", "sense")
PAPER_TABLE = "table9b_identities"  # the paper's Table 9b in the reference numbers

BUILTIN_LEXICON = "identities.tsv"


@dataclasses.dataclass(frozen=True)
class IdentityOptions(AnalyzerOptions):
    lexicon: str | None = option(None, "Identity lexicon TSV (axis, descriptor) replacing HolisticBias.",
                                 flag="--lexicon", metavar="FILE")
    identity_mode: str = option("paper", "Which counting mode the identity_axes/identity_terms annotation columns "
                                         "follow: paper (every occurrence, as Llama 2) or sense (only occurrences "
                                         "that mention the identity). The counts hold both either way.",
                                flag="--identity-mode", choices=MODES)
    senses: str | None = option(None, "Sense-mode rules TSV replacing lexicons/identity_senses.tsv.",
                                flag="--identity-senses", metavar="FILE")
    # review samples (identities/examples.py); 0: none, and the configuration stays as without them
    keep_examples: int = option(0, "Keep K review samples per descriptor and language (shard, row, a +-80 "
                                   "character window with PII masked) for report --examples.",
                                flag="--keep-examples", metavar="K", check=review.check_keep_examples)
    examples_pii_region: str = option("US", "Region of phone numbers without a leading + when masking review "
                                            "samples (as --pii-region).", check=review.check_region)


@dataclasses.dataclass(frozen=True)
class IdentityReportOptions(AnalyzerOptions):
    top: int = option(5, "Descriptors shown per axis (Table 9b), after skipping the terms the lexicon hides from "
                         "the top (built in: straight, white, black, as in the paper).", flag="--top",
                      check=lambda v: None if v >= 0 else "must be >= 0")
    identity_mode: str = option("paper", "Which counts Table 9b shows: paper (as Llama 2 counted) or sense (only "
                                         "occurrences that mention the identity; docs/methodology.md).",
                                flag="--identity-mode", choices=MODES)
    sense_gap: float = option(0.2, "In paper mode, mark descriptors of which sense mode counts at least this share "
                                   "of documents fewer (0.2: a fifth).", flag="--sense-gap",
                              check=lambda v: None if 0 <= v <= 1 else "must be between 0 and 1")
    # review samples kept by scan --keep-examples (identities/examples.py)
    examples: bool = option(False, "Show the review samples of every descriptor (scan --keep-examples): where each "
                                   "document is and its context, PII masked.", flag="--examples/--no-examples")
    examples_terms: tuple[str, ...] = option((), "Show the review samples of these descriptors only (implies "
                                                 "--examples).", flag="--examples-terms", metavar="TERM,...")


class IdentityAnalyzer(Analyzer):
    name = "identities"
    scoped = True
    Options = IdentityOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.lexicon = Lexicon.load(self.options.lexicon or builtin_path(BUILTIN_LEXICON))
        if review.EXAMPLES_KEY in self.lexicon.groups:  # the report section's key of the review samples
            raise ConfigError(f"{self.lexicon.source}: the axis name {review.EXAMPLES_KEY!r} is reserved; rename it")
        self.senses = SenseRules.load(self.options.senses or builtin_path(BUILTIN_SENSES))
        self.sense_matcher = self.senses.bind(self.lexicon)
        self._axis_of = {e.term: e.group for e in self.lexicon.entries}

    def config(self) -> dict:
        return {"lexicon": self.lexicon.source if self.options.lexicon else BUILTIN_LEXICON,
                "lexicon_sha256": self.lexicon.sha256, "axes": self.lexicon.groups,
                # the report runs from OUT without the lexicon: it learns which terms to hide here
                "hidden_from_top": self.lexicon.hidden_from_top(),
                "identity_mode": self.options.identity_mode,
                "senses": self.senses.source if self.options.senses else BUILTIN_SENSES,
                "senses_version": self.senses.version, "senses_sha256": self.senses.sha256,
                "sense_terms": sorted(t for t in self.senses.rules if t in self._axis_of)}

    def fields(self) -> list[pa.Field]:
        return [pa.field("identity_axes", pa.list_(pa.string())),
                pa.field("identity_terms", pa.list_(pa.string()))]

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """``<axis>`` (``religion``, ``gender_and_sex``, ...): ``[[0, chars, 1.0]]`` for each axis
        mentioned (in the scan's ``--identity-mode``); nothing out of scope. Terms stay in the
        annotations (hundreds of descriptors would make hundreds of attribute names)."""
        if "identity_axes" not in columns:
            return None
        return [{axis: [[0, n, 1.0]] for axis in axes or ()}
                for axes, n in zip(columns["identity_axes"].to_pylist(), columns["chars"].to_pylist())]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        """The annotation columns of ``--identity-mode``, plus both modes' columns under
        ``<column>:paper`` and ``<column>:sense``: those reach :meth:`fold` (which counts both
        modes) and are not written (only :meth:`fields` are)."""
        tb = tokenized(batch, ctx.in_scope)
        entries = self.lexicon.entries
        counted = self.sense_matcher.counted
        texts = batch.texts
        by_mode: dict[str, tuple[list, list]] = {mode: ([], []) for mode in MODES}
        for i, scoped in enumerate(ctx.in_scope):
            if not scoped:
                for axes_out, terms_out in by_mode.values():
                    axes_out.append(None)
                    terms_out.append(None)
                continue
            hits = self.lexicon.match(tb, i)
            for mode, found in (("paper", hits), ("sense", counted(texts[i], hits))):
                axes_out, terms_out = by_mode[mode]
                terms_out.append([entries[j].term for j in found])
                axes: list[str] = []
                for j in found:
                    if entries[j].group not in axes:
                        axes.append(entries[j].group)
                axes_out.append(axes)
        columns: dict[str, pa.Array] = {}
        for mode, (axes_out, terms_out) in by_mode.items():
            columns[f"identity_axes:{mode}"] = pa.array(axes_out, pa.list_(pa.string()))
            columns[f"identity_terms:{mode}"] = pa.array(terms_out, pa.list_(pa.string()))
        mode = self.options.identity_mode
        columns["identity_axes"] = columns[f"identity_axes:{mode}"]
        columns["identity_terms"] = columns[f"identity_terms:{mode}"]
        return columns

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        """Documents per axis and per term, in both modes (sense mode's under ``sense/``)."""
        out: Counter = Counter()
        for mode, prefix in (("paper", ""), ("sense", SENSE_PREFIX)):
            out.update(count_values(columns[f"identity_axes:{mode}"], prefix + AXIS_PREFIX))
            for term, n in count_values(columns[f"identity_terms:{mode}"], "").items():
                out[f"{prefix}{TERM_PREFIX}{self._axis_of[term]}/{term}"] = n
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
        (an OUT scanned before terms could be hidden has none).

        The keys above are paper mode's, whatever ``--identity-mode``; an OUT scanned with sense
        mode in its partials adds, per axis, ``sense`` (the same numbers in sense mode) and, per
        descriptor, ``sense_documents``. With ``--paper``, ``paper_pct`` beside the ``pct`` of each
        axis and of each descriptor the paper lists (paper mode: the paper counted so)."""
        n = counts["documents"]
        has_sense = "senses_sha256" in ctx.config
        if not has_sense and getattr(ctx.options, "identity_mode", "paper") == "sense":
            raise ConfigError("this OUT was scanned before sense mode existed: it holds paper-mode identity counts "
                              "only; rescan it (scan ... --overwrite) for --identity-mode sense")
        hidden: Mapping[str, list[str]] = ctx.config.get("hidden_from_top") or {}
        paper_terms = _terms_by_axis(counts, TERM_PREFIX)
        sense_terms = _terms_by_axis(counts, SENSE_PREFIX + TERM_PREFIX)
        paper = ctx.paper_table(PAPER_TABLE)
        section = {}
        for axis in ctx.config.get("axes") or AXES:
            paper_axis, paper_top = cls.paper_numbers(paper, axis)
            docs = counts[AXIS_PREFIX + axis]
            hidden_here = list(hidden.get(axis, []))
            sense_of = dict(sense_terms.get(axis, []))
            descriptors = []
            for t, v in _by_count(paper_terms.get(axis, [])):
                d = {"term": t, "documents": v, "pct": pct(v, docs), "ci95": wilson_ci95(v, docs),
                     **ctx.paper_json(paper_top.get(t)), "hidden_from_top": t in hidden_here}
                if has_sense:
                    d["sense_documents"] = sense_of.get(t, 0)
                descriptors.append(d)
            section[axis] = {"pct": pct(docs, n), "ci95": wilson_ci95(docs, n), **ctx.paper_json(paper_axis),
                             "documents": docs,
                             "hidden_from_top": hidden_here, "descriptors": descriptors}
            if has_sense:
                sense_docs = counts[SENSE_PREFIX + AXIS_PREFIX + axis]
                section[axis]["sense"] = {
                    "pct": pct(sense_docs, n), "ci95": wilson_ci95(sense_docs, n), "documents": sense_docs,
                    "descriptors": [{"term": t, "documents": v, "pct": pct(v, sense_docs), "ci95": wilson_ci95(v, sense_docs)}
                                    for t, v in _by_count(sense_terms.get(axis, []))]}
        if (examples := cls.report_examples(counts, ctx)) is not None:  # report --examples
            section[review.EXAMPLES_KEY] = examples
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """The top ``--top`` descriptors per axis; the paper shows 5 (the JSON and CSV have them all).

        Paper mode skips the terms hidden from the top (the note names them with their documents)
        and marks with † each listed descriptor of which sense mode counts at least ``--sense-gap``
        of the documents fewer. Sense mode lists every term (white, black and straight count there
        only where they describe people) and says that the Llama 2 column counted otherwise."""
        top = ctx.options.top
        sense_mode = ctx.options.identity_mode == "sense"
        gap = ctx.options.sense_gap
        paper = ctx.paper_table(PAPER_TABLE)
        rows = []
        documents = []  # each row's documents (report --min-docs)
        not_listed = []  # "axis: term (n documents), ..." per axis with hidden terms
        marked = 0
        for axis, sec in axis_sections(section):
            label = AXIS_LABELS.get(axis, axis)
            shown = sec["sense"] if sense_mode else sec
            rows.append([label, "", pct_cell(shown["pct"], shown.get("ci95")), shown["documents"]]
                        + ctx.paper_cells(paper.get("axis_pct_of_all_docs", {}).get(label)))
            documents.append(shown["documents"])
            paper_terms = dict(paper.get("top5_pct_of_docs_mentioning_axis", {}).get(label, []))
            if sense_mode:
                listed = shown["descriptors"]
            else:
                listed = [d for d in sec["descriptors"] if not d.get("hidden_from_top")]
            for d in listed[:top]:
                term = d["term"]
                if not sense_mode and "sense_documents" in d and d["documents"] - d["sense_documents"] >= gap * d["documents"] > 0:
                    term += " \u2020"
                    marked += 1
                rows.append(["", term, pct_cell(d["pct"], d.get("ci95")), d["documents"]]
                            + ctx.paper_cells(paper_terms.get(d["term"])))
                documents.append(d["documents"])
            if sec.get("hidden_from_top") and not sense_mode:
                found = {d["term"]: d["documents"] for d in sec["descriptors"]}
                not_listed.append(f"{label}: " + ", ".join(f"{t} ({found.get(t, 0)} documents)"
                                                          for t in sec["hidden_from_top"]))
        note = "axis % = of in-scope documents; descriptor % = of documents mentioning the axis"
        if not_listed:
            note += ("; not listed, as in the paper, but counted in their axis % and in the descriptor % "
                     "denominator: " + "; ".join(not_listed))
        if marked:
            note += (f"; \u2020 sense mode counts at least {gap:.0%} fewer documents of this descriptor: most of its "
                     "occurrences are other words (report --identity-mode sense)")
        if sense_mode:
            note += ("; sense mode: only occurrences that mention the identity are counted (docs/methodology.md), "
                     "unlike the Llama 2 paper")
        title = f"Table 9b: identity descriptors (top {top} per axis{', sense mode' if sense_mode else ''})"
        return [DisplayTable(cls.report_json_key(), title,
                             ["axis", "descriptor", "% (95% CI)", "documents"] + ctx.paper_heading(), rows, note,
                             text_columns=("descriptor",), row_documents=documents)] + cls.example_tables(section, ctx)

    @classmethod
    def report_figures(cls, section: dict, ctx: ReportContext) -> list:
        """Per-axis descriptor bars with their intervals (identities/figures.py)."""
        from llama_audit.analyzers.identities.figures import identity_figures  # lazy: it imports this module
        return identity_figures(section, ctx)

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        """Every axis and descriptor in paper mode (table ``identities``), then in sense mode
        (table ``identities.sense``) when the OUT holds it."""
        key = cls.report_json_key()
        paper = ctx.paper_table(PAPER_TABLE)
        rows = []
        for table, mode in ((key, None), (f"{key}.sense", "sense")):
            for axis, sec in axis_sections(section):
                shown = sec.get(mode) if mode else sec
                if shown is None:
                    continue
                # the paper's numbers beside paper mode's (--paper); sense mode's rows get an empty cell
                paper_axis, paper_top = cls.paper_numbers(paper if mode is None else {}, axis)
                rows.append([table, axis, "(any)", shown["documents"], shown["pct"], ""] + list(shown.get("ci95") or ["", ""])
                            + ctx.paper_csv_cells(paper_axis))
                rows += [[table, axis, d["term"], d["documents"], d["pct"], ""] + list(d.get("ci95") or ["", ""])
                         + ctx.paper_csv_cells(paper_top.get(d["term"]))
                         for d in shown["descriptors"]]
        return rows

    @staticmethod
    def paper_numbers(paper: Mapping, axis: str) -> tuple[float | None, dict[str, float]]:
        """The paper's Table 9b numbers of one of our axes: its share of documents (None when the
        paper has none: an axis of a user's ``--lexicon``) and ``{term: share}`` of its top 5."""
        label = AXIS_LABELS.get(axis, axis)
        return (paper.get("axis_pct_of_all_docs", {}).get(label),
                dict(paper.get("top5_pct_of_docs_mentioning_axis", {}).get(label, [])))

    # -- review samples (scan --keep-examples, report --examples): identities/examples.py ---------------

    def review_sampling(self) -> dict | None:
        return review.sampling_declaration(self.options.keep_examples, self.options.examples_pii_region.upper())

    def review_samples(self, batch: DocBatch, columns: Mapping[str, pa.Array], ctx: BatchContext):
        sampler = getattr(self, "_example_sampler", None)
        if sampler is None:
            sampler = self._example_sampler = review.ExampleSampler(self._axis_of,
                                                                    self.options.examples_pii_region.upper(),
                                                                    self.sense_matcher)
        by_mode = {mode: columns[f"identity_terms:{mode}"] for mode in MODES if f"identity_terms:{mode}" in columns}
        if not by_mode:
            by_mode = {self.options.identity_mode: columns["identity_terms"]}
        # the document's language: the scope provider's column (the language analyzer runs first)
        return sampler.candidates(batch, by_mode, ctx.columns.get(review.LANGUAGE_COLUMN))

    @classmethod
    def report_examples(cls, counts: Counter, ctx: ReportContext) -> list | None:
        """The section's ``examples`` with ``--examples`` / ``--examples-terms`` (else None)."""
        options = ctx.options
        wanted = tuple(getattr(options, "examples_terms", ()) or ())
        if not (getattr(options, "examples", False) or wanted):
            return None
        mode = getattr(options, "identity_mode", "paper")
        prefix = (SENSE_PREFIX if mode == "sense" else "") + TERM_PREFIX
        known = {k.removeprefix(prefix).split("/", 1)[1] for k in counts if k.startswith(prefix)}
        return review.report_examples(ctx.samples, mode, wanted, known)

    @classmethod
    def example_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        return review.example_tables(cls.report_json_key(), section.get(review.EXAMPLES_KEY) or [], AXIS_LABELS)


def axis_sections(section: Mapping) -> list[tuple[str, dict]]:
    """``(axis, its section)`` of the identities report section, in order, without the keys that
    are no axis (``examples``: the review samples of report --examples)."""
    return [(axis, sec) for axis, sec in section.items() if axis != review.EXAMPLES_KEY]


def _terms_by_axis(counts: Mapping[str, int], prefix: str) -> dict[str, list[tuple[str, int]]]:
    """``{axis: [(term, documents), ...]}`` of the counts keyed ``<prefix><axis>/<term>``."""
    terms: dict[str, list[tuple[str, int]]] = {}
    for key, v in counts.items():
        if key.startswith(prefix):
            axis, term = key.removeprefix(prefix).split("/", 1)
            terms.setdefault(axis, []).append((term, v))
    return terms


def _by_count(rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Most documents first, ties by term (a stable order for the JSON and the tables)."""
    return sorted(rows, key=lambda tv: (-tv[1], tv[0]))
