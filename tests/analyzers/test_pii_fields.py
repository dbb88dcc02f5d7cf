"""PII outside the text field: ``--pii-fields`` scans further string fields (dotted paths) and the
document ids are checked for PII, counted and warned about, never stored or rewritten."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.base import BatchContext, ConfigError, DocBatch
from llama_audit.analyzers.pii import PiiAnalyzer
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.partials import from_table
from llama_audit.report.section import ReportContext, wilson_ci95
from llama_audit.store import OutDir

EMAIL = "jane.roe.7731@example-mail.org"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
SEEDED = (EMAIL, PHONE, CARD)

FIELD_SPAN_TYPE = pa.list_(pa.struct([("field", pa.string()), ("type", pa.string()),
                                      ("start", pa.int64()), ("end", pa.int64())]))


def make_batch(texts, fields=None, ids=None):
    rows = np.arange(len(texts), dtype=np.int64)
    return DocBatch("s.jsonl", rows, ids or [f"s.jsonl:{r}" for r in rows], list(texts), fields or {})


def annotate(analyzer, batch):
    analyzer.setup()
    ctx = BatchContext(in_scope=np.ones(len(batch), dtype=bool), columns={})
    cols = analyzer.annotate(batch, ctx)
    return cols, analyzer.fold(cols, ctx)


# -- options ---------------------------------------------------------------------------------------

def test_fields_option_parses_dotted_paths_from_the_command_line():
    options = PiiAnalyzer.options_from({"fields": " meta.author , url,meta.author"})
    analyzer = PiiAnalyzer(options)
    assert analyzer.input_fields() == ("meta.author", "url")  # duplicates once, in the order given
    assert analyzer.config()["fields"] == ["meta.author", "url"]


@pytest.mark.parametrize("bad", ["meta..author", ".url", "url.", "a, .b"])
def test_malformed_field_paths_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError, match=r"^--pii-fields .*dotted path") as info:
        PiiAnalyzer({"fields": bad})
    assert "\n" not in str(info.value)


def test_without_fields_columns_config_and_inputs_are_unchanged():
    analyzer = PiiAnalyzer()
    assert [f.name for f in analyzer.fields()] == ["pii_spans", "pii_count"]
    assert analyzer.input_fields() == ()
    assert "fields" not in analyzer.config()  # the config hash of a default scan does not move
    cols, counts = annotate(analyzer, make_batch(["plain text"], ids=["doc-1"]))
    assert set(cols) == {"pii_spans", "pii_count"}
    assert not any(k.startswith("fields/") for k in counts)


# -- annotate and fold -------------------------------------------------------------------------------

def test_field_spans_are_code_point_offsets_into_the_field_value():
    author = [f"Ünïcödé Jane <{EMAIL}>", "nobody", None, 7731, [EMAIL], {"x": EMAIL}, f"call {PHONE}"]
    url = [f"https://x.org/?card={CARD}", None, "", None, None, None, None]
    batch = make_batch([f"text {i}" for i in range(len(author))], {"meta.author": author, "url": url})
    analyzer = PiiAnalyzer({"fields": "meta.author,url"})
    assert analyzer.fields()[-1] == pa.field("pii_field_spans", FIELD_SPAN_TYPE)
    cols, counts = annotate(analyzer, batch)
    spans = cols["pii_field_spans"]
    assert spans.type == FIELD_SPAN_TYPE and len(spans) == len(author)
    values = {"meta.author": author, "url": url}
    got = [[(s["field"], s["type"], values[s["field"]][i][s["start"]:s["end"]]) for s in doc]
           for i, doc in enumerate(spans.to_pylist())]
    assert got == [[("meta.author", "EMAIL_ADDRESS", EMAIL), ("url", "CREDIT_CARD", CARD)],
                   [], [], [], [], [], [("meta.author", "PHONE_NUMBER", PHONE)]]
    assert cols["pii_count"].to_pylist() == [0] * len(author)  # the text's count only
    assert counts["fields/documents_with_pii"] == 2
    assert counts["fields/matches/EMAIL_ADDRESS"] == 1 and counts["fields/documents/EMAIL_ADDRESS"] == 1
    assert counts["fields/matches/CREDIT_CARD"] == 1 and counts["fields/matches/PHONE_NUMBER"] == 1
    assert counts["fields/documents_with_pii/meta.author"] == 2 and counts["fields/documents_with_pii/url"] == 1
    # numbers, lists and objects are not scanned (their offsets would locate nothing): counted
    assert counts["fields/not_text/meta.author"] == 3 and "fields/not_text/url" not in counts
    assert counts["fields/absent/meta.author"] == 1 and counts["fields/absent/url"] == 5
    assert counts["documents_with_pii"] == 0  # text counts untouched


def test_field_counts_are_additive_over_batches():
    author = [EMAIL, "x", f"{PHONE} and {EMAIL}", None, 5]
    texts = ["a", "b", "c", "d", "e"]
    analyzer = PiiAnalyzer({"fields": "author"})
    whole = annotate(analyzer, make_batch(texts, {"author": author}))[1]
    parts = Counter()
    for i in range(0, 5, 2):
        parts += annotate(analyzer, make_batch(texts[i:i + 2], {"author": author[i:i + 2]}))[1]
    assert parts == whole


def test_ids_with_pii_are_counted_but_never_stored():
    ids = [f"user-{EMAIL}", "web-00001", "host-93.184.216.34", "s.jsonl:3"]
    batch = make_batch(["a", "b", "c", "d"], ids=ids)
    analyzer = PiiAnalyzer()
    cols, counts = annotate(analyzer, batch)
    assert counts["documents_with_pii_in_id"] == 2
    assert counts["id/documents/EMAIL_ADDRESS"] == 1 and counts["id/documents/IP_ADDRESS"] == 1
    rendered = json.dumps({k: v.to_pylist() for k, v in cols.items()}) + repr(counts)
    assert not any(value in rendered for value in SEEDED)
    clean = annotate(PiiAnalyzer(), make_batch(["a"], ids=["dclm:majority_data.jsonl:0"]))[1]
    # no key at all: the partials of a corpus without PII in its ids are what they were
    assert "documents_with_pii_in_id" not in clean and not any(k.startswith("id/") for k in clean)


def test_numeric_ids_are_not_phone_or_card_numbers():
    """Ids are mostly counters and hashes: a 10-digit id is a valid US number and many 16-digit ids
    pass Luhn, so phone and card numbers are not looked for in ids (nor counted as PII there)."""
    ids = ["2025550143", "4111111111111111", f"tel:{PHONE}", "0f8fad5b-d9cb-469f-a165-70867728950e"]
    counts = annotate(PiiAnalyzer(), make_batch(["a"] * 4, ids=ids))[1]
    assert "documents_with_pii_in_id" not in counts
    assert "documents_with_pii_in_id" not in annotate(PiiAnalyzer({"types": "PHONE_NUMBER,CREDIT_CARD"}),
                                                      make_batch(["a"], ids=[f"user-{EMAIL}"]))[1]


def test_id_counts_follow_the_selected_types():
    batch = make_batch(["a"], ids=[f"user-{EMAIL}"])
    assert "documents_with_pii_in_id" not in annotate(PiiAnalyzer({"types": "PHONE_NUMBER"}), batch)[1]


# -- warnings and report -----------------------------------------------------------------------------

def test_scan_warnings_give_counts_never_values():
    counts = Counter({"documents": 10, "documents_with_pii_in_id": 3, "id/documents/EMAIL_ADDRESS": 3,
                      "fields/absent/meta.typo": 10, "fields/not_text/meta.n": 4, "fields/absent/meta.n": 1})
    messages = PiiAnalyzer.scan_warnings(counts)
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    ids, typo, not_text = messages
    assert "3 of 10 documents" in ids and "EMAIL_ADDRESS" in ids and "never rewritten" in ids
    assert "meta.typo" in typo and "no document" in typo
    assert "meta.n" in not_text and "4 documents" in not_text and "not scanned" in not_text
    assert PiiAnalyzer.scan_warnings(Counter({"documents": 10, "documents_with_pii": 4})) == []


def pii_section(counts, config):
    from llama_audit.analyzers.options import AnalyzerOptions

    ctx = ReportContext(config=config, corpus={"chars": 1000, "documents": counts["documents"]},
                        options=AnalyzerOptions())
    section = PiiAnalyzer.report_section(counts, ctx)
    return section, PiiAnalyzer.report_tables(section, ctx), PiiAnalyzer.report_csv(section, ctx)


def test_report_section_shows_field_and_id_counts_only_when_there():
    base = Counter({"documents": 10, "documents_with_pii": 2, "matches/EMAIL_ADDRESS": 2, "documents/EMAIL_ADDRESS": 2})
    plain, plain_tables, plain_csv = pii_section(base, {"types": ["EMAIL_ADDRESS"]})
    assert "fields" not in plain and "documents_with_pii_in_id" not in plain and len(plain_tables) == 1
    counts = base + Counter({"documents_with_pii_in_id": 1, "fields/documents_with_pii": 3,
                             "fields/matches/PHONE_NUMBER": 4, "fields/documents/PHONE_NUMBER": 3,
                             "fields/documents_with_pii/meta.author": 3, "fields/not_text/meta.tags": 10,
                             "fields/absent/meta.author": 1, "fields/absent/meta.tags": 0})
    section, tables, csv_rows = pii_section(counts, {"types": ["EMAIL_ADDRESS"], "fields": ["meta.author", "meta.tags"]})
    assert section["documents_with_pii_in_id"] == 1
    fields = section["fields"]
    assert fields["scanned"] == ["meta.author", "meta.tags"]
    assert fields["documents_with_pii"] == 3 and fields["pct_documents"] == 30.0 and fields["matches"] == 4
    assert fields["pct_documents_ci95"] == wilson_ci95(3, 10)
    assert fields["by_type"] == [{"type": "PHONE_NUMBER", "matches": 4, "documents": 3, "pct_documents": 30.0,
                                  "pct_documents_ci95": wilson_ci95(3, 10), "personal": True}]
    assert fields["by_field"] == [
        {"field": "meta.author", "documents_with_pii": 3, "pct_documents": 30.0,
         "pct_documents_ci95": wilson_ci95(3, 10), "not_text": 0, "absent": 1},
        {"field": "meta.tags", "documents_with_pii": 0, "pct_documents": 0.0, "pct_documents_ci95": wilson_ci95(0, 10),
         "not_text": 10, "absent": 0}]
    assert [t.title for t in tables][1:] == ["PII in other fields (--pii-fields)", "PII per field (--pii-fields)"]
    assert any(r[1] == "id" and r[3] == 1 for r in csv_rows)
    assert any(r[1] == "fields" and r[2] == "PHONE_NUMBER" and r[5] == 4 for r in csv_rows)
    assert any(r[1] == "field" and r[2] == "meta.author" and r[3] == 3 for r in csv_rows)


# -- end to end ----------------------------------------------------------------------------------------

def test_scan_with_pii_fields_reads_nested_json_and_parquet_structs(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "1", "text": "hello", "meta": {"author": f"Jane {EMAIL}"}},
                           {"id": "2", "text": "world", "meta": {"author": 42}},
                           {"id": "3", "text": "again"}])
    pq.write_table(pa.table({"id": ["4"], "text": ["parquet"],
                             "meta": pa.array([{"author": f"tel {PHONE}"}])}), tmp_path / "corpus" / "b.parquet")
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["pii"], languages=("all",),
                         options={"pii": {"fields": "meta.author"}}))
    o = OutDir(out)
    counts = from_table(pq.read_table(o.summary_path()))["pii"]
    assert counts["fields/documents_with_pii"] == 2 and counts["fields/not_text/meta.author"] == 1
    assert counts["fields/absent/meta.author"] == 1 and counts["documents_with_pii"] == 0
    annotations = pa.concat_tables(pq.read_table(p) for p in sorted((out / "annotations").glob("*.parquet")))
    assert annotations.schema.field("pii_field_spans").type == FIELD_SPAN_TYPE
    found = {(s["field"], s["type"]) for doc in annotations["pii_field_spans"].to_pylist() for s in doc}
    assert found == {("meta.author", "EMAIL_ADDRESS"), ("meta.author", "PHONE_NUMBER")}
    assert json.loads(o.manifest_path.read_text())["config"]["analyzers"]["pii"]["fields"] == ["meta.author"]


def test_default_scan_writes_no_field_column(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "1", "text": f"mail {EMAIL}", "meta": {"author": EMAIL}}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["pii"],
                         languages=("all",)))
    names = pq.read_schema(next((tmp_path / "out" / "annotations").glob("*.parquet"))).names
    assert "pii_field_spans" not in names and "pii_spans" in names


def test_cli_scan_warns_once_about_ids_with_pii_without_the_value(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": f"user-{EMAIL}", "text": "hello"}, {"id": "2", "text": "x"}])
    res = CliRunner().invoke(command(), ["scan", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"),
                                         "--analyzers", "pii", "--languages", "all", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("1 of 2 documents") == 1 and "document id" in res.stderr
    assert EMAIL not in res.output


def test_detect_sparse_finds_what_detect_batch_finds():
    """The joined-batch fast path for short strings never hides a span (lone surrogates included)."""
    from llama_audit.analyzers.pii import PiiDetector

    texts = ["doc-1", f"user-{EMAIL}", "", "x\udc80y " + EMAIL, CARD, "a\nb", "93.184.216.34", "plain"]
    detector = PiiDetector()
    full = detector.detect_batch(texts)
    assert detector.detect_sparse(texts) == {i: spans for i, spans in enumerate(full) if spans}
    assert detector.detect_sparse(["doc-1", "doc-2"]) == {}
