"""95% Wilson intervals on every percentage of the report (issue 11 item 1), and ``--min-docs``.

The interval's values are checked against published ones (Newcombe 1998) and against the score
equation it solves, computed here with independent arithmetic; the report is checked on a small
real scan: every percentage in the JSON has an interval that contains it, every human format shows
it, the CSV has it in its own columns, and ``--min-docs`` hides (terminal, markdown) or greys
(HTML) the rows with fewer documents while JSON and CSV keep them all.
"""

import csv
import io
import json
import math
import re
from collections import Counter
from statistics import NormalDist

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.summary import fold_scores
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.render import render_csv, render_html, render_json, render_markdown, render_terminal
from llama_audit.report.section import CSV_COLUMNS, ReportContext, pct, pct_cell, wilson_ci95
from llama_audit.report.tables import build_report

# -- the interval ------------------------------------------------------------------------------------

# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score interval
# without continuity correction), as proportions to 4 decimals.
NEWCOMBE_1998_WILSON = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                        (1, 29): (0.0061, 0.1718)}


@pytest.mark.parametrize(("k", "n"), sorted(NEWCOMBE_1998_WILSON))
def test_wilson_matches_published_values(k, n):
    lo, hi = NEWCOMBE_1998_WILSON[k, n]
    got = wilson_ci95(k, n)
    assert got == [pytest.approx(100 * lo, abs=0.005 + 1e-9), pytest.approx(100 * hi, abs=0.005 + 1e-9)]


@pytest.mark.parametrize(("k", "n"), [(1, 3), (7, 40), (200, 1000), (2, 10_000), (999, 1000), (123_456, 9_876_543)])
def test_wilson_endpoints_solve_the_score_equation(k, n):
    """Wilson's interval is the set of p whose score test does not reject: its ends are the roots
    of (k/n - p)^2 = z^2 p (1 - p) / n, here solved as a quadratic with numpy."""
    z = NormalDist().inv_cdf(0.975)
    p_hat = k / n
    # (1 + z^2/n) p^2 - (2 p_hat + z^2/n) p + p_hat^2 = 0
    roots = sorted(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]).real)
    assert wilson_ci95(k, n) == [pytest.approx(100 * roots[0], abs=1e-6), pytest.approx(100 * roots[1], abs=1e-6)]


def test_wilson_edges_and_rounding():
    assert wilson_ci95(0, 0) == [0.0, 0.0]  # no denominator: no interval, like pct() gives 0
    lo, hi = wilson_ci95(0, 50)
    assert lo == 0.0 and hi > 0  # exactly 0, not -1e-15
    lo, hi = wilson_ci95(50, 50)
    assert hi == 100.0 and lo < 100
    for k, n in ((1, 3), (2, 7), (5, 11)):
        ci = wilson_ci95(k, n)
        assert ci == [round(x, 6) for x in ci] and ci[0] < pct(k, n) < ci[1]
    with pytest.raises(ValueError):
        wilson_ci95(3, 2)
    with pytest.raises(ValueError):
        wilson_ci95(-1, 2)


def test_pct_cell():
    assert pct_cell(18.0, [15.3, 20.9]) == "18.00 (15.30\u201320.90)"
    assert pct_cell(0.2, None) == "0.20"
    assert pct_cell(None, None) == ""


# -- the report --------------------------------------------------------------------------------------

#: the analyzers scanned for the report below, and the report sections whose percentages carry
#: intervals (toxicity is folded from real scores: scoring needs a model)
SCANNED = ["language", "pronouns", "identities", "pii"]
SECTIONS_WITH_INTERVALS = ("pronouns", "identities", "languages", "pii", "toxicity")

TEXTS = [
    "She is a Christian woman who lives in the city with her family and friends.",
    "He is an American engineer working on bridges and tunnels in the mountains.",
    "Write to me at jane.doe@example.org about the bridges, she said to him.",
    "They told us that you and I should call them, and he agreed with her.",
    "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
]


@pytest.fixture
def report(tmp_path, make_jsonl):
    """A real scan's report, plus a toxicity section folded from real scores (scoring needs a
    model) of a 10% sample."""
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=SCANNED))
    r = build_report(str(tmp_path / "out"))
    r["toxicity"] = toxicity_section(sample_rate=0.1)
    return r


