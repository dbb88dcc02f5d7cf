"""Figures of the report (issue 11 item 3): what each analyzer declares (plain FigureSpecs), how
matplotlib draws them (same input, same bytes), where `report` writes them, and the one line it
prints without matplotlib."""

import base64
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.identities import IdentityReportOptions
from llama_audit.analyzers.identities.figures import identity_figures
from llama_audit.analyzers.language import LanguageAnalyzer, LanguageReportOptions
from llama_audit.analyzers.pronouns import PronounAnalyzer
from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.summary import fold_scores
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.section import FigurePanel, FigureSeries, FigureSpec, ReportContext
from llama_audit.report.tables import build_report, paper_reference

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def ctx(options=None, paper=True, config=None):
    return ReportContext(config=config or {}, corpus={"documents": 1000}, options=options or object(),
                         paper=paper_reference() if paper else None)


def toxicity_section(scores, sample_rate=None):
    """The toxicity analyzer's own section, from counts folded from document scores (no model)."""
    scores = np.asarray(scores, dtype=float)
    counts = fold_scores(scores, np.ones_like(scores), (scores >= 0.5).astype(float))
    return ToxicityAnalyzer.report_section(counts, ctx(config={"model": "stub", "sample_rate": sample_rate}))


@pytest.fixture
def out(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate([
        "She is a Christian woman who lives in the city with her family and friends.",
        "He is an American engineer working on bridges and tunnels in the mountains.",
        "They met a Catholic priest and a Jewish teacher; I told you about them.",
        "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
    ])])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["language", "pronouns", "identities"]))
    return tmp_path / "out"


# -- the specs each analyzer declares -------------------------------------------------------------

def test_figure_13_as_the_paper_draws_it():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.beta(1, 30, 2000), [0.55, 0.7, 0.9]])
    section = toxicity_section(scores)
    [spec] = ToxicityAnalyzer.report_figures(section, ctx())
    assert spec.kind == "histogram" and spec.table == "toxicity"
    [panel] = spec.panels
    assert panel.log_y and [x for x, _ in panel.thresholds] == [0.5]
    assert list(panel.edges) == section["histogram"]["edges"]
    [shares] = panel.series
    assert sum(shares.values) == pytest.approx(1.0)  # share of documents, not counts
    assert shares.values[90] == pytest.approx(1 / len(scores))  # the one document at 0.9: bin [0.90, 0.91)
    assert "score" in panel.x_label.lower() and "documents" in panel.y_label.lower()
    # the counts are in the caption, formatted as the tables print them
    assert f"{len(scores):,} documents scored" in spec.caption and "3 (" in spec.caption
    assert "0.2%" in spec.caption  # the paper's finding beside ours
    assert ToxicityAnalyzer.report_figures(toxicity_section([]), ctx()) == []  # nothing scored: no figure


def test_pronoun_figure_has_the_paper_values_as_markers_and_the_section_intervals():
    section = {"documents": 10,
               "gender": {"pct": 80.0, "documents": 8, "rows": {"she": 50.0, "he": 25.0, "unspecified": 75.0},
                          "ci95": [49.0, 94.3], "rows_ci95": {"she": [21.5, 78.5], "he": [7.1, 59.1],
                                                             "unspecified": [40.9, 92.9]}},
               "person": {"pct": 100.0, "documents": 10, "rows": {"1st": 10.0, "2nd": 20.0, "3rd": 90.0}}}
    [spec] = PronounAnalyzer.report_figures(section, ctx())
    gender, person = spec.panels  # two headers, two denominators
    assert gender.categories == ("She", "He", "Unspecified") and person.categories == ("1st", "2nd", "3rd")
    ours, paper = gender.series
    assert ours.style == "bars" and ours.values == (50.0, 25.0, 75.0)
    assert ours.intervals == ((21.5, 78.5), (7.1, 59.1), (40.9, 92.9))
    assert paper.style == "markers" and paper.values == (28.45, 50.73, 86.38)
    assert person.series[0].intervals == (None, None, None)  # no interval in the section: plain bars
    assert person.series[1].values == (70.71, 61.8, 93.07)
    assert "10 in-scope documents" in spec.caption and "8 have a gender pronoun" in spec.caption
    for panel in PronounAnalyzer.report_figures(section, ctx(paper=False))[0].panels:
        assert [s.style for s in panel.series] == ["bars"]  # --no-paper: no markers


