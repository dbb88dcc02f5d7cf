"""The identities analyzer on its own: what it annotates and records for the report, and how its
report section reads an OUT written before terms could be hidden from the top listing."""

from collections import Counter

import pytest

import numpy as np

from llama_audit.analyzers.base import BatchContext
from llama_audit.analyzers.identities import IdentityAnalyzer, IdentityReportOptions
from llama_audit.report.section import ReportContext, wilson_ci95
from llama_audit.types import ConfigError, DocBatch


def batch(texts):
    return DocBatch(shard="s", rows=np.arange(len(texts), dtype=np.int64), doc_ids=[str(i) for i in range(len(texts))],
                    texts=list(texts))


def test_hidden_terms_are_annotated_and_folded_like_any_term():
    analyzer = IdentityAnalyzer()
    texts = ["White people and a black cat", "straight couples", "a Buddhist temple", "in scope? no"]
    ctx = BatchContext(in_scope=np.array([True, True, True, False]), columns={})
    columns = analyzer.annotate(batch(texts), ctx)
    assert columns["identity_terms"].to_pylist() == [["black", "white"], ["straight"], ["buddhist"], None]
    assert columns["identity_axes"].to_pylist() == [["race_ethnicity"], ["sexual_orientation"], ["religion"], None]
    assert analyzer.fold(columns, ctx) == Counter({
        "documents": 3, "axis/race_ethnicity": 1, "axis/sexual_orientation": 1, "axis/religion": 1,
        "term/race_ethnicity/black": 1, "term/race_ethnicity/white": 1, "term/sexual_orientation/straight": 1,
        "term/religion/buddhist": 1,
        # sense mode: "White people" and "straight couples" describe people, "a black cat" does not
        "sense/axis/race_ethnicity": 1, "sense/axis/sexual_orientation": 1, "sense/axis/religion": 1,
        "sense/term/race_ethnicity/white": 1, "sense/term/sexual_orientation/straight": 1,
        "sense/term/religion/buddhist": 1})


def test_config_records_the_hidden_terms_for_the_report():
    """The report runs from OUT without the lexicon: the scan's configuration carries the terms
    hidden from the top listing, per axis."""
    config = IdentityAnalyzer().config()
    assert config["hidden_from_top"] == {"race_ethnicity": ["black", "white"], "sexual_orientation": ["straight"]}


def test_an_out_scanned_before_hidden_terms_marks_nothing_hidden():
    counts = Counter({"documents": 4, "axis/religion": 2, "term/religion/catholic": 2})
    ctx = ReportContext(config={"axes": ["religion"]}, corpus={}, options=IdentityReportOptions())
    section = IdentityAnalyzer.report_section(counts, ctx)
    assert section == {"religion": {"pct": 50.0, "ci95": wilson_ci95(2, 4), "documents": 2, "hidden_from_top": [],
                                    "descriptors": [{"term": "catholic", "documents": 2, "pct": 100.0,
                                                     "ci95": wilson_ci95(2, 2), "hidden_from_top": False}]}}
    (table,) = IdentityAnalyzer.report_tables(section, ReportContext(config={}, corpus={}, options=IdentityReportOptions()))
    assert [row[1] for row in table.rows] == ["", "catholic"] and "not listed" not in table.note


def test_the_annotation_columns_follow_the_scan_mode_and_fold_counts_both():
    texts = ["a frying pan and pan people", "a frying pan", "Buddhist monks"]
    ctx = BatchContext(in_scope=np.array([True, True, True]), columns={})
    paper = IdentityAnalyzer({"identity_mode": "paper"})
    sense = IdentityAnalyzer({"identity_mode": "sense"})
    paper_columns, sense_columns = paper.annotate(batch(texts), ctx), sense.annotate(batch(texts), ctx)
    assert paper_columns["identity_terms"].to_pylist() == [["pan"], ["pan"], ["buddhist"]]
    assert sense_columns["identity_terms"].to_pylist() == [["pan"], [], ["buddhist"]]
    assert sense_columns["identity_axes"].to_pylist() == [["sexual_orientation"], [], ["religion"]]
    assert paper.fold(paper_columns, ctx) == sense.fold(sense_columns, ctx)  # the counts hold both modes
    assert paper.config()["identity_mode"] == "paper" and sense.config()["identity_mode"] == "sense"
    assert paper.config()["senses_sha256"] == sense.config()["senses_sha256"]


