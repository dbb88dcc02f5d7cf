"""Streaming shard readers: one shard in, DocBatches and bad records out.

Memory is bounded by the batch limits (and, for Parquet, by one row group's text column): no
reader loads a shard whole, except ``.txt`` (``.gz``/``.zst``) whose whole file is, by definition,
one document.

Every reader keeps the same ledger: each record of the input ends up either in a yielded
:class:`DocBatch` or as a :class:`BadRecord`, never both, never neither. A stream that ends early
(truncated ``.gz``/``.zst``/``.arrow``, an I/O error) is one bad record at the next row index and
ends the shard; the documents before it are kept.
"""

from __future__ import annotations

import codecs
import os
import zlib
from typing import Iterable, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..types import DocBatch
from .records import BadRecord, Shard, ShardUnreadable, UnsupportedFormat

Item = tuple["DocBatch | None", "list[BadRecord]", int]

_PLAIN_CHUNK = 1 << 22  # bytes read at a time from an uncompressed file
_GZ_IN_CHUNK = 1 << 18  # compressed bytes fed to zlib at a time
_GZ_OUT_MAX = 1 << 22  # decompressed bytes taken from zlib at a time
_ZST_IN_CHUNK = 1 << 17  # compressed bytes fed to zstd at a time
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _StreamEnd(Exception):
    """The stream stopped early; becomes one BadRecord at the next row."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _err(e: BaseException) -> str:
    """Exception class and the first line of its message (library messages, never record data)."""
    msg = (getattr(e, "strerror", None) or str(e)).splitlines()
    first = msg[0][:160] if msg else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def read_shard(
    shard: Shard,
    *,
    text_field: str = "text",
    id_field: str = "id",
    batch_docs: int = 1024,
    batch_bytes: int = 4 << 20,
) -> Iterator[Item]:
    """Stream ``shard`` as ``(batch | None, bad_records_since_last_item, input_bytes_consumed)``.

    The file is opened when this is called: ShardUnreadable is raised here, not while iterating.
    While iterating nothing is raised for bad input; it becomes BadRecords. A batch holds at most
    ``batch_docs`` documents and at most ``batch_bytes`` bytes (JSON line size for JSON lines,
    UTF-8 text size otherwise) unless one document alone is larger. The last item's third value is
    the input position at the end (compressed bytes for .gz/.zst); an item may carry neither
    documents nor bad records (progress only).
    """
    if batch_docs < 1 or batch_bytes < 1:
        raise ValueError("batch_docs and batch_bytes must be positive")
    opts = (text_field, id_field, batch_docs, batch_bytes)
    fmt = shard.format
    if fmt in ("jsonl", "jsonl.gz", "jsonl.zst"):
        return _open_jsonl(shard, *opts)
    if fmt == "parquet":
        return _open_parquet(shard, *opts)
    if fmt == "hf_arrow":
        return _open_arrow(shard, *opts)
    if fmt in ("txt", "txt.gz", "txt.zst"):
        return _open_txt(shard)
    raise UnsupportedFormat(f"{shard.path}: unknown shard format {fmt!r}")


# ---------------------------------------------------------------------------------------------
# byte sources


class _Source:
    """An unbuffered file that counts the bytes read and turns I/O errors into _StreamEnd."""

    def __init__(self, path: str):
        try:
            self.f = open(path, "rb", buffering=0)
        except OSError as e:
            raise ShardUnreadable(f"{path}: cannot open: {_err(e)}") from None
        self.pos = 0

    def read(self, n: int) -> bytes:
        try:
            b = self.f.read(n)
        except OSError as e:
            raise _StreamEnd("read_error", f"I/O error at byte {self.pos}: {_err(e)}") from None
        self.pos += len(b)
        return b

    def peek_magic(self, path: str) -> bytes:
        try:
            head = self.f.read(4)
            self.f.seek(0)
        except OSError as e:
            self.close()
            raise ShardUnreadable(f"{path}: cannot read: {_err(e)}") from None
        return head

    def close(self) -> None:
        self.f.close()


def _plain_chunks(src: _Source) -> Iterator[bytes]:
    while True:
        b = src.read(_PLAIN_CHUNK)
        if not b:
            return
        yield b


def _gzip_chunks(src: _Source) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-member) gzip file, with bounded output per step."""
    d = zlib.decompressobj(31)
    started = False
    while True:
        data = src.read(_GZ_IN_CHUNK)
        if not data:
            break
        while data:
            if not started:
                data = data.lstrip(b"\0")  # zero padding between/after members, as gzip allows
                if not data:
                    break
                started = True
            try:
                out = d.decompress(data, _GZ_OUT_MAX)
            except zlib.error as e:
                raise _StreamEnd("read_error", f"corrupt gzip data before byte {src.pos}: {str(e)[:160]}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(31)
                started = False
            else:
                data = d.unconsumed_tail
    if started and not d.eof:
        try:
            tail = d.flush()
        except zlib.error:
            tail = b""
        if tail:
            yield tail
        raise _StreamEnd("truncated_stream", f"gzip stream ends early at byte {src.pos} (file cut short?)")


def _zstd_chunks(src: _Source) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-frame) zstd file; detects a cut-off last frame."""
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    d = dctx.decompressobj()
    started = False
    while True:
        data = src.read(_ZST_IN_CHUNK)
        if not data:
            break
        while data:
            started = True
            try:
                out = d.decompress(data)
            except zstandard.ZstdError as e:
                raise _StreamEnd("read_error", f"corrupt zstd data before byte {src.pos}: {_err(e)}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = dctx.decompressobj()
                started = False
            else:
                data = b""
    if started and not d.eof:
        raise _StreamEnd("truncated_stream", f"zstd stream ends early at byte {src.pos} (file cut short?)")


def _primed(first: bytes, err: _StreamEnd | None, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    if err is not None:
        raise err
    yield from rest


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Lists of complete lines (without b'\\n'); a last line without newline comes last."""
    tail: list[bytes] = []
    first = True
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            tail.append(chunk)
            continue
        if tail:
            tail.append(lines[0])
            lines[0] = b"".join(tail)
            tail = []
        last = lines.pop()
        if last:
            tail.append(last)
        yield lines
    if tail:
        yield [b"".join(tail)]