def test_language_figure_is_the_top_languages_and_unknown_on_a_log_scale():
    rows = [("en", 900), ("fr", 40), ("unknown", 3)] + [(f"x{i:02d}", 30 - i) for i in range(25)]
    section = {"threshold": 0.5, "documents": 1000,
               "rows": [{"lang": lang, "documents": n, "pct": n / 10, "chars": 0} for lang, n in rows]}
    [spec] = LanguageAnalyzer.report_figures(section, ctx(LanguageReportOptions()))
    [panel] = spec.panels
    assert panel.log_y and panel.categories[:2] == ("en", "fr")
    assert "unknown" in panel.categories  # always shown, however few
    assert len(panel.categories) <= 21
    ours, paper = panel.series
    assert ours.values[0] == 90.0 and paper.values[0] == 89.7  # Table 10's en
    assert paper.values[panel.categories.index("unknown")] == 8.38


def test_identity_figure_has_one_panel_per_axis_with_descriptor_intervals():
    section = {axis: {"pct": 10.0, "documents": 20, "hidden_from_top": ["white"] if axis == "race_ethnicity" else [],
                      "descriptors": [{"term": t, "documents": n, "pct": 5.0 * n, "ci95": [1.0 * n, 9.0 * n],
                                       "hidden_from_top": t == "white" and axis == "race_ethnicity"}
                                      for t, n in (("white", 9), ("european", 4), ("asian", 2))]}
               for axis in ("religion", "race_ethnicity")}
    [spec] = identity_figures(section, ctx(IdentityReportOptions(top=5)))
    assert spec.kind == "bars" and spec.table == "identities"
    axes_panel, religion, race = spec.panels
    assert axes_panel.categories == ("Religion", "Race and Ethnicity")
    assert axes_panel.series[1].values == (7.93, 19.51)  # the paper's axis shares as markers
    assert race.title == "Race and Ethnicity" and race.categories == ("european", "asian")  # hidden: not listed
    assert race.series[0].values == (20.0, 10.0) and race.series[0].intervals == ((4.0, 36.0), (2.0, 18.0))
    assert race.series[1].values == (20.7, 7.4)  # Table 9b's top 5
    assert religion.categories == ("white", "european", "asian")


def test_figure_names_are_file_names_and_kinds_are_known():
    panel = FigurePanel(categories=("a",), series=(FigureSeries("x", (1.0,)),))
    for bad in ("../x", "a/b", "", "X Y", ".hidden"):
        with pytest.raises(ValueError):
            FigureSpec(name=bad, table="t", kind="bars", title="t", caption="", panels=(panel,))
    with pytest.raises(ValueError):
        FigureSpec(name="ok", table="t", kind="pie", title="t", caption="", panels=(panel,))


# -- drawing ----------------------------------------------------------------------------------------

def sample_specs():
    rng = np.random.default_rng(1)
    section = toxicity_section(np.concatenate([rng.beta(1, 20, 500), [0.6, 0.8]]))
    return ToxicityAnalyzer.report_figures(section, ctx()) + [FigureSpec(
        name="bars-demo", table="t", kind="bars", title="Bars", caption="c",
        panels=(FigurePanel(categories=("a", "b"), title="p", log_y=True, horizontal=True,
                            series=(FigureSeries("ours", (3.0, 40.0), ((1.0, 6.0), None)),
                                    FigureSeries("paper", (2.0, None), style="markers"))),))]


