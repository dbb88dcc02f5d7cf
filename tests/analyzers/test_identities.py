"""The identities analyzer on its own: what it annotates and records for the report, and how its
report section reads an OUT written before terms could be hidden from the top listing."""

from collections import Counter

import numpy as np

from llama_audit.analyzers.base import BatchContext
from llama_audit.analyzers.identities import IdentityAnalyzer, IdentityReportOptions
from llama_audit.report.section import ReportContext
from llama_audit.types import DocBatch


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
        "term/religion/buddhist": 1})


def test_config_records_the_hidden_terms_for_the_report():
    """The report runs from OUT without the lexicon: the scan's configuration carries the terms
    hidden from the top listing, per axis."""
    config = IdentityAnalyzer().config()
    assert config["hidden_from_top"] == {"race_ethnicity": ["black", "white"], "sexual_orientation": ["straight"]}


def test_an_out_scanned_before_hidden_terms_marks_nothing_hidden():
    counts = Counter({"documents": 4, "axis/religion": 2, "term/religion/catholic": 2})
    ctx = ReportContext(config={"axes": ["religion"]}, corpus={}, options=IdentityReportOptions())
    section = IdentityAnalyzer.report_section(counts, ctx)
    assert section == {"religion": {"pct": 50.0, "documents": 2, "hidden_from_top": [], "descriptors": [
        {"term": "catholic", "documents": 2, "pct": 100.0, "hidden_from_top": False}]}}
    (table,) = IdentityAnalyzer.report_tables(section, ReportContext(config={}, corpus={}, options=IdentityReportOptions()))
    assert [row[1] for row in table.rows] == ["", "catholic"] and "not listed" not in table.note
