"""``report --paper`` in JSON and CSV (issue 11 item 4): the Llama 2 paper's number beside ours.

Checked on a small real scan against the reference file itself (llama2_reference.json): every
``paper_pct`` is the paper's number for that row, rows the paper has no number for have none, every
other key and cell is what the report gives without ``--paper``, and without ``--paper`` the JSON
and CSV carry no trace of the paper.
"""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.identities.analyzer import AXIS_LABELS
from llama_audit.analyzers.identities.analyzer import PAPER_TABLE as IDENTITY_TABLE
from llama_audit.analyzers.language import PAPER_TABLE as LANGUAGE_TABLE
from llama_audit.analyzers.pronouns import GROUP_ROWS, HEADER_ROWS, PAPER_TABLE as PRONOUN_TABLE
from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.report import PAPER_SHARE_KEY, PAPER_TABLE as TOXICITY_TABLE
from llama_audit.analyzers.toxicity.summary import fold_scores
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.render import render_csv, render_json
from llama_audit.report.section import CSV_COLUMNS, PAPER_CSV_COLUMN, ReportContext
from llama_audit.report.tables import build_report, paper_reference
from conftest import write_jsonl

TEXTS = [
    "She is a Christian woman who lives in the city with her family and friends.",
    "He is an American engineer working on bridges and tunnels in the mountains.",
    "They met a Catholic priest and a Jewish teacher; I told you about them yesterday.",
    "A female pilot and a gay chef crossed the river with their Chinese friends.",
    "The Methodist choir sang while the Indian family watched from the back row.",
    "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
]
PAPER_KEYS = ("paper_pct", "rows_paper_pct", "paper_pct_ge_0_5")
runner = CliRunner()


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    write_jsonl(root / "corpus" / "a.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    run_scan(ScanRequest(paths=[str(root / "corpus")], out=str(root / "out"),
                         analyzers=["language", "pronouns", "identities", "pii"]))
    return str(root / "out")


def without_paper(obj):
    """``obj`` with every paper key removed, at any depth."""
    if isinstance(obj, dict):
        return {k: without_paper(v) for k, v in obj.items() if k not in PAPER_KEYS}
    if isinstance(obj, list):
        return [without_paper(x) for x in obj]
    return obj


def paper_keys(obj) -> list:
    if isinstance(obj, dict):
        return [k for k in obj if k in PAPER_KEYS] + [k for v in obj.values() for k in paper_keys(v)]
    if isinstance(obj, list):
        return [k for x in obj for k in paper_keys(x)]
    return []


def test_json_without_paper_has_no_paper_numbers(out):
    plain = build_report(out)
    assert paper_keys(plain) == []
    assert build_report(out, paper=False) == plain


def test_json_with_paper_adds_only_paper_numbers(out):
    plain, with_paper = build_report(out), build_report(out, paper=True)
    assert paper_keys(with_paper)  # something was added
    assert without_paper(with_paper) == plain  # and nothing else changed


def test_pronoun_paper_numbers(out):
    ref = paper_reference()[PRONOUN_TABLE]
    section = build_report(out, paper=True)["pronouns"]
    for header, (_, paper_key) in HEADER_ROWS.items():
        assert section[header]["paper_pct"] == ref[paper_key]
        assert section[header]["rows_paper_pct"] == {g: ref["rows_pct"][GROUP_ROWS[g][0]]
                                                     for g in section[header]["rows"]}


def test_identity_paper_numbers_on_axes_and_listed_descriptors(out):
    ref = paper_reference()[IDENTITY_TABLE]
    section = build_report(out, paper=True)["identities"]
    with_number = 0
    for axis, sec in section.items():
        label = AXIS_LABELS[axis]
        assert sec["paper_pct"] == ref["axis_pct_of_all_docs"][label]
        listed = dict(ref["top5_pct_of_docs_mentioning_axis"][label])
        for d in sec["descriptors"]:
            if d["term"] in listed:
                assert d["paper_pct"] == listed[d["term"]]
                with_number += 1
            else:
                assert "paper_pct" not in d
        assert paper_keys(sec.get("sense", {})) == []  # the paper counted in paper mode only
    assert with_number >= 4  # christian, american, catholic, jewish, female, gay, chinese, indian


