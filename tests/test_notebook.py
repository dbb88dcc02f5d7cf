"""The notebook API (issue 11 item 8): ``from llama_audit import load_audit``.

Every DataFrame is checked against the report JSON of a small real scan (each number of the JSON
is in the frame, in the row that names it, and the frame has no other rows); the annotations
dataset against the corpus counts; ``diff`` against report/diff.py's JSON; per-group frames
against the per-group JSON; and a missing pandas against the one-line ImportError it must give.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.identities.analyzer import AXIS_LABELS
from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.summary import fold_scores
from llama_audit.cli import command
from llama_audit.filter import FilterRequest, run_filter
from llama_audit.job import ScanRequest, run_scan
from llama_audit.notebook import ANY, INSTALL_HINT, OTHER_GROUP, Audit, AuditDiff, SectionUnavailable, load_audit
from llama_audit.report.diff import build_diff, diff_values
from llama_audit.report.section import ReportContext
from llama_audit.report.tables import build_report
from llama_audit.types import ConfigError
from conftest import write_jsonl

RECORDS = [  # (source, text)
    ("web", "She is a Christian woman who lives in the city with her family and friends."),
    ("web", "He is an American engineer working on bridges and tunnels in the mountains."),
    ("web", "Write to me at jane.doe@example.org about the bridges, she said to him."),
    ("books", "They met a Catholic priest and a Jewish teacher; I told you about them yesterday."),
    ("books", "The gay singer and the Muslim poet met for tea on Sunday with their friends."),
    ("forum", "A female pilot flew the cargo plane through the night, you know."),
    ("forum", "Ceci est un texte en français sur la cuisine et les voyages en Europe."),
    ("forum", "The committee met on Tuesday to discuss the budget for next year."),
]
ANALYZERS = ["language", "pronouns", "identities", "pii"]


def write_corpus(root):
    write_jsonl(root / "corpus" / "a.jsonl",
                [{"id": str(i), "source": s, "text": t} for i, (s, t) in enumerate(RECORDS)])
    return root / "corpus"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    run_scan(ScanRequest(paths=[str(write_corpus(root))], out=str(root / "out"), analyzers=ANALYZERS))
    return str(root / "out")


@pytest.fixture(scope="module")
def audit(out):
    return load_audit(out)


@pytest.fixture(scope="module")
def report(out):
    return build_report(out)


def close(a, b):
    return (a is None and (b is None or (isinstance(b, float) and math.isnan(b)))) or a == pytest.approx(b, abs=0)


def check_share(row, documents, pct, ci95):
    assert row["documents"] == documents and close(pct, row["pct"])
    assert [row["ci_low"], row["ci_high"]] == ci95


def by(df, *keys):
    """``{(key values): row dict}``, asserting the keys name one row each."""
    rows = {tuple(r[k] for k in keys): r for r in df.to_dict("records")}
    assert len(rows) == len(df)
    return rows


# -- importing ------------------------------------------------------------------------------------

def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_llama_audit_imports_no_pandas():
    done = run_python("import sys, llama_audit\nfrom llama_audit import load_audit, Audit\n"
                      "print('pandas' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_pandas_one_import_error_names_the_extra(out):
    done = run_python("import sys\nsys.modules['pandas'] = None\nfrom llama_audit import load_audit\n"
                      f"try:\n    load_audit({out!r})\nexcept ImportError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == INSTALL_HINT and "llama-audit[notebook]" in INSTALL_HINT


def test_an_out_without_an_audit_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no manifest.json"):
        load_audit(str(tmp_path))


# -- the tables against the JSON ------------------------------------------------------------------

def test_report_and_provenance_are_the_json(audit, report):
    assert audit.report == report and audit.provenance == report["provenance"]
    assert set(audit.sections) == {"languages", "pronouns", "identities", "pii"}


def test_pronouns(audit, report):
    section = report["pronouns"]
    rows = by(audit.pronouns(), "header", "group")
    expected = 0
    for header in ("gender", "person"):
        sec = section[header]
        check_share(rows[header, ANY], sec["documents"], sec["pct"], sec["ci95"])
        assert rows[header, ANY]["denominator"] == section["documents"]
        for group, value in sec["rows"].items():
            check_share(rows[header, group], sec["rows_documents"][group], value, sec["rows_ci95"][group])
            assert rows[header, group]["denominator"] == sec["documents"]
        expected += 1 + len(sec["rows"])
    assert len(rows) == expected and "paper_pct" not in audit.pronouns().columns


@pytest.mark.parametrize("mode", ["paper", "sense"])
def test_identities_in_both_modes(audit, report, mode):
    df = audit.identities(mode=mode)
    rows = by(df, "axis", "descriptor")
    expected = 0
    for axis, sec in report["identities"].items():
        shown = sec if mode == "paper" else sec["sense"]
        row = rows[axis, ANY]
        check_share(row, shown["documents"], shown["pct"], shown["ci95"])
        assert row["axis_label"] == AXIS_LABELS[axis] and row["denominator"] == report["corpus"]["in_scope_documents"]
        for d in shown["descriptors"]:
            check_share(rows[axis, d["term"]], d["documents"], d["pct"], d["ci95"])
            assert rows[axis, d["term"]]["denominator"] == shown["documents"]
            if mode == "paper":
                assert rows[axis, d["term"]]["hidden_from_top"] == d["hidden_from_top"]
                assert rows[axis, d["term"]]["sense_documents"] == d["sense_documents"]
        expected += 1 + len(shown["descriptors"])
    assert len(df) == expected
    assert sum(r["documents"] for (axis, d), r in rows.items() if d != ANY) > 0  # the corpus mentions some


def test_identities_mode_is_checked(audit):
    with pytest.raises(ValueError, match="paper, sense"):
        audit.identities(mode="senses")


def test_languages(audit, report):
    section = report["languages"]
    df = audit.languages()
    assert list(df["lang"]) == [r["lang"] for r in section["rows"]]
    for row, r in zip(df.to_dict("records"), section["rows"]):
        check_share(row, r["documents"], r["pct"], r["ci95"])
        assert row["chars"] == r["chars"] and row["denominator"] == section["documents"]
    assert df["documents"].sum() == report["corpus"]["documents"]


def test_pii(audit, report):
    section = report["pii"]
    rows = by(audit.pii(), "where", "type")
    for r in section["by_type"]:
        check_share(rows["text", r["type"]], r["documents"], r["pct_documents"], r["pct_documents_ci95"])
        assert rows["text", r["type"]]["matches"] == r["matches"]
        assert rows["text", r["type"]]["personal"] == r["personal"]
    check_share(rows["text", ANY], section["documents_with_pii"], section["pct_documents"],
                section["pct_documents_ci95"])
    assert rows["text", ANY]["matches"] == section["matches"] and section["documents_with_pii"] >= 1
    assert len(rows) == len(section["by_type"]) + 1


def toxicity_section(scores, corpus) -> dict:
    """Scoring needs a model: the section is made by the analyzer's own report code from folded scores."""
    scores = np.asarray(scores, dtype=float)
    counts = fold_scores(scores, np.ones_like(scores), (scores >= 0.5).astype(float))
    return ToxicityAnalyzer.report_section(
        counts, ReportContext({"model": "stub", "sample_rate": 0.5}, corpus, ToxicityAnalyzer.ReportOptions()))


