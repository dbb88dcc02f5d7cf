"""`filter` under faults and mistakes: bad shards are refused one by one (the others are written),
nothing is written outside CLEAN, a rule set that empties the corpus is refused before writing,
killed runs leave no temporaries behind after a rerun, and filter's own files never look like
shards when CLEAN is scanned."""

import gzip
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit.cli import app
from llama_audit.corpus import discover
from llama_audit.filter import FilterRequest, run_filter
from llama_audit.job import ScanRequest, run_scan
from llama_audit.types import ConfigError

EN = "The committee met on Tuesday to discuss the budget for next year and the new school."
FR = "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine et de l'école."
MAIL = "Please write to ana.lopez@example.org about the budget of the new school next year."


def scan(tmp_path, analyzers=("language",)):
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=list(analyzers),
                         languages=("all",)))
    return str(tmp_path / "out")


def manifest_entry(tmp_path, shard):
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    return m, next(e for e in m["shards"] if e["shard"] == shard)


def test_zero_byte_jsonl_gz_shard_and_the_later_shards_are_written(tmp_path, make_jsonl):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl.gz").write_bytes(b"")
    for name in ("b", "c"):
        make_jsonl(f"{name}.jsonl.gz", [{"id": name, "text": EN}], gz=True)
    out = scan(tmp_path, ("language", "pii"))
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"], redact="pii"))
    assert res.exit_code == 0 and res.shards_done == 3 and res.kept == 2
    assert gzip.decompress((tmp_path / "clean" / "a.jsonl.gz").read_bytes()) == b""
    for name in ("b", "c"):
        assert json.loads(gzip.decompress((tmp_path / "clean" / f"{name}.jsonl.gz").read_bytes()))["id"] == name


@pytest.mark.parametrize("field,value", [("shard", "../../../escaped.jsonl"), ("shard", "/tmp/abs.jsonl"),
                                         ("key", "../../escaped")])
def test_a_manifest_entry_pointing_outside_clean_is_refused_before_writing(tmp_path, make_jsonl, field, value):
    make_jsonl("a.jsonl", [{"text": EN}])
    make_jsonl("b.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    m, entry = manifest_entry(tmp_path, "b.jsonl")
    entry[field] = value
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(m))
    clean = tmp_path / "deep" / "er" / "clean"
    with pytest.raises(ConfigError, match="outside") as info:
        run_filter(FilterRequest(out=out, clean=str(clean)))
    assert value in str(info.value)
    assert not clean.exists() and not (tmp_path / "escaped.jsonl").exists()


