"""Review samples: a few documents per counted group, kept so that a person can read them.

A count is only as good as what it counts: the Llama 2 paper's identity counts (section 4.1,
Table 9b) count a descriptor wherever its tokens occur, and "ace", "pan" or "bi" are often
something else. An analyzer that declares :meth:`~llama_audit.analyzers.base.Analyzer.review_sampling`
offers, per batch, candidate samples (:class:`ReviewSample`: a group such as one descriptor in
one document language, an order key and a JSON payload that references the document); the core keeps,
per analyzer and group, the ``limit`` candidates with the smallest ``(order, payload)``:

* per shard while scanning (:class:`SampleKeeper`, written to ``OUT/samples/<key>.parquet``
  before the shard's done marker),
* across shards when merging (:func:`merge_tables`, ``OUT/summary/samples.parquet``) or reporting.

Bottom-k of a fixed order is a deterministic reservoir: the k smallest of the union are the k
smallest of the per-shard k smallest, so the samples are the same bytes whatever the number of
workers, the executor, the Slurm slicing or a resume (Cohen & Kaplan, "Summarizing data using
bottom-k sketches", PODC 2007). An order key that is a hash of what identifies a candidate
(:func:`stable_order`) makes the sample a uniform one of the candidates, independent of where
the documents sit in the corpus.

The payload is built lazily (a callable) and only for candidates that enter a group's current
bottom-k: about ``k * ln(n / k)`` of ``n`` candidates, so an analyzer may spend real work on it
(masking personal data in a context window). This module imports nothing of llama-audit: the
analyzer contract, the scan and the OUT layer all use it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: one row per kept sample; rows sorted by (analyzer, group, order, payload)
SCHEMA = pa.schema([("analyzer", pa.string()), ("group", pa.string()), ("order", pa.string()),
                    ("payload", pa.string())])
#: the key of an analyzer's declaration (``review_sampling()``) that says how many samples a group keeps
LIMIT_KEY = "limit"
#: where the scan's configuration records each sampling analyzer's declaration (absent: none samples)
CONFIG_KEY = "review_samples"
#: the key of a shard's done record that counts its kept samples (their file must read back)
DONE_KEY = "review_samples"

Payload = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class ReviewSample:
    """One candidate sample. ``group``: what it illustrates (e.g. one descriptor in one document language);
    ``order``: its rank key (smallest kept; :func:`stable_order`); ``payload``: a JSON object that
    references the document (no personal data), or a callable returning it, called only when the
    candidate is kept."""

    group: str
    order: str
    payload: Payload


def stable_order(*parts: Any) -> str:
    """A rank key from what identifies a candidate (shard, row, group...): 32 hex digits of
    BLAKE2b, so equal inputs rank equally on every machine and run."""
    text = "\0".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def payload_json(payload: Mapping[str, Any]) -> str:
    """The payload as stored: canonical JSON (sorted keys), valid UTF-8 (a lone surrogate of a
    broken document becomes U+FFFD)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "replace").decode("utf-8")


def limits_of(config: Mapping[str, Any]) -> dict[str, int]:
    """``{analyzer: limit}`` from a scan's recorded configuration (empty: nothing was sampled)."""
    declared = config.get(CONFIG_KEY) or {}
    return {name: int(d.get(LIMIT_KEY, 0)) for name, d in declared.items() if int(d.get(LIMIT_KEY, 0)) > 0}


class SampleKeeper:
    """Per analyzer and group, the ``limits[analyzer]`` candidates with the smallest
    ``(order, payload)`` seen so far. Not thread-safe: one per thread, combined by :meth:`update`."""

    def __init__(self, limits: Mapping[str, int]):
        self.limits = {name: int(k) for name, k in limits.items() if int(k) > 0}
        self._kept: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def __bool__(self) -> bool:  # an empty keeper is still "on" when it has limits
        return bool(self.limits)

    def keeps(self, analyzer: str) -> bool:
        return analyzer in self.limits

    def offer(self, analyzer: str, samples: Iterable[ReviewSample]) -> None:
        limit = self.limits[analyzer]
        for s in samples:
            kept = self._kept.setdefault((analyzer, s.group), [])
            if len(kept) >= limit and s.order > kept[-1][0]:
                continue  # cannot enter: its payload is never built
            payload = s.payload() if callable(s.payload) else s.payload
            self._insert(kept, (s.order, payload_json(payload)), limit)

    @staticmethod
    def _insert(kept: list[tuple[str, str]], item: tuple[str, str], limit: int) -> None:
        i = bisect.bisect_left(kept, item)
        if i < len(kept) and kept[i] == item:
            return  # the same candidate twice (e.g. offered again): kept once
        if i >= limit:
            return
        kept.insert(i, item)
        del kept[limit:]

    def update(self, other: "SampleKeeper") -> None:
        for (analyzer, group), items in other._kept.items():
            kept = self._kept.setdefault((analyzer, group), [])
            for item in items:
                self._insert(kept, item, self.limits[analyzer])

    def to_table(self) -> pa.Table:
        rows = sorted((a, g, o, p) for (a, g), items in self._kept.items() for o, p in items)
        return pa.table([pa.array([r[i] for r in rows], pa.string()) for i in range(4)], schema=SCHEMA)


def merge_tables(tables: Iterable[pa.Table], limits: Mapping[str, int]) -> pa.Table:
    """The union of sample tables, cut to the ``limits[analyzer]`` smallest ``(order, payload)``
    per (analyzer, group); sorted. Analyzers without a limit are dropped."""
    tables = [t.select(SCHEMA.names).cast(SCHEMA) for t in tables]
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    names = [n for n, k in limits.items() if k > 0]
    table = table.filter(pc.is_in(table["analyzer"], value_set=pa.array(names, pa.string())))
    table = table.sort_by([(n, "ascending") for n in SCHEMA.names])
    if not table.num_rows:
        return table.combine_chunks()
    # rank of each row inside its (analyzer, group); equal rows (the same sample) count once
    cols = [table[n].to_numpy(zero_copy_only=False) for n in SCHEMA.names]
    n = table.num_rows
    new_group = np.ones(n, dtype=bool)
    same_row = np.zeros(n, dtype=bool)
    if n > 1:
        new_group[1:] = (cols[0][1:] != cols[0][:-1]) | (cols[1][1:] != cols[1][:-1])
        same_row[1:] = ~new_group[1:] & (cols[2][1:] == cols[2][:-1]) & (cols[3][1:] == cols[3][:-1])
    distinct = ~same_row
    rank_all = np.cumsum(distinct) - 1
    starts = np.maximum.accumulate(np.where(new_group, rank_all, 0))
    rank = rank_all - starts
    limit = np.array([limits.get(a, 0) for a in cols[0]], dtype=np.int64)
    keep = distinct & (rank < limit)
    return table.filter(pa.array(keep)).combine_chunks()


def merge_files(paths: Iterable, limits: Mapping[str, int]) -> pa.Table:
    return merge_tables((pq.read_table(p, schema=SCHEMA) for p in paths), limits)


def by_group(table: pa.Table, analyzer: str) -> dict[str, list[dict]]:
    """One analyzer's samples as ``{group: [payload, ...]}``, groups sorted, samples in order."""
    out: dict[str, list[dict]] = {}
    rows = table.filter(pc.equal(table["analyzer"], analyzer)) if table.num_rows else table
    for g, p in zip(rows["group"].to_pylist(), rows["payload"].to_pylist()):
        out.setdefault(g, []).append(json.loads(p))
    return out
