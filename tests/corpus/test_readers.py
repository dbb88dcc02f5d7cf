"""Streaming readers: every format round-trips, ids, field options, bounded batches, progress."""

from __future__ import annotations

import contextlib
import gzip
import io

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llama_audit.analyzers.base import DocBatch
from llama_audit.corpus import ReadSpec, ShardUnreadable, discover, make_shard, read_shard
from llama_audit.corpus import streams

TEXTS = [
    "Hello world.",
    "Ünïcödé — 日本語のテキスト 🙂",
    "",  # an empty document is a document
    "line one\nline two\r\nline three",
    'quotes " and \\ backslashes',
    "x" * 5000,
]


def read_all(shard, **kw):
    """(docs as (row, id, text), bad records, batches) with the interface's invariants checked."""
    docs, bad, batches = [], [], []
    last = -1
    for batch, bads, pos in read_shard(shard, ReadSpec(**kw)):
        assert isinstance(pos, int) and last <= pos <= shard.size
        last = pos
        assert isinstance(bads, list)
        bad.extend(bads)
        if batch is not None:
            assert isinstance(batch, DocBatch) and batch.shard == shard.rel
            assert batch.rows.dtype == np.int64
            assert len(batch) > 0 and len(batch.rows) == len(batch.doc_ids) == len(batch.texts)
            assert all(isinstance(t, str) for t in batch.texts)
            assert all(isinstance(i, str) for i in batch.doc_ids)
            batches.append(batch)
            docs.extend(zip(batch.rows.tolist(), batch.doc_ids, batch.texts))
    assert last == shard.size, "the last item reports the whole file consumed"
    return docs, bad, batches