def toxicity_section(sample_rate):
    counts = fold_scores(np.array([0.01, 0.7, 0.2, np.nan, 0.55, 0.03]), np.array([3, 2, 1, 0, 4, 1]),
                         np.array([0.0, 1.0, 0.0, 0.0, 0.5, 0.0]))
    ctx = ReportContext({"model": "m", "sample_rate": sample_rate}, {}, ToxicityAnalyzer.ReportOptions())
    return ToxicityAnalyzer.report_section(counts, ctx)


#: percentages that have no binomial interval, and why
NO_INTERVAL = {"pct_lines_ge_0_5": "lines of one document are not independent trials"}


def percentages(obj, path=""):
    """(path, value, interval) of every percentage key in a JSON section: ``pct`` with its
    ``ci95`` sibling, ``pct_X`` with ``pct_X_ci95``, and the pronoun ``rows`` with ``rows_ci95``."""
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from percentages(x, f"{path}[{i}]")
        return
    if not isinstance(obj, dict):
        return
    for key, value in obj.items():
        here = f"{path}.{key}"
        if key == "pct":
            yield here, value, obj.get("ci95")
        elif key.startswith("pct_") and not key.endswith("_ci95") and key not in NO_INTERVAL:
            yield here, value, obj.get(key + "_ci95")
        elif key == "rows" and isinstance(value, dict):
            for row, v in value.items():
                yield f"{here}.{row}", v, (obj.get("rows_ci95") or {}).get(row)
        else:
            yield from percentages(value, here)


@pytest.mark.parametrize("key", SECTIONS_WITH_INTERVALS)
def test_every_percentage_in_the_json_has_an_interval_that_contains_it(report, key):
    r = json.loads(render_json(report))
    found = list(percentages(r[key]))
    assert found, key
    for path, value, ci in found:
        assert isinstance(ci, list) and len(ci) == 2, (path, ci)
        assert 0.0 <= ci[0] <= value <= ci[1] <= 100.0, (path, value, ci)


def test_intervals_are_computed_from_their_own_numerator_and_denominator(report):
    pronouns, languages, pii = report["pronouns"], report["languages"], report["pii"]
    gender = pronouns["gender"]
    assert gender["ci95"] == wilson_ci95(gender["documents"], pronouns["documents"])
    assert gender["rows_ci95"]["she"] == wilson_ci95(gender["rows_documents"]["she"], gender["documents"])
    for row in languages["rows"]:
        assert row["ci95"] == wilson_ci95(row["documents"], report["corpus"]["documents"])
    assert pii["pct_documents_ci95"] == wilson_ci95(pii["documents_with_pii"], pii["documents"])
    for row in pii["by_type"]:
        assert row["pct_documents_ci95"] == wilson_ci95(row["documents"], pii["documents"])
    for tox in (report["toxicity"], toxicity_section(sample_rate=1.0)):  # sampled or not: the documents scored
        assert tox["pct_ge_0_5_ci95"] == wilson_ci95(tox["documents_ge_0_5"], tox["documents_scored"])
        assert tox["documents_scored"] == 5 and tox["documents_ge_0_5"] == 2


def terminal_text(report, **kw):
    console = Console(file=io.StringIO(), width=250, color_system=None)
    render_terminal(report, console, **kw)
    return console.file.getvalue()


def shown_cells(report):
    """``pct (lo–hi)`` of every percentage the human tables draw (the JSON's)."""
    cells = {pct_cell(row["pct"], row["ci95"]) for row in report["languages"]["rows"]}
    for header in ("gender", "person"):
        h = report["pronouns"][header]
        cells.add(pct_cell(h["pct"], h["ci95"]))
        cells |= {pct_cell(v, h["rows_ci95"][g]) for g, v in h["rows"].items()}
    pii = report["pii"]
    cells.add(pct_cell(pii["pct_documents"], pii["pct_documents_ci95"]))
    cells |= {pct_cell(row["pct_documents"], row["pct_documents_ci95"]) for row in pii["by_type"]}
    cells.add(pct_cell(report["toxicity"]["pct_ge_0_5"], report["toxicity"]["pct_ge_0_5_ci95"]))
    for sec in report["identities"].values():  # the axes and their listed descriptors (top 5, paper mode)
        cells.add(pct_cell(sec["pct"], sec["ci95"]))
        cells |= {pct_cell(d["pct"], d["ci95"]) for d in [d for d in sec["descriptors"] if not d["hidden_from_top"]][:5]}
    return cells


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "html"])
def test_human_formats_show_each_interval(report, fmt):
    text = {"terminal": terminal_text, "markdown": render_markdown, "html": render_html}[fmt](report, paper=True)
    for cell in shown_cells(report):
        assert "\u2013" in cell and cell in text, (fmt, cell)
    # the paper's column stays a plain number: 'Llama 2 %' cells never carry an interval
    assert "Llama 2 %" in text


