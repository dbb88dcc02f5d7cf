"""One shard end to end: read -> analyze -> annotations + partial -> done marker.

The shard is the unit of work and of resume: its annotations and partial are streamed to
temporary files and renamed into place, and the done marker is written last.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llama_audit import groups as grouping
from llama_audit import partials
from llama_audit.review_samples import DONE_KEY as SAMPLES_DONE_KEY
from llama_audit.review_samples import LIMIT_KEY, SampleKeeper
from llama_audit.analyzers.base import Analyzer, BatchContext
from llama_audit.types import DocBatch
from llama_audit.corpus.hf_stream import is_stream_shard
from llama_audit.corpus import (TEXT_FIELD_COUNT_PREFIX, ReadSpec, Shard, ShardUnreadable, is_stdin, read_shard,
                                stdin_read)
from llama_audit.hashing import fingerprint
from llama_audit.store import AtomicParquetWriter, OutDir, atomic_write_json, atomic_write_table
from llama_audit.text import utf8_size

BASE_FIELDS = [
    pa.field("doc_id", pa.string()),
    pa.field("shard", pa.string()),
    pa.field("row", pa.int64()),
    pa.field("chars", pa.int64()),
]
MAX_BAD_SAMPLES = 100

Progress = Callable[[int, int], None]  # (documents done, input bytes consumed) deltas


class StrictError(Exception):
    """--strict: the first bad record is fatal (exit code 2)."""


class ShardFailed(Exception):
    """The shard could not be finished (unreadable file, analyzer error); other shards go on."""


@dataclasses.dataclass
class ReadOptions:
    """A :class:`~llama_audit.corpus.ReadSpec` whose batch limits may be left to the job (None),
    which fills them in for the analyzers chosen before any shard is read."""

    text_field: str = "text"
    id_field: str = "id"
    batch_docs: int | None = None  # None: 1024, or 8192 when a GPU-batched analyzer (toxicity) runs
    batch_bytes: int | None = None  # None: 4 MiB, or 32 MiB with toxicity
    fields: tuple[str, ...] = ()  # record field paths projected into DocBatch.fields
    group_by: str | None = None  # scan --group-by: counts folded per group too (llama_audit/groups.py)

    def spec(self) -> ReadSpec:
        """The read spec; limits still None take ReadSpec's defaults."""
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "group_by"}
        if self.group_by is not None:  # the grouping field is read like any other field path
            given["fields"] = tuple(dict.fromkeys((*self.fields, grouping.GroupBy.parse(self.group_by).path)))
        return ReadSpec(**given)


def annotation_schema(analyzers: Sequence[Analyzer]) -> pa.Schema:
    fields = list(BASE_FIELDS)
    for a in analyzers:
        fields.extend(a.fields())
    return pa.schema(fields)


ALL_LANGUAGES = "all"  # --languages all: no scope gate


@dataclasses.dataclass(frozen=True)
class Scope:
    """The language scope gate: documents whose ``column`` (written by the analyzer that declares
    ``scope_column``) holds one of ``languages`` are in scope; ``all`` puts every document in."""

    languages: tuple[str, ...] = ("en",)
    column: str | None = None  # None: no scope provider runs

    @property
    def everything(self) -> bool:
        return ALL_LANGUAGES in self.languages

    def gate(self, labels: pa.Array | None, n: int) -> np.ndarray:
        if self.everything:
            return np.ones(n, dtype=bool)
        if labels is None:  # no scope provider: nothing is in scope for a language gate
            return np.zeros(n, dtype=bool)
        mask = pc.is_in(labels, value_set=pa.array(list(self.languages), pa.string()))
        return mask.to_numpy(zero_copy_only=False).astype(bool)


