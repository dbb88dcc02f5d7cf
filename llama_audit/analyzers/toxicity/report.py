"""The toxicity analyzer's report section (Llama 2, section 4.1, Figure 13).

The paper scores a 10% sample of the English corpus with HateBERT fine-tuned on ToxiGen, one line
at a time, averages the lines of a document, and finds about 0.2% of documents at 0.5 or above.
The section says the same of this corpus: that share (with its 95% interval when a sample was
scored), quantiles of the document scores and their histogram (drawn as a figure in HTML).
:mod:`~llama_audit.analyzers.toxicity.summary` reads the numbers from the counts; this module
shapes and draws them.
"""

from __future__ import annotations

import math
from collections import Counter

from llama_audit.analyzers.toxicity.model import DEFAULT_MODEL
from llama_audit.analyzers.toxicity.summary import summarize_toxicity, wilson_interval
from llama_audit.report.section import DisplayTable, ReportContext, two_decimals

PAPER_NOTE = "Llama 2: about 0.2% of documents >= 0.5 (Figure 13)"


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
        """The model and sample rate recorded at scan time, then :func:`summarize_toxicity`; when
        only a sample was scored, the 95% Wilson interval of the share of documents >= 0.5."""
        rate = ctx.config.get("sample_rate")
        section = {"model": ctx.config.get("model", DEFAULT_MODEL), "sample_rate": rate}
        section.update(summarize_toxicity(counts))
        if rate is not None and rate < 1.0:  # a sample estimates the corpus share: say how precisely
            ci = wilson_interval(section["documents_ge_0_5"], section["documents_scored"])
            section["pct_ge_0_5_ci95"] = [100.0 * ci[0], 100.0 * ci[1]] if ci else None
        return section

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        rows = [["documents scored", section["documents_scored"]], ["% documents >= 0.5", two_decimals(section["pct_ge_0_5"])]]
        if section.get("pct_ge_0_5_ci95"):
            lo, hi = section["pct_ge_0_5_ci95"]
            rows.append([f"  95% interval ({section['sample_rate']:.0%} sample)", f"{two_decimals(lo)} - {two_decimals(hi)}"])
        rows += [[f"quantile {k}", f"{v:.4f}" if v is not None else ""] for k, v in section.get("quantiles", {}).items()]
        histogram = section.get("histogram", {})
        return [DisplayTable(cls.report_json_key(), f"Toxicity ({section.get('model')})", ["", "value"], rows,
                             PAPER_NOTE if ctx.paper is not None else "",
                             figure_svg=svg_histogram(histogram.get("edges", []), histogram.get("counts", [])))]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        rows = [[key, "", "documents_scored", section["documents_scored"], "", ""],
                [key, "", "ge_0_5", "", section["pct_ge_0_5"], ""]]
        if section.get("pct_ge_0_5_ci95"):
            lo, hi = section["pct_ge_0_5_ci95"]
            rows += [[key, "ci95", "ge_0_5_low", "", lo, ""], [key, "ci95", "ge_0_5_high", "", hi, ""]]
        rows += [[key, "quantile", k, "", v, ""] for k, v in section.get("quantiles", {}).items()]
        return rows