def test_toxicity_and_its_histogram(out, report):
    section = toxicity_section([0.01, 0.7, 0.2, 0.03, 0.55, np.nan], report["corpus"])
    audit = Audit(out, {**report, "toxicity": section})
    [row] = audit.toxicity().to_dict("records")
    check_share(row, section["documents_ge_0_5"], section["pct_ge_0_5"], section["pct_ge_0_5_ci95"])
    assert row["denominator"] == section["documents_scored"] == 5 and row["threshold"] == section["threshold"]
    assert (row["model"], row["sample_rate"]) == ("stub", 0.5)
    assert {k: row[k] for k in section["quantiles"]} == section["quantiles"]
    histogram = audit.toxicity_histogram()
    assert list(histogram["documents"]) == section["histogram"]["counts"]
    assert list(histogram["bin_low"]) + [histogram["bin_high"].iloc[-1]] == section["histogram"]["edges"]
    assert histogram["share"].sum() == pytest.approx(1.0)


def test_a_section_that_did_not_run_says_why(out, report):
    audit = Audit(out, {**report, "toxicity": {"status": "skipped", "reason": "no model here"}})
    with pytest.raises(SectionUnavailable, match="toxicity did not run in this scan: no model here"):
        audit.toxicity()
    with pytest.raises(SectionUnavailable, match="no 'nothing' section"):
        audit.section("nothing")


