"""`report` formats and the JSON contract of docs/outputs.md."""

import csv
import io
import json

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.render import render_csv, render_json, render_markdown
from llama_audit.report.tables import build_report

CONTRACT_TOP = {"corpus", "pronouns", "identities", "languages"}


@pytest.fixture
def out(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate([
        "She is a Christian woman who lives in the city with her family and friends.",
        "He is an American engineer working on bridges and tunnels in the mountains.",
        "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
    ])])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["language", "pronouns", "identities"]))
    return str(tmp_path / "out")


def test_json_contract(out):
    r = json.loads(render_json(build_report(out)))
    assert CONTRACT_TOP <= set(r)
    assert set(r["corpus"]) >= {"documents", "bytes", "shards", "bad_records", "in_scope_documents"}
    assert r["corpus"]["documents"] == 3 and r["corpus"]["in_scope_documents"] == 2
    assert set(r["pronouns"]) >= {"gender", "person"}
    assert set(r["pronouns"]["gender"]["rows"]) == {"she", "he", "unspecified"}
    assert set(r["pronouns"]["person"]["rows"]) == {"1st", "2nd", "3rd"}
    assert isinstance(r["pronouns"]["gender"]["pct"], float)
    for axis in ("religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"):
        assert set(r["identities"][axis]) >= {"pct", "documents", "descriptors", "hidden_from_top"}
    assert r["identities"]["religion"]["descriptors"] == [{"term": "christian", "documents": 1, "pct": 100.0,
                                                          "ci95": [20.654931, 100.0], "hidden_from_top": False,
                                                          "sense_documents": 1}]
    assert set(r["identities"]["religion"]["sense"]) == {"pct", "ci95", "documents", "descriptors"}
    assert r["languages"]["threshold"] == 0.5
    assert {row["lang"] for row in r["languages"]["rows"]} == {"en", "fr"}
    assert set(r["languages"]["rows"][0]) >= {"lang", "documents", "pct"}
    assert "pii" not in r and "toxicity" not in r  # not asked for: absent


def test_skipped_analyzer_appears_with_reason(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": "hello there"}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         languages=("all",), options={"language": {"model": str(tmp_path / "missing.bin")}}))
    r = build_report(str(tmp_path / "out"))
    assert r["languages"]["status"] == "skipped" and "missing.bin" in r["languages"]["reason"]


def test_markdown_and_csv(out):
    r = build_report(out)
    md = render_markdown(r, paper=True)
    assert "### Table 9a: pronouns" in md and "Llama 2 %" in md and "| christian |" in md.replace("|  |", "|")
    rows = list(csv.reader(io.StringIO(render_csv(r))))
    assert rows[0] == ["table", "group", "label", "documents", "pct", "matches", "ci95_low", "ci95_high"]
    assert ["identities", "religion", "christian", "1", "100.0", ""] in [row[:6] for row in rows]
    assert any(row[:3] == ["languages", "", "fr"] for row in rows)


def test_report_options_belong_to_their_analyzer(out):
    from llama_audit.analyzers.identities import IdentityReportOptions
    from llama_audit.analyzers.language import LanguageReportOptions

    options = {"identities": IdentityReportOptions(top=0), "language": LanguageReportOptions(min_pct=50.0)}
    r = build_report(out, report_options=options)
    assert r == build_report(out)  # they choose what the human formats show, never the JSON
    md = render_markdown(r, report_options=options)
    assert "(top 0 per axis)" in md and "christian" not in md
    assert "(>= 50.0% of documents)" in md and "| en |" in md and "| fr |" not in md
    assert render_markdown(r, top=0, min_pct=50.0) == md  # given by field name, as --top and --min-pct
    assert ["identities", "religion", "christian", "1", "100.0", ""] in [
        row[:6] for row in csv.reader(io.StringIO(render_csv(r, top=0)))]
    # the paper's order (Tables 9a, 9b, 10), not the JSON's
    assert list(r).index("languages") < list(r).index("pronouns")
    assert md.index("Table 9a") < md.index("Table 9b") < md.index("Table 10")


def test_printable_shows_bidirectional_overrides_instead_of_obeying_them():
    from llama_audit.report.section import printable

    assert printable("evil\u202eexe.txt\ttab\x1b[31m") == "evil\\u202eexe.txt\ttab\\x1b[31m"