# ---------------------------------------------------------------------------------------------
# JSON lines


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _id_str(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    try:
        return orjson.dumps(v, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(v)


def _exact_json(line: bytes) -> dict:
    """The stdlib parser keeps integers of any size exactly (rare path: float-looking ids)."""
    import json

    try:
        obj = json.loads(line)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _json_line_bad(row: int, lineno: int, line: bytes, e: orjson.JSONDecodeError) -> BadRecord:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        return BadRecord(row, "invalid_utf8", f"line {lineno}: invalid UTF-8 at byte {u.start}")
    return BadRecord(row, "malformed_json", f"line {lineno}: {e.msg} at column {e.colno}")


def _text_bad(row: int, lineno: int, obj: dict, tf: str) -> BadRecord:
    value = obj.get(tf)
    if value is None:
        what = "is null" if tf in obj else "is missing"
        return BadRecord(row, "missing_text", f"line {lineno}: field {tf!r} {what}")
    return BadRecord(row, "non_string_text", f"line {lineno}: field {tf!r} is {_json_type(value)}, not a string")


def _not_json_lines(first: bytes) -> str | None:
    """Recognise a whole JSON document (array or pretty-printed object) from its first line, or
    compressed data under a plain name."""
    if first.startswith(_GZIP_MAGIC):
        return "gzip-compressed data (name it .jsonl.gz)"
    if first.startswith(_ZSTD_MAGIC):
        return "zstd-compressed data (name it .jsonl.zst)"
    head = first[:1 << 16].lstrip()
    if head.startswith(_BOM):
        head = head[3:].lstrip()
    if not head.startswith((b"[", b"{")):
        return None
    nl = head.find(b"\n")
    line = (head if nl < 0 else head[:nl]).strip()
    if line in (b"[", b"{"):
        return "a JSON document spread over several lines"
    if line.startswith(b"[") and nl >= 0 and line.endswith(b","):
        return "a JSON array"
    if line.startswith(b"[") and nl >= 0:
        try:
            v = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if isinstance(v, list) and v and isinstance(v[0], dict):
            return "a JSON array"
    return None


def _open_stream(shard: Shard) -> tuple[_Source, Iterator[bytes]]:
    """The shard's bytes, decompressed (``.gz``/``.zst`` by the format), in blocks."""
    src = _Source(shard.path)
    if not shard.format.endswith((".gz", ".zst")):
        return src, _plain_chunks(src)
    magic = src.peek_magic(shard.path)
    if shard.format.endswith(".gz"):
        if magic and not magic.startswith(_GZIP_MAGIC):
            src.close()
            raise ShardUnreadable(f"{shard.path}: not a gzip file (bad magic bytes)")
        return src, _gzip_chunks(src)
    skippable = len(magic) == 4 and magic[0] & 0xF0 == 0x50 and magic[1:] == b"\x2a\x4d\x18"
    if magic and not (magic == _ZSTD_MAGIC or skippable):
        src.close()
        raise ShardUnreadable(f"{shard.path}: not a zstd file (bad magic bytes)")
    return src, _zstd_chunks(src)


def _open_jsonl(shard: Shard, tf: str, idf: str, batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    src, chunks = _open_stream(shard)
    # Read the first block now: a whole-JSON document (not JSON lines) is refused up front.
    err: _StreamEnd | None = None
    try:
        first = next(chunks, b"")
    except _StreamEnd as e:
        first, err = b"", e
    what = _not_json_lines(first)
    if what is not None:
        src.close()
        raise ShardUnreadable(
            f"{shard.path}: looks like {what}, not JSON lines (one object per line); "
            f"convert it first, e.g. jq -c '.[]'")
    return _jsonl_items(shard, src, _line_blocks(_primed(first, err, chunks)), tf, idf, batch_docs, batch_bytes)


def _jsonl_items(shard: Shard, src: _Source, blocks: Iterator[list[bytes]], tf: str, idf: str,
                 batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    rel = shard.rel
    loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError
    rows: list[int] = []
    ids: list[str] = []
    texts: list[str] = []
    bad: list[BadRecord] = []
    nbytes = 0
    row = 0  # record index: non-blank lines seen so far
    blanks = 0  # blank lines seen so far (line number = row + blanks + 1)
    try:
        for lines in blocks:
            for line in lines:
                try:
                    obj = loads(line)
                except JSONDecodeError as e:
                    if not line.strip():
                        blanks += 1
                        continue
                    bad.append(_json_line_bad(row, row + blanks + 1, line, e))
                else:
                    if type(obj) is dict:
                        text = obj.get(tf)
                        if type(text) is str:
                            n = len(line)
                            if nbytes + n > batch_bytes and texts:
                                yield DocBatch(rel, np.array(rows, dtype=np.int64), ids, texts), bad, src.pos
                                rows, ids, texts, bad, nbytes = [], [], [], [], 0
                            i = obj.get(idf)
                            if type(i) is str:
                                ids.append(i)
                            elif i is None:
                                ids.append(f"{rel}:{row}")
                            elif type(i) is float:  # orjson reads integers beyond 64 bits as floats
                                ids.append(_id_str(_exact_json(line).get(idf, i)))
                            else:
                                ids.append(_id_str(i))
                            rows.append(row)
                            texts.append(text)
                            nbytes += n
                            row += 1
                            if len(texts) >= batch_docs:
                                yield DocBatch(rel, np.array(rows, dtype=np.int64), ids, texts), bad, src.pos
                                rows, ids, texts, bad, nbytes = [], [], [], [], 0
                            continue
                        bad.append(_text_bad(row, row + blanks + 1, obj, tf))
                    else:
                        bad.append(BadRecord(row, "not_an_object",
                                             f"line {row + blanks + 1}: the record is {_json_type(obj)}, not an object"))
                row += 1
                if len(bad) >= batch_docs:
                    batch = DocBatch(rel, np.array(rows, dtype=np.int64), ids, texts) if texts else None
                    yield batch, bad, src.pos
                    rows, ids, texts, bad, nbytes = [], [], [], [], 0
    except _StreamEnd as e:
        bad.append(BadRecord(row, e.reason, f"after line {row + blanks}: {e.detail}"))
    finally:
        src.close()
    batch = DocBatch(rel, np.array(rows, dtype=np.int64), ids, texts) if texts else None
    yield batch, bad, src.pos


# ---------------------------------------------------------------------------------------------
# Arrow-based formats (Parquet, saved datasets)


def _is_stringy(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _arrow_ids(col: pa.Array) -> list:
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if _is_stringy(t):
        return col.to_pylist()
    if pa.types.is_integer(t):
        return pc.cast(col, pa.string()).to_pylist()
    return [None if v is None else (v if type(v) is str else _id_str(v)) for v in col.to_pylist()]


def _arrow_texts(col: pa.Array, rows: np.ndarray, bad: list[BadRecord]) -> tuple[list, np.ndarray]:
    """Python strings of a string array; rows whose bytes are not valid UTF-8 become bad records."""
    try:
        return col.to_pylist(), np.ones(len(col), dtype=bool)
    except UnicodeDecodeError:
        pass
    texts: list = []
    ok = np.ones(len(col), dtype=bool)
    for k in range(len(col)):
        try:
            texts.append(col[k].as_py())
        except UnicodeDecodeError as u:
            ok[k] = False
            bad.append(BadRecord(int(rows[k]), "invalid_utf8", f"row {int(rows[k])}: invalid UTF-8 at byte {u.start}"))
    return texts, ok


def _arrow_convert(rb: pa.RecordBatch, row0: int, rel: str, tf: str, idf: str, batch_docs: int,
                   batch_bytes: int, where: str) -> tuple[list[DocBatch], list[BadRecord]]:
    """One record batch -> bounded DocBatches + bad records. ``where`` names the place for details."""
    n = rb.num_rows
    names = rb.schema.names
    bad: list[BadRecord] = []
    if n == 0:
        return [], bad
    if tf not in names:
        cols = ", ".join(repr(c) for c in names[:8]) + (", ..." if len(names) > 8 else "")
        detail = f"{where}: no column {tf!r} (columns: {cols})"
        return [], [BadRecord(row0 + k, "missing_text", detail) for k in range(n)]
    col = rb.column(tf)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    idc = rb.column(idf) if idf in names else None
    rows = np.arange(row0, row0 + n, dtype=np.int64)
    if _is_stringy(col.type):
        keep = None if col.null_count == 0 else col.is_valid().to_numpy(zero_copy_only=False)
        if keep is not None:
            for r in rows[~keep].tolist():
                bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {tf!r} is null"))
    else:
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        for k, r in enumerate(rows.tolist()):
            if valid[k]:
                bad.append(BadRecord(r, "non_string_text", f"{where}, row {r}: column {tf!r} is {col.type}, not a string"))
            else:
                bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {tf!r} is null"))
        return [], bad
    if keep is not None:
        idx = np.flatnonzero(keep)
        col, rows = col.take(idx), rows[idx]
        idc = idc.take(idx) if idc is not None else None
    texts, ok = _arrow_texts(col, rows, bad)
    ids = _arrow_ids(idc) if idc is not None else None
    if not ok.all():
        idx = np.flatnonzero(ok)
        col, rows = col.take(idx), rows[idx]
        ids = [ids[k] for k in idx.tolist()] if ids is not None else None
    if ids is None:
        ids = [f"{rel}:{r}" for r in rows.tolist()]
    elif None in ids:
        ids = [f"{rel}:{r}" if v is None else v for v, r in zip(ids, rows.tolist())]
    m = len(texts)
    batches: list[DocBatch] = []
    if m == 0:
        return batches, bad
    cum = np.cumsum(pc.binary_length(col).to_numpy(zero_copy_only=False).astype(np.int64))
    start = 0
    while start < m:
        base = int(cum[start - 1]) if start else 0
        end = int(np.searchsorted(cum, base + batch_bytes, side="right"))
        end = min(max(end, start + 1), start + batch_docs, m)
        batches.append(DocBatch(rel, rows[start:end], ids[start:end], texts[start:end]))
        start = end
    return batches, bad


def _arrow_items(batches: list[DocBatch], bad: list[BadRecord], pos: int) -> Iterator[Item]:
    if not batches:
        yield None, bad, pos
        return
    for k, b in enumerate(batches):
        yield b, (bad if k == 0 else []), pos


def _bad_range(start: int, stop: int, reason: str, detail: str, chunk: int) -> Iterator[list[BadRecord]]:
    for lo in range(start, stop, chunk):
        yield [BadRecord(r, reason, detail) for r in range(lo, min(stop, lo + chunk))]


def _open_parquet(shard: Shard, tf: str, idf: str, batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    if os.path.isdir(shard.path):
        raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
    try:
        pf = pq.ParquetFile(shard.path)
        md = pf.metadata
        names = pf.schema_arrow.names
    except (OSError, pa.ArrowException, ValueError) as e:
        raise ShardUnreadable(f"{shard.path}: not a readable Parquet file ({_err(e)})") from None
    return _parquet_items(shard, pf, md, names, tf, idf, batch_docs, batch_bytes)


def _parquet_items(shard: Shard, pf: pq.ParquetFile, md, names: list[str], tf: str, idf: str,
                   batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    total = max(md.num_rows, 1)
    size = shard.size
    row = 0
    try:
        if tf not in names:
            cols = ", ".join(repr(c) for c in names[:8]) + (", ..." if len(names) > 8 else "")
            detail = f"no column {tf!r} (columns: {cols})"
            for chunk in _bad_range(0, md.num_rows, "missing_text", detail, batch_docs):
                yield None, chunk, size * (chunk[-1].row + 1) // total
            return
        columns = [tf] + ([idf] if idf in names and idf != tf else [])
        for rg in range(md.num_row_groups):
            rg_rows = md.row_group(rg).num_rows
            done = 0
            try:
                for rb in pf.iter_batches(batch_size=batch_docs, row_groups=[rg], columns=columns,
                                          use_threads=False):
                    batches, bad = _arrow_convert(rb, row + done, shard.rel, tf, idf, batch_docs,
                                                  batch_bytes, f"row group {rg}")
                    done += rb.num_rows
                    yield from _arrow_items(batches, bad, size * (row + done) // total)
            except (OSError, pa.ArrowException) as e:
                detail = f"row group {rg} unreadable from row {row + done}: {_err(e)}"
                for chunk in _bad_range(row + done, row + rg_rows, "read_error", detail, batch_docs):
                    yield None, chunk, size * (chunk[-1].row + 1) // total
            row += rg_rows
    finally:
        pf.close()
    yield None, [], size


def _open_arrow(shard: Shard, tf: str, idf: str, batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    if os.path.isdir(shard.path):
        raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
    try:
        src = pa.memory_map(shard.path)
    except (OSError, pa.ArrowException) as e:
        raise ShardUnreadable(f"{shard.path}: cannot open: {_err(e)}") from None
    try:
        if src.read(6) == b"ARROW1":  # IPC file format (random access)
            src.seek(0)
            reader = pa.ipc.open_file(src)
        else:  # IPC stream format, as written by datasets' save_to_disk
            src.seek(0)
            reader = pa.ipc.open_stream(src)
    except (OSError, pa.ArrowException) as e:
        src.close()
        raise ShardUnreadable(f"{shard.path}: not a readable Arrow file ({_err(e)})") from None
    return _arrow_file_items(shard, src, reader, tf, idf, batch_docs, batch_bytes)


def _arrow_file_items(shard: Shard, src, reader, tf: str, idf: str, batch_docs: int,
                      batch_bytes: int) -> Iterator[Item]:
    row = 0
    k = 0
    is_file = isinstance(reader, pa.ipc.RecordBatchFileReader)
    try:
        while True:
            try:
                if is_file:
                    if k >= reader.num_record_batches:
                        break
                    rb = reader.get_batch(k)
                else:
                    rb = reader.read_next_batch()
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as e:
                msg = str(e)
                reason = "truncated_stream" if ("Expected to be able to read" in msg or "EOF" in msg) else "read_error"
                yield None, [BadRecord(row, reason, f"record batch {k}: {_err(e)}")], shard.size
                return
            batches, bad = _arrow_convert(rb, row, shard.rel, tf, idf, batch_docs, batch_bytes,
                                          f"record batch {k}")
            row += rb.num_rows
            k += 1
            yield from _arrow_items(batches, bad, src.tell() if not is_file else shard.size * k // max(reader.num_record_batches, 1))
    finally:
        src.close()
    yield None, [], shard.size


# ---------------------------------------------------------------------------------------------
# plain text


def shard_bytes(shard: Shard) -> bytes:
    """The whole (decompressed) content of a one-document shard (``.txt``, ``.txt.gz``, ``.txt.zst``),
    for rewriting it. Raises ShardUnreadable if it cannot be read to the end."""
    src, chunks = _open_stream(shard)
    try:
        return b"".join(chunks)
    except _StreamEnd as e:
        raise ShardUnreadable(f"{shard.path}: {e.detail}") from None
    finally:
        src.close()


def _open_txt(shard: Shard) -> Iterator[Item]:
    if os.path.isdir(shard.path):
        raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
    src, chunks = _open_stream(shard)
    return _txt_items(shard, src, chunks)


def _txt_items(shard: Shard, src: _Source, chunks: Iterator[bytes]) -> Iterator[Item]:
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    parts: list[str] = []
    bad: BadRecord | None = None
    where = "" if shard.format == "txt" else " of the decompressed text"
    seen = 0  # bytes (decompressed) handed to the decoder so far
    offset = 0  # position of the first byte of the data being decoded (decoder buffer included)
    try:
        first = True
        for b in chunks:
            if first:
                first = False
                if b.startswith(_BOM):
                    b = b[3:]
                    seen = 3
            offset = seen - len(dec.getstate()[0])
            parts.append(dec.decode(b))
            seen += len(b)
        offset = seen - len(dec.getstate()[0])
        parts.append(dec.decode(b"", final=True))
    except UnicodeDecodeError as u:
        bad = BadRecord(0, "invalid_utf8", f"invalid UTF-8 at byte {offset + u.start}{where}")
    except _StreamEnd as e:
        bad = BadRecord(0, e.reason, e.detail)
    finally:
        src.close()
    if bad is not None:
        yield None, [bad], src.pos
        return
    rel = shard.rel
    yield DocBatch(rel, np.zeros(1, dtype=np.int64), [f"{rel}:0"], ["".join(parts)]), [], src.pos
