"""The format layer: one Format per input format behind format_for; raw records numbered exactly
like the reader numbers them; shards round-trip through their done-marker record."""

from __future__ import annotations

import gzip
import json

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llama_audit.corpus import (FORMATS, Format, ReadSpec, Shard, UnsupportedFormat, discover, format_for, make_shard,
                                 read_shard)
from llama_audit.corpus.registry import SUFFIXES

TEXTS = [f"document number {i}" for i in range(12)]


def json_lines() -> bytes:
    """JSON lines with blank lines and bad records between the documents."""
    lines = []
    for i, t in enumerate(TEXTS):
        lines.append(json.dumps({"id": f"d{i}", "text": t}))
        if i == 2:
            lines += ["", "{not json", "   "]
        if i == 5:
            lines += [json.dumps({"id": "no-text"}), "[1, 2]"]
    return ("\n".join(lines) + "\n").encode()


def table() -> pa.Table:
    texts = [t if i % 5 else None for i, t in enumerate(TEXTS)]  # some nulls: bad records
    return pa.table({"id": [f"d{i}" for i in range(len(TEXTS))], "text": texts})


def build(tmp_path, fmt: str) -> Shard:
    path = tmp_path / {"jsonl": "x.jsonl", "jsonl.gz": "x.jsonl.gz", "jsonl.zst": "x.jsonl.zst", "parquet": "x.parquet",
                       "hf_arrow": "x.arrow", "txt": "x.txt", "txt.gz": "x.txt.gz", "txt.zst": "x.txt.zst"}[fmt]
    if fmt.startswith("jsonl"):
        data = json_lines()
    elif fmt.startswith("txt"):
        data = "\ufeff".join(["", "one document\nover lines"]).encode()
    if fmt.endswith(".gz"):
        data = gzip.compress(data)
    elif fmt.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    if fmt == "parquet":
        pq.write_table(table(), path, row_group_size=5)
    elif fmt == "hf_arrow":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table().schema) as w:
            w.write_table(table(), max_chunksize=4)
    else:
        path.write_bytes(data)
    shard = make_shard(str(path))
    assert shard.format == fmt
    return shard


def test_every_format_has_one_format_object():
    assert all(isinstance(format_for(f), Format) for f in FORMATS)
    assert {f for _, f in SUFFIXES} == set(FORMATS)
    with pytest.raises(UnsupportedFormat, match="unknown shard format 'docx'"):
        format_for("docx")


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_records_are_numbered_like_the_reader(tmp_path, fmt):
    shard = build(tmp_path, fmt)
    docs, bad_rows = {}, set()
    for batch, bads, _ in read_shard(shard, ReadSpec(batch_docs=3)):
        bad_rows |= {b.row for b in bads}
        if batch is not None:
            docs.update(zip(batch.rows.tolist(), batch.texts))
    assert bad_rows or fmt.startswith("txt")
    records = dict(format_for(fmt).records(shard))
    assert sorted(records) == sorted(set(docs) | bad_rows)  # every record, and nothing else
    for row, text in docs.items():
        raw = records[row]
        if fmt.startswith("jsonl"):
            assert orjson.loads(raw)["text"] == text
        elif fmt.startswith("txt"):
            assert raw.decode() == text
        else:
            assert raw["text"] == text


def test_raw_records_stop_where_the_stream_breaks(tmp_path):
    data = gzip.compress(b"".join(orjson.dumps({"text": t}) + b"\n" for t in TEXTS * 200))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    shard = make_shard(str(path))
    docs, bad = [], []
    for batch, bads, _ in read_shard(shard):
        bad.extend(bads)
        docs.extend(batch.rows.tolist() if batch is not None else [])
    assert bad[-1].reason == "truncated_stream"
    assert [row for row, _ in format_for(shard.format).records(shard)] == sorted(docs + [b.row for b in bad[:-1]])


def test_shard_round_trips_through_its_record(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jsonl").write_text('{"text": "x"}\n')
    (shard,) = discover([str(tmp_path)])
    record = shard.to_record()
    assert set(record) == {"shard", "key", "path", "format", "size", "mtime_ns", "root"}
    assert json.loads(json.dumps(record)) == record
    assert Shard.from_record(record) == shard
    # a manifest entry has no root: it is the path less the shard's relative path
    manifest_entry = {k: v for k, v in record.items() if k != "root"}
    assert Shard.from_record(manifest_entry) == shard


@pytest.mark.parametrize("fmt", FORMATS)
def test_rewrite_keeps_format_compression_and_untouched_records(tmp_path, fmt):
    shard = build(tmp_path, fmt)
    original = dict(format_for(fmt).records(shard))
    doc_rows = [r for batch, _, _ in read_shard(shard) if batch is not None for r in batch.rows.tolist()]
    kept_rows = sorted(original)[::2]  # every other record, bad ones included
    target = next(r for r in kept_rows if r in doc_rows)
    keep = np.zeros(max(original) + 1, dtype=bool)
    keep[kept_rows] = True
    dest = tmp_path / "clean" / ("y" + shard.rel[1:])
    format_for(fmt).rewrite(shard, dest, keep, {target: str.upper}, "text")
    got = [record for _, record in format_for(fmt).records(make_shard(str(dest), fmt=fmt))]
    assert len(got) == len(kept_rows)
    for row, record in zip(kept_rows, got):
        if row != target:
            assert record == original[row]  # untouched: the same line bytes, or the same values
        elif fmt.startswith("txt"):
            assert record == original[row].upper()
        else:
            before = orjson.loads(original[row]) if fmt.startswith("jsonl") else original[row]
            after = orjson.loads(record) if fmt.startswith("jsonl") else record
            assert after == {**before, "text": before["text"].upper()}
    with open(dest, "rb") as f:
        head = f.read(4)
    if fmt.endswith(".gz"):
        assert head.startswith(b"\x1f\x8b")
    elif fmt.endswith(".zst"):
        assert head == b"\x28\xb5\x2f\xfd"
    elif fmt == "parquet":
        assert pq.read_schema(dest).equals(table().schema)


def test_rewrite_keeps_the_arrow_ipc_flavour(tmp_path):
    path = tmp_path / "f.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table().schema) as w:
        w.write_table(table())
    shard = make_shard(str(path))
    dest = tmp_path / "clean" / "f.arrow"
    format_for(shard.format).rewrite(shard, dest, np.ones(len(TEXTS), dtype=bool), {}, "text")
    assert dest.read_bytes()[:6] == b"ARROW1"
    assert pa.ipc.open_file(str(dest)).read_all().equals(table())


def test_dropped_text_file_is_not_written(tmp_path):
    shard = build(tmp_path, "txt.gz")
    dest = tmp_path / "clean" / "x.txt.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    format_for(shard.format).rewrite(shard, dest, np.zeros(1, dtype=bool), {}, "text")
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_read_spec_defaults_and_the_scan_options_that_leave_limits_to_the_job():
    from llama_audit.scan import ReadOptions

    assert ReadOptions().spec() == ReadSpec()
    spec = ReadOptions(text_field="meta.text", batch_docs=8, fields=["meta.source"]).spec()
    assert spec == ReadSpec(text_field="meta.text", batch_docs=8, fields=("meta.source",))
    with pytest.raises(ValueError, match="positive"):
        ReadSpec(batch_bytes=0)
