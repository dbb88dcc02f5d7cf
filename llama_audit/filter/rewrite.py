"""Format-preserving copies of one shard: keep some rows, redact some texts, pass the rest through.

JSON lines keep every untouched line byte for byte (redacted records are re-serialised with
their fields in the same order); Parquet and Arrow keep their schema; compression is kept.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llama_audit.corpus import Shard
from llama_audit.corpus.raw import iter_jsonl_lines
from llama_audit.store import PARQUET_OPTIONS, _tmp_near

Redactor = Callable[[int, str], str]  # (row, text) -> redacted text


def redact_spans(text: str, spans: list[dict]) -> str:
    """Replace each (type, start, end) span by ``<TYPE>``; overlapping spans merge into the first."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        start, end = s["start"], s["end"]
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(f"<{s['type']}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _open_out(path: Path, fmt: str):
    if fmt.endswith(".gz"):
        return gzip.GzipFile(path, "wb", mtime=0)
    if fmt.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor(level=3).stream_writer(open(path, "wb"), closefd=True)
    return open(path, "wb")


def rewrite_shard(shard: Shard, dest: Path, keep: np.ndarray, redact_rows: dict[int, list[dict]],
                  text_field: str) -> None:
    """Write ``dest`` atomically: rows with keep[row] True, texts of ``redact_rows`` redacted."""
    tmp = _tmp_near(dest)
    try:
        if shard.format.startswith("jsonl"):
            _rewrite_jsonl(shard, tmp, keep, redact_rows, text_field)
        elif shard.format == "parquet":
            _rewrite_arrow(shard, tmp, keep, redact_rows, text_field, parquet=True)
        elif shard.format == "hf_arrow":
            _rewrite_arrow(shard, tmp, keep, redact_rows, text_field, parquet=False)
        elif shard.format in ("txt", "txt.gz", "txt.zst"):
            if not _kept(keep, 0):  # a dropped one-document file is not written at all
                tmp.unlink(missing_ok=True)
                dest.unlink(missing_ok=True)
                return
            _rewrite_txt(shard, tmp, redact_rows)
        else:  # pragma: no cover - discover() admits no other format
            raise ValueError(f"cannot rewrite format {shard.format}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _kept(keep: np.ndarray, row: int) -> bool:
    return row < len(keep) and bool(keep[row])


def _rewrite_jsonl(shard, tmp, keep, redact_rows, text_field) -> None:
    with _open_out(tmp, shard.format) as f:
        for row, line in iter_jsonl_lines(shard):
            if not _kept(keep, row):
                continue
            spans = redact_rows.get(row)
            if spans:
                # the stdlib parser keeps big integers exact; field order is kept
                obj = json.loads(line)
                obj[text_field] = redact_spans(obj[text_field], spans)
                line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            f.write(line)
            f.write(b"\n")


def _redact_column(col: pa.Array, row0: int, redact_rows) -> pa.Array:
    rows = [r for r in redact_rows if row0 <= r < row0 + len(col)]
    if not rows:
        return col
    values = col.to_pylist()
    for r in rows:
        values[r - row0] = redact_spans(values[r - row0], redact_rows[r])
    return pa.array(values, col.type)


def _rewrite_arrow(shard, tmp, keep, redact_rows, text_field, *, parquet: bool) -> None:
    if parquet:
        pf = pq.ParquetFile(shard.path)
        schema = pf.schema_arrow
        batches = pf.iter_batches(batch_size=4096, use_threads=False)
        writer = pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS)
    else:
        src = pa.memory_map(shard.path)
        is_file = src.read(6) == b"ARROW1"
        src.seek(0)
        reader = pa.ipc.open_file(src) if is_file else pa.ipc.open_stream(src)
        schema = reader.schema
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) if is_file else reader
        sink = pa.OSFile(str(tmp), "wb")
        writer = pa.ipc.new_stream(sink, schema)
    row0 = 0
    try:
        for rb in batches:
            n = rb.num_rows
            mask = pa.array([_kept(keep, r) for r in range(row0, row0 + n)], pa.bool_())
            if redact_rows and text_field in rb.schema.names:
                idx = rb.schema.get_field_index(text_field)
                rb = rb.set_column(idx, text_field, _redact_column(rb.column(idx), row0, redact_rows))
            rb = rb.filter(mask)
            writer.write_batch(rb)
            row0 += n
    finally:
        writer.close()
        if not parquet:
            sink.close()
            src.close()


def _rewrite_txt(shard, tmp, redact_rows) -> None:
    from llama_audit.corpus.readers import shard_bytes

    data = shard_bytes(shard)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if 0 in redact_rows:
        data = redact_spans(data.decode("utf-8"), redact_rows[0]).encode("utf-8")
    with _open_out(tmp, shard.format) as f:  # compressed as the input was
        f.write(data)
