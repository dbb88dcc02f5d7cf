"""JSON lines (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``): one JSON object per line.

Rows are non-blank lines. Rewriting keeps every untouched line byte for byte; a redacted record
is re-serialised with the stdlib parser (big integers stay exact) and its fields in the same order.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import orjson

from ..store import atomic_output
from ..types import DocBatch
from .base import Format, Redactions, kept
from .fields import FieldPath, SpecPaths, absent_everywhere, field_list, id_text
from .records import BadRecord, Item, ReadSpec, Shard, ShardUnreadable, is_stdin
from .streams import BOM, GZIP_MAGIC, ZSTD_MAGIC, ByteSource, StreamEnd, line_blocks, open_stream, open_writer

_SNIFF = 1 << 16  # bytes of the first block examined to recognise a whole JSON document
_NAMES_KEPT = 8  # top-level field names kept for the "no record has the text field" error


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


def _exact_json(line: bytes) -> dict:
    """The stdlib parser keeps integers of any size exactly (rare path: float-looking ids)."""
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


def _text_bad(row: int, lineno: int, obj: dict, text: FieldPath, found: tuple[dict, str] | None) -> BadRecord:
    value = None if found is None else found[0][found[1]]
    if value is None:
        what = "is missing" if found is None else "is null"
        return BadRecord(row, "missing_text", f"line {lineno}: field {text.path!r} {what}")
    return BadRecord(row, "non_string_text", f"line {lineno}: field {text.path!r} is {_json_type(value)}, not a string")


def _texts_bad(row: int, lineno: int, obj: dict, texts: tuple[FieldPath, ...]) -> tuple[BadRecord, bool]:
    """The bad record of an object none of whose text fallbacks holds a string, and whether none
    of them exists in it at all (for the shard-level error): a non-string value is named first."""
    found = [(path, path.find(obj)) for path in texts]
    for path, at in found:
        if at is not None and at[0][at[1]] is not None:
            value = at[0][at[1]]
            return BadRecord(row, "non_string_text",
                             f"line {lineno}: field {path.path!r} is {_json_type(value)}, not a string"), False
    absent = all(at is None for _, at in found)
    names = ", ".join(repr(path.path) for path, _ in found)
    return BadRecord(row, "missing_text", f"line {lineno}: fields {names} are "
                                          f"{'missing' if absent else 'missing or null'}"), absent


def _not_json_lines(first: bytes, stdin: bool = False) -> str | None:
    """Recognise a whole JSON document (array or pretty-printed object) from its first line, or
    compressed data under a plain name (on standard input: read without --input-format)."""
    if first.startswith(GZIP_MAGIC):
        return "gzip-compressed data (" + ("pass --input-format jsonl.gz" if stdin else "name it .jsonl.gz") + ")"
    if first.startswith(ZSTD_MAGIC):
        return "zstd-compressed data (" + ("pass --input-format jsonl.zst" if stdin else "name it .jsonl.zst") + ")"
    head = first[:_SNIFF].lstrip()
    if head.startswith(BOM):
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


def _primed(first: bytes, err: StreamEnd | None, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    if err is not None:
        raise err
    yield from rest


def _open_lines(shard: Shard) -> tuple[ByteSource, Iterator[list[bytes]]]:
    """The shard's lines in blocks. The first block is read now: a whole JSON document (not JSON
    lines) is refused up front with ShardUnreadable."""
    src, chunks = open_stream(shard.path, shard.format)
    err: StreamEnd | None = None
    try:
        first = next(chunks, b"")
    except StreamEnd as e:
        first, err = b"", e
    what = _not_json_lines(first, is_stdin(shard))
    if what is not None:
        src.close()
        raise ShardUnreadable(
            f"{shard.path}: looks like {what}, not JSON lines (one object per line); "
            f"convert it first, e.g. jq -c '.[]'")
    return src, line_blocks(_primed(first, err, chunks))


class JsonLines(Format):
    names = ("jsonl", "jsonl.gz", "jsonl.zst")
    suffixes = (
        (".jsonl.zstd", "jsonl.zst"), (".ndjson.zstd", "jsonl.zst"), (".json.zstd", "jsonl.zst"),
        (".jsonl.zst", "jsonl.zst"), (".ndjson.zst", "jsonl.zst"), (".json.zst", "jsonl.zst"),
        (".jsonl.gz", "jsonl.gz"), (".ndjson.gz", "jsonl.gz"), (".json.gz", "jsonl.gz"),
        (".ndjson", "jsonl"), (".jsonl", "jsonl"), (".json", "jsonl"),
    )
    description = ("JSON lines (.jsonl, .ndjson, .json; compressed .jsonl.gz, .json.gz, .jsonl.zst, "
                   ".json.zst)")

    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        src, blocks = _open_lines(shard)
        return _items(shard, src, blocks, SpecPaths(spec), spec.batch_docs, spec.batch_bytes)

    def records(self, shard: Shard) -> Iterator[tuple[int, bytes]]:
        src, blocks = _open_lines(shard)
        return _lines(src, blocks)

    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str, field_redactions: Mapping[str, Redactions] | None = None) -> None:
        """See :meth:`Format.rewrite`; ``field_redactions`` (field path -> row -> function) redacts
        string values at other field paths too (``scan --pii-fields``). With --text-field
        fallbacks the text is redacted where the scan read it: the first listed path holding a string."""
        paths = [(tuple(FieldPath(p) for p in field_list(text_field)), redactions)]
        paths += [((FieldPath(p),), r) for p, r in sorted((field_redactions or {}).items())]
        lines = self.records(shard)
        with atomic_output(dest) as tmp, open_writer(tmp, shard.format) as f:
            for row, line in lines:
                if not kept(keep, row):
                    continue
                todo = [(path, r[row]) for path, r in paths if row in r]
                if todo:
                    obj = json.loads(line)  # the stdlib parser keeps big integers exact; field order is kept
                    changed = False
                    for candidates, redact in todo:
                        for path in candidates:
                            found = path.find(obj)
                            if found is not None and type(found[0][found[1]]) is str:
                                holder, key = found
                                holder[key] = redact(holder[key])
                                changed = True
                                break
                    if changed:
                        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                f.write(line)
                f.write(b"\n")


def _lines(src: ByteSource, blocks: Iterator[list[bytes]]) -> Iterator[tuple[int, bytes]]:
    row = 0
    try:
        for lines in blocks:
            for line in lines:
                if not line.strip():  # blank lines are no records (orjson refuses them, see _items)
                    continue
                yield row, line
                row += 1
    except StreamEnd:
        return
    finally:
        src.close()


def _batch(rel: str, rows: list[int], ids: list[str], texts: list[str], extra: tuple[FieldPath, ...],
           values: list[list], fallbacks: tuple[FieldPath, ...] = (), first: str = "",
           hits: list[int] | None = None) -> DocBatch | None:
    if not texts:
        return None
    used: dict[str, int] = {}
    if fallbacks and hits is not None:  # documents of the first path: those no fallback gave
        counted = {first: len(texts) - sum(hits), **{p.path: n for p, n in zip(fallbacks, hits)}}
        used = {path: n for path, n in counted.items() if n}
        hits[:] = [0] * len(hits)
    return DocBatch(rel, np.array(rows, dtype=np.int64), ids, texts, {p.path: v for p, v in zip(extra, values)},
                    text_fields=used)


def _items(shard: Shard, src: ByteSource, blocks: Iterator[list[bytes]], paths: SpecPaths,
           batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    # The hot loop of the whole scan: plain top-level names are looked up with dict.get inline,
    # and a nested path is walked only when that lookup finds no string (or no id), so that
    # plain names cost nothing more than before paths existed.
    rel = shard.rel
    loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError
    text_path, id_path = paths.text, paths.id
    tf, idf = text_path.path, id_path.path
    text_nested, id_nested = text_path.nested, id_path.nested
    extra = paths.fields
    # --text-field / --id-field fallbacks: tried, in order, only where the first path gives no
    # string (no id); ``hits`` counts per batch the documents each text fallback gave
    fallbacks, id_fallbacks = paths.texts[1:], paths.ids[1:]
    hits = [0] * len(fallbacks)
    used = (fallbacks, tf, hits)  # _batch's last arguments
    picked = [-1]  # the fallback the current record's text came from, counted once it is in a batch

    def fallback_text(obj: dict) -> str | None:
        for k, path in enumerate(fallbacks):
            value = path.get(obj)
            if type(value) is str:
                picked[0] = k
                return value
        return None
    rows: list[int] = []
    ids: list[str] = []
    texts: list[str] = []
    values: list[list] = [[] for _ in extra]
    bad: list[BadRecord] = []
    nbytes = 0
    row = 0  # record index: non-blank lines seen so far
    blanks = 0  # blank lines seen so far (line number = row + blanks + 1)
    # a text field that no record has is one shard error, not a bad record per line: counted
    # off the hot path (only records without a string text get here)
    absent = 0  # objects without the text field at all
    no_object = 0  # records that are no JSON object (malformed, or another JSON value)
    names: dict[str, None] = {}  # top-level field names of those objects (names only), for the error

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
                    no_object += 1
                else:
                    if type(obj) is dict:
                        text = obj.get(tf)
                        if (type(text) is str or (text_nested and type(text := text_path.get(obj)) is str)
                                or (fallbacks and type(text := fallback_text(obj)) is str)):
                            n = len(line)
                            if nbytes + n > batch_bytes and texts:
                                yield _batch(rel, rows, ids, texts, extra, values, *used), bad, src.pos
                                rows, ids, texts, bad, nbytes = [], [], [], [], 0
                                values = [[] for _ in extra]
                            i = obj.get(idf)
                            if type(i) is str:
                                ids.append(i)
                            else:
                                id_at = id_path
                                if i is None and id_nested:
                                    i = id_path.get(obj)
                                if i is None and id_fallbacks:
                                    for id_at in id_fallbacks:
                                        if (i := id_at.get(obj)) is not None:
                                            break
                                if i is None:
                                    ids.append(f"{rel}:{row}")
                                elif type(i) is str:  # found by walking a nested path, or a fallback
                                    ids.append(i)
                                elif type(i) is float:  # orjson reads integers beyond 64 bits as floats
                                    exact = id_at.get(_exact_json(line))
                                    ids.append(id_text(i if exact is None else exact))
                                else:
                                    ids.append(id_text(i))
                            if extra:
                                for path, column in zip(extra, values):
                                    column.append(path.get(obj))
                            rows.append(row)
                            texts.append(text)
                            if fallbacks and picked[0] >= 0:
                                hits[picked[0]] += 1
                                picked[0] = -1
                            nbytes += n
                            row += 1
                            if len(texts) >= batch_docs:
                                yield _batch(rel, rows, ids, texts, extra, values, *used), bad, src.pos
                                rows, ids, texts, bad, nbytes = [], [], [], [], 0
                                values = [[] for _ in extra]
                            continue
                        if fallbacks:
                            record, none_there = _texts_bad(row, row + blanks + 1, obj, paths.texts)
                        else:
                            found = text_path.find(obj)
                            record, none_there = _text_bad(row, row + blanks + 1, obj, text_path, found), found is None
                        if none_there:
                            absent += 1
                            if len(names) <= _NAMES_KEPT:
                                for name in itertools.islice(obj, _NAMES_KEPT + 1):
                                    names[name] = None
                        bad.append(record)
                    else:
                        no_object += 1
                        bad.append(BadRecord(row, "not_an_object",
                                             f"line {row + blanks + 1}: the record is {_json_type(obj)}, not an object"))
                row += 1
                if len(bad) >= batch_docs:
                    yield _batch(rel, rows, ids, texts, extra, values, *used), bad, src.pos
                    rows, ids, texts, bad, nbytes = [], [], [], [], 0
                    values = [[] for _ in extra]
    except StreamEnd as e:
        bad.append(BadRecord(row, e.reason, f"after line {row + blanks}: {e.detail}"))
    finally:
        src.close()
    if absent and absent + no_object == row:  # objects, none with the field: no document, none bad for another cause
        raise ShardUnreadable(f"{shard.path}: {absent_everywhere([p.path for p in paths.texts], list(names))}")
    lines = line = obj = text = None  # noqa: F841 - a huge last record's bytes and object are not kept during analysis
    yield _batch(rel, rows, ids, texts, extra, values, *used), bad, src.pos


FORMAT = JsonLines()
