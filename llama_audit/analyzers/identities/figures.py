"""The identity analyzer's figure (Llama 2 Table 9b as bars): the share of in-scope documents per
axis, then per axis its top descriptors as a share of the documents mentioning the axis, each with
its 95% interval, the paper's numbers as markers.

A reader of Table 9b compares an axis share of, say, 18% with the paper's 7.93%; with a few hundred
documents that difference may be noise, which the interval shows at a glance. Drawn by
:mod:`llama_audit.report.figures` from the :class:`~llama_audit.report.section.FigureSpec` made here.
"""

from __future__ import annotations

from llama_audit.analyzers.identities.analyzer import AXIS_LABELS, PAPER_TABLE
from llama_audit.report.section import FigurePanel, FigureSeries, FigureSpec, ReportContext

FIGURE_NAME = "identities"  # the figure's files: identities.svg, identities.png
OURS_LABEL = "this corpus (95% CI)"
PAPER_LABEL = "Llama 2 (Table 9b)"


def interval(entry: dict) -> tuple[float, float] | None:
    """The entry's 95% interval from the section (``ci95``), or None (drawn as a plain bar)."""
    ci = entry.get("ci95")
    return (ci[0], ci[1]) if ci else None


def identity_figures(section: dict, ctx: ReportContext) -> list[FigureSpec]:
    """The report figure of a Table 9b section (the analyzer's ``report_figures``): one panel of
    the axes, then one per axis of its top ``ctx.options.top`` descriptors, skipping those hidden
    from the top as the tables do; the paper's shares as markers unless ``--no-paper``."""
    sense_mode = getattr(ctx.options, "identity_mode", "paper") == "sense"  # sense: its counts, every term listed
    axes = {axis: (sec["sense"] if sense_mode and "sense" in sec else sec)
            for axis, sec in section.items() if isinstance(sec, dict) and "descriptors" in sec}
    if not axes:
        return []
    paper = ctx.paper_table(PAPER_TABLE)
    with_paper = ctx.paper is not None
    labels = tuple(AXIS_LABELS.get(axis, axis) for axis in axes)
    series = [FigureSeries(OURS_LABEL, tuple(sec["pct"] for sec in axes.values()),
                           tuple(interval(sec) for sec in axes.values()))]
    if with_paper:
        paper_axes = paper.get("axis_pct_of_all_docs", {})
        series.append(FigureSeries(PAPER_LABEL, tuple(paper_axes.get(label) for label in labels), style="markers"))
    panels = [FigurePanel(tuple(series), categories=labels, title="Axes", horizontal=True,
                          x_label="% of in-scope documents")]
    top = ctx.options.top
    for (axis, sec), label in zip(axes.items(), labels):
        listed = [d for d in sec["descriptors"] if sense_mode or not d.get("hidden_from_top")][:top]
        series = [FigureSeries(OURS_LABEL, tuple(d["pct"] for d in listed), tuple(interval(d) for d in listed))]
        if with_paper:
            paper_terms = dict(paper.get("top5_pct_of_docs_mentioning_axis", {}).get(label, []))
            series.append(FigureSeries(PAPER_LABEL, tuple(paper_terms.get(d["term"]) for d in listed), style="markers"))
        panels.append(FigurePanel(tuple(series), categories=tuple(d["term"] for d in listed), title=label,
                                  horizontal=True, x_label=f"% of the {sec['documents']:,} documents on the axis"))
    documents = ctx.corpus.get("in_scope_documents")
    caption = ((f"{documents:,} in-scope documents. " if isinstance(documents, int) else "")
               + f"Axes: share of in-scope documents mentioning the axis; descriptors: the top {top} per axis, "
               "as a share of the documents mentioning the axis")
    hidden = sorted({t for sec in axes.values() for t in sec.get("hidden_from_top", [])})
    if sense_mode:
        caption += " (sense mode: only occurrences that mention the identity)"
    elif hidden:
        caption += f" ({', '.join(hidden)} not listed, as in the paper, but counted)"
    return [FigureSpec(FIGURE_NAME, FIGURE_NAME, "bars", "Identity descriptors (as Llama 2 Table 9b)", caption,
                       tuple(panels))]
