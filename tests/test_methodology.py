"""Percentage definitions of Tables 9a and 9b on small corpora whose tables are computed by hand."""

import json

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.tables import build_report

DOCS = [
    "She said her friend is a Christian.",          # she; 1st? no; 3rd (she, her); religion: christian
    "He and I met them. We are Muslim and Hindu.",  # he, unspecified, 1st, 3rd; religion: muslim, hindu
    "You are an African-American writer.",          # 2nd; race: african american (+ african, american->nationality)
    "It is raining.",                               # 3rd (it)
    "Nothing here matters",                         # none
    "LGBTQ+ and LGBTQ and queer folks; a white car", # sexual_orientation: lgbtq, queer; 'white' excluded
]


def scan(tmp_path, make_jsonl, docs, analyzers="pronouns,identities", languages=("all",)):
    make_jsonl("a.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)])
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=analyzers.split(","),
                         languages=languages))
    return build_report(str(out))


def test_table_9a_pronouns_by_hand(tmp_path, make_jsonl):
    r = scan(tmp_path, make_jsonl, DOCS)
    assert r["corpus"]["in_scope_documents"] == 6
    p = r["pronouns"]
    # gender pronoun docs: 0 (she), 1 (he, them) -> 2 of 6
    assert p["gender"]["pct"] == pytest.approx(100 * 2 / 6)
    assert p["gender"]["rows"] == pytest.approx({"she": 50.0, "he": 50.0, "unspecified": 50.0})
    # person docs: 0 (3rd), 1 (1st, 3rd), 2 (2nd), 3 (3rd) -> 4 of 6
    assert p["person"]["pct"] == pytest.approx(100 * 4 / 6)
    assert p["person"]["rows"] == pytest.approx({"1st": 25.0, "2nd": 25.0, "3rd": 75.0})


def test_table_9b_identities_by_hand(tmp_path, make_jsonl):
    r = scan(tmp_path, make_jsonl, DOCS)
    ids = r["identities"]
    assert list(ids) == ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
    assert ids["religion"]["documents"] == 2 and ids["religion"]["pct"] == pytest.approx(100 * 2 / 6)
    terms = {d["term"]: (d["documents"], d["pct"]) for d in ids["religion"]["descriptors"]}
    assert terms == {"christian": (1, 50.0), "muslim": (1, 50.0), "hindu": (1, 50.0)}
    assert ids["race_ethnicity"]["documents"] == 1
    assert {d["term"] for d in ids["race_ethnicity"]["descriptors"]} == {"african american", "african"}
    assert ids["nationality"]["descriptors"] == [{"term": "american", "documents": 1, "pct": 100.0}]
    so = {d["term"]: d["documents"] for d in ids["sexual_orientation"]["descriptors"]}
    assert so == {"lgbtq": 1, "queer": 1}
    assert ids["gender_and_sex"] == {"pct": 0.0, "documents": 0, "descriptors": []}


def test_descriptors_most_frequent_first(tmp_path, make_jsonl):
    docs = ["a Catholic priest", "Catholic school", "Jewish deli", "religious art, Catholic"]
    r = scan(tmp_path, make_jsonl, docs, analyzers="identities")
    assert [d["term"] for d in r["identities"]["religion"]["descriptors"]] == ["catholic", "jewish", "religious"]
    assert r["identities"]["religion"]["descriptors"][0]["pct"] == 75.0


def test_language_gate_limits_the_scope(tmp_path, make_jsonl):
    docs = ["She wrote a long letter to her mother about the garden and the weather.",
            "Elle a écrit une longue lettre à sa mère au sujet du jardin et du temps.",
            ""]
    r = scan(tmp_path, make_jsonl, docs, analyzers="pronouns", languages=("en",))
    assert "languages" in r  # the gate pulled in the language analyzer
    assert r["corpus"]["in_scope_documents"] == 1
    assert r["pronouns"]["gender"]["pct"] == 100.0 and r["pronouns"]["gender"]["rows"]["she"] == 100.0
    langs = {row["lang"]: row["documents"] for row in r["languages"]["rows"]}
    assert langs == {"en": 1, "fr": 1, "unknown": 1}
    assert r["languages"]["rows"][0]["pct"] == pytest.approx(100 / 3)


def test_user_lexicon_other_axes(tmp_path, make_jsonl):
    lex = tmp_path / "lex.tsv"
    lex.write_text("axis\tterm\nfood\tpizza\nfood\tice cream\n")
    make_jsonl("a.jsonl", [{"text": "Ice-cream and pizza"}, {"text": "ice and cream"}])
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["identities"],
                         languages=("all",), options={"identities": {"lexicon": str(lex)}}))
    r = build_report(str(out))
    assert r["identities"]["food"]["documents"] == 1
    assert {d["term"] for d in r["identities"]["food"]["descriptors"]} == {"pizza", "ice cream"}
