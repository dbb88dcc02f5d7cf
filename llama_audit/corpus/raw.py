"""Raw records of a JSON-lines shard, numbered exactly like the reader numbers them, so a
cleaning job can pair each original line with its annotation row and pass it through untouched."""

from __future__ import annotations

from typing import Iterator

from .readers import _GZIP_MAGIC, _gzip_chunks, _line_blocks, _plain_chunks, _Source, _StreamEnd, _zstd_chunks
from .records import Shard, ShardUnreadable


def iter_jsonl_lines(shard: Shard) -> Iterator[tuple[int, bytes]]:
    """(row, line) for every non-blank line; stops quietly where the stream breaks (those rows
    were bad records of the scan)."""
    src = _Source(shard.path)
    if shard.format == "jsonl":
        chunks = _plain_chunks(src)
    elif shard.format == "jsonl.gz":
        if not src.peek_magic(shard.path).startswith(_GZIP_MAGIC):
            src.close()
            raise ShardUnreadable(f"{shard.path}: not a gzip file (bad magic bytes)")
        chunks = _gzip_chunks(src)
    elif shard.format == "jsonl.zst":
        chunks = _zstd_chunks(src)
    else:
        src.close()
        raise ValueError(f"not a JSON-lines shard: {shard.format}")
    row = 0
    try:
        for lines in _line_blocks(chunks):
            for line in lines:
                if not line.strip():
                    continue
                yield row, line
                row += 1
    except _StreamEnd:
        return
    finally:
        src.close()