def test_two_renders_give_identical_bytes_in_one_process_and_across_processes():
    from llama_audit.report import figures

    first = [figures.draw(s) for s in sample_specs()]
    second = [figures.draw(s) for s in sample_specs()]
    assert [(f.svg, f.png) for f in first] == [(f.svg, f.png) for f in second]
    code = ("import hashlib, sys; sys.path.insert(0, 'tests/report'); from test_figures import sample_specs;"
            "from llama_audit.report import figures;"
            "print([hashlib.sha256(f.svg + f.png).hexdigest() for f in map(figures.draw, sample_specs())])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}, cwd=str(_root()))
    import hashlib
    assert other.stdout.strip() == str([hashlib.sha256(f.svg + f.png).hexdigest() for f in first])
    for f in first:
        assert f.png.startswith(PNG_SIGNATURE)
        root = ET.fromstring(f.svg)
        assert root.tag == f"{SVG_NS}svg"
        assert b"Date" not in f.svg and b"<dc:date" not in f.svg and b"Software" not in f.png


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


def test_html_figure_is_inline_and_loads_nothing():
    from llama_audit.report import figures

    spec = sample_specs()[0]
    html = figures.html_figure(figures.draw(spec))
    assert html.startswith("<figure") and f"{spec.caption.split(';')[0]}" in html  # the caption: alt text
    src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert src and base64.b64decode(src.group(1)).startswith(b"<svg")  # no prolog, no DTD address
    assert not re.search(r"(src|href)=[\"'](https?:)?//", html)


# -- `report` writes them ---------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(command(), [str(a) for a in args])


def test_report_writes_svg_and_png_under_out_report_and_embeds_them_in_html(out, tmp_path):
    assert invoke("report", out, "--format", "markdown").exit_code == 0
    assert not (out / "report").exists()  # other formats draw none unless --figures asks
    res = invoke("report", out, "--format", "html")
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in (out / "report").iterdir())
    assert written == ["identities.png", "identities.svg", "languages.png", "languages.svg",
                       "pronouns.png", "pronouns.svg"]
    assert res.stdout.count("<figure") == 3 and res.stdout.count("data:image/svg+xml;base64,") == 3
    svg = (out / "report" / "pronouns.svg").read_bytes()
    from llama_audit.report.figures import inline_svg
    assert base64.b64encode(inline_svg(svg)).decode() in res.stdout  # the same figure, inline
    # --figures DIR: written there instead; same bytes
    res2 = invoke("report", out, "--format", "markdown", "--figures", tmp_path / "figs")
    assert res2.exit_code == 0, res2.output
    assert (tmp_path / "figs" / "pronouns.svg").read_bytes() == svg
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == written  # no temporaries left
    # --no-figures writes nothing
    res3 = invoke("report", out, "--no-figures", "--figures", tmp_path / "none")
    assert res3.exit_code == 0 and not (tmp_path / "none").exists()


def test_figures_directory_that_is_a_file_is_a_one_line_error(out, tmp_path):
    (tmp_path / "f").write_text("x")
    res = invoke("report", out, "--figures", tmp_path / "f")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1


def test_without_matplotlib_report_works_and_says_how_to_get_figures(out, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = invoke("report", out, "--format", "html")
    assert res.exit_code == 0, res.output
    assert "pip install 'llama-audit[report]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "<table" in res.stdout and "<figure" not in res.stdout
    assert not (out / "report").exists()


def test_html_draws_the_matplotlib_figure_instead_of_the_bare_svg(out):
    from llama_audit.report.render import render_html

    report = build_report(str(out))
    rng = np.random.default_rng(2)
    report["toxicity"] = toxicity_section(rng.beta(1, 20, 300))
    html = render_html(report)
    assert 'aria-label="toxicity histogram"' not in html  # the old hand-drawn one
    assert html.count("<figure") == 4
    assert json.dumps(report)  # unchanged, still JSON