def begin_batch(batch: DocBatch, counts: dict[str, Counter]) -> dict[str, pa.Array]:
    """The base annotation columns of a batch; counts its documents, characters and bytes."""
    n = len(batch)
    chars = pa.array([len(t) for t in batch.texts], pa.int64())
    corpus = counts.setdefault(partials.CORPUS, Counter())
    corpus["documents"] += n
    corpus["chars"] += int(pc.sum(chars).as_py() or 0)
    corpus["bytes"] += sum(map(utf8_size, batch.texts))  # (a huge document is not encoded whole)
    for path, used in batch.text_fields.items():  # --text-field fallbacks: which field each text came from
        corpus[TEXT_FIELD_COUNT_PREFIX + path] += used
    return {
        "doc_id": pa.array(batch.doc_ids, pa.string()),
        "shard": pa.array([batch.shard] * n, pa.string()),
        "row": pa.array(batch.rows, pa.int64()),
        "chars": chars,
    }


def run_analyzers(batch: DocBatch, analyzers: Sequence[Analyzer], scope: Scope,
                  columns: dict[str, pa.Array], gate: np.ndarray | None, counts: dict[str, Counter],
                  timings: dict[str, float] | None, samples: SampleKeeper | None = None,
                  groups: "grouping.BatchGroups | None" = None,
                  group_counts: "grouping.GroupCounts | None" = None) -> np.ndarray | None:
    """Run ``analyzers`` in order, adding their columns to ``columns`` and their counts to
    ``counts`` (and their review samples to ``samples``, when given). ``gate`` is the language
    scope (None until the scope provider has run, which computes it); returns it. ``groups``
    (scan --group-by): each analyzer's counts are also folded per group into ``group_counts``."""
    n = len(batch)
    for a in analyzers:
        if gate is not None:
            in_scope = gate
        else:  # before the scope provider: scoped analyzers would see an empty scope (never via a job)
            in_scope = np.zeros(n, dtype=bool) if a.scoped else np.ones(n, dtype=bool)
        ctx = BatchContext(in_scope=in_scope, columns=columns)
        t0 = time.perf_counter()
        new = a.annotate(batch, ctx)
        for f in a.fields():
            col = new.get(f.name)
            if col is None or len(col) != n:
                raise ShardFailed(f"analyzer {a.name!r} returned no or misaligned column {f.name!r}")
            if not col.type.equals(f.type):
                new[f.name] = col.cast(f.type)
        counts.setdefault(a.name, Counter()).update(a.fold(new, ctx))
        if groups is not None:  # after the overall fold (see BatchGroups.fold)
            groups.fold(a, new, ctx, group_counts)
        if samples is not None and samples.keeps(a.name):
            samples.offer(a.name, a.review_samples(batch, new, ctx))
        if timings is not None:
            timings[a.name] = timings.get(a.name, 0.0) + time.perf_counter() - t0
        columns.update(new)
        if gate is None and a.scope_column is not None:
            gate = scope.gate(columns[a.scope_column], n)
    return gate


def analyze_batch(batch: DocBatch, analyzers: Sequence[Analyzer], scope: Scope,
                  counts: dict[str, Counter], timings: dict[str, float] | None = None) -> pa.Table:
    """Run every analyzer on one batch; fold their counts into ``counts``; return the annotation rows.
    ``timings`` (optional) accumulates seconds per analyzer."""
    columns, _ = analyze_in_order(batch, analyzers, scope, counts, timings)
    return pa.table(columns)