def test_a_symlink_inside_clean_cannot_lead_writes_outside(tmp_path, make_jsonl):
    make_jsonl("sub/a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    (tmp_path / "clean").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "clean" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside"):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean")))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def _unwritable(tmp_path: Path) -> Path:
    """A CLEAN that cannot be created: a read-only directory (as a user) or sysfs (as root)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro / "clean"
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("running as root without a read-only file system to write to")
    return Path("/sys/kernel/llama_audit_clean")


def test_unwritable_clean_is_a_one_line_error_with_the_path(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    clean = _unwritable(tmp_path)
    res = CliRunner().invoke(app, ["filter", out, "--out", str(clean)])
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(clean) in lines[0] and "writable" in lines[0]


def test_rules_dropping_everything_are_refused_unless_allow_empty_and_dry_run_writes_nothing(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "a", "text": EN}, {"id": "b", "text": EN}])
    make_jsonl("b.jsonl", [{"id": "c", "text": FR}])
    out = scan(tmp_path)
    clean = tmp_path / "clean"
    with pytest.raises(ConfigError, match="drop all 3 documents"):
        run_filter(FilterRequest(out=out, clean=str(clean), keep=["lang == 'de'"]))
    assert not clean.exists()
    warnings = []
    dry = run_filter(FilterRequest(out=out, clean=str(clean), drop=["lang == 'en'"], keep=["lang == 'en'"],
                                   dry_run=True), warnings.append)
    assert not clean.exists()
    assert dry.dry_run and dry.documents == 3 and dry.kept == 0
    assert dict(dry.dropped) == {"drop: lang == 'en'": 2, "keep: lang == 'en'": 1}
    assert any("drop 3 of 3 documents" in w for w in warnings)
    res = run_filter(FilterRequest(out=out, clean=str(clean), keep=["lang == 'de'"], allow_empty=True))
    assert res.kept == 0 and (clean / "a.jsonl").read_bytes() == b""


def test_language_literal_outside_the_models_labels_is_refused(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": EN}])
    out = scan(tmp_path)
    with pytest.raises(ConfigError, match="lang never has the value 'english'"):
        run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), keep=["lang == 'english'"]))
    assert not (tmp_path / "clean").exists()


@pytest.mark.parametrize("spec,msg", [("pii:EMAIL", "unknown PII type(s) EMAIL"),
                                      ("pii:PHONE_NUMBER", "the scan did not look for PHONE_NUMBER")])
def test_redacting_a_type_that_cannot_be_there_is_refused(tmp_path, make_jsonl, spec, msg):
    make_jsonl("a.jsonl", [{"text": MAIL}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["pii"],
                         languages=("all",), options={"pii": {"types": "EMAIL_ADDRESS"}}))
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        run_filter(FilterRequest(out=str(tmp_path / "out"), clean=str(tmp_path / "clean"), redact=spec))
    res = run_filter(FilterRequest(out=str(tmp_path / "out"), clean=str(tmp_path / "clean"),
                                   redact="pii:email_address"))
    assert dict(res.redacted_spans) == {"EMAIL_ADDRESS": 1}


def test_truncated_annotation_refuses_its_shard_and_writes_the_others(tmp_path, make_jsonl):
    for name in ("a", "b", "c"):
        make_jsonl(f"{name}.jsonl", [{"id": name, "text": EN}])
    out = scan(tmp_path)
    _, entry = manifest_entry(tmp_path, "b.jsonl")
    ann = tmp_path / "out" / "annotations" / f"{entry['key']}.parquet"
    ann.write_bytes(ann.read_bytes()[: ann.stat().st_size // 2])
    warnings = []
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), drop=["lang != 'en'"]), warnings.append)
    assert res.exit_code == 1 and list(res.refused) == ["b.jsonl"]
    assert "rescan" in res.refused["b.jsonl"] and "\n" not in res.refused["b.jsonl"]
    assert any(w.startswith("refusing shard b.jsonl") for w in warnings)
    assert (tmp_path / "clean" / "a.jsonl").is_file() and (tmp_path / "clean" / "c.jsonl").is_file()
    assert not (tmp_path / "clean" / "b.jsonl").exists()


def test_bookkeeping_lives_in_llama_audit_folder_and_scanning_clean_reads_only_the_corpus(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "a", "text": EN}, {"id": "b", "text": FR}])
    out = scan(tmp_path)
    clean = tmp_path / "clean"
    run_filter(FilterRequest(out=out, clean=str(clean), drop=["lang != 'en'"]))
    assert sorted(p.name for p in clean.iterdir()) == ["_llama_audit", "a.jsonl"]
    assert (clean / "_llama_audit" / "filter_log.parquet").is_file()
    assert (clean / "_llama_audit" / "filter_manifest.json").is_file()
    assert [s.rel for s in discover([str(clean)])] == ["a.jsonl"]


def test_a_clean_with_the_old_dot_filter_state_resumes(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": "a", "text": EN}, {"id": "b", "text": FR}])
    out = scan(tmp_path)
    clean = tmp_path / "clean"
    run_filter(FilterRequest(out=out, clean=str(clean), drop=["lang != 'en'"]))
    # lay CLEAN out as the previous release did
    os.replace(clean / "_llama_audit" / "filter_state", clean / ".filter")
    os.replace(clean / "_llama_audit" / "filter_log.parquet", clean / "filter_log.parquet")
    os.replace(clean / "_llama_audit" / "filter_manifest.json", clean / "filter_manifest.json")
    res = run_filter(FilterRequest(out=out, clean=str(clean), drop=["lang != 'en'"]))
    assert res.shards_skipped == 1 and res.shards_done == 0 and res.kept == 1
    assert sorted(p.name for p in clean.iterdir()) == ["_llama_audit", "a.jsonl"]


def test_rerun_removes_stale_temporaries_of_our_naming_only(tmp_path, make_jsonl):
    make_jsonl("sub/a.jsonl", [{"id": "a", "text": EN}])
    out = scan(tmp_path)
    clean = tmp_path / "clean"
    run_filter(FilterRequest(out=out, clean=str(clean)))
    old = time.time() - 3600
    stale = [clean / "sub" / ".a.jsonl.k3j_x9ab.tmp", clean / "_llama_audit" / ".filter_log.parquet.abcd1234.tmp",
             clean / "_llama_audit" / "filter_state" / "done" / ".x.json.zzzzzzzz.tmp"]
    kept = [clean / "sub" / ".notes.txt.abcd1234.tmp",  # not a name filter writes there
            clean / "sub" / ".a.jsonl.fresh123.tmp"]  # recent: maybe a concurrent run's
    for p in stale + kept:
        p.write_bytes(b"x")
    for p in stale + kept[:1]:
        os.utime(p, (old, old))
    res = run_filter(FilterRequest(out=out, clean=str(clean)))
    assert res.stale_temporaries_removed == 3
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def _add_field_spans(ann_path: Path, spans_per_row: list) -> None:
    """Stand-in for `scan --pii-fields`: add the pii_field_spans column to an annotation file."""
    t = pq.read_table(ann_path)
    struct = pa.struct([("field", pa.string()), ("type", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
    pq.write_table(t.append_column("pii_field_spans", pa.array(spans_per_row, pa.list_(struct))), ann_path)


def test_redact_pii_also_redacts_spans_in_other_fields_but_never_the_id(tmp_path):
    (tmp_path / "corpus").mkdir()
    recs = [{"id": "bob@example.com", "meta": {"author": "mail bob@example.com now", "n": 12345678901234567890123},
             "title": "Call +1 202 555 0143", "text": MAIL},
            {"id": "b", "meta": {"author": "nobody"}, "title": "plain", "text": EN}]
    lines = [json.dumps(r) for r in recs]
    (tmp_path / "corpus" / "a.jsonl").write_text("\n".join(lines) + "\n")
    out = scan(tmp_path, ("pii",))
    _, entry = manifest_entry(tmp_path, "a.jsonl")
    _add_field_spans(tmp_path / "out" / "annotations" / f"{entry['key']}.parquet", [
        [{"field": "id", "type": "EMAIL_ADDRESS", "start": 0, "end": 15},
         {"field": "meta.author", "type": "EMAIL_ADDRESS", "start": 5, "end": 20},
         {"field": "title", "type": "PHONE_NUMBER", "start": 5, "end": 20}],
        []])
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), redact="pii"))
    got = (tmp_path / "clean" / "a.jsonl").read_text().splitlines()
    first = json.loads(got[0])
    assert first["id"] == "bob@example.com"  # ids are never rewritten
    assert first["meta"] == {"author": "mail <EMAIL_ADDRESS> now", "n": 12345678901234567890123}
    assert first["title"] == "Call <PHONE_NUMBER>"
    assert first["text"] == MAIL.replace("ana.lopez@example.org", "<EMAIL_ADDRESS>")
    assert got[1] == lines[1]
    assert dict(res.redacted_spans) == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1} and res.redacted_documents == 1
    # only the listed types
    res = run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean2"), redact="pii:PHONE_NUMBER"))
    first = json.loads((tmp_path / "clean2" / "a.jsonl").read_text().splitlines()[0])
    assert first["title"] == "Call <PHONE_NUMBER>" and first["meta"]["author"] == "mail bob@example.com now"


def test_redact_field_spans_in_parquet(tmp_path):
    (tmp_path / "corpus").mkdir()
    table = pa.table({"id": ["a", "b"], "text": [MAIL, EN],
                      "meta": pa.array([{"author": "bob@example.com"}, {"author": None}],
                                       pa.struct([("author", pa.string())]))})
    pq.write_table(table, tmp_path / "corpus" / "p.parquet")
    out = scan(tmp_path, ("pii",))
    _, entry = manifest_entry(tmp_path, "p.parquet")
    _add_field_spans(tmp_path / "out" / "annotations" / f"{entry['key']}.parquet",
                     [[{"field": "meta.author", "type": "EMAIL_ADDRESS", "start": 0, "end": 15}], []])
    run_filter(FilterRequest(out=out, clean=str(tmp_path / "clean"), redact="pii"))
    got = pq.read_table(tmp_path / "clean" / "p.parquet")
    assert got.schema.equals(table.schema)
    assert got["meta"].to_pylist() == [{"author": "<EMAIL_ADDRESS>"}, {"author": None}]
    assert got["text"].to_pylist()[0] == MAIL.replace("ana.lopez@example.org", "<EMAIL_ADDRESS>")
