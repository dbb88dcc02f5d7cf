"""Vectorised helpers for folding list<string> annotation columns into counts."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc


def count_values(col: pa.Array, prefix: str) -> Counter:
    """Counter of ``prefix + value`` over all values of a list<string> column (nulls skipped)."""
    flat = pc.list_flatten(col)
    out: Counter = Counter()
    if len(flat) == 0:
        return out
    vc = pc.value_counts(flat)
    for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
        out[prefix + value] = n
    return out


def count_rows_with_any(col: pa.Array, values: list[str]) -> int:
    """Number of rows of a list<string> column holding at least one of ``values``."""
    flat = pc.list_flatten(col)
    if len(flat) == 0:
        return 0
    parents = pc.list_parent_indices(col)
    hit = pc.is_in(flat, value_set=pa.array(values, pa.string()))
    return len(pc.unique(pc.filter(parents, hit)))
