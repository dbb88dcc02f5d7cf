"""Arrow IPC (``.arrow``, format ``hf_arrow``): the files of a ``datasets`` ``save_to_disk``
directory (IPC streams) and Arrow IPC files (random access), read record batch by record batch.

A stream cut short is one bad record at the next row and ends the shard. Rewriting keeps the
schema and the IPC flavour (stream or file) of the input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa

from ..store import atomic_output
from . import columnar
from .base import Format, Redactions
from .fields import FieldPath, SpecPaths, field_list
from .records import BadRecord, Item, ReadSpec, Shard, ShardUnreadable
from .streams import error_text

_FILE_MAGIC = b"ARROW1"  # the IPC file format starts with it; a stream does not


class _Ipc:
    """An open .arrow file: its memory map and an IPC file or stream reader over it."""

    def __init__(self, shard: Shard):
        if os.path.isdir(shard.path):
            raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
        try:
            self.src = pa.memory_map(shard.path)
        except (OSError, pa.ArrowException) as e:
            raise ShardUnreadable(f"{shard.path}: cannot open: {error_text(e)}") from None
        try:
            self.is_file = self.src.read(len(_FILE_MAGIC)) == _FILE_MAGIC
            self.src.seek(0)
            self.reader = pa.ipc.open_file(self.src) if self.is_file else pa.ipc.open_stream(self.src)
        except (OSError, pa.ArrowException) as e:
            self.src.close()
            raise ShardUnreadable(f"{shard.path}: not a readable Arrow file ({error_text(e)})") from None
        self.size = shard.size

    def batches(self) -> Iterator[tuple[int, int, pa.RecordBatch | Exception, int]]:
        """(index, first row, record batch, input position after it); a batch that cannot be read
        yields its error instead and ends the iteration."""
        row = 0
        k = 0
        while True:
            try:
                if self.is_file:
                    if k >= self.reader.num_record_batches:
                        return
                    rb = self.reader.get_batch(k)
                else:
                    rb = self.reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as e:
                yield k, row, e, self.size
                return
            pos = self.size * (k + 1) // max(self.reader.num_record_batches, 1) if self.is_file else self.src.tell()
            yield k, row, rb, pos
            row += rb.num_rows
            k += 1

    def close(self) -> None:
        self.src.close()


def _end_reason(e: Exception) -> str:
    msg = str(e)
    return "truncated_stream" if ("Expected to be able to read" in msg or "EOF" in msg) else "read_error"


class HfArrow(Format):
    names = ("hf_arrow",)
    suffixes = ((".arrow", "hf_arrow"),)
    description = "Arrow (.arrow) and directories written by datasets' save_to_disk"

    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        ipc = _Ipc(shard)
        paths = SpecPaths(spec)
        absent = paths.text_absent_from(ipc.reader.schema)
        if absent is not None:  # every record batch of an IPC file or stream has this schema
            ipc.close()
            raise ShardUnreadable(f"{shard.path}: {absent}")
        return _items(shard, ipc, paths, spec.batch_docs, spec.batch_bytes)

    def records(self, shard: Shard) -> Iterator[tuple[int, dict]]:
        return _records(_Ipc(shard))

    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str, field_redactions: Mapping[str, Redactions] | None = None) -> None:
        ipc = _Ipc(shard)
        text = tuple(FieldPath(p) for p in field_list(text_field))  # fallbacks too
        new_writer = pa.ipc.new_file if ipc.is_file else pa.ipc.new_stream
        try:
            with atomic_output(dest) as tmp, pa.OSFile(str(tmp), "wb") as sink, \
                    new_writer(sink, ipc.reader.schema) as writer:
                for _, row0, rb, _ in ipc.batches():
                    if isinstance(rb, pa.RecordBatch):  # the rows after a break were bad records
                        writer.write_batch(columnar.rewrite_batch(rb, row0, keep, redactions, text, field_redactions))
        finally:
            ipc.close()


def _records(ipc: _Ipc) -> Iterator[tuple[int, dict]]:
    try:
        for _, row0, rb, _ in ipc.batches():
            if isinstance(rb, pa.RecordBatch):
                yield from columnar.records_of(rb, row0)
    finally:
        ipc.close()


def _items(shard: Shard, ipc: _Ipc, paths: SpecPaths, batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    try:
        for k, row0, rb, pos in ipc.batches():
            if isinstance(rb, pa.RecordBatch):
                batches, bad = columnar.to_docs(rb, row0, shard.rel, paths, batch_docs, batch_bytes,
                                                f"record batch {k}")
                yield from columnar.items(batches, bad, pos)
            else:
                yield None, [BadRecord(row0, _end_reason(rb), f"record batch {k}: {error_text(rb)}")], pos
                return
    finally:
        ipc.close()
    yield None, [], shard.size


FORMAT = HfArrow()