def language_rows(report):
    return {row["lang"]: row["documents"] for row in report["languages"]["rows"]}


def has_row(text, first_cell, cell):
    """Whether a markdown or terminal table row starts with ``first_cell`` followed by ``cell``."""
    return re.search(rf"^[|\u2502] *{re.escape(first_cell)} *[|\u2502] *{re.escape(cell)}", text, re.M) is not None


def html_row_tag(html, first_cell):
    """The opening ``<tr ...>`` tag of the HTML row whose first cell is ``first_cell``."""
    rows = [row for row in html.split("<tr")[1:]
            if row.split("<td", 1)[-1].split(">", 1)[-1].startswith(first_cell + "<")]
    assert len(rows) == 1, first_cell
    return "<tr" + rows[0].split(">", 1)[0] + ">"


def test_min_docs_hides_rows_in_terminal_and_markdown_and_greys_them_in_html(report):
    docs = language_rows(report)
    assert docs == {"en": 4, "fr": 1}
    fr = pct_cell(report["languages"]["rows"][1]["pct"], report["languages"]["rows"][1]["ci95"])
    for render in (render_markdown, terminal_text):
        assert has_row(render(report), "fr", fr) and has_row(render(report, min_docs=1), "fr", fr)
        hidden = render(report, min_docs=2)
        assert not has_row(hidden, "fr", fr) and has_row(hidden, "en", "")
        assert "1 row with fewer than 2 documents hidden (--min-docs)" in " ".join(hidden.split())  # captions wrap
    html = render_html(report, min_docs=2)
    assert fr in html and ".few-docs{" in html  # the row stays, greyed by its class
    assert "few-docs" in html_row_tag(html, "fr") and "few-docs" not in html_row_tag(html, "en")
    assert "few-docs" not in html_row_tag(render_html(report), "fr")
    # the toxicity share has no documents of its own: never hidden, however high the floor
    tox = pct_cell(report["toxicity"]["pct_ge_0_5"], report["toxicity"]["pct_ge_0_5_ci95"])
    assert tox in render_markdown(report, min_docs=10**9)


def test_csv_has_interval_columns_and_pads_sections_that_give_fewer(report):
    report = dict(report, some_plugin={"counts": {"things": 3}})  # a section no analyzer claims: defaults
    rows = list(csv.reader(io.StringIO(render_csv(report, min_docs=10**9))))
    header, body = rows[0], rows[1:]
    assert header == CSV_COLUMNS and header[-2:] == ["ci95_low", "ci95_high"]
    assert all(len(row) == len(header) for row in body)
    col = {name: i for i, name in enumerate(header)}
    assert ["some_plugin", "", "things", "3", "", "", "", ""] in rows
    # (toxicity's quantile rows put a score, not a share, in the pct column: no interval)
    with_pct = [row for row in body if row[0] in SECTIONS_WITH_INTERVALS and row[col["pct"]]
                and row[col["group"]] != "quantile"]
    assert with_pct
    for row in with_pct:
        lo, value, hi = (float(row[col[c]]) for c in ("ci95_low", "pct", "ci95_high"))
        assert lo <= value <= hi, row
    assert any(row[:3] == ["languages", "", "fr"] for row in body)  # --min-docs never drops a CSV row
    fr = next(r for r in report["languages"]["rows"] if r["lang"] == "fr")
    assert ["languages", "", "fr", "1", str(fr["pct"]), "", str(fr["ci95"][0]), str(fr["ci95"][1])] in rows


def test_report_min_docs_on_the_command_line(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["language"]))
    runner = CliRunner()

    def report(*args):
        return runner.invoke(command(), ["report", str(tmp_path / "out"), *args])
    res = report("--format", "md", "--min-docs", "2")
    assert res.exit_code == 0 and "| fr |" not in res.stdout and "| en |" in res.stdout
    assert "| fr |" in report("--format", "md").stdout
    for fmt in ("csv", "json"):
        assert report("--format", fmt, "--min-docs", "2").stdout == report("--format", fmt).stdout
    res = report("--min-docs", "-1")
    assert res.exit_code == 2 and "--min-docs" in res.stderr and "Traceback" not in res.output