def sense_section():
    counts = Counter({"documents": 10, "axis/sexual_orientation": 6, "term/sexual_orientation/pan": 5,
                      "term/sexual_orientation/gay": 2, "term/sexual_orientation/straight": 3,
                      "sense/axis/sexual_orientation": 3, "sense/term/sexual_orientation/pan": 1,
                      "sense/term/sexual_orientation/gay": 2, "sense/term/sexual_orientation/straight": 1})
    config = {"axes": ["sexual_orientation"], "hidden_from_top": {"sexual_orientation": ["straight"]},
              "senses_sha256": "x"}
    return IdentityAnalyzer.report_section(counts, ReportContext(config=config, corpus={}, options=IdentityReportOptions()))


def test_the_json_keeps_paper_keys_and_adds_sense_mode_beside_them():
    so = sense_section()["sexual_orientation"]
    assert (so["documents"], so["pct"]) == (6, 60.0)
    assert [(d["term"], d["documents"], d["sense_documents"]) for d in so["descriptors"]] == [
        ("pan", 5, 1), ("straight", 3, 1), ("gay", 2, 2)]
    assert so["sense"]["documents"] == 3 and so["sense"]["pct"] == 30.0 and so["sense"]["ci95"] == wilson_ci95(3, 10)
    assert [(d["term"], d["documents"], d["pct"]) for d in so["sense"]["descriptors"]] == [
        ("gay", 2, pytest.approx(200 / 3)), ("pan", 1, pytest.approx(100 / 3)), ("straight", 1, pytest.approx(100 / 3))]


def test_paper_mode_marks_descriptors_that_sense_mode_counts_far_less_and_sense_mode_lists_every_term():
    section = sense_section()
    (paper,) = IdentityAnalyzer.report_tables(section, ReportContext(config={}, corpus={}, options=IdentityReportOptions()))
    assert [row[1] for row in paper.rows] == ["", "pan \u2020", "gay"]  # straight hidden; pan: 1 of 5 in sense mode
    assert "\u2020 sense mode counts at least 20% fewer" in paper.note
    options = IdentityReportOptions(identity_mode="sense")
    (sense,) = IdentityAnalyzer.report_tables(section, ReportContext(config={}, corpus={}, options=options))
    assert [row[1] for row in sense.rows] == ["", "gay", "pan", "straight"]
    assert sense.rows[0][3] == 3 and "sense mode" in sense.title and "unlike the Llama 2 paper" in sense.note
    loose = IdentityReportOptions(sense_gap=0.9)
    (unmarked,) = IdentityAnalyzer.report_tables(section, ReportContext(config={}, corpus={}, options=loose))
    assert [row[1] for row in unmarked.rows] == ["", "pan", "gay"]


def test_sense_mode_of_an_out_scanned_before_it_is_a_one_line_error():
    counts = Counter({"documents": 4, "axis/religion": 2, "term/religion/catholic": 2})
    ctx = ReportContext(config={"axes": ["religion"]}, corpus={}, options=IdentityReportOptions(identity_mode="sense"))
    with pytest.raises(ConfigError, match="scanned before sense mode"):
        IdentityAnalyzer.report_section(counts, ctx)


def test_an_axis_named_like_the_review_samples_key_is_refused(tmp_path):
    lexicon = tmp_path / "lex.tsv"
    lexicon.write_text("axis\tterm\nexamples\tgay\nother\tlesbian\n")
    with pytest.raises(ConfigError, match="'examples' is reserved"):
        IdentityAnalyzer({"lexicon": str(lexicon)})
