"""Shards through a Ray Data pipeline with a separate accelerator stage (``scan --executor ray``).

Why: at the scale of the Llama 2 audit (about 2 trillion tokens) the cost is the classifier that
runs on GPUs. A Ray task that scans a whole shard holds its GPU while it also reads, decompresses, runs
the CPU analyzers and tokenises: the GPU idles during CPU work. NeMo Curator splits a CPU
tokenizer stage from a GPU model stage for this reason; this pipeline does the same with the
analyzers' declared two-stage hook (:attr:`Analyzer.staged`: ``prepare`` -> ``infer`` ->
``finish``), so the core names no analyzer:

1. ``cpu``: a Ray task per shard (``flat_map``, ``num_cpus=1``) reads it in batches, runs the
   analyzers that are not staged and do not depend on a staged one (the foreground, with the
   scope gate), and each staged analyzer's ``prepare`` (line splitting, tokens); one row per batch,
   then an end row with the shard's bad records.
2. ``infer``: an actor pool (``map_batches`` with ``ActorPoolStrategy``; ``num_gpus=1`` per actor
   when the cluster has GPUs, else CPU actors) runs each staged analyzer's ``infer``: the model is
   loaded once per actor; the analyzer cuts its device batches itself (a token budget, which
   its own option sets, by default from the actor's free GPU memory).
3. ``write``: write actors (``CPU_TASKS_PER_WRITER`` CPU tasks to one by default). Every row of a
   shard goes to the same actor, which puts the shard's batches back in order and runs
   ``finish``, the analyzers that depend on a staged one, the folds, and writes the annotations,
   partial, review samples and done marker of the shard as ``scan.scan_shard`` does: the same
   bytes as the in-process executor. This process only routes rows by their plain columns (key,
   seq, kind, documents, bytes) and records outcomes: it never unpickles a batch, so it is not
   the bottleneck of a cluster with many GPUs.

Back-pressure: Ray Data's streaming executor bounds the blocks in flight per stage (its object
store budget; ``object_store_bytes`` sets it); this process stops pulling rows while a write
actor has ``ROWS_IN_FLIGHT_PER_WRITER`` calls not yet answered. Failures: a CPU task whose worker dies is retried
(``max_retries``), an actor that dies is restarted and its batch retried (``max_restarts``,
``max_task_retries``); a shard whose stage fails more often than that is dropped by the pipeline
(``DataContext.max_errored_blocks``) and reported failed with the reason; the other shards finish.
A write actor that dies fails the shards it was writing (a rerun redoes them) and is replaced.
Resume is per shard (done markers), as with every executor.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
import warnings
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from llama_audit import groups as grouping
from llama_audit import partials
from llama_audit.analyzers.base import Analyzer, BatchContext
from llama_audit.analyzers.registry import build_analyzers
from llama_audit.corpus import Shard, ShardUnreadable, read_shard
from llama_audit.corpus.hf_stream import is_stream_shard
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.executors.ray import DEFAULT_RETRIES
from llama_audit.hashing import fingerprint
from llama_audit.review_samples import LIMIT_KEY, SampleKeeper
from llama_audit.scan import (MAX_BAD_SAMPLES, ShardFailed, StrictError, analyze_in_order, annotation_schema,
                              finish_shard, run_analyzers)
from llama_audit.store import AtomicParquetWriter, OutDir
from llama_audit.types import AnalyzerUnavailable, ConfigError

STAGES = ("cpu", "infer", "write")  # the manifest's run record: executor.stages


@dataclasses.dataclass(frozen=True)
class RayDataOptions:
    """Sizing of the pipeline; None: from ``ray.cluster_resources()``."""

    gpu_actors: int | None = None  # actors of the infer stage (None: one per GPU, or 1 CPU actor)
    cpu_tasks: int | None = None  # concurrent CPU-stage tasks (None: the CPUs the actors leave)
    write_actors: int | None = None  # actors of the write stage (None: one per CPU_TASKS_PER_WRITER CPU tasks)
    max_retries: int = DEFAULT_RETRIES
    object_store_bytes: int | None = None  # Ray Data's object store budget (None: Ray Data's default)

    def validate(self) -> None:
        for name in ("gpu_actors", "cpu_tasks", "write_actors"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--ray-{name.replace('_', '-')} must be >= 1 (got {v})")
        if self.max_retries < 0:
            raise ConfigError(f"--ray-max-retries must be >= 0 (got {self.max_retries})")


@dataclasses.dataclass(frozen=True)
class Split:
    """Which analyzers run where: ``foreground`` in the CPU stage, ``staged`` in all three stages,
    ``background`` (staged ones and those that depend on them, in run order) in the write stage."""

    foreground: tuple[str, ...]
    staged: tuple[str, ...]
    background: tuple[str, ...]


def split_stages(analyzers: Sequence[type[Analyzer]] | Sequence[Analyzer]) -> Split:
    """By declaration only: staged analyzers (not the scope provider, whose gate the CPU stage
    needs) and, after them, every analyzer that requires one of them."""
    staged, background = [], []
    for a in analyzers:  # run order: dependencies first
        if a.staged and a.scope_column is None:
            staged.append(a.name)
            background.append(a.name)
        elif set(a.requires) & set(background):
            background.append(a.name)
    foreground = [a.name for a in analyzers if a.name not in background]
    return Split(tuple(foreground), tuple(staged), tuple(background))


def _build(names: Sequence[str], plan: ScanPlan) -> list[Analyzer]:
    """Exactly the analyzers ``names`` (build_analyzers adds what they require: those ran elsewhere)."""
    if not names:
        return []
    return [a for a in build_analyzers(names, {n: plan.options[n] for n in names}) if a.name in names]


def _ctx(a: Analyzer, gate: np.ndarray | None, columns: dict, n: int) -> BatchContext:
    if gate is None:  # as run_analyzers: before a scope gate, scoped analyzers see an empty scope
        gate = np.zeros(n, dtype=bool) if a.scoped else np.ones(n, dtype=bool)
    return BatchContext(in_scope=gate, columns=columns)


# ---------------------------------------------------------------------------------------------
# stage 1: a CPU task per shard

_cpu_state: dict[str, Any] = {}  # per Ray worker process: analyzers of the current plan, set up once


def _cpu_analyzers(plan: ScanPlan, split: Split) -> tuple[list[Analyzer], list[Analyzer], str | None]:
    if _cpu_state.get("plan") != plan:
        for a in _cpu_state.get("analyzers", ()):
            a.close()
        fg: list[Analyzer] = []
        staged: list[Analyzer] = []
        error = None
        try:
            fg = _build(split.foreground, plan)
            staged = _build(split.staged, plan)
            for a in fg:
                a.setup()
            for a in staged:
                a.setup_prepare()
        except (AnalyzerUnavailable, ConfigError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported as the shard's one-line refusal
            error = f"{type(exc).__name__}: {exc}"
        _cpu_state.update(plan=plan, fg=fg, staged=staged, error=error, analyzers=fg + staged)
    return _cpu_state["fg"], _cpu_state["staged"], _cpu_state["error"]


def _row(key: str, seq: int, kind: str, data: Any, docs: int = 0, consumed: int = 0) -> dict:
    """A pipeline row: what the scan process routes by (key, seq, kind) and reports as progress
    (docs, bytes consumed) in plain columns; the payload pickled, for the write actor only."""
    return {"key": key, "seq": seq, "kind": kind, "docs": docs, "consumed": consumed,
            "blob": pickle.dumps(data, protocol=5)}


def cpu_stage(item: dict, plan: ScanPlan, split: Split) -> Iterator[dict]:
    """One shard: rows ``batch`` (seq 0..n-1), then ``end`` (seq n); or ``failed``/``strict``/``refused``."""
    shard: Shard = pickle.loads(item["blob"])
    key = shard.key
    fg, staged, error = _cpu_analyzers(plan, split)
    if error is not None:
        yield _row(key, -1, "refused", error)
        return
    for a in fg + staged:
        a.start_shard(key)
    t0 = time.perf_counter()
    try:
        fp = None if is_stream_shard(shard) else fingerprint(shard.path, shard.size)  # as scan.scan_shard
    except OSError as exc:
        yield _row(key, -1, "failed", f"{shard.rel}: cannot read ({exc.strerror or type(exc).__name__})")
        return
    limits = {a.name: s[LIMIT_KEY] for a in fg if (s := a.review_sampling())}
    group_by = grouping.GroupBy.parse(plan.read.group_by) if plan.read.group_by is not None else None
    bad_counts: Counter = Counter()
    bad_samples: list[dict] = []
    bad_total = 0
    last_pos = 0
    carried = 0  # bytes consumed by batches without documents, reported with the next row
    seq = 0
    timings: dict[str, float] = {}
    try:
        for batch, bad, pos in read_shard(shard, plan.read.spec()):
            for rec in bad:
                if plan.strict:
                    yield _row(key, -1, "strict", f"{shard.rel}: record {rec.row + 1}: {rec.reason} ({rec.detail})")
                    return
                bad_total += 1
                bad_counts["bad/" + rec.reason] += 1
                if len(bad_samples) < MAX_BAD_SAMPLES:
                    bad_samples.append({"row": rec.row, "reason": rec.reason, "detail": rec.detail})
            carried += max(pos - last_pos, 0)
            last_pos = max(pos, last_pos)
            if batch is None or not len(batch):
                continue
            counts: dict[str, Counter] = {}
            samples = SampleKeeper(limits)
            groups = grouping.BatchGroups.of(batch.fields, group_by, len(batch)) if group_by is not None else None
            group_counts: grouping.GroupCounts | None = {} if group_by is not None else None
            columns, gate = analyze_in_order(batch, fg, plan.scope, counts, timings, samples or None, groups,
                                             group_counts)
            payloads = {}
            for a in staged:
                t1 = time.perf_counter()
                payloads[a.name] = a.prepare(batch, _ctx(a, gate, columns, len(batch)))
                timings[a.name] = timings.get(a.name, 0.0) + time.perf_counter() - t1
            yield _row(key, seq, "batch", {
                "batch": batch if split.background else None,  # texts only where an analyzer still needs them
                "columns": columns, "gate": gate, "counts": counts, "samples": samples, "groups": groups,
                "group_counts": group_counts, "payloads": payloads, "n": len(batch)}, len(batch), carried)
            carried = 0
            seq += 1
    except ShardUnreadable as exc:
        yield _row(key, -1, "failed", str(exc))
        return
    except ShardFailed as exc:
        yield _row(key, -1, "failed", str(exc))
        return
    except StrictError as exc:
        yield _row(key, -1, "strict", str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - an analyzer bug must not take the other shards down
        yield _row(key, -1, "failed", f"{shard.rel}: {type(exc).__name__}: {str(exc)[:300]}")
        return
    yield _row(key, seq, "end", {"bad_counts": bad_counts, "bad_total": bad_total, "bad_samples": bad_samples,
                                 "fingerprint": fp, "seconds": time.perf_counter() - t0, "timings": timings,
                                 "pid": os.getpid()}, 0, carried + max(shard.size - last_pos, 0))


# ---------------------------------------------------------------------------------------------
# stage 2: the accelerator actors


class InferStage:
    """One actor of the infer stage: the staged analyzers set up once (model loaded, self-test run)."""

    def __init__(self, plan: ScanPlan, split: Split):
        self.error = None
        self.analyzers: list[Analyzer] = []
        try:
            self.analyzers = _build(split.staged, plan)
            for a in self.analyzers:
                a.setup()
        except (AnalyzerUnavailable, ConfigError) as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported as a one-line refusal
            self.error = f"{type(exc).__name__}: {exc}"

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds, blobs = list(rows["kind"]), list(rows["blob"])
        for i, kind in enumerate(kinds):
            if kind != "batch":
                continue
            if self.error is not None:
                kinds[i], blobs[i] = "refused", pickle.dumps(self.error)
                continue
            data = pickle.loads(blobs[i])
            try:
                for a in self.analyzers:
                    data["payloads"][a.name] = a.infer(data["payloads"][a.name])
            except Exception as exc:  # noqa: BLE001 - the shard fails with its reason, the rest go on
                kinds[i], blobs[i] = "failed", pickle.dumps(f"{rows['key'][i]}: {a.name}: {type(exc).__name__}: "
                                                            f"{str(exc)[:300]}")
                continue
            blobs[i] = pickle.dumps(data, protocol=5)
        return {"key": rows["key"], "seq": rows["seq"], "kind": np.array(kinds, dtype=object),
                "docs": rows["docs"], "consumed": rows["consumed"], "blob": np.array(blobs, dtype=object)}

    def stats(self) -> dict:
        return {a.name: a.stats() for a in self.analyzers}


# ---------------------------------------------------------------------------------------------
# stage 3: write actors, each putting its shards' rows back in order, then finish, fold and write


class _Finished:
    """A staged analyzer whose ``annotate`` is ``finish`` with this batch's inferred payload, so
    that scan.run_analyzers (checks, casts, folds, groups, samples) runs it as any other."""

    def __init__(self, analyzer: Analyzer, payload: Any):
        self._analyzer = analyzer
        self._payload = payload

    def annotate(self, batch, ctx):
        return self._analyzer.finish(batch, ctx, self._payload)

    def __getattr__(self, name):
        return getattr(self._analyzer, name)


class _ShardWrite:
    """One shard being put back together: rows arrive in any order, are used in ``seq`` order."""

    def __init__(self, shard: Shard, out: OutDir, schema: pa.Schema, limits: dict):
        self.shard = shard
        self.out = out
        self.schema = schema
        self.writer: AtomicParquetWriter | None = None
        self.rows: dict[int, tuple[str, Any]] = {}
        self.next = 0
        self.counts: dict[str, Counter] = {partials.CORPUS: Counter()}
        self.group_counts: grouping.GroupCounts | None = None
        self.samples = SampleKeeper(limits)
        self.timings: dict[str, float] = {}
        self.docs = 0
        self.t0 = time.perf_counter()
        #: the write actor's background analyzers this shard holds while open (their per-shard
        #: state, e.g. toxicity's duplicate-line cache, must see this shard's batches only)
        self.analyzers: list[Analyzer] | None = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class ShardWriter:
    """A write actor: the shards the scan process routes to it (every row of a shard goes to one
    actor, in the order the rows left the pipeline; an actor runs its calls in that order). It
    keeps each open shard's out-of-order rows until their turn, runs ``finish`` of the staged
    analyzers and the analyzers that depend on them (per-shard state, e.g. the duplicate-line
    cache, lives here, in batch order, as ``Analyzer.staged`` promises: the shards open at once
    each hold their own set of these analyzers, built once and reused by the next shards), folds,
    and writes the annotations, partial, review samples and done marker as ``scan.scan_shard``
    does. The scan process only routes rows (bytes it never unpickles) and records outcomes, so it
    is not the bottleneck of a large cluster."""

    def __init__(self, plan: ScanPlan, split: Split):
        from llama_audit.analyzers.registry import load_class

        self.plan = plan
        self.error: str | None = None
        self.background: list[Analyzer] = []
        try:
            self.background = _build(split.background, plan)
            for a in self.background:
                a.setup_prepare() if a.staged else a.setup()
        except (AnalyzerUnavailable, ConfigError) as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported as a one-line refusal
            self.error = f"{type(exc).__name__}: {exc}"
        every = [c(plan.options[c.name]) for c in (load_class(n) for n in plan.analyzers)]
        self.limits = {a.name: s[LIMIT_KEY] for a in every if (s := a.review_sampling())}
        self.schema = annotation_schema(every)
        self.out = OutDir(plan.out_root)
        self.open: dict[str, _ShardWrite] = {}
        self.dropped: set[str] = set()  # written or failed here: later rows of the shard are ignored
        self.free: list[list[Analyzer]] = [self.background] if self.background else []  # sets no open shard holds
        self.sets: list[list[Analyzer]] = list(self.free)  # every set built (closed at the end)
        self._split = split

    def _take(self, sw: _ShardWrite) -> list[Analyzer]:
        """A set of background analyzers for ``sw`` alone while it is open: one no open shard
        holds, else a new one (as many as shards open at once on this actor)."""
        if sw.analyzers is None:
            if self.free:
                sw.analyzers = self.free.pop()
            else:
                built = _build(self._split.background, self.plan)
                self.sets.append(built)
                for a in built:
                    a.setup_prepare() if a.staged else a.setup()
                sw.analyzers = built
        return sw.analyzers

    def _release(self, sw: _ShardWrite) -> None:
        sw.abort()
        if sw.analyzers is not None:
            self.free.append(sw.analyzers)
            sw.analyzers = None

    def add(self, shard: Shard, seq: int, kind: str, blob: bytes) -> ShardOutcome | None:
        """One row of ``shard`` (``batch`` or ``end``); the shard's outcome once it is complete or failed."""
        key = shard.key
        if key in self.dropped:
            return None
        if self.error is not None:
            self.dropped.add(key)
            return ShardOutcome(key, "refused", reason=self.error)
        sw = self.open.get(key)
        if sw is None:
            sw = self.open[key] = _ShardWrite(shard, self.out, self.schema, self.limits)
        sw.rows[seq] = (kind, pickle.loads(blob))
        try:
            outcome = self._drain(sw)
        except ShardFailed as exc:
            outcome = ShardOutcome(key, "failed", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - as ShardWorker.scan: this shard fails
            outcome = ShardOutcome(key, "failed", reason=f"{shard.rel}: {type(exc).__name__}: {str(exc)[:300]}")
        if outcome is not None:
            self.dropped.add(key)  # written or failed: a late copy of one of its rows (a retried task's) is ignored
            self._release(sw)
            del self.open[key]
        return outcome

    def drop(self, key: str) -> None:
        """The shard failed elsewhere (its CPU stage): discard what was written of it."""
        sw = self.open.pop(key, None)
        if sw is not None:
            self._release(sw)
        self.dropped.add(key)

    def pid(self) -> int:
        return os.getpid()

    def _drain(self, sw: _ShardWrite) -> ShardOutcome | None:
        """Use the rows of ``sw`` that are next in order; the outcome once its end row was used."""
        plan = self.plan
        while sw.next in sw.rows:
            kind, data = sw.rows.pop(sw.next)
            sw.next += 1
            if kind == "end":
                return self._finish_shard(sw, data)
            bg = self._take(sw) if self.background else []
            if sw.next == 1:
                for a in bg:
                    a.start_shard(sw.shard.key)
                sw.writer = AtomicParquetWriter(sw.out.annotation_path(sw.shard.key), sw.schema)
            columns, counts, gate = data["columns"], data["counts"], data["gate"]
            if sw.samples:
                sw.samples.update(data["samples"])
            if bg:
                staged = [_Finished(a, data["payloads"][a.name]) if a.name in data["payloads"] else a for a in bg]
                here = SampleKeeper(sw.samples.limits)  # as BackgroundBatch: a keeper per batch, then merged
                run_analyzers(data["batch"], staged, plan.scope, columns, gate, counts, sw.timings,
                              here or None, data["groups"], data["group_counts"])
                if here:
                    sw.samples.update(here)
            for name, c in counts.items():
                sw.counts.setdefault(name, Counter()).update(c)
            if data["group_counts"] is not None:
                sw.group_counts = sw.group_counts if sw.group_counts is not None else {}
                grouping.merge_into(sw.group_counts, data["group_counts"])
            table = pa.table({f.name: columns[f.name] for f in sw.schema}).cast(sw.schema)
            sw.writer.write(table)
            sw.docs += data["n"]
        return None

    def _finish_shard(self, sw: _ShardWrite, end: dict) -> ShardOutcome:
        """The tail of scan.scan_shard: commit, partial, samples, done marker (written last)."""
        shard, out = sw.shard, sw.out
        if sw.writer is None:  # a shard without documents
            sw.writer = AtomicParquetWriter(out.annotation_path(shard.key), sw.schema)
        corpus = sw.counts[partials.CORPUS]
        corpus.update(end["bad_counts"])
        corpus["bad_records"] += end["bad_total"]
        corpus["shards"] += 1
        sw.writer.commit()
        sw.writer = None
        grouped = sw.group_counts if sw.group_counts is not None else ({} if self.plan.read.group_by else None)
        timings = dict(end["timings"])
        for k, v in sw.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        record = {
            "shard": shard.rel, "key": shard.key, "path": shard.path, "format": shard.format,
            "size": shard.size, "mtime_ns": shard.mtime_ns, "fingerprint": end["fingerprint"],
            "documents": sw.docs, "bad_records": end["bad_total"], "bad_samples": end["bad_samples"],
            "seconds": round(time.perf_counter() - sw.t0, 3), "config_hash": self.plan.config_hash, "pid": end["pid"],
            "analyzer_seconds": {k: round(v, 3) for k, v in timings.items()},
        }
        record = finish_shard(out, shard.key, record, sw.counts, grouped, sw.samples)  # done marker last
        return ShardOutcome(shard.key, "done", record=record)

    def close(self) -> None:
        for sw in self.open.values():
            self._release(sw)
        self.open.clear()
        for analyzers in self.sets:
            for a in analyzers:
                a.close()
        self.sets, self.free = [], []


class RayDataExecutor:
    """``scan --executor ray`` when a staged analyzer runs (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 options: RayDataOptions | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.options = options or RayDataOptions()
        self.options.validate()
        self.sizing: dict[str, Any] = {}
        self.stages: tuple[str, ...] = STAGES  # the stages this run ran: no infer stage without a staged analyzer
        self._plan: ScanPlan | None = None

    def describe(self) -> dict:
        return {"name": self.name, "engine": "ray.data", "address": self.address, "stages": list(self.stages),
                **self.sizing}

    def _size(self, ray, split: Split) -> dict[str, Any]:
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        o = self.options
        actors = (o.gpu_actors or (gpus or 1)) if split.staged else 0
        actor_gpus = 1 if gpus and split.staged else 0
        cpu_tasks = o.cpu_tasks or max(1, cpus - actors)
        writers = o.write_actors or max(1, cpu_tasks // CPU_TASKS_PER_WRITER)
        return {"gpu_actors": actors, "actor_gpus": actor_gpus, "cpu_tasks": cpu_tasks, "write_actors": writers,
                "max_retries": o.max_retries}

    def run(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        from llama_audit.executors.ray import local_ray

        with local_ray(self.address, self.num_cpus) as ray:
            yield from self._run(ray, shards, plan, progress)

    def _run(self, ray, shards, plan: ScanPlan, progress) -> Iterator[ShardOutcome]:
        from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

        from llama_audit.analyzers.registry import load_class

        classes = [load_class(n) for n in plan.analyzers]
        split = split_stages(classes)
        self.sizing = self._size(ray, split)
        self.stages = tuple(s for s in STAGES if s != "infer" or split.staged)
        size = self.sizing
        retries = self.options.max_retries
        _check_background(split, plan)
        ctx = DataContext.get_current()
        saved = {k: getattr(ctx, k) for k in ("max_errored_blocks", "enable_progress_bars",
                                              "print_on_execution_start") if hasattr(ctx, k)}
        saved_order = ctx.execution_options.preserve_order
        ctx.max_errored_blocks = -1  # a shard whose stage keeps failing is dropped (reported below), the rest go on
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        ctx.execution_options.preserve_order = False  # shards finish in any order; the write actors restore it
        if self.options.object_store_bytes:
            ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
                object_store_memory=self.options.object_store_bytes)
        writers = _WritePool(ray, plan, split, size["write_actors"], retries)
        try:
            items = [{"key": s.key, "seq": -1, "kind": "shard", "blob": pickle.dumps(s)} for s in shards]
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            with warnings.catch_warnings():
                # bounded retries after a worker or actor death exist only as remote args in Ray 2.60
                # (Ray Data's default is to retry forever: a shard that kills its worker would loop);
                # pyproject keeps Ray below 2.64, which removes them (docs/dependencies.md)
                warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
                ds = ds.flat_map(cpu_stage, fn_kwargs={"plan": plan, "split": split}, num_cpus=1,
                                 num_gpus=plan.gpus_per_worker if not split.staged else 0,
                                 compute=TaskPoolStrategy(size=size["cpu_tasks"]), max_retries=retries)
                if split.staged:
                    gpu_args = {"num_gpus": 1} if size["actor_gpus"] else {}
                    ds = ds.map_batches(InferStage, fn_constructor_kwargs={"plan": plan, "split": split},
                                        batch_size=1, batch_format="numpy",
                                        compute=ActorPoolStrategy(size=size["gpu_actors"]), num_cpus=1,
                                        max_restarts=-1, max_task_retries=retries, **gpu_args)
            by_key = {s.key: s for s in shards}
            for row in ds.iter_rows():
                key, kind = row["key"], row["kind"]
                if writers.is_finished(key):
                    continue
                if kind in ("refused", "strict", "failed"):
                    reason = pickle.loads(row["blob"])
                    if kind == "refused":
                        yield ShardOutcome(key, "refused", reason=reason)
                        return
                    if kind == "strict":
                        raise StrictError(reason)
                    yield from writers.fail(key, reason)
                    continue
                if progress is not None:
                    progress(int(row["docs"]), int(row["consumed"]))
                yield from writers.send(by_key[key], int(row["seq"]), kind, row["blob"])
            yield from writers.wait_all()
            for s in shards:  # dropped by the pipeline: its stage failed on every attempt
                if not writers.is_finished(s.key):
                    yield from writers.fail(s.key, f"{s.rel}: lost in the Ray pipeline: a worker or actor died on it "
                                                   f"{retries + 1} times")
                    yield from writers.wait_all()
        finally:
            writers.close()
            for k, v in saved.items():
                setattr(ctx, k, v)
            ctx.execution_options.preserve_order = saved_order


#: the default number of write actors: one per this many CPU tasks (a write actor finishes, folds
#: and writes what a CPU task analyzed, a small part of its work)
CPU_TASKS_PER_WRITER = 16
#: calls to one write actor not yet answered, before the scan process waits (back-pressure: the
#: pipeline's rows wait in Ray's object store, which spills; rows an actor holds ahead of their
#: turn are answered at once and not counted: only the infer actors reorder a shard's batches)
ROWS_IN_FLIGHT_PER_WRITER = 16


def _check_background(split: Split, plan: ScanPlan) -> None:
    """The write actors' analyzers set up here once, so a missing model or extra is a one-line error
    before any shard is read (not one refusal per actor)."""
    try:
        for a in _build(split.background, plan):
            try:
                a.setup_prepare() if a.staged else a.setup()
            finally:
                a.close()
    except (AnalyzerUnavailable, ConfigError):
        raise
    except Exception as exc:
        raise ConfigError(f"{type(exc).__name__}: {exc}") from None


class _WritePool:
    """The write actors, seen from the scan process: every shard goes to one actor (the least
    busy when its first row arrives), its rows in arrival order; outcomes are collected as they
    come. A write actor that dies is not restarted with its shards half written: the shards open
    on it fail with a one-line reason (a rerun redoes them, done markers decide), and a new actor
    takes its place for the next shards."""

    def __init__(self, ray, plan: ScanPlan, split: Split, count: int, retries: int):
        self.ray = ray
        # no CPU reserved: writing is a small part of a CPU task's work, and a reservation could
        # leave the CPU stage without the CPUs its tasks were sized for
        self.actor_class = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(ShardWriter)
        self.plan, self.split = plan, split
        self.actors = [self._start() for _ in range(count)]
        self.generation = [0] * count
        self.owner: dict[str, tuple[int, int]] = {}  # key -> (actor index, its generation)
        self.shards: dict[str, Shard] = {}
        self.pending: dict[Any, str] = {}  # ObjectRef of an ``add`` call -> shard key
        self.load = [0] * count  # rows in flight per actor
        self.finished: set[str] = set()

    def _start(self):
        return self.actor_class.remote(self.plan, self.split)

    def is_finished(self, key: str) -> bool:
        return key in self.finished

    def send(self, shard: Shard, seq: int, kind: str, blob: bytes) -> Iterator[ShardOutcome]:
        key = shard.key
        if key not in self.owner:
            i = min(range(len(self.actors)), key=lambda j: (self.load[j], j))
            self.owner[key] = (i, self.generation[i])
            self.shards[key] = shard
        i, _ = self.owner[key]
        while self.load[i] >= ROWS_IN_FLIGHT_PER_WRITER:
            yield from self._collect(block=True)
            if key in self.finished:  # its actor died meanwhile
                return
        self.pending[self.actors[i].add.remote(shard, seq, kind, blob)] = key
        self.load[i] += 1
        yield from self._collect(block=False)

    def fail(self, key: str, reason: str) -> Iterator[ShardOutcome]:
        """The shard failed before its write (its CPU stage): the write actor discards its part."""
        if key in self.finished:
            return
        self.finished.add(key)
        if key in self.owner:
            i, gen = self.owner[key]
            if gen == self.generation[i]:
                self.actors[i].drop.remote(key)
        yield ShardOutcome(key, "failed", reason=reason)

    def wait_all(self) -> Iterator[ShardOutcome]:
        while self.pending:
            yield from self._collect(block=True)

    def _collect(self, block: bool) -> Iterator[ShardOutcome]:
        if not self.pending:
            return
        refs = list(self.pending)
        ready, _ = self.ray.wait(refs, num_returns=1 if block else len(refs), timeout=None if block else 0)
        for ref in ready:
            key = self.pending.pop(ref)
            i, gen = self.owner[key]
            if gen == self.generation[i]:
                self.load[i] -= 1
            try:
                outcome = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                yield from self._died(i, gen, exc)
                continue
            if outcome is not None and key not in self.finished:
                self.finished.add(key)
                yield outcome

    def _died(self, i: int, gen: int, exc: BaseException) -> Iterator[ShardOutcome]:
        """Write actor ``i`` of generation ``gen`` is gone: its open shards fail, a new actor replaces it."""
        if gen != self.generation[i]:
            return  # already replaced
        self.generation[i] += 1
        self.load[i] = 0
        self.actors[i] = self._start()
        what = type(exc).__name__
        for key, (j, g) in list(self.owner.items()):
            if (j, g) == (i, gen) and key not in self.finished:
                self.finished.add(key)
                yield ShardOutcome(key, "failed", reason=(
                    f"{self.shards[key].rel}: lost in the Ray pipeline: its write actor died ({what}); "
                    "rerun to redo it"))

    def close(self) -> None:
        """Done or interrupted: each actor removes its shards' unfinished files (a short wait), then goes."""
        try:
            self.ray.wait([a.close.remote() for a in self.actors], num_returns=len(self.actors), timeout=CLOSE_WAIT_S)
        except Exception:  # noqa: BLE001 - an actor already gone
            pass
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


CLOSE_WAIT_S = 10.0  # seconds the write actors get to clean up when the run ends