def test_language_paper_numbers(out):
    ref = paper_reference()[LANGUAGE_TABLE]
    rows = build_report(out, paper=True)["languages"]["rows"]
    assert {r["lang"] for r in rows} & {k for k in ref if not k.startswith("_")}
    for r in rows:
        if isinstance(ref.get(r["lang"]), (int, float)):
            assert r["paper_pct"] == ref[r["lang"]]
        else:
            assert "paper_pct" not in r


def toxicity_section(paper: bool) -> dict:
    counts = fold_scores(np.array([0.01, 0.7, 0.2, 0.03]), np.array([3, 2, 1, 1]), np.array([0.0, 1.0, 0.0, 0.0]))
    ctx = ReportContext({"model": "m", "sample_rate": 0.1}, {}, ToxicityAnalyzer.ReportOptions(),
                        paper=paper_reference() if paper else None)
    return ToxicityAnalyzer.report_section(counts, ctx)


def test_toxicity_paper_share():
    share = paper_reference()[TOXICITY_TABLE][PAPER_SHARE_KEY]
    with_paper, plain = toxicity_section(True), toxicity_section(False)
    assert with_paper["paper_pct_ge_0_5"] == share
    assert without_paper(with_paper) == plain and paper_keys(plain) == []


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_without_paper_keeps_its_columns(out):
    rows = read_csv(render_csv(build_report(out)))
    assert rows[0] == CSV_COLUMNS and all(len(r) == len(CSV_COLUMNS) for r in rows)


def test_csv_with_paper_has_the_paper_column_last(out):
    report = build_report(out)
    report["toxicity"] = toxicity_section(False)
    report["url_counter"] = {"counts": {"urls": 3}}  # a plugin's section, drawn by the core's stand-in
    plain, with_paper = read_csv(render_csv(report)), read_csv(render_csv(report, paper=True))
    assert with_paper[0] == CSV_COLUMNS + [PAPER_CSV_COLUMN]
    assert all(len(r) == len(CSV_COLUMNS) + 1 for r in with_paper)
    assert [r[:-1] for r in with_paper] == plain  # every other cell as without --paper
    ref = paper_reference()
    paper = {tuple(r[:3]): r[-1] for r in with_paper[1:]}
    for header, (_, paper_key) in HEADER_ROWS.items():
        assert float(paper["pronouns", header, "(any)"]) == ref[PRONOUN_TABLE][paper_key]
        for group, (name, _) in GROUP_ROWS.items():
            if ("pronouns", header, group) in paper:
                assert float(paper["pronouns", header, group]) == ref[PRONOUN_TABLE]["rows_pct"][name]
    for axis, label in AXIS_LABELS.items():
        assert float(paper["identities", axis, "(any)"]) == ref[IDENTITY_TABLE]["axis_pct_of_all_docs"][label]
    assert float(paper["identities", "religion", "christian"]) == dict(
        ref[IDENTITY_TABLE]["top5_pct_of_docs_mentioning_axis"]["Religion"])["christian"]
    assert all(v == "" for k, v in paper.items() if k[0] == "identities.sense")
    assert float(paper["languages", "", "en"]) == ref[LANGUAGE_TABLE]["en"]
    assert float(paper["toxicity", "", "ge_0_5"]) == ref[TOXICITY_TABLE][PAPER_SHARE_KEY]
    assert paper["url_counter", "", "urls"] == "" and paper["pii", "", "any"] == ""


def test_cli_paper_flag_reaches_json_and_csv(out):
    def report(*args):
        result = runner.invoke(command(), ["report", out, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(report("-f", "json", "--paper")) == json.loads(render_json(build_report(out, paper=True)))
    assert paper_keys(json.loads(report("-f", "json"))) == []
    assert read_csv(report("-f", "csv", "--paper"))[0][-1] == PAPER_CSV_COLUMN
    assert read_csv(report("-f", "csv"))[0] == CSV_COLUMNS
