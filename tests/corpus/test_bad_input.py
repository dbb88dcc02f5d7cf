"""Bad input never crashes a read and nothing is lost silently.

Every test checks the ledger: documents yielded + bad records == records in the input, and that
no bad-record detail repeats record content (documents may hold personal data).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llama_audit.corpus import BAD_REASONS, BadRecord, ReadSpec, ShardUnreadable, make_shard, read_shard
from llama_audit.corpus import streams

SECRET = "SECRET-4417-jane.doe@example.com"


def read_all(shard, **kw):
    docs, bad = [], []
    for batch, bads, _pos in read_shard(shard, ReadSpec(**kw)):
        bad.extend(bads)
        if batch is not None:
            docs.extend(zip(batch.rows.tolist(), batch.doc_ids, batch.texts))
    for b in bad:
        assert isinstance(b, BadRecord) and b.reason in BAD_REASONS
        assert "\n" not in b.detail and len(b.detail) < 300
        assert SECRET not in b.detail and "SECRET" not in b.detail, b.detail
    rows = [d[0] for d in docs] + [b.row for b in bad]
    assert len(rows) == len(set(rows)), "a record is either a document or a bad record, once"
    return docs, bad


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def good(i: int) -> bytes:
    return orjson.dumps({"id": f"g{i}", "text": f"good {i}"})


MIXED_LINES = [
    good(0),
    b'{"id": "x", "text": "' + SECRET.encode() + b'"',  # unterminated object
    b"[1, 2, \"" + SECRET.encode() + b"\"]",  # valid JSON, not an object
    b'"' + SECRET.encode() + b'"',
    b"42",
    b"",  # blank: not a record
    good(1),
    b'{"id": "m", "body": "' + SECRET.encode() + b'"}',  # no text field
    b'{"id": "n", "text": null}',
    b'{"id": "o", "text": 12345}',
    b'{"id": "p", "text": ["' + SECRET.encode() + b'"]}',
    b'{"id": "q", "text": "' + SECRET.encode() + b' \xff\xfe broken"}',  # invalid UTF-8 mid-file
    b"  \t",  # blank
    b"{not json " + SECRET.encode(),
    good(2),
    b'{"text": "bad escape \\x ' + SECRET.encode() + b'"}',
    good(3),
]
EXPECTED = [  # (row, reason, physical line number)
    (1, "malformed_json", 2),
    (2, "not_an_object", 3),
    (3, "not_an_object", 4),
    (4, "not_an_object", 5),
    (6, "missing_text", 8),
    (7, "missing_text", 9),
    (8, "non_string_text", 10),
    (9, "non_string_text", 11),
    (10, "invalid_utf8", 12),
    (11, "malformed_json", 14),
    (13, "malformed_json", 16),
]
RECORDS = sum(1 for line in MIXED_LINES if line.strip())


@pytest.mark.parametrize("name,enc", [
    ("m.jsonl", lambda b: b),
    ("m.jsonl.gz", gzip.compress),
    ("m.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_every_bad_json_line_is_counted(tmp_path, name, enc):
    shard = make_shard(str(write(tmp_path / name, enc(b"\n".join(MIXED_LINES) + b"\n"))))
    docs, bad = read_all(shard, batch_docs=2)
    assert len(docs) + len(bad) == RECORDS
    assert [(d[0], d[1], d[2]) for d in docs] == [(0, "g0", "good 0"), (5, "g1", "good 1"),
                                                   (12, "g2", "good 2"), (14, "g3", "good 3")]
    assert [(b.row, b.reason) for b in bad] == [(r, reason) for r, reason, _ in EXPECTED]
    for b, (_, _, line) in zip(bad, EXPECTED):
        assert b.detail.startswith(f"line {line}:"), b.detail


def test_many_bad_records_are_flushed_in_bounded_lists(tmp_path):
    lines = [b"nope"] * 50 + [good(0)]
    shard = make_shard(str(write(tmp_path / "b.jsonl", b"\n".join(lines))))
    sizes = [len(bads) for _, bads, _ in read_shard(shard, ReadSpec(batch_docs=8))]
    assert max(sizes) <= 8 and sum(sizes) == 50
    docs, bad = read_all(shard, batch_docs=8)
    assert len(docs) + len(bad) == 51


def _cut(data: bytes, frac: float) -> bytes:
    return data[: int(len(data) * frac)]


@pytest.mark.parametrize("name,enc", [
    ("t.jsonl.gz", lambda b: gzip.compress(b, 6)),
    ("t.json.gz", lambda b: gzip.compress(b, 1)),
    ("t.jsonl.zst", lambda b: zstandard.ZstdCompressor(level=1).compress(b)),
])
def test_truncated_stream_keeps_documents_before_the_cut(tmp_path, name, enc):
    rng = np.random.default_rng(1)
    # incompressible-ish text, so the cut lands in the middle of the records
    records = [{"id": i, "text": SECRET + " " + rng.bytes(300).hex()} for i in range(2000)]
    raw = b"".join(orjson.dumps(r) + b"\n" for r in records)
    shard = make_shard(str(write(tmp_path / name, _cut(enc(raw), 0.6))))
    docs, bad = read_all(shard, batch_docs=64)
    assert 0 < len(docs) < len(records)
    assert [d[0] for d in docs] == list(range(len(docs)))  # a clean prefix
    assert [d[2] for d in docs] == [r["text"] for r in records[: len(docs)]]
    assert [(b.row, b.reason) for b in bad] == [(len(docs), "truncated_stream")]
    # the ledger: documents + the one truncated record stand for the records that were started
    assert len(docs) + len(bad) <= len(records)


def test_gzip_cut_inside_header(tmp_path):
    shard = make_shard(str(write(tmp_path / "h.jsonl.gz", gzip.compress(good(0))[:5])))
    docs, bad = read_all(shard)
    assert docs == [] and [(b.row, b.reason) for b in bad] == [(0, "truncated_stream")]


def test_corrupt_gzip_data_is_a_read_error(tmp_path):
    rng = np.random.default_rng(2)
    records = [{"text": rng.bytes(200).hex()} for _ in range(3000)]
    data = bytearray(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records)))
    mid = len(data) * 3 // 4
    data[mid: mid + 64] = bytes(64)
    shard = make_shard(str(write(tmp_path / "c.jsonl.gz", bytes(data))))
    docs, bad = read_all(shard)
    assert len(docs) > 0 and len(docs) + len(bad) <= len(records)
    # lines decoded from the damaged region are malformed; the CRC check then stops the shard
    assert {b.reason for b in bad[:-1]} <= {"malformed_json", "invalid_utf8"}
    assert bad[-1].reason == "read_error" and "gzip" in bad[-1].detail
    assert bad[-1].row == len(docs) + len(bad) - 1


def test_io_error_mid_file(tmp_path, monkeypatch):
    raw = b"".join(good(i) + b"\n" for i in range(100))
    shard = make_shard(str(write(tmp_path / "io.jsonl", raw)))
    monkeypatch.setattr(streams, "PLAIN_CHUNK", 100)
    real_init = streams.ByteSource.__init__

    class FailingFile:
        def __init__(self, f):
            self.f, self.done = f, 0

        def read(self, n):
            if self.done >= 500:
                raise OSError(5, "Input/output error")
            b = self.f.read(n)
            self.done += len(b)
            return b

        def close(self):
            self.f.close()

    def init(self, path):
        real_init(self, path)
        self.f = FailingFile(self.f)

    monkeypatch.setattr(streams.ByteSource, "__init__", init)
    docs, bad = read_all(shard)
    assert 0 < len(docs) < 100
    assert [d[1] for d in docs] == [f"g{i}" for i in range(len(docs))]
    assert [(b.row, b.reason) for b in bad] == [(len(docs), "read_error")]
    assert "Input/output error" in bad[0].detail


@pytest.mark.parametrize("name", ["x.jsonl", "x.jsonl.gz", "x.parquet", "x.txt", "x.arrow"])
def test_directory_in_place_of_a_file_is_unreadable(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    shard = make_shard(str(d))
    with pytest.raises(ShardUnreadable) as ei:
        read_shard(shard)  # raised by the call, before iteration
    assert str(d) in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("name", ["x.parquet", "x.jsonl.gz", "x.jsonl.zst", "x.arrow"])
def test_wrong_content_is_unreadable(tmp_path, name):
    shard = make_shard(str(write(tmp_path / name, b"this is plain text " + SECRET.encode() * 20)))
    with pytest.raises(ShardUnreadable) as ei:
        read_shard(shard)
    msg = str(ei.value)
    assert str(tmp_path / name) in msg and "\n" not in msg and SECRET not in msg


@pytest.mark.parametrize("content", [
    b'[\n  {"text": "a"},\n  {"text": "b"}\n]\n',
    b'[{"text": "a"},\n{"text": "b"}]\n',
    b'[{"text": "a"}, {"text": "b"}]\n',
    b'{\n  "text": "a"\n}\n',
])
def test_whole_json_document_is_refused(tmp_path, content):
    shard = make_shard(str(write(tmp_path / "data.json", content)))
    with pytest.raises(ShardUnreadable, match="not JSON lines"):
        read_shard(shard)


def test_json_lines_of_arrays_are_records(tmp_path):
    shard = make_shard(str(write(tmp_path / "arr.jsonl", b"[1, 2]\n[3]\n")))
    docs, bad = read_all(shard)
    assert docs == [] and [b.reason for b in bad] == ["not_an_object", "not_an_object"]


def test_txt_invalid_utf8(tmp_path):
    shard = make_shard(str(write(tmp_path / "u.txt", SECRET.encode() + b" ok \xc3\x28 more")))
    docs, bad = read_all(shard)
    assert docs == [] and [(b.row, b.reason) for b in bad] == [(0, "invalid_utf8")]
    assert f"byte {len(SECRET) + 4}" in bad[0].detail


# --- Parquet and Arrow ------------------------------------------------------------------------


def test_parquet_missing_text_column(tmp_path):
    pq.write_table(pa.table({"body": [SECRET] * 25, "id": list(range(25))}), tmp_path / "m.parquet",
                   row_group_size=10)
    shard = make_shard(str(tmp_path / "m.parquet"))
    with pytest.raises(ShardUnreadable) as ei:  # the schema says so for all rows: one shard error, at once
        read_shard(shard, ReadSpec(batch_docs=8))
    assert "'text'" in str(ei.value) and "'body'" in str(ei.value) and "SECRET" not in str(ei.value)


def test_parquet_null_and_non_string_text(tmp_path):
    pq.write_table(pa.table({"text": ["a", None, "c", None]}), tmp_path / "n.parquet")
    docs, bad = read_all(make_shard(str(tmp_path / "n.parquet")))
    assert [d[0] for d in docs] == [0, 2] and [(b.row, b.reason) for b in bad] == [(1, "missing_text"), (3, "missing_text")]

    pq.write_table(pa.table({"text": pa.array([1, None, 3], pa.int64())}), tmp_path / "i.parquet")
    docs, bad = read_all(make_shard(str(tmp_path / "i.parquet")))
    assert docs == [] and [b.reason for b in bad] == ["non_string_text", "missing_text", "non_string_text"]

    pq.write_table(pa.table({"text": pa.array([SECRET.encode()] * 3, pa.binary())}), tmp_path / "b.parquet")
    docs, bad = read_all(make_shard(str(tmp_path / "b.parquet")))
    assert docs == [] and [b.reason for b in bad] == ["non_string_text"] * 3


def test_parquet_invalid_utf8_value(tmp_path):
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], dtype=np.int32).tobytes())
    arr = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"ok\xff\xfeno")])
    pq.write_table(pa.table({"text": arr}), tmp_path / "u.parquet")
    docs, bad = read_all(make_shard(str(tmp_path / "u.parquet")))
    assert [(d[0], d[2]) for d in docs] == [(0, "ok"), (2, "no")]
    assert [(b.row, b.reason) for b in bad] == [(1, "invalid_utf8")]


def test_parquet_corrupt_row_group_is_skipped(tmp_path):
    texts = [f"{SECRET} document number {i} " * 20 for i in range(300)]
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": texts}), path, row_group_size=100, compression="zstd",
                   use_dictionary=False, write_statistics=False)
    cc = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    end = cc.data_page_offset + cc.total_compressed_size
    for k in range(end - 200, end - 100):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    docs, bad = read_all(make_shard(str(path)), batch_docs=64)
    assert len(docs) + len(bad) == 300
    assert [d[0] for d in docs] == list(range(100)) + list(range(200, 300))
    assert {b.reason for b in bad} == {"read_error"} and [b.row for b in bad] == list(range(100, 200))


def test_truncated_arrow_stream(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [f"{SECRET} {i}" * 50 for i in range(3000)]})
    with contextlib.redirect_stderr(io.StringIO()):
        ds.save_to_disk(str(tmp_path / "hf"))
    arrow = tmp_path / "hf" / "data-00000-of-00001.arrow"
    data = arrow.read_bytes()
    cut = write(tmp_path / "cut.arrow", data[: len(data) // 2])
    docs, bad = read_all(make_shard(str(cut)))
    assert len(docs) > 0 and [d[0] for d in docs] == list(range(len(docs)))
    assert [(b.row, b.reason) for b in bad] == [(len(docs), "truncated_stream")]


def test_arrow_missing_and_non_string_text(tmp_path):
    path = tmp_path / "s.arrow"
    table = pa.table({"text": pa.array([1, 2, None], pa.int32()), "body": ["a", "b", "c"]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    docs, bad = read_all(make_shard(str(path)))
    assert docs == [] and [b.reason for b in bad] == ["non_string_text", "non_string_text", "missing_text"]
    with pytest.raises(ShardUnreadable, match="no record has field 'missing'"):
        read_all(make_shard(str(path)), text_field="missing")
    docs, bad = read_all(make_shard(str(path)), text_field="body")
    assert bad == [] and [d[2] for d in docs] == ["a", "b", "c"]


def test_generator_closed_early_releases_the_file(tmp_path):
    raw = b"".join(good(i) + b"\n" for i in range(5000))
    shard = make_shard(str(write(tmp_path / "e.jsonl.gz", gzip.compress(raw))))
    it = read_shard(shard, ReadSpec(batch_docs=10))
    next(it)
    it.close()
    fds = os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []
    assert all(os.path.realpath(f"/proc/self/fd/{fd}") != shard.path for fd in fds)


# --- a text field that no record has: one shard-level error (the --text-field typo) -------------


def _no_text_field_shards(tmp_path):
    """The same three records, none with a 'content' field, in every format that has fields."""
    records = [{"id": "a", "text": SECRET, "meta": {"n": 1}}, {"id": "b", "text": SECRET}, {"id": "c", "body": SECRET}]
    lines = b"".join(orjson.dumps(r) + b"\n" for r in records)
    table = pa.table({"id": ["a", "b", "c"], "text": [SECRET] * 3, "meta": [{"n": 1}, None, None]})
    write(tmp_path / "n.jsonl", lines)
    write(tmp_path / "n.jsonl.gz", gzip.compress(lines))
    write(tmp_path / "n.jsonl.zst", zstandard.ZstdCompressor().compress(lines))
    pq.write_table(table, tmp_path / "n.parquet")
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return [make_shard(str(tmp_path / n)) for n in
            ("n.jsonl", "n.jsonl.gz", "n.jsonl.zst", "n.parquet", "s.arrow", "f.arrow")]


@pytest.mark.parametrize("text_field", ["content", "meta.content"])
def test_text_field_in_no_record_is_one_shard_error(tmp_path, text_field):
    for shard in _no_text_field_shards(tmp_path):
        with pytest.raises(ShardUnreadable) as ei:
            read_all(shard, text_field=text_field)
        msg = str(ei.value)
        assert shard.path in msg and repr(text_field) in msg and "\n" not in msg, msg
        assert "'id'" in msg and "'text'" in msg and "'meta'" in msg, msg  # the fields that exist, by name
        assert "SECRET" not in msg and "example.com" not in msg  # never a value
    # the right field reads every format in full
    for shard in _no_text_field_shards(tmp_path):
        docs, bad = read_all(shard)
        assert len(docs) + len(bad) == 3


def test_text_field_in_some_records_stays_bad_records(tmp_path):
    lines = [orjson.dumps({"id": "x", "body": SECRET})] * 3 + [orjson.dumps({"content": "ok"}), b"not json"]
    shard = make_shard(str(write(tmp_path / "some.jsonl", b"\n".join(lines) + b"\n")))
    docs, bad = read_all(shard, text_field="content", batch_docs=2)
    assert [d[2] for d in docs] == ["ok"] and [b.reason for b in bad] == ["missing_text"] * 3 + ["malformed_json"]
    # null or non-string values: the field exists, so these are bad records too
    lines = [orjson.dumps({"content": None}), orjson.dumps({"content": 5})]
    shard = make_shard(str(write(tmp_path / "null.jsonl", b"\n".join(lines))))
    docs, bad = read_all(shard, text_field="content")
    assert docs == [] and [b.reason for b in bad] == ["missing_text", "non_string_text"]
    # no object at all (only malformed lines, or an empty file): nothing to name, bad records as before
    shard = make_shard(str(write(tmp_path / "junk.jsonl", b"junk\n[1]\n")))
    docs, bad = read_all(shard, text_field="content")
    assert docs == [] and [b.reason for b in bad] == ["malformed_json", "not_an_object"]


def test_many_fields_are_listed_by_name_and_bounded(tmp_path):
    record = {f"field_{k}": SECRET for k in range(40)}
    record["odd\x1bname"] = 1
    shard = make_shard(str(write(tmp_path / "wide.jsonl", orjson.dumps(record) + b"\n")))
    with pytest.raises(ShardUnreadable) as ei:
        read_all(shard, text_field="content")
    msg = str(ei.value)
    assert "'field_0'" in msg and "'field_39'" not in msg and "..." in msg and len(msg) < 400
    assert "\x1b" not in msg


def test_scan_marks_a_shard_without_the_field_failed(tmp_path):
    from llama_audit.job import ScanRequest, run_scan
    from llama_audit.scan import ReadOptions

    (tmp_path / "c").mkdir()
    write(tmp_path / "c" / "a.jsonl", orjson.dumps({"id": "a", "text": SECRET}) + b"\n")
    res = run_scan(ScanRequest(paths=[str(tmp_path / "c")], out=str(tmp_path / "o"), analyzers=["language"],
                               languages=("all",), read=ReadOptions(text_field="content")))
    manifest = orjson.loads((tmp_path / "o" / "manifest.json").read_bytes())
    (entry,) = manifest["shards"]
    assert entry["status"] == "error" and "no record has field 'content'" in entry.get("error", str(entry))
    assert os.listdir(tmp_path / "o" / "annotations") == []  # the partial annotation file was aborted
    assert res is not None


# --- zero-byte files (issue 9, item 4, reader side) ---------------------------------------------


@pytest.mark.parametrize("name", ["z.jsonl", "z.jsonl.gz", "z.jsonl.zst"])
def test_zero_byte_json_lines_is_an_empty_shard(tmp_path, name):
    shard = make_shard(str(write(tmp_path / name, b"")))
    assert read_all(shard) == ([], [])
    from llama_audit.corpus import format_for
    assert list(format_for(shard.format).records(shard)) == []


@pytest.mark.parametrize("name", ["z.parquet", "z.arrow"])
def test_zero_byte_columnar_file_is_one_line_unreadable(tmp_path, name):
    shard = make_shard(str(write(tmp_path / name, b"")))
    with pytest.raises(ShardUnreadable) as ei:
        read_shard(shard, ReadSpec())
    assert str(ei.value).startswith(shard.path) and "\n" not in str(ei.value)
