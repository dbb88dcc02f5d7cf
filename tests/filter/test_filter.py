"""`filter`: annotations + corpus -> cleaned corpus with the same layout, and a drop log."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_audit.filter import FilterRequest, run_filter
from llama_audit.filter.expr import Predicate
from llama_audit.filter.rewrite import redact_spans
from llama_audit.job import ScanRequest, run_scan
from llama_audit.types import ConfigError

EN = "The committee met on Tuesday to discuss the budget for next year and the new school."
FR = "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine et de l'école."


def scan(tmp_path, analyzers=("language", "pronouns")):
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=list(analyzers),
                         languages=("all",)))
    return str(tmp_path / "out")


def test_drop_keeps_layout_format_and_untouched_bytes(tmp_path, make_jsonl):
    recs = [{"id": "a", "text": EN, "url": "u1"}, {"id": "b", "text": FR, "meta": {"x": [1, 2]}},
            {"id": "c", "text": EN + " She said.", "n": 1.5}]
    make_jsonl("sub/part.jsonl.gz", recs, gz=True)
    out = scan(tmp_path)
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"]))
    assert res.kept == 2 and dict(res.dropped) == {"drop: lang != 'en'": 1}
    cleaned = tmp_path / "clean" / "sub" / "part.jsonl.gz"
    with gzip.open(cleaned, "rb") as f:
        lines = f.read().splitlines()
    original = [json.dumps(r, ensure_ascii=False).encode() for r in recs]
    assert lines == [original[0], original[2]]  # other fields pass through byte for byte
    log = pq.read_table(tmp_path / "clean" / "_llama_audit" / "filter_log.parquet").to_pylist()
    assert log == [{"doc_id": "b", "shard": "sub/part.jsonl.gz", "row": 1, "reason": "drop: lang != 'en'"}]
    # resume: nothing to do the second time, same result
    res2 = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"]))
    assert res2.shards_skipped == 1 and res2.kept == 2


def test_keep_with_list_functions_and_parquet(tmp_path):
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"text": ["She and he", "nothing", "they"], "extra": [1, 2, 3]}),
                   tmp_path / "corpus" / "p.parquet")
    out = scan(tmp_path)
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"),
                                   keep=["contains(pronoun_groups, 'she') or len(pronoun_groups) == 0"]))
    t = pq.read_table(tmp_path / "clean" / "p.parquet")
    assert t.to_pylist() == [{"text": "She and he", "extra": 1}, {"text": "nothing", "extra": 2}]
    assert res.kept == 2


def test_bad_records_are_dropped_and_logged(tmp_path, make_jsonl):
    p = make_jsonl("a.jsonl", [{"text": EN}])
    with open(p, "a") as f:
        f.write("{broken\n")
        f.write(json.dumps({"text": FR}) + "\n")
    out = scan(tmp_path)
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean")))
    assert res.kept == 2 and sum(res.dropped.values()) == 1
    assert len((tmp_path / "clean" / "a.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("expr,msg", [
    ("nope == 1", "unknown column 'nope'"),
    ("lang ==", "cannot parse"),
    ("__import__('os').system('x')", "unsupported syntax"),
    ("lang in 'en'", "'in' takes a tuple or list"),
    ("lang.upper() == 'EN'", "unsupported syntax"),
])
def test_bad_expressions_fail_before_writing(tmp_path, make_jsonl, expr, msg):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=[expr]))
    assert not (tmp_path / "clean").exists()


def test_changed_shard_is_refused(tmp_path, make_jsonl):
    p = make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    p.write_text(json.dumps({"text": FR}) + "\n")
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean")))
    assert res.exit_code == 1 and "changed since the scan" in res.refused["a.jsonl"]
    assert not (tmp_path / "clean" / "a.jsonl").exists()


def test_refuses_to_overwrite_the_input(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    with pytest.raises(ConfigError, match="would overwrite the input"):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "corpus")))


def test_redact_needs_the_pii_analyzer(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    with pytest.raises(ConfigError, match="needs a scan with the pii analyzer"):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), redact="pii"))


def test_predicate_semantics_with_nulls():
    t = pa.table({"lang": ["en", "fr", None], "x": [0.7, None, 0.1]})
    assert Predicate("lang != 'en'", t.schema)(t).to_pylist() == [False, True, False]
    assert Predicate("lang in ('en', 'de')", t.schema)(t).to_pylist() == [True, False, False]
    assert Predicate("lang not in ('en',)", t.schema)(t).to_pylist() == [False, True, False]
    assert Predicate("x >= 0.5 or lang is None", t.schema)(t).to_pylist() == [True, False, True]
    assert Predicate("not x < 0.5", t.schema)(t).to_pylist() == [True, False, False]
    assert Predicate("0 < x < 0.5", t.schema)(t).to_pylist() == [False, False, True]


def test_redact_spans_code_points_and_overlaps():
    text = "é mail a@b.co and 555-0100"
    spans = [{"type": "EMAIL_ADDRESS", "start": 7, "end": 13}, {"type": "PHONE_NUMBER", "start": 18, "end": 26},
             {"type": "X", "start": 8, "end": 10}]
    assert redact_spans(text, spans) == "é mail <EMAIL_ADDRESS> and <PHONE_NUMBER>"


@pytest.mark.parametrize("expr", ["doc_id == 2", "len(lang) > 2", "pronoun_groups == 'she'"])
def test_type_mismatch_is_a_one_line_error_before_writing(tmp_path, make_jsonl, expr):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    with pytest.raises(ConfigError, match="does not fit the column types"):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=[expr]))
    assert not (tmp_path / "clean").exists()
    # the corrected command is not refused
    run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"]))


def test_eq_none_means_is_none():
    t = pa.table({"x": [1.0, None]})
    assert Predicate("x == None", t.schema)(t).to_pylist() == [False, True]
    assert Predicate("x != None", t.schema)(t).to_pylist() == [True, False]


def test_redaction_keeps_big_integers_exact(tmp_path):
    (tmp_path / "corpus").mkdir()
    line = '{"id": 123456789012345678901234567891, "meta": {"h": 340282366920938463463374607431768211455}, "text": "mail zed@example.com now"}'
    (tmp_path / "corpus" / "a.jsonl").write_text(line + "\n")
    out = scan(tmp_path, analyzers=("pii",))
    import pyarrow.parquet as pq
    ann = pq.read_table(next((tmp_path / "out" / "annotations").glob("*.parquet")))
    assert ann["doc_id"].to_pylist() == ["123456789012345678901234567891"]
    run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), redact="pii"))
    cleaned = json.loads((tmp_path / "clean" / "a.jsonl").read_text())
    assert cleaned["id"] == 123456789012345678901234567891
    assert cleaned["meta"]["h"] == 340282366920938463463374607431768211455
    assert cleaned["text"] == "mail <EMAIL_ADDRESS> now"


def test_text_files_plain_and_compressed(tmp_path):
    """One-document text files: dropped ones are not written, redacted ones keep their compression."""
    import zstandard

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mail = EN + " Write to ana.lopez@example.org today."
    (corpus / "a.txt").write_text(mail, encoding="utf-8")
    (corpus / "b.txt.gz").write_bytes(gzip.compress(("\ufeff" + mail).encode()))
    (corpus / "c.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(mail.encode()))
    (corpus / "d.txt.gz").write_bytes(gzip.compress(FR.encode()))
    out = scan(tmp_path, analyzers=("language", "pii"))
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"], redact="pii"))
    assert res.kept == 3 and dict(res.dropped) == {"drop: lang != 'en'": 1}
    clean = tmp_path / "clean"
    expected = EN + " Write to <EMAIL_ADDRESS> today."
    assert (clean / "a.txt").read_text(encoding="utf-8") == expected
    assert gzip.decompress((clean / "b.txt.gz").read_bytes()).decode() == expected
    assert zstandard.ZstdDecompressor().stream_reader((clean / "c.txt.zst").read_bytes()).read().decode() == expected
    assert not (clean / "d.txt.gz").exists()


def test_other_settings_are_refused_unless_overwrite(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "e", "text": EN}, {"id": "f", "text": FR}])
    make_jsonl("b.jsonl", [{"id": "g", "text": FR}])
    out = scan(tmp_path)
    clean = str(tmp_path / "clean")
    run_filter(FilterRequest(out=out, clean=clean, drop=["lang != 'en'"]))
    with pytest.raises(ConfigError, match="was filtered with other settings"):
        run_filter(FilterRequest(out=out, clean=clean, drop=["lang == 'en'"]))
    res = run_filter(FilterRequest(out=out, clean=clean, drop=["lang == 'en'"], overwrite=True))
    assert res.shards_done == 2 and res.shards_skipped == 0 and res.kept == 2
    log = pq.read_table(tmp_path / "clean" / "_llama_audit" / "filter_log.parquet").to_pylist()
    assert log == [{"doc_id": "e", "shard": "a.jsonl", "row": 0, "reason": "drop: lang == 'en'"}]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    key = next(e["key"] for e in manifest["shards"] if e["shard"] == "a.jsonl")
    assert json.loads((tmp_path / "clean" / "_llama_audit" / "filter_state" / "done" / f"{key}.json").read_text())["kept"] == 1