def jsonl_bytes(records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


ENCODERS = {
    "x.jsonl": lambda b: b,
    "x.ndjson": lambda b: b,
    "x.json": lambda b: b,
    "x.jsonl.gz": gzip.compress,
    "x.json.gz": gzip.compress,
    "x.jsonl.zst": lambda b: zstandard.ZstdCompressor().compress(b),
    "x.json.zst": lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_json_lines_round_trip(tmp_path, name):
    records = [{"id": f"doc-{i}", "text": t, "meta": {"k": [1, 2]}} for i, t in enumerate(TEXTS)]
    (shard,) = discover([str(write(tmp_path / name, ENCODERS[name](jsonl_bytes(records))))])
    docs, bad, _ = read_all(shard)
    assert bad == []
    assert docs == [(i, f"doc-{i}", t) for i, t in enumerate(TEXTS)]


def test_json_lines_ids_present_absent_int_null(tmp_path):
    records = [
        {"id": "a", "text": "t0"},
        {"text": "t1"},
        {"id": 42, "text": "t2"},
        {"id": None, "text": "t3"},
        {"id": 1.5, "text": "t4"},
        {"id": True, "text": "t5"},
        {"id": "", "text": "t6"},
    ]
    (shard,) = discover([str(write(tmp_path / "sub" / "s.jsonl", jsonl_bytes(records)))])
    docs, bad, _ = read_all(shard)
    assert bad == []
    assert [d[1] for d in docs] == ["a", "s.jsonl:1", "42", "s.jsonl:3", "1.5", "true", ""]
    # the default id uses the shard path relative to the corpus root
    (shard,) = discover([str(tmp_path)])
    docs, _, _ = read_all(shard)
    assert docs[1][1] == "sub/s.jsonl:1"


def test_json_lines_text_and_id_fields(tmp_path):
    records = [{"content": f"c{i}", "text": 5, "uid": f"u{i}", "id": "ignored"} for i in range(4)]
    shard = make_shard(str(write(tmp_path / "f.jsonl.gz", gzip.compress(jsonl_bytes(records)))))
    docs, bad, _ = read_all(shard, text_field="content", id_field="uid")
    assert bad == []
    assert docs == [(i, f"u{i}", f"c{i}") for i in range(4)]


def test_json_lines_line_endings_blank_lines_and_bom(tmp_path):
    data = (b"\xef\xbb\xbf" + b'{"text": "a"}\r\n' + b"\n" + b"   \t\r\n" + b'{"text": "b"}\n' + b"\n"
            + b'{"text": "c"}')  # no final newline
    shard = make_shard(str(write(tmp_path / "f.jsonl", data)))
    docs, bad, _ = read_all(shard)
    assert bad == []
    # blank lines are not records: they take no row index
    assert docs == [(0, "f.jsonl:0", "a"), (1, "f.jsonl:1", "b"), (2, "f.jsonl:2", "c")]


def test_empty_files(tmp_path):
    for name, data in [("e.jsonl", b""), ("e.jsonl.gz", gzip.compress(b"")), ("w.jsonl", b"\n \n"),
                       ("e.jsonl.zst", zstandard.ZstdCompressor().compress(b""))]:
        docs, bad, _ = read_all(make_shard(str(write(tmp_path / name, data))))
        assert docs == [] and bad == [], name
    docs, bad, _ = read_all(make_shard(str(write(tmp_path / "e.txt", b""))))
    assert docs == [(0, "e.txt:0", "")] and bad == []


def test_multi_member_gzip_and_multi_frame_zstd(tmp_path):
    part1 = jsonl_bytes([{"text": f"a{i}"} for i in range(3)])
    part2 = jsonl_bytes([{"text": f"b{i}"} for i in range(2)])
    gz = gzip.compress(part1) + gzip.compress(part2) + b"\0" * 16  # padded, as tape tools do
    zst = zstandard.ZstdCompressor().compress(part1) + zstandard.ZstdCompressor().compress(part2)
    for name, data in [("m.jsonl.gz", gz), ("m.jsonl.zst", zst)]:
        docs, bad, _ = read_all(make_shard(str(write(tmp_path / name, data))))
        assert bad == [] and [d[2] for d in docs] == ["a0", "a1", "a2", "b0", "b1"], name


@pytest.mark.parametrize("name", ["x.jsonl", "x.jsonl.gz", "x.jsonl.zst", "x.txt", "x.txt.gz", "x.txt.zst"])
def test_tiny_read_chunks_give_identical_results(tmp_path, monkeypatch, name):
    """Lines and UTF-8 sequences cut across every possible block boundary."""
    records = [{"id": i, "text": t} for i, t in enumerate(TEXTS * 3)]
    txt = ".txt" in name
    raw = jsonl_bytes(records) if not txt else "\n".join(TEXTS).encode()
    zst = lambda b: zstandard.ZstdCompressor().compress(b)  # noqa: E731
    enc = {"x.jsonl": lambda b: b, "x.txt": lambda b: b, "x.jsonl.gz": gzip.compress, "x.txt.gz": gzip.compress,
           "x.jsonl.zst": zst, "x.txt.zst": zst}[name]
    shard = make_shard(str(write(tmp_path / name, enc(raw))))
    expected = read_all(shard)[:2]
    monkeypatch.setattr(streams, "PLAIN_CHUNK", 7)
    monkeypatch.setattr(streams, "GZ_IN_CHUNK", 5)
    monkeypatch.setattr(streams, "GZ_OUT_MAX", 11)
    monkeypatch.setattr(streams, "ZST_IN_CHUNK", 3)
    assert read_all(shard)[:2] == expected
    assert len(expected[0]) == (len(records) if not txt else 1)
    if txt:
        assert expected[0][0][2] == "\n".join(TEXTS)


def test_document_larger_than_read_block(tmp_path):
    big = "é" * (3 << 20)  # 6 MiB of UTF-8, more than one 4 MiB read block
    data = jsonl_bytes([{"text": "small"}, {"text": big}, {"text": "after"}])
    for name, enc in [("b.jsonl", lambda b: b), ("b.jsonl.gz", gzip.compress)]:
        docs, bad, batches = read_all(make_shard(str(write(tmp_path / name, enc(data)))))
        assert bad == [] and [d[2] for d in docs] == ["small", big, "after"]
        assert [len(b) for b in batches] == [1, 1, 1]  # the big one is alone in its batch


@pytest.mark.parametrize("name", ["doc.txt", "doc.txt.gz", "doc.txt.zst"])
def test_txt_is_one_document(tmp_path, name):
    text = "First line.\nSecond — line.\r\n\nLast line without newline"
    data = b"\xef\xbb\xbf" + text.encode()
    if name.endswith(".gz"):
        data = gzip.compress(data[:20]) + gzip.compress(data[20:])  # two gzip members
    elif name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    shard = make_shard(str(write(tmp_path / name, data)))
    docs, bad, batches = read_all(shard, batch_docs=1, batch_bytes=1)
    assert bad == [] and docs == [(0, f"{name}:0", text)] and len(batches) == 1


def test_compressed_txt_bad_input(tmp_path):
    bad_utf8 = gzip.compress(b"fine text \xff\xfe here")
    docs, bad, _ = read_all(make_shard(str(write(tmp_path / "u.txt.gz", bad_utf8))))
    assert docs == [] and [(b.row, b.reason) for b in bad] == [(0, "invalid_utf8")]
    assert bad[0].detail == "invalid UTF-8 at byte 10 of the decompressed text"
    whole = gzip.compress(("word " * 20000).encode())
    docs, bad, _ = read_all(make_shard(str(write(tmp_path / "t.txt.gz", whole[: len(whole) // 2]))))
    assert docs == [] and [b.reason for b in bad] == ["truncated_stream"]
    with pytest.raises(ShardUnreadable, match="not a gzip file"):
        read_all(make_shard(str(write(tmp_path / "plain.txt.gz", b"just text"))))
    with pytest.raises(ShardUnreadable, match="not a zstd file"):
        read_all(make_shard(str(write(tmp_path / "plain.txt.zst", b"just text"))))


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_with_id_column(tmp_path):
    table = pa.table({"id": [f"p{i}" for i in range(len(TEXTS))], "text": TEXTS, "other": list(range(len(TEXTS)))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=2)
    docs, bad, _ = read_all(make_shard(str(tmp_path / "a.parquet")))
    assert bad == [] and docs == [(i, f"p{i}", t) for i, t in enumerate(TEXTS)]


def test_parquet_without_id_column_and_options(tmp_path):
    table = pa.table({"body": pa.array(TEXTS, pa.large_string())})
    pq.write_table(table, tmp_path / "b.pq")
    docs, bad, _ = read_all(make_shard(str(tmp_path / "b.pq")), text_field="body")
    assert bad == [] and docs == [(i, f"b.pq:{i}", t) for i, t in enumerate(TEXTS)]


def test_parquet_int_ids_null_ids_dictionary_text(tmp_path):
    table = pa.table({
        "doc": pa.array([10, None, 12], pa.int64()),
        "text": pa.array(["a", "b", "a"]).dictionary_encode(),
    })
    pq.write_table(table, tmp_path / "c.parquet")
    docs, bad, _ = read_all(make_shard(str(tmp_path / "c.parquet")), id_field="doc")
    assert bad == [] and docs == [(0, "10", "a"), (1, "c.parquet:1", "b"), (2, "12", "a")]


# --- saved Hugging Face datasets --------------------------------------------------------------

datasets = pytest.importorskip("datasets")


def _save(ds, path, **kw):
    with contextlib.redirect_stderr(io.StringIO()):
        ds.save_to_disk(str(path), **kw)


def test_saved_dataset_round_trip(tmp_path):
    n = 2500  # several record batches per file (datasets writes 1000 rows a batch)
    ds = datasets.Dataset.from_dict({"text": [f"doc {i} {TEXTS[i % len(TEXTS)]}" for i in range(n)],
                                     "id": [f"hf-{i}" for i in range(n)], "score": [0.5] * n})
    _save(ds, tmp_path / "hf", num_shards=2)
    shards = discover([str(tmp_path / "hf")])
    assert len(shards) == 2
    got = []
    for s in shards:
        docs, bad, batches = read_all(s, batch_docs=300)
        assert bad == [] and all(len(b) <= 300 for b in batches)
        assert [d[0] for d in docs] == list(range(len(docs)))
        got.extend((d[1], d[2]) for d in docs)
    assert got == [(f"hf-{i}", f"doc {i} {TEXTS[i % len(TEXTS)]}") for i in range(n)]


def test_saved_dataset_dict_without_ids(tmp_path):
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"content": ["t0", "t1", "t2"]}),
        validation=datasets.Dataset.from_dict({"content": ["v0"]}),
    )
    _save(dd, tmp_path / "dd")
    result = {}
    for s in discover([str(tmp_path / "dd")]):
        docs, bad, _ = read_all(s, text_field="content")
        assert bad == []
        result[s.rel] = docs
    assert result == {
        "train/data-00000-of-00001.arrow": [(0, "train/data-00000-of-00001.arrow:0", "t0"),
                                            (1, "train/data-00000-of-00001.arrow:1", "t1"),
                                            (2, "train/data-00000-of-00001.arrow:2", "t2")],
        "validation/data-00000-of-00001.arrow": [(0, "validation/data-00000-of-00001.arrow:0", "v0")],
    }


def test_arrow_ipc_file_format(tmp_path):
    table = pa.table({"text": ["a", "b", "c"], "id": [1, 2, 3]})
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=2)
    docs, bad, _ = read_all(make_shard(str(tmp_path / "f.arrow")))
    assert bad == [] and docs == [(0, "1", "a"), (1, "2", "b"), (2, "3", "c")]


# --- bounded batches --------------------------------------------------------------------------


def _formats(tmp_path, texts):
    records = [{"text": t} for t in texts]
    raw = jsonl_bytes(records)
    yield make_shard(str(write(tmp_path / "l.jsonl", raw)))
    yield make_shard(str(write(tmp_path / "l.jsonl.gz", gzip.compress(raw))))
    yield make_shard(str(write(tmp_path / "l.jsonl.zst", zstandard.ZstdCompressor().compress(raw))))
    pq.write_table(pa.table({"text": texts}), tmp_path / "l.parquet", row_group_size=37)
    yield make_shard(str(tmp_path / "l.parquet"))
    with pa.OSFile(str(tmp_path / "l.arrow"), "wb") as sink, pa.ipc.new_stream(sink, pa.schema([("text", pa.string())])) as w:
        w.write_table(pa.table({"text": texts}), max_chunksize=50)
    yield make_shard(str(tmp_path / "l.arrow"))


@pytest.mark.parametrize("batch_docs,batch_bytes", [(1, 1 << 20), (7, 1 << 20), (1000, 300), (5, 120)])
def test_batches_are_bounded(tmp_path, batch_docs, batch_bytes):
    rng = np.random.default_rng(0)
    texts = ["w" * int(n) for n in rng.integers(0, 200, size=203)] + ["big" * 200]
    for shard in _formats(tmp_path, texts):
        docs, bad, batches = read_all(shard, batch_docs=batch_docs, batch_bytes=batch_bytes)
        assert bad == [] and [d[2] for d in docs] == texts and [d[0] for d in docs] == list(range(len(texts)))
        for b in batches:
            assert len(b) <= batch_docs
            if len(b) > 1:  # only a single document may exceed the byte budget
                assert sum(len(t.encode()) for t in b.texts) <= batch_bytes, shard.format


def test_progress_positions_are_compressed_bytes(tmp_path):
    raw = jsonl_bytes([{"text": "word " * 200} for _ in range(3000)])
    shard = make_shard(str(write(tmp_path / "p.jsonl.gz", gzip.compress(raw))))
    positions = [pos for _, _, pos in read_shard(shard, ReadSpec(batch_docs=100))]
    assert positions == sorted(positions) and positions[-1] == shard.size < len(raw)
