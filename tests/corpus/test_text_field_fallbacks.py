"""--text-field / --id-field fallbacks (issue 12 item 4): ``text,content,raw_content`` takes, per
record, the first listed field that holds a string; which field was used is counted (reader ->
partials -> summary -> report); a record with none is a located bad record naming the fields;
a shard where none of the fields exists at all stays one shard error; filter redacts the field
that was read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_audit import partials
from llama_audit.corpus import ReadSpec, ShardUnreadable, format_for, make_shard, read_shard

FALLBACKS = "text,content,meta.raw"

RECORDS = [
    {"id": "a", "text": "from text", "content": "not this one"},
    {"id": "b", "content": "from content"},
    {"id": "c", "text": None, "meta": {"raw": "from meta.raw"}},
    {"id": "d", "text": 7, "content": "content after a number"},  # a non-string is not "present as a string"
    {"id": "e", "other": "nothing listed"},  # none of the fields: missing_text
    {"id": "f", "text": 5, "content": None},  # a non-string and a null: non_string_text
]
USED = ["text", "content", "meta.raw", "content"]  # per document read, the field its text came from


def read_all(shard, **kw):
    docs, used, bad = [], Counter(), []
    for batch, bads, _ in read_shard(shard, ReadSpec(**kw)):
        bad.extend(bads)
        if batch is not None:
            docs.extend(zip(batch.rows.tolist(), batch.doc_ids, batch.texts))
            used.update(batch.text_fields)
            assert sum(batch.text_fields.values()) in (0, len(batch))
    return docs, used, bad


def write_jsonl(tmp_path, records, name="c.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return make_shard(str(path))


def write_parquet(tmp_path, records, name="c.parquet", schema=None):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path, row_group_size=2)
    return make_shard(str(path))


def write_arrow(tmp_path, records, schema):
    path = tmp_path / "c.arrow"
    table = pa.Table.from_pylist(records, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for rb in table.to_batches(max_chunksize=2):
            writer.write_batch(rb)
    return make_shard(str(path))


def expected_docs():
    texts = ["from text", "from content", "from meta.raw", "content after a number"]
    return [(row, rid, t) for row, rid, t in zip([0, 1, 2, 3], "abcd", texts)]


def test_jsonl_first_string_field_wins_and_is_counted(tmp_path):
    shard = write_jsonl(tmp_path, RECORDS)
    docs, used, bad = read_all(shard, text_field=FALLBACKS, batch_docs=2)
    assert docs == expected_docs()
    assert used == Counter(USED)
    assert [(b.row, b.reason) for b in bad] == [(4, "missing_text"), (5, "non_string_text")]
    assert all(f"'{f}'" in bad[0].detail for f in FALLBACKS.split(","))  # the reason names the fields
    assert "'text'" in bad[1].detail and "number" in bad[1].detail
    # one field: nothing is counted (a scan without fallbacks keeps its outputs byte for byte)
    _, used, _ = read_all(shard, text_field="text")
    assert used == Counter()


PARQUET_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("content", pa.large_string()),
                            ("meta", pa.struct([("raw", pa.string())]))])
COLUMNAR = [
    {"id": "a", "text": "from text", "content": "not this one", "meta": None},
    {"id": "b", "text": None, "content": "from content", "meta": {"raw": None}},
    {"id": "c", "text": None, "content": None, "meta": {"raw": "from meta.raw"}},
    {"id": "d", "text": None, "content": "content after a number", "meta": None},
    {"id": "e", "text": None, "content": None, "meta": {"raw": None}},
]


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_columnar_fallbacks(tmp_path, kind):
    make = write_parquet if kind == "parquet" else write_arrow
    shard = make(tmp_path, COLUMNAR, schema=PARQUET_SCHEMA)
    docs, used, bad = read_all(shard, text_field=FALLBACKS, batch_docs=3)
    assert docs == expected_docs()
    assert used == Counter(USED)
    assert [(b.row, b.reason) for b in bad] == [(4, "missing_text")]
    assert "'content'" in bad[0].detail and "'meta.raw'" in bad[0].detail
    # a listed column that the file lacks is skipped; the others are read
    shard = make(tmp_path, [{"id": "x", "content": "only content"}],
                 schema=pa.schema([("id", pa.string()), ("content", pa.string())]))
    docs, used, bad = read_all(shard, text_field=FALLBACKS)
    assert docs == [(0, "x", "only content")] and used == Counter({"content": 1}) and not bad


def test_columnar_non_string_column_is_not_a_text(tmp_path):
    schema = pa.schema([("text", pa.int64()), ("content", pa.string())])
    shard = write_parquet(tmp_path, [{"text": 1, "content": "c"}, {"text": 2, "content": None},
                                     {"text": None, "content": None}], schema=schema)
    docs, used, bad = read_all(shard, text_field="text,content")
    assert [d[2] for d in docs] == ["c"] and used == Counter({"content": 1})
    assert [(b.row, b.reason) for b in bad] == [(1, "non_string_text"), (2, "missing_text")]


def test_no_listed_field_anywhere_is_one_shard_error(tmp_path):
    shard = write_jsonl(tmp_path, [{"body": "x"}, {"body": "y"}])
    with pytest.raises(ShardUnreadable, match="no record has any of the fields 'text', 'content'"):
        list(read_shard(shard, ReadSpec(text_field="text,content")))
    shard = write_parquet(tmp_path, [{"body": "x"}])
    with pytest.raises(ShardUnreadable, match="'body'"):
        read_shard(shard, ReadSpec(text_field="text,content"))


def test_id_fallbacks(tmp_path):
    shard = write_jsonl(tmp_path, [{"text": "t", "doc_id": "D1"}, {"text": "u", "id": 5, "doc_id": "D2"},
                                   {"text": "v"}])
    docs, _, _ = read_all(shard, id_field="id,doc_id")
    assert [d[1] for d in docs] == ["D1", "5", f"{shard.rel}:2"]
    shard = write_parquet(tmp_path, [{"text": "t", "id": None, "doc_id": "D1"}, {"text": "u", "id": "I", "doc_id": "D2"},
                                     {"text": "v", "id": None, "doc_id": None}])
    docs, _, _ = read_all(shard, id_field="id,doc_id")
    assert [d[1] for d in docs] == ["D1", "I", f"{shard.rel}:2"]


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_rewrite_redacts_the_field_that_was_read(tmp_path, kind):
    if kind == "jsonl":
        shard = write_jsonl(tmp_path, RECORDS)
    else:
        shard = write_parquet(tmp_path, COLUMNAR, schema=PARQUET_SCHEMA)
    fmt = format_for(shard.format)
    dest = tmp_path / f"clean.{kind}"
    keep = np.ones(len(RECORDS), dtype=bool)
    redact = {row: (lambda s: "X" * len(s)) for row in range(4)}
    fmt.rewrite(shard, dest, keep, redact, FALLBACKS)
    out = make_shard(str(dest))
    docs, used, _ = read_all(out, text_field=FALLBACKS)
    assert [t for _, _, t in docs] == ["X" * len(t) for _, _, t in expected_docs()]
    assert used == Counter(USED)
    if kind == "jsonl":  # the field after the one read is untouched
        assert orjson.loads(dest.read_bytes().splitlines()[0])["content"] == "not this one"


# --- end to end through the CLI ----------------------------------------------------------------

def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "llama_audit.cli", *map(str, args)], input=stdin,
                          capture_output=True, timeout=300)


def test_cli_counts_fields_in_summary_report_and_config(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus, RECORDS, "a.jsonl")
    write_parquet(corpus, COLUMNAR, "b.parquet", schema=PARQUET_SCHEMA)
    out = tmp_path / "out"
    res = cli("scan", corpus, "--out", out, "--analyzers", "pronouns", "--languages", "all", "--quiet",
              "--text-field", " text, content ,meta.raw")
    assert res.returncode == 0, res.stderr.decode()
    summary = partials.from_table(pq.read_table(out / "summary" / "counts.parquet"))["corpus"]
    assert {k: v for k, v in summary.items() if k.startswith("text_field/")} == {
        f"text_field/{f}": 2 * n for f, n in Counter(USED).items()}
    per_shard = [partials.from_table(pq.read_table(p))["corpus"] for p in sorted((out / "partials").iterdir())]
    assert all(sum(v for k, v in c.items() if k.startswith("text_field/")) == 4 for c in per_shard)
    assert json.loads((out / "config.json").read_text())["config"]["text_field"] == FALLBACKS  # normalised, locked
    report = json.loads(cli("report", out, "--format", "json").stdout)
    assert report["corpus"]["text_field_used"] == {f: 2 * n for f, n in Counter(USED).items()}
    table = cli("report", out, "--format", "markdown").stdout.decode()
    assert "text from: meta.raw" in table
    # another list is another configuration: refused as for any change of --text-field
    res = cli("scan", corpus, "--out", out, "--analyzers", "pronouns", "--languages", "all", "--quiet",
              "--text-field", "content,text")
    assert res.returncode == 2


@pytest.mark.parametrize("value", ["text,,content", "text,text", ","])
def test_cli_bad_field_lists_are_rc2_before_work(tmp_path, value):
    (tmp_path / "c").mkdir()
    write_jsonl(tmp_path / "c", RECORDS)
    for option in ("--text-field", "--id-field"):
        res = cli("scan", tmp_path / "c", "--out", tmp_path / "o", "--analyzers", "pronouns", option, value)
        err = res.stderr.decode()
        assert res.returncode == 2 and option in err and "Traceback" not in err, err
        assert not (tmp_path / "o").exists()
