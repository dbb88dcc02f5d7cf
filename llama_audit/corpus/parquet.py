"""Parquet (``.parquet``, ``.pq``): rows of a table, read row group by row group.

Reading loads only the top-level columns that the text, id and projected field paths live in.
A row group that cannot be decoded is bad records for its remaining rows; the next row group
is read. Rewriting keeps the schema (every column, struct and field as it was).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..store import PARQUET_OPTIONS, atomic_output
from ..types import ConfigError
from . import columnar, remote
from .base import Format, Redactions
from .fields import FieldPath, SpecPaths, field_list
from .records import Item, ReadSpec, Shard, ShardUnreadable
from .streams import error_text

_ROWS_PER_BATCH = 4096  # record batch size when enumerating or rewriting every column


class _ObjectParquetFile(pq.ParquetFile):
    """A ParquetFile over a remote object opened by us: closing it closes the object (pyarrow
    leaves a file object it was handed open)."""

    def close(self, force: bool = False) -> None:
        super().close(force=True)


def _open(shard: Shard) -> tuple[pq.ParquetFile, pa.Schema]:
    """The file and its Arrow schema; a file whose footer does not decode is ShardUnreadable.

    A remote object (a URL) is read through its fsspec file: pyarrow reads the footer, then each
    row group's column chunks, by range requests; the object is never downloaded whole."""
    if remote.is_url(shard.path):
        try:
            source = remote.open_input(shard.path)
        except OSError as e:
            raise ShardUnreadable(f"{shard.path}: cannot open: {error_text(e)}") from None
        except ConfigError as e:
            raise ShardUnreadable(str(e)) from None
        try:
            pf = _ObjectParquetFile(source)
            return pf, pf.schema_arrow
        except (OSError, pa.ArrowException, ValueError) as e:
            source.close()
            raise ShardUnreadable(f"{shard.path}: not a readable Parquet file ({error_text(e)})") from None
    if os.path.isdir(shard.path):
        raise ShardUnreadable(f"{shard.path}: cannot open: is a directory")
    try:
        pf = pq.ParquetFile(shard.path)
        return pf, pf.schema_arrow
    except (OSError, pa.ArrowException, ValueError) as e:
        raise ShardUnreadable(f"{shard.path}: not a readable Parquet file ({error_text(e)})") from None


def _row_groups(pf: pq.ParquetFile, columns: Sequence[str] | None,
                batch_size: int) -> Iterator[tuple[int, int, pa.RecordBatch | Exception, int]]:
    """(row group, first row, record batch, row group's end row) in file order. A row group that
    fails to decode yields the error in place of a batch (at the row it stopped at); the next
    row group follows."""
    row = 0
    for rg in range(pf.metadata.num_row_groups):
        stop = row + pf.metadata.row_group(rg).num_rows
        at = row
        try:
            for rb in pf.iter_batches(batch_size=batch_size, row_groups=[rg], columns=columns, use_threads=False):
                yield rg, at, rb, stop
                at += rb.num_rows
        except (OSError, pa.ArrowException) as e:
            yield rg, at, e, stop
        row = stop


class Parquet(Format):
    names = ("parquet",)
    suffixes = ((".parquet", "parquet"), (".pq", "parquet"))
    description = "Parquet (.parquet, .pq)"

    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        pf, schema = _open(shard)
        paths = SpecPaths(spec)
        absent = paths.text_absent_from(schema)
        if absent is not None:  # the schema holds for every row: no record can have it
            pf.close()
            raise ShardUnreadable(f"{shard.path}: {absent}")
        return _items(shard, pf, schema, paths, spec.batch_docs, spec.batch_bytes)

    def records(self, shard: Shard) -> Iterator[tuple[int, dict]]:
        return _records(_open(shard)[0])

    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str, field_redactions: Mapping[str, Redactions] | None = None) -> None:
        pf, schema = _open(shard)
        text = tuple(FieldPath(p) for p in field_list(text_field))  # fallbacks too
        try:
            with atomic_output(dest) as tmp:
                with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer:
                    for _, row0, rb, _ in _row_groups(pf, None, _ROWS_PER_BATCH):
                        if isinstance(rb, pa.RecordBatch):  # rows of a broken row group were bad records
                            writer.write_batch(columnar.rewrite_batch(rb, row0, keep, redactions, text, field_redactions))
        finally:
            pf.close()


def _records(pf: pq.ParquetFile) -> Iterator[tuple[int, dict]]:
    try:
        for _, row0, rb, _ in _row_groups(pf, None, _ROWS_PER_BATCH):
            if isinstance(rb, pa.RecordBatch):
                yield from columnar.records_of(rb, row0)
    finally:
        pf.close()


def _items(shard: Shard, pf: pq.ParquetFile, schema: pa.Schema, paths: SpecPaths, batch_docs: int,
           batch_bytes: int) -> Iterator[Item]:
    num_rows = pf.metadata.num_rows
    total = max(num_rows, 1)
    size = shard.size
    try:
        columns = paths.top_columns(schema.names)  # read() checked the text path is in the schema
        for rg, row0, rb, stop in _row_groups(pf, columns, batch_docs):
            if isinstance(rb, pa.RecordBatch):
                batches, bad = columnar.to_docs(rb, row0, shard.rel, paths, batch_docs, batch_bytes,
                                                f"row group {rg}")
                yield from columnar.items(batches, bad, size * (row0 + rb.num_rows) // total)
            else:
                detail = f"row group {rg} unreadable from row {row0}: {error_text(rb)}"
                for chunk in columnar.bad_range(row0, stop, "read_error", detail, batch_docs):
                    yield None, chunk, size * (chunk[-1].row + 1) // total
    finally:
        pf.close()
    yield None, [], size


FORMAT = Parquet()
