"""The toxicity analyzer's report section (Llama 2, section 4.1, Figure 13).

The paper scores a 10% sample of the English corpus with HateBERT fine-tuned on ToxiGen, one line
at a time, averages the lines of a document, and finds about 0.2% of documents at 0.5 or above.
The section says the same of this corpus: that share with its 95% Wilson interval (over the
documents scored: the sample when one was drawn), quantiles of the document scores and their histogram (drawn as a figure in HTML).
:mod:`~llama_audit.analyzers.toxicity.summary` reads the numbers from the counts; this module
shapes and draws them.
"""

from __future__ import annotations

import math
from collections import Counter

from llama_audit.analyzers.toxicity.lines import THRESHOLD
from llama_audit.analyzers.toxicity.model import DEFAULT_MODEL
from llama_audit.analyzers.toxicity.summary import summarize_toxicity
from llama_audit.report.section import (DisplayTable, FigurePanel, FigureSeries, FigureSpec, ReportContext,
                                         pct_cell, wilson_ci95)

PAPER_NOTE = "Llama 2: about 0.2% of documents >= 0.5 (Figure 13)"
PAPER_TABLE = "figure13_toxicity"  # the paper's Figure 13 in the reference numbers
PAPER_SHARE_KEY = "pct_docs_ge_0_5"  # its share of documents >= 0.5 there ("about 0.2%", section 4.1)


def svg_histogram(edges: list[float], counts: list[int], width: int = 600, height: int = 160) -> str:
    """A small inline SVG bar chart of the document-score histogram. Counts are log-scaled: the
    toxic tail (the paper's 0.2%) would be invisible beside the benign bulk on a linear scale."""
    if not counts or not any(counts):
        return ""
    top = math.log10(max(counts) + 1)
    bar = width / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = 0 if c == 0 else max(1.0, height * math.log10(c + 1) / top)
        bars.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}">'
                    f'<title>[{edges[i]:.2f}, {edges[i + 1]:.2f}): {c}</title></rect>')
    return (f'<svg width="{width}" height="{height + 20}" role="img" aria-label="toxicity histogram">'
            f'<g fill="#b04a4a">{"".join(bars)}</g>'
            f'<text x="0" y="{height + 15}" font-size="11">0</text>'
            f'<text x="{width - 20}" y="{height + 15}" font-size="11">1</text></svg>')


class ToxicityReport:
    """Report methods of :class:`~llama_audit.analyzers.toxicity.ToxicityAnalyzer` (mixed into it)."""

    report_order = 40

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """The model and sample rate recorded at scan time, then :func:`summarize_toxicity`, and
        the 95% Wilson interval of the share of documents >= 0.5 over the documents scored, sampled
        or not: a sample estimates the in-scope share; the whole scope, the rate of the source the
        corpus was drawn from. With ``--paper``, the paper's share beside ours (``paper_pct_ge_0_5``)."""
        rate = ctx.config.get("sample_rate")
        section = {"model": ctx.config.get("model", DEFAULT_MODEL), "sample_rate": rate, "threshold": THRESHOLD}
        section.update(summarize_toxicity(counts))
        section["pct_ge_0_5_ci95"] = wilson_ci95(section["documents_ge_0_5"], section["documents_scored"])
        section.update(ctx.paper_json(ctx.paper_table(PAPER_TABLE).get(PAPER_SHARE_KEY), key="paper_pct_ge_0_5"))
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        rate = section.get("sample_rate")
        sample = f" ({rate:.0%} sample)" if rate is not None and rate < 1.0 else ""
        rows = [["documents scored", section["documents_scored"]],
                [f"% documents >= 0.5 (95% CI){sample}", pct_cell(section["pct_ge_0_5"], section["pct_ge_0_5_ci95"])]]
        rows += [[f"quantile {k}", f"{v:.4f}" if v is not None else ""] for k, v in section.get("quantiles", {}).items()]
        histogram = section.get("histogram", {})
        return [DisplayTable(cls.report_json_key(), f"Toxicity ({section.get('model')})", ["", "value"], rows,
                             PAPER_NOTE if ctx.paper is not None else "",
                             figure_svg=svg_histogram(histogram.get("edges", []), histogram.get("counts", [])))]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = [[key, "", "documents_scored", section["documents_scored"], "", ""],
                [key, "", "ge_0_5", "", section["pct_ge_0_5"], ""] + section["pct_ge_0_5_ci95"]
                + ctx.paper_csv_cells(ctx.paper_table(PAPER_TABLE).get(PAPER_SHARE_KEY))]
        rows += [[key, "quantile", k, "", v, ""] for k, v in section.get("quantiles", {}).items()]
        return rows

    @classmethod
    def report_figures(cls, section: dict, ctx: ReportContext) -> list[FigureSpec]:
        """Figure 13 as the paper draws it: the share of scored documents per document score (the
        mean of its line scores) on a log axis, so that the tail at 0.5 and above is visible beside
        the benign bulk, the 0.5 threshold marked, the counts in the caption. None when nothing
        was scored."""
        n, histogram = section.get("documents_scored", 0), section.get("histogram", {})
        if not n or not histogram.get("counts"):
            return []
        k, ci = section["documents_ge_0_5"], section.get("pct_ge_0_5_ci95")
        rate = section.get("sample_rate")
        caption = (f"{n:,} documents scored" + (f" (a {rate:.0%} sample)" if rate is not None and rate < 1.0 else "")
                   + f" with {section.get('model')}; {k:,} ({section['pct_ge_0_5']:.2f}%"
                   + (f", 95% CI {ci[0]:.2f}\u2013{ci[1]:.2f}%" if ci else "") + ") at 0.5 or above")
        if ctx.paper is not None:
            caption += f". {PAPER_NOTE}"
        shares = tuple(c / n for c in histogram["counts"])
        panel = FigurePanel(series=(FigureSeries("documents", shares),), edges=tuple(histogram["edges"]),
                            x_label="document toxicity score (mean of its lines)",
                            y_label="share of scored documents (log)", log_y=True, thresholds=((0.5, "threshold 0.5"),))
        return [FigureSpec(cls.report_json_key(), cls.report_json_key(), "histogram",
                           "Document toxicity (as Llama 2 Figure 13)", caption, (panel,))]
