"""Renderers: the report object -> display tables -> terminal (rich), markdown, csv or json.

All human formats share ``display_tables`` so the terminal, markdown and csv show the same rows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from llama_audit.report.tables import AXIS_LABELS, paper_reference

PRONOUN_LABELS = {"she": "She (she, her, hers, herself)", "he": "He (he, him, his, himself)",
                  "unspecified": "Unspecified (they, them, their, ...)", "1st": "1st (I, me, my, mine, myself, ...)",
                  "2nd": "2nd (you, your, yours, ...)", "3rd": "3rd (it, its, itself, she, her, he, him, ...)"}
PAPER_PRONOUN_KEYS = {"she": "She", "he": "He", "unspecified": "Unspecified", "1st": "1st", "2nd": "2nd", "3rd": "3rd"}


@dataclasses.dataclass
class DisplayTable:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def display_tables(report: dict, *, top: int = 5, min_pct: float = 0.005, paper: bool = False) -> list[DisplayTable]:
    ref = paper_reference() if paper else {}
    out: list[DisplayTable] = []
    c = report["corpus"]
    rows = [["documents", c["documents"]], ["bytes (UTF-8 text)", c["bytes"]], ["shards", c["shards"]],
            ["bad records", c["bad_records"]],
            [f"in-scope documents ({','.join(c.get('languages_in_scope', []))})", c["in_scope_documents"]]]
    rows += [[f"  bad: {k}", v] for k, v in c.get("bad_records_by_reason", {}).items()]
    note = "" if c.get("complete", True) else (
        f"PARTIAL: {c['shards_done']} of {c['shards']} shards done ({c['shards_failed']} failed); rerun scan to finish")
    out.append(DisplayTable("corpus", "Corpus", ["", "value"], rows, note))
    for name, section in report.items():
        if isinstance(section, dict) and section.get("status") == "skipped":
            out.append(DisplayTable(name, f"{name}: skipped", ["reason"], [[section["reason"]]]))

    if "pronouns" in report and "gender" in report["pronouns"]:
        p = report["pronouns"]
        r9a = ref.get("table9a_pronouns", {})
        cols = ["Gender pronouns / grammatical person", "% docs"] + (["Llama 2 %"] if paper else [])
        rows = [["Gender pronouns (of in-scope docs)", _f(p["gender"]["pct"])] + ([_f(r9a.get("gender_pronouns_header_pct_all_docs"))] if paper else [])]
        for k, v in p["gender"]["rows"].items():
            rows.append(["  " + PRONOUN_LABELS[k], _f(v)] + ([_f(r9a.get("rows_pct", {}).get(PAPER_PRONOUN_KEYS[k]))] if paper else []))
        rows.append(["Grammatical person (of in-scope docs)", _f(p["person"]["pct"])] + ([_f(r9a.get("grammatical_person_header_pct_all_docs"))] if paper else []))
        for k, v in p["person"]["rows"].items():
            rows.append(["  " + PRONOUN_LABELS[k], _f(v)] + ([_f(r9a.get("rows_pct", {}).get(PAPER_PRONOUN_KEYS[k]))] if paper else []))
        out.append(DisplayTable("pronouns", "Table 9a: pronouns", cols, rows,
                                "row % = share of the documents counted in the header above it"))

    if "identities" in report and "status" not in report["identities"]:
        ids = report["identities"]
        r9b = ref.get("table9b_identities", {})
        rows = []
        for axis, sec in ids.items():
            label = AXIS_LABELS.get(axis, axis)
            rows.append([label, "", _f(sec["pct"]), sec["documents"]] + ([_f(r9b.get("axis_pct_of_all_docs", {}).get(label))] if paper else []))
            paper_terms = dict(r9b.get("top5_pct_of_docs_mentioning_axis", {}).get(label, []))
            for d in sec["descriptors"][:top]:
                rows.append(["", d["term"], _f(d["pct"]), d["documents"]] + ([_f(paper_terms.get(d["term"]))] if paper else []))
        cols = ["axis", "descriptor", "%", "documents"] + (["Llama 2 %"] if paper else [])
        out.append(DisplayTable("identities", f"Table 9b: identity descriptors (top {top} per axis)", cols, rows,
                                "axis % = of in-scope documents; descriptor % = of documents mentioning the axis"))

    if "languages" in report and "rows" in report["languages"]:
        lg = report["languages"]
        r10 = ref.get("table10_languages_pct_docs", {})
        rows = [[r["lang"], _f(r["pct"]), r["documents"]] + ([_f(r10.get(r["lang"]))] if paper else [])
                for r in lg["rows"] if r["pct"] >= min_pct]
        cols = ["language", "%", "documents"] + (["Llama 2 %"] if paper else [])
        out.append(DisplayTable("languages", f"Table 10: languages (>= {min_pct}% of documents)", cols, rows,
                                f"fastText lid.176, threshold {lg['threshold']}: below it a document is 'unknown'"))

    if "toxicity" in report and "documents_scored" in report["toxicity"]:
        t = report["toxicity"]
        rows = [["documents scored", t["documents_scored"]], ["% documents >= 0.5", _f(t["pct_ge_0_5"])]]
        if t.get("pct_ge_0_5_ci95"):
            lo, hi = t["pct_ge_0_5_ci95"]
            rows.append([f"  95% interval ({t['sample_rate']:.0%} sample)", f"{_f(lo)} - {_f(hi)}"])
        rows += [[f"quantile {k}", f"{v:.4f}" if v is not None else ""] for k, v in t.get("quantiles", {}).items()]
        note = "Llama 2: about 0.2% of documents >= 0.5 (Figure 13)" if paper else ""
        out.append(DisplayTable("toxicity", f"Toxicity ({t.get('model')})", ["", "value"], rows, note))

    if "pii" in report and "by_type" in report["pii"]:
        pi = report["pii"]
        rows = [[r["type"], r["matches"], r["documents"], _f(r["pct_documents"])] for r in pi["by_type"]]
        rows.append(["any", pi["matches"], pi["documents_with_pii"], _f(pi["pct_documents"])])
        out.append(DisplayTable("pii", "Personal data (PII)", ["type", "matches", "documents", "% documents"], rows,
                                f"{pi['matches_per_million_chars']:.2f} matches per million characters; values are never stored"))
    return out


def render_terminal(report: dict, console, **kw) -> None:
    from rich.table import Table

    for t in display_tables(report, **kw):
        table = Table(title=t.title, title_justify="left", caption=t.note or None, caption_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(col, justify="left" if i == 0 or col in ("descriptor", "type", "language") else "right")
        for row in t.rows:
            table.add_row(*[str(x) for x in row])
        console.print(table)


def render_markdown(report: dict, **kw) -> str:
    parts = []
    for t in display_tables(report, **kw):
        parts.append(f"### {t.title}\n")
        parts.append("| " + " | ".join(c or " " for c in t.columns) + " |")
        parts.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(t.columns))) + "|")
        for row in t.rows:
            parts.append("| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |")
        if t.note:
            parts.append(f"\n_{t.note}_")
        parts.append("")
    return "\n".join(parts)


def render_csv(report: dict, **kw) -> str:
    """Long format for spreadsheets: one row per number, every table, no truncation."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "group", "label", "documents", "pct", "matches"])
    c = report["corpus"]
    for k in ("documents", "bytes", "shards", "bad_records", "in_scope_documents"):
        w.writerow(["corpus", "", k, c[k], "", ""])
    p = report.get("pronouns", {})
    for head in ("gender", "person"):
        if head in p:
            w.writerow(["pronouns", head, "(any)", p[head]["documents"], p[head]["pct"], ""])
            for k, v in p[head]["rows"].items():
                w.writerow(["pronouns", head, k, "", v, ""])
    ids = report.get("identities", {})
    if "status" not in ids:
        for axis, sec in ids.items():
            w.writerow(["identities", axis, "(any)", sec["documents"], sec["pct"], ""])
            for d in sec["descriptors"]:
                w.writerow(["identities", axis, d["term"], d["documents"], d["pct"], ""])
    for r in report.get("languages", {}).get("rows", []):
        w.writerow(["languages", "", r["lang"], r["documents"], r["pct"], ""])
    t = report.get("toxicity", {})
    if "documents_scored" in t:
        w.writerow(["toxicity", "", "documents_scored", t["documents_scored"], "", ""])
        w.writerow(["toxicity", "", "ge_0_5", "", t["pct_ge_0_5"], ""])
        if t.get("pct_ge_0_5_ci95"):
            w.writerow(["toxicity", "ci95", "ge_0_5_low", "", t["pct_ge_0_5_ci95"][0], ""])
            w.writerow(["toxicity", "ci95", "ge_0_5_high", "", t["pct_ge_0_5_ci95"][1], ""])
        for k, v in t.get("quantiles", {}).items():
            w.writerow(["toxicity", "quantile", k, "", v, ""])
    pi = report.get("pii", {})
    if "by_type" in pi:
        for r in pi["by_type"]:
            w.writerow(["pii", "", r["type"], r["documents"], r["pct_documents"], r["matches"]])
        w.writerow(["pii", "", "any", pi["documents_with_pii"], pi["pct_documents"], pi["matches"]])
    for name, sec in report.items():
        if isinstance(sec, dict) and sec.get("status") == "skipped":
            w.writerow([name, "skipped", sec["reason"], "", "", ""])
    return buf.getvalue()


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _svg_histogram(edges: list[float], counts: list[int], width: int = 600, height: int = 160) -> str:
    """A small inline SVG bar chart (log-scaled counts) of the toxicity histogram."""
    import math

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


def render_html(report: dict, **kw) -> str:
    """One self-contained HTML page (no scripts, no external assets)."""
    from html import escape

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>llama-audit report</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:.2em .6em}td:not(:first-child){text-align:right}",
             "caption{text-align:left;font-weight:bold;padding:.3em 0}.note{color:#555;font-size:.9em}</style></head><body>",
             "<h1>llama-audit report</h1>"]
    for t in display_tables(report, **kw):
        parts.append(f"<table><caption>{escape(t.title)}</caption><tr>")
        parts.extend(f"<th>{escape(str(c))}</th>" for c in t.columns)
        parts.append("</tr>")
        for row in t.rows:
            parts.append("<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in row) + "</tr>")
        parts.append("</table>")
        if t.note:
            parts.append(f"<p class='note'>{escape(t.note)}</p>")
        if t.key == "toxicity":
            hist = report["toxicity"].get("histogram", {})
            parts.append(_svg_histogram(hist.get("edges", []), hist.get("counts", [])))
    parts.append("</body></html>\n")
    return "".join(parts)
