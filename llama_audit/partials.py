"""Additive partial summaries: per-shard counts that merge by addition, in any order.

A partial is a table of (analyzer, key, value:int64) rows, sorted, zero rows dropped. Histograms
and quantile sketches are fixed-bin counts, so they merge exactly like any other count.

A scan with ``--group-by`` (:mod:`llama_audit.groups`) writes a fourth column, ``group``: null on
the overall rows (the same rows an ungrouped scan writes), the group's value on the rows counted
per group. Keys are never encoded with the group, so a value holding ``/`` cannot be confused
with a key path; :func:`from_table` reads the overall rows, :func:`group_tables` the others.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("analyzer", pa.string()), ("key", pa.string()), ("value", pa.int64())])
#: the counts of the core itself (documents, bytes, bad records...), beside each analyzer's, and
#: the report's corpus section computed from them
CORPUS = "corpus"
GROUP = "group"  # the column of a grouped partial: null = overall, else the group's value
GROUPED_SCHEMA = SCHEMA.append(pa.field(GROUP, pa.string()))


def is_partial_schema(schema: pa.Schema) -> bool:
    """Whether ``schema`` (metadata removed) is a partial's: plain, or grouped."""
    return schema.equals(SCHEMA) or schema.equals(GROUPED_SCHEMA)


def to_table(counts: Mapping[str, Mapping[str, int]],
             groups: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None) -> pa.Table:
    """The partial of ``counts`` (analyzer -> key -> value); with ``groups`` (group -> analyzer
    -> key -> value, possibly empty: a grouped scan) the grouped table, overall rows first."""
    rows = sorted((a, k, int(v)) for a, c in counts.items() for k, v in c.items() if v)
    columns = [pa.array([r[0] for r in rows], pa.string()), pa.array([r[1] for r in rows], pa.string()),
               pa.array([r[2] for r in rows], pa.int64())]
    if groups is None:
        return pa.table(columns, schema=SCHEMA)
    grouped = sorted((g, a, k, int(v)) for g, by in groups.items() for a, c in by.items() for k, v in c.items() if v)
    return pa.table(
        [pa.array([r[0] for r in rows] + [r[1] for r in grouped], pa.string()),
         pa.array([r[1] for r in rows] + [r[2] for r in grouped], pa.string()),
         pa.array([r[2] for r in rows] + [r[3] for r in grouped], pa.int64()),
         pa.array([None] * len(rows) + [r[0] for r in grouped], pa.string())],
        schema=GROUPED_SCHEMA,
    )


def overall_rows(table: pa.Table) -> pa.Table:
    """The rows counted over every document (a grouped table's rows with a null group)."""
    if GROUP not in table.column_names:
        return table
    return table.filter(pc.is_null(table[GROUP])).select(SCHEMA.names)


def group_rows(table: pa.Table) -> pa.Table:
    """A grouped table's per-group rows (group, analyzer, key, value); none for a plain one."""
    if GROUP not in table.column_names:
        return GROUPED_SCHEMA.empty_table()
    return table.filter(pc.is_valid(table[GROUP]))


def from_table(table: pa.Table) -> dict[str, Counter]:
    """The overall counts of a partial (plain or grouped): analyzer -> Counter."""
    table = overall_rows(table)
    out: dict[str, Counter] = {}
    for a, k, v in zip(table["analyzer"].to_pylist(), table["key"].to_pylist(), table["value"].to_pylist()):
        out.setdefault(a, Counter())[k] += v
    return out


def groups_from_table(table: pa.Table) -> dict[str, dict[str, Counter]]:
    """The per-group counts of a grouped partial: group -> analyzer -> Counter."""
    table = group_rows(table)
    out: dict[str, dict[str, Counter]] = {}
    for g, a, k, v in zip(table[GROUP].to_pylist(), table["analyzer"].to_pylist(), table["key"].to_pylist(),
                          table["value"].to_pylist()):
        out.setdefault(g, {}).setdefault(a, Counter())[k] += v
    return out


def merge_tables(tables: Iterable[pa.Table]) -> pa.Table:
    """The sum of partials, in any order; grouped when any of them is (the plain ones' rows are
    overall rows)."""
    tables = list(tables)
    grouped = any(GROUP in t.column_names for t in tables)
    schema = GROUPED_SCHEMA if grouped else SCHEMA
    tables = [(t if GROUP in t.column_names or not grouped
               else t.append_column(GROUP, pa.nulls(t.num_rows, pa.string()))).select(schema.names).cast(schema)
              for t in tables]
    if not tables:
        return SCHEMA.empty_table()
    keys = [GROUP, "analyzer", "key"] if grouped else ["analyzer", "key"]
    merged = pa.concat_tables(tables).group_by(keys).aggregate([("value", "sum")])
    merged = merged.rename_columns([*keys, "value"]).select(schema.names)
    merged = merged.filter(pc.not_equal(merged["value"], 0))
    order = [(GROUP, "ascending", "at_start")] if grouped else []  # overall rows (null group) first
    return merged.sort_by(order + [("analyzer", "ascending"), ("key", "ascending")])


def read_merged(path: Path) -> pa.Table:
    """A table :func:`merge_files` wrote (the summary): already summed and sorted, read as it is."""
    table = pq.read_table(path)
    schema = GROUPED_SCHEMA if GROUP in table.column_names else SCHEMA
    return table.select(schema.names).cast(schema)


def merge_files(paths: Iterable[Path]) -> pa.Table:
    """The sum of partial files (plain or grouped, read with their own schema)."""
    tables = []
    for p in paths:
        table = pq.read_table(p)
        schema = GROUPED_SCHEMA if GROUP in table.column_names else SCHEMA
        tables.append(table.select(schema.names).cast(schema))
    return merge_tables(tables)