def test_a_plugin_section_as_counts(out, report):
    plugin = {"counts": {"urls": 3, "hosts/example.org": 2}}
    audit = Audit(out, {**report, "url_counter": plugin})
    df = audit.section("url_counter")
    assert list(df.columns) == ["key", "value"]
    assert dict(zip(df["key"], df["value"])) == plugin["counts"]
    assert audit.section("language").equals(audit.languages())  # a built-in's by its analyzer's name
    assert audit.section("languages").equals(audit.languages())  # or by its report key


def test_paper_numbers_as_a_column(out):
    with_paper = build_report(out, paper=True)
    audit = load_audit(out, paper=True)
    rows = by(audit.pronouns(), "header", "group")
    for header in ("gender", "person"):
        assert rows[header, ANY]["paper_pct"] == with_paper["pronouns"][header]["paper_pct"]
        for group, value in with_paper["pronouns"][header]["rows_paper_pct"].items():
            assert rows[header, group]["paper_pct"] == value
    languages = by(audit.languages(), "lang")
    for r in with_paper["languages"]["rows"]:
        assert close(r.get("paper_pct"), languages[(r["lang"],)]["paper_pct"])


# -- the annotations --------------------------------------------------------------------------------

def test_annotations_are_a_lazy_dataset_of_every_document(audit, report):
    dataset = audit.annotations()
    assert dataset.count_rows() == report["corpus"]["documents"] == len(RECORDS)
    assert {"doc_id", "lang", "identity_axes", "pii_count"} <= set(dataset.schema.names)
    projected = audit.annotations(columns=["doc_id", "lang"])
    assert projected.schema.names == ["doc_id", "lang"] and projected.to_table().num_rows == len(RECORDS)
    english = audit.annotations(columns=["lang"], filter=pc.field("lang") == "en")
    assert english.count_rows() == by(audit.languages(), "lang")[("en",)]["documents"]
    assert sorted(english.to_table().to_pandas()["lang"].unique()) == ["en"]
    with pytest.raises(KeyError, match="no annotation column 'nope'"):
        audit.annotations(columns=["nope"])


# -- diff ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cleaned(out, tmp_path_factory):
    """NEW: a scan of OUT's corpus cleaned of the documents that mention a religion."""
    root = tmp_path_factory.mktemp("clean")
    run_filter(FilterRequest(out=out, clean=str(root / "clean"), drop=["contains(identity_axes, 'religion')"]))
    run_scan(ScanRequest(paths=[str(root / "clean")], out=str(root / "new"), analyzers=ANALYZERS))
    return str(root / "new")


def test_diff_is_report_diff_json(out, cleaned):
    expected = build_diff(cleaned, out)
    d = load_audit(cleaned).diff(load_audit(out))
    assert d.raw == expected and d.warnings == expected["warnings"]
    assert set(d) == {"corpus", "erasure", *expected["sections"]["compared"]}
    rows = by(d["identities"], "axis", "descriptor")
    for axis, sec in expected["delta"]["identities"].items():
        assert rows[axis, ANY]["documents_delta"] == sec["documents"]
        assert close(sec["pct"], rows[axis, ANY]["pct_delta"])
        assert rows[axis, ANY]["documents_old"] == expected["old"]["identities"][axis]["documents"]
        assert rows[axis, ANY]["documents_new"] == expected["new"]["identities"][axis]["documents"]
        for desc in sec["descriptors"]:
            assert rows[axis, desc["term"]]["documents_delta"] == desc["documents"]
    assert rows["religion", ANY]["documents_new"] == 0 < rows["religion", ANY]["documents_old"]
    assert "ci_low_delta" not in d["identities"].columns and "ci_low_old" in d["identities"].columns
    corpus = by(d["corpus"], "measure")
    assert corpus[("documents",)]["delta"] == expected["delta"]["corpus"]["documents"] < 0
    erasure = {(r["section"], r["axis"]): r for r in d["erasure"].to_dict("records")}
    for key, groups in expected["erasure_detail"].items():
        for axis, detail in groups.items():
            assert close(detail["ratio"], erasure[key, axis]["ratio"])
    assert d["erasure"]["axis"].tolist() == [a for g in expected["erasure_detail"].values() for a in g]