def analyze_in_order(batch, analyzers, scope: Scope, counts, timings,
                     samples: SampleKeeper | None = None, groups: "grouping.BatchGroups | None" = None,
                     group_counts: "grouping.GroupCounts | None" = None) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The base columns and ``analyzers``' columns of one batch, run in order in this thread;
    returns them with the scope gate (counted into the corpus's in-scope documents), and with
    ``groups`` the same counts per group into ``group_counts``."""
    columns = begin_batch(batch, counts)
    gate = np.ones(len(batch), dtype=bool) if scope.everything else None
    gate = run_analyzers(batch, analyzers, scope, columns, gate, counts, timings, samples, groups, group_counts)
    if gate is None:
        gate = scope.gate(None, len(batch))
    counts[partials.CORPUS]["in_scope_documents"] += int(gate.sum())
    if groups is not None:
        groups.count_corpus(columns["chars"], list(map(utf8_size, batch.texts)), gate, group_counts)
    return columns, gate


def split_for_overlap(analyzers: Sequence[Analyzer]) -> tuple[list[Analyzer], list[Analyzer]]:
    """(analyzers run in order on each batch, analyzers run after them in a background thread,
    overlapping the next batch's reading and first analyzers). The second list holds analyzers
    that say :meth:`~Analyzer.overlaps` (a GPU model) and those that require one of them (they run
    after it in the same thread, in order, and see its columns); none of the first list needs them."""
    background_names: set[str] = set()
    for a in analyzers:  # in order: dependencies first
        if a.overlaps() or set(a.requires) & background_names:
            background_names.add(a.name)
    background = [a for a in analyzers if a.name in background_names]
    foreground = [a for a in analyzers if a.name not in background_names]
    if any(set(a.requires) & background_names for a in foreground):
        return list(analyzers), []
    return foreground, background


def _wait_for_background(pending: tuple[BackgroundBatch, int, int] | None) -> None:
    """Let a background batch of a failing shard end before the next shard uses the analyzers."""
    if pending is not None and pending[0].thread is not None:
        pending[0].thread.join()


class BackgroundBatch:
    """The background part of one batch: a daemon thread (Ctrl-C must not wait for a model)."""

    def __init__(self, batch, analyzers, scope: Scope, columns, gate, samples: SampleKeeper | None = None,
                 groups: "grouping.BatchGroups | None" = None):
        self.columns = columns
        self.counts: dict[str, Counter] = {}
        self.groups = groups
        self.group_counts: grouping.GroupCounts = {}
        # this thread's own keeper (a keeper is not thread-safe), combined in result()
        self.samples = SampleKeeper(samples.limits) if samples else None
        self.timings: dict[str, float] = {}
        self.error: BaseException | None = None
        self.thread = None
        if analyzers:
            self.thread = threading.Thread(target=self._run, args=(batch, analyzers, scope, gate),
                                           name="llama-audit-overlap", daemon=True)
            self.thread.start()

    def _run(self, batch, analyzers, scope, gate) -> None:
        try:
            run_analyzers(batch, analyzers, scope, self.columns, gate, self.counts, self.timings, self.samples,
                          self.groups, self.group_counts)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the scanning thread by result()
            self.error = exc

    def result(self, counts: dict[str, Counter], timings: dict[str, float],
               samples: SampleKeeper | None = None,
               group_counts: "grouping.GroupCounts | None" = None) -> dict[str, pa.Array]:
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error
        if samples is not None and self.samples is not None:
            samples.update(self.samples)
        for name, c in self.counts.items():
            counts.setdefault(name, Counter()).update(c)
        if group_counts is not None:
            grouping.merge_into(group_counts, self.group_counts)
        for name, t in self.timings.items():
            timings[name] = timings.get(name, 0.0) + t
        return self.columns


def scan_shard(shard: Shard, analyzers: Sequence[Analyzer], scope: Scope, out: OutDir,
               read: ReadOptions, *, strict: bool = False, progress: Progress | None = None,
               config_hash: str = "", emit: Callable[[pa.Table], None] | None = None) -> dict:
    """Scan one shard; returns its done-marker record. Raises ShardFailed / StrictError."""
    t0 = time.perf_counter()
    schema = annotation_schema(analyzers)
    try:
        # stdin: known once read; a streamed dataset split has no bytes of its own to fingerprint
        fp = None if is_stdin(shard) or is_stream_shard(shard) else fingerprint(shard.path, shard.size)
    except OSError as exc:
        raise ShardFailed(f"{shard.rel}: cannot read ({exc.strerror or type(exc).__name__})") from None
    writer = AtomicParquetWriter(out.annotation_path(shard.key), schema)
    counts: dict[str, Counter] = {"corpus": Counter()}
    bad_samples: list[dict] = []
    bad_total = 0
    timings: dict[str, float] = {}
    # review samples of the analyzers that keep them (none: no samples file is written)
    samples = SampleKeeper({a.name: sampling[LIMIT_KEY] for a in analyzers if (sampling := a.review_sampling())})
    group_by = grouping.GroupBy.parse(read.group_by) if read.group_by is not None else None
    group_counts: grouping.GroupCounts | None = {} if group_by is not None else None
    last_pos = 0
    docs = 0
    for a in analyzers:
        a.start_shard(shard.key)
    foreground, background = split_for_overlap(analyzers)
    pending: tuple[BackgroundBatch, int, int] | None = None  # a batch whose background analyzers still run

    def finish(job: BackgroundBatch, n: int, consumed: int) -> None:
        nonlocal docs
        columns = job.result(counts, timings, samples, group_counts)
        table = pa.table({f.name: columns[f.name] for f in schema}).cast(schema)
        writer.write(table)
        if emit is not None:
            emit(table)
        docs += n
        if progress is not None:
            progress(n, consumed)

    try:
        for batch, bad, pos in read_shard(shard, read.spec()):
            for rec in bad:
                if strict:
                    raise StrictError(f"{shard.rel}: record {rec.row + 1}: {rec.reason} ({rec.detail})")
                bad_total += 1
                counts["corpus"]["bad/" + rec.reason] += 1
                if len(bad_samples) < MAX_BAD_SAMPLES:
                    bad_samples.append({"row": rec.row, "reason": rec.reason, "detail": rec.detail})
            consumed = max(pos - last_pos, 0)
            last_pos = max(pos, last_pos)
            if batch is not None and len(batch):
                # this batch's foreground analyzers run while the previous batch's background ones finish
                groups = (grouping.BatchGroups.of(batch.fields, group_by, len(batch))
                          if group_by is not None else None)
                columns, gate = analyze_in_order(batch, foreground, scope, counts, timings, samples or None,
                                                 groups, group_counts)
                if pending is not None:
                    finish(*pending)  # one batch in the background at a time, in order
                    pending = None
                job = BackgroundBatch(batch, background, scope, columns, gate, samples or None, groups)
                if background:
                    pending = (job, len(batch), consumed)
                else:  # nothing runs in the background
                    finish(job, len(batch), consumed)
            elif progress is not None:
                progress(0, consumed)
        if pending is not None:
            finish(*pending)
            pending = None
        counts["corpus"]["bad_records"] += bad_total
        counts["corpus"]["shards"] += 1
        writer.commit()
    except ShardUnreadable as exc:
        _wait_for_background(pending)
        writer.abort()
        raise ShardFailed(str(exc)) from None
    except KeyboardInterrupt:  # the background batch's thread is a daemon: do not wait for it
        writer.abort()
        raise
    except BaseException:
        _wait_for_background(pending)
        writer.abort()
        raise
    if progress is not None and shard.size > last_pos:
        progress(0, shard.size - last_pos)
    record = {
        "shard": shard.rel, "key": shard.key, "path": shard.path, "format": shard.format,
        "size": shard.size, "mtime_ns": shard.mtime_ns, "fingerprint": fp,
        "documents": docs, "bad_records": bad_total, "bad_samples": bad_samples,
        "seconds": round(time.perf_counter() - t0, 3), "config_hash": config_hash, "pid": os.getpid(),
        "analyzer_seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    if is_stdin(shard):  # standard input: the bytes read and their sha256, computed while reading
        record.update(stdin_read() or {})
    return finish_shard(out, shard.key, record, counts, group_counts, samples)


def finish_shard(out: OutDir, key: str, record: dict, counts: dict[str, Counter],
                 group_counts: "grouping.GroupCounts | None" = None, samples: SampleKeeper | None = None) -> dict:
    """Write a finished shard's outputs in the order resume relies on: its partial (``counts``),
    its review samples when ``samples`` kept any, then ``record`` as its done marker, last (a
    shard is done only with its partial and samples). Returns the record. Every producer of
    shard outputs ends here: :func:`scan_shard` and the datatrove step
    (:mod:`llama_audit.integrations.datatrove`)."""
    atomic_write_table(out.partial_path(key), partials.to_table(counts, group_counts))
    if samples:  # before the done marker: a shard is done only with its samples
        sample_table = samples.to_table()
        atomic_write_table(out.samples_path(key), sample_table)
        record[SAMPLES_DONE_KEY] = sample_table.num_rows  # its samples file must read back (OutDir.damaged)
    atomic_write_json(out.done_path(key), record)
    return record
