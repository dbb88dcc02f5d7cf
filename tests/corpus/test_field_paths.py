"""Field paths: text, id and projected fields at dotted paths into nested JSON objects and
Parquet / Arrow structs; plain names and literal dotted keys read as before."""

from __future__ import annotations

import gzip

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_audit.corpus import ReadSpec, ShardUnreadable, make_shard, read_shard


def read_all(shard, **kw):
    """(docs as (row, id, text), {path: values}, bad records) of one shard."""
    docs, fields, bad = [], {}, []
    for batch, bads, _ in read_shard(shard, ReadSpec(**kw)):
        bad.extend(bads)
        if batch is not None:
            docs.extend(zip(batch.rows.tolist(), batch.doc_ids, batch.texts))
            assert set(batch.fields) == set(kw.get("fields", ()))
            for path, values in batch.fields.items():
                assert len(values) == len(batch)
                fields.setdefault(path, []).extend(values)
    return docs, fields, bad


RECORDS = [
    {"id": "a", "meta": {"text": "first", "source": "web", "ids": {"doc": 7}}},
    {"id": "b", "meta": {"text": "second"}},  # no source: None in the projection
    {"id": "c", "meta": {"source": "books"}},  # no text: missing_text
    {"id": "d", "meta": {"text": 42, "source": "x"}},  # not a string: non_string_text
    {"id": "e", "meta": "flat"},  # meta is not an object: the path is missing
    {"id": "f", "meta": {"text": None}},  # null: missing_text
]


def jsonl(tmp_path, name, records):
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return make_shard(str(path))


@pytest.mark.parametrize("name", ["n.jsonl", "n.jsonl.gz"])
def test_jsonl_nested_text_id_and_fields(tmp_path, name):
    shard = jsonl(tmp_path, name, RECORDS)
    docs, fields, bad = read_all(shard, text_field="meta.text", fields=("meta.source", "id", "meta.ids.doc"))
    assert docs == [(0, "a", "first"), (1, "b", "second")]
    assert fields == {"meta.source": ["web", None], "id": ["a", "b"], "meta.ids.doc": [7, None]}
    assert [(b.row, b.reason) for b in bad] == [(2, "missing_text"), (3, "non_string_text"),
                                                 (4, "missing_text"), (5, "missing_text")]
    assert all("'meta.text'" in b.detail for b in bad)
    assert "is missing" in bad[0].detail and "is null" in bad[3].detail
    # a nested id; absent ids fall back to shard:row as for plain names
    docs, _, _ = read_all(shard, text_field="meta.text", id_field="meta.ids.doc")
    assert docs == [(0, "7", "first"), (1, f"{shard.rel}:1", "second")]


def test_jsonl_plain_names_and_literal_dotted_keys(tmp_path):
    records = [{"text": "plain", "meta.text": "literal", "meta": {"text": "nested"}},
               {"text": "plain2", "meta": {"text": "only nested"}},
               {"meta.text": None, "meta": {"text": "shadowed"}}]
    shard = jsonl(tmp_path, "l.jsonl", records)
    assert [d[2] for d in read_all(shard)[0]] == ["plain", "plain2"]
    docs, _, bad = read_all(shard, text_field="meta.text")
    # the literal key wins where it exists, even when null; else the path walks into "meta"
    assert [d[2] for d in docs] == ["literal", "only nested"]
    assert [(b.row, b.reason) for b in bad] == [(2, "missing_text")] and "is null" in bad[0].detail


STRUCT = pa.struct([("text", pa.string()), ("source", pa.string()), ("n", pa.int64())])


def struct_table():
    meta = pa.array([{"text": "first", "source": "web", "n": 1}, {"text": "second", "source": None, "n": 2},
                     None, {"text": None, "source": "books", "n": 4}], STRUCT)
    return pa.table({"id": ["a", "b", "c", "d"], "meta": meta, "meta.text": ["L0", "L1", "L2", "L3"],
                     "other": [1.0, 2.0, 3.0, 4.0]})


def write_parquet(tmp_path, table):
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=3)
    return make_shard(str(tmp_path / "s.parquet"))


def write_arrow(tmp_path, table, ipc_file=False):
    path = tmp_path / "s.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file(sink, table.schema) if ipc_file else pa.ipc.new_stream(sink, table.schema)
        with writer:
            writer.write_table(table, max_chunksize=3)
    return make_shard(str(path))


WRITERS = {"parquet": write_parquet, "arrow-stream": write_arrow,
           "arrow-file": lambda p, t: write_arrow(p, t, ipc_file=True)}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_struct_text_and_projected_fields(tmp_path, kind):
    table = struct_table().drop_columns(["meta.text"])
    shard = WRITERS[kind](tmp_path, table)
    docs, fields, bad = read_all(shard, text_field="meta.text", fields=("meta.source", "meta.n", "nope.x"))
    assert docs == [(0, "a", "first"), (1, "b", "second")]
    assert fields == {"meta.source": ["web", None], "meta.n": [1, 2], "nope.x": [None, None]}
    # a null struct and a null text in it are both missing text, named by their path
    assert [(b.row, b.reason) for b in bad] == [(2, "missing_text"), (3, "missing_text")]
    assert all("'meta.text'" in b.detail for b in bad)
    # a path that is not in the schema: one shard error naming the path and what the struct holds
    with pytest.raises(ShardUnreadable) as ei:
        read_all(shard, text_field="meta.body")
    assert "'meta.body'" in str(ei.value) and "'text'" in str(ei.value)
    with pytest.raises(ShardUnreadable, match="not a struct"):
        read_all(shard, text_field="other.text")
    # a nested id
    docs, _, _ = read_all(shard, text_field="meta.text", id_field="meta.n")
    assert [d[1] for d in docs] == ["1", "2"]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_struct_literal_dotted_column_wins(tmp_path, kind):
    shard = WRITERS[kind](tmp_path, struct_table())
    docs, _, bad = read_all(shard, text_field="meta.text")
    assert bad == [] and [d[2] for d in docs] == ["L0", "L1", "L2", "L3"]


def test_non_string_nested_column(tmp_path):
    meta = pa.array([{"text": 1}, {"text": None}], pa.struct([("text", pa.int32())]))
    shard = write_parquet(tmp_path, pa.table({"meta": meta}))
    docs, _, bad = read_all(shard, text_field="meta.text")
    assert docs == [] and [(b.row, b.reason) for b in bad] == [(0, "non_string_text"), (1, "missing_text")]
    assert "'meta.text'" in bad[0].detail


def test_parquet_reads_only_the_top_level_columns_of_the_paths(tmp_path, monkeypatch):
    shard = write_parquet(tmp_path, struct_table())
    asked = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, columns=None, **kw):
        asked.append(columns)
        return real(self, *args, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    read_all(shard, text_field="meta.source", fields=("meta.n",))
    assert asked and all(c == ["meta", "id"] for c in asked)
    asked.clear()
    with pytest.raises(ShardUnreadable):  # a plain text field that is absent: nothing is read at all
        read_all(shard)
    assert asked == []