def test_diff_of_toxicity_matches_its_row(out, report):
    """Toxicity's one row is matched by a text (a number such as the threshold would be
    subtracted to 0 in the delta and match nothing)."""
    old = {**report, "toxicity": toxicity_section([0.7, 0.6, 0.1, 0.2], report["corpus"])}
    new = {**report, "toxicity": toxicity_section([0.7, 0.1, 0.2, 0.3, 0.1], report["corpus"])}
    delta = {key: diff_values(old[key], new[key]) for key in ("corpus", "toxicity")}
    d = AuditDiff({"old": old, "new": new, "delta": delta, "sections": {"compared": ["toxicity"]}})
    [row] = d["toxicity"].to_dict("records")
    assert (row["documents_old"], row["documents_new"], row["documents_delta"]) == (2, 1, -1)
    assert row["pct_delta"] == delta["toxicity"]["pct_ge_0_5"] and row["denominator_delta"] == 1
    assert row["threshold_old"] == row["threshold_new"] == 0.5


# -- per group --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grouped_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouped")
    result = CliRunner().invoke(command(), ["scan", str(write_corpus(root)), "--out", str(root / "out"),
                                            "--analyzers", ",".join(ANALYZERS), "--group-by", "source"])
    assert result.exit_code == 0, result.output
    return str(root / "out")


def test_per_group_tables_are_the_per_group_json(grouped_out):
    expected = build_report(grouped_out, group_by="source", top_groups=2)
    audit = load_audit(grouped_out, group_by="source", top_groups=2)
    assert audit.groups == [*expected["groups"], OTHER_GROUP]
    for group in audit.groups:
        part = expected["groups"][group] if group != OTHER_GROUP else expected["other"]
        rows = by(audit.identities(group=group), "axis", "descriptor")
        for axis, sec in part["identities"].items():
            check_share(rows[axis, ANY], sec["documents"], sec["pct"], sec["ci95"])
        languages = by(audit.languages(group=group), "lang")
        for r in part["languages"]["rows"]:
            check_share(languages[(r["lang"],)], r["documents"], r["pct"], r["ci95"])
    stacked = audit.by_group("identities")
    assert list(stacked.columns[:3]) == ["group", "axis", "axis_label"]
    overall = by(audit.identities(), "axis", "descriptor")
    for axis in expected["identities"]:  # the groups (shown and other) add up to the whole corpus
        in_groups = stacked[(stacked["axis"] == axis) & (stacked["descriptor"] == ANY)]["documents"].sum()
        assert in_groups == overall[axis, ANY]["documents"]
    with pytest.raises(KeyError, match="no group 'nope'"):
        audit.pronouns(group="nope")
    with pytest.raises(ValueError, match="group_by=FIELD"):
        load_audit(grouped_out).pronouns(group="web")


def test_a_plugin_sections_list_items_are_keyed_by_their_text_so_a_diff_pairs_the_same_item():
    """Two audits list descriptors in other orders: the diff must compare christian with christian,
    not the first item with the first item."""
    from llama_audit.notebook import flat_items

    old = {"axes": {"religion": {"descriptors": [{"term": "christian", "n": 10}, {"term": "religious", "n": 8}]}}}
    new = {"axes": {"religion": {"descriptors": [{"term": "religious", "n": 8}, {"term": "christian", "n": 7}]}}}
    assert dict(flat_items(old))["axes.religion.descriptors[christian].n"] == 10
    assert dict(flat_items(new))["axes.religion.descriptors[christian].n"] == 7
