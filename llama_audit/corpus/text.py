"""Plain text (``.txt``, ``.txt.gz``, ``.txt.zst``): the whole file is one document (row 0).

The only format read whole, by definition. It has no fields: the text field path does not apply
and projected fields are None. A dropped document is not rewritten at all; a kept one keeps the
compression of its input.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..store import atomic_output
from ..types import DocBatch
from .base import Format, Redactions, kept
from .records import BadRecord, Item, ReadSpec, Shard, ShardUnreadable
from .streams import BOM, ByteSource, StreamEnd, open_stream, open_writer


def _open(shard: Shard) -> tuple[ByteSource, Iterator[bytes]]:
    if os.path.isdir(shard.path):
        raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
    return open_stream(shard.path, shard.format)


class PlainText(Format):
    names = ("txt", "txt.gz", "txt.zst")
    suffixes = ((".txt.zstd", "txt.zst"), (".txt.zst", "txt.zst"), (".txt.gz", "txt.gz"), (".txt", "txt"))
    description = "plain text (.txt, .txt.gz, .txt.zst; one document per file)"

    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        src, chunks = _open(shard)
        return _items(shard, src, chunks, spec.fields)

    def records(self, shard: Shard) -> Iterator[tuple[int, bytes]]:
        src, chunks = _open(shard)
        return _records(src, chunks)

    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str) -> None:
        if not kept(keep, 0):  # a dropped one-document file is not written at all
            dest.unlink(missing_ok=True)
            return
        data = next(self.records(shard), None)
        if data is None:
            raise ShardUnreadable(f"{shard.path}: cannot be read to the end (changed since the scan?)")
        _, content = data
        redact = redactions.get(0)
        if redact is not None:
            content = redact(content.decode("utf-8")).encode("utf-8")
        with atomic_output(dest) as tmp, open_writer(tmp, shard.format) as f:
            f.write(content)


def _records(src: ByteSource, chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    try:
        content = b"".join(chunks)
    except StreamEnd:
        return
    finally:
        src.close()
    yield 0, content[len(BOM):] if content.startswith(BOM) else content


def _items(shard: Shard, src: ByteSource, chunks: Iterator[bytes], fields: tuple[str, ...]) -> Iterator[Item]:
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
                if b.startswith(BOM):
                    b = b[len(BOM):]
                    seen = len(BOM)
            offset = seen - len(dec.getstate()[0])
            parts.append(dec.decode(b))
            seen += len(b)
        offset = seen - len(dec.getstate()[0])
        parts.append(dec.decode(b"", final=True))
    except UnicodeDecodeError as u:
        bad = BadRecord(0, "invalid_utf8", f"invalid UTF-8 at byte {offset + u.start}{where}")
    except StreamEnd as e:
        bad = BadRecord(0, e.reason, e.detail)
    finally:
        src.close()
    if bad is not None:
        yield None, [bad], src.pos
        return
    rel = shard.rel
    text = "".join(parts)
    parts.clear()  # the decoded pieces are not kept beside the document during analysis
    yield (DocBatch(rel, np.zeros(1, dtype=np.int64), [f"{rel}:0"], [text], {p: [None] for p in fields}), [], src.pos)


FORMAT = PlainText()
