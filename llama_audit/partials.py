"""Additive partial summaries: per-shard counts that merge by addition, in any order.

A partial is a table of (analyzer, key, value:int64) rows, sorted, zero rows dropped. Histograms
and quantile sketches are fixed-bin counts, so they merge exactly like any other count.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("analyzer", pa.string()), ("key", pa.string()), ("value", pa.int64())])


def to_table(counts: Mapping[str, Mapping[str, int]]) -> pa.Table:
    rows = sorted((a, k, int(v)) for a, c in counts.items() for k, v in c.items() if v)
    return pa.table(
        [pa.array([r[0] for r in rows], pa.string()), pa.array([r[1] for r in rows], pa.string()),
         pa.array([r[2] for r in rows], pa.int64())],
        schema=SCHEMA,
    )


def from_table(table: pa.Table) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for a, k, v in zip(table["analyzer"].to_pylist(), table["key"].to_pylist(), table["value"].to_pylist()):
        out.setdefault(a, Counter())[k] += v
    return out


def merge_tables(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t.select(SCHEMA.names).cast(SCHEMA) for t in tables]
    if not tables:
        return SCHEMA.empty_table()
    merged = pa.concat_tables(tables).group_by(["analyzer", "key"]).aggregate([("value", "sum")])
    merged = merged.rename_columns(["analyzer", "key", "value"]).select(SCHEMA.names)
    merged = merged.filter(pc.not_equal(merged["value"], 0))
    return merged.sort_by([("analyzer", "ascending"), ("key", "ascending")])


def merge_files(paths: Iterable[Path]) -> pa.Table:
    return merge_tables(pq.read_table(p, schema=SCHEMA) for p in paths)
