"""datatrove pipeline steps: annotate documents with llama-audit's analyzers, and filter on them.

Teams whose cleaning runs in datatrove (Hugging Face's pipeline library, the one that built
FineWeb: https://github.com/huggingface/datatrove) get our per-document results without glue:

- :class:`LlamaAuditAnnotator` runs the analyzers on the documents flowing through it, batched
  the way a scan batches them (our analyzers are batch-first), with the same per-batch code as
  ``llama-audit scan`` (:func:`llama_audit.scan.analyze_in_order`: base columns, the scope gate,
  analyzers in order). Each document leaves with our annotation columns in
  ``Document.metadata["llama_audit"]``. With ``out=OUT`` each datatrove task also writes one
  shard of a scan's OUT directory (annotations, partial, done marker, the manifest), so that
  ``llama-audit merge OUT`` and ``llama-audit report OUT`` work on the job's output.
- :class:`LlamaAuditFilter` drops documents by the expressions of ``llama-audit filter
  --drop/--keep`` (:mod:`llama_audit.filter.expr`), evaluated on that metadata.

Why one ``llama_audit`` dict in the metadata rather than flat keys: datatrove's writers keep
``metadata`` as it is (JSONL: a nested object; Parquet: a struct column; ``expand_metadata``
lifts it to one top-level ``llama_audit`` field), its readers put it back, so a later pipeline
can filter on it; other steps' keys (``file_path``, ...) never collide with ours;
and one ``pop`` removes it. Values are what the annotation columns hold, as Python values:
spans are lists of ``{"type", "start", "end"}`` (code-point offsets, never the matched text,
so no personal data is copied into the metadata), lists stay lists, so the filter rebuilds the
same Arrow columns and ``len(...)`` or ``contains(...)`` work on them.

Core datatrove only (extra ``datatrove``): its ``processing`` extra installs a fastText wheel
that replaces the ``fasttext`` module our fastText engine uses, so nothing here imports a
datatrove module that needs it. ``import llama_audit`` never imports datatrove; importing this
module without it is a one-line ImportError naming the extra.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

try:
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.utils.logging import logger
    from datatrove.utils.typeshelper import StatHints
except ImportError as exc:  # the optional extra is missing (or broken): one line, naming the fix
    raise ImportError(f"llama_audit.integrations.datatrove needs datatrove: pip install 'llama-audit[datatrove]' "
                      f"({exc})") from None

from llama_audit import partials
from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.analyzers.registry import available_names, build_analyzers, load_class, unknown_analyzer
from llama_audit.corpus import ReadSpec, Shard
from llama_audit.corpus.fields import FieldPath, id_text
from llama_audit.executors.base import ShardOutcome
from llama_audit.filter.expr import Predicate
from llama_audit.filter.run import first_failing_rule
from llama_audit.lease import OutLock
from llama_audit.review_samples import LIMIT_KEY, SampleKeeper
from llama_audit.scan import BASE_FIELDS, ReadOptions, Scope, analyze_in_order, annotation_schema, finish_shard
from llama_audit.store import AtomicParquetWriter, OutDir, config_hash
from llama_audit.text import utf8_size
from llama_audit.types import AnalyzerUnavailable, ConfigError, DocBatch

#: Document.metadata[METADATA_KEY]: our annotation columns of the document (column -> value)
METADATA_KEY = "llama_audit"
#: the configuration key that marks an OUT written by datatrove tasks (locked: a ``llama-audit
#: scan`` into the same OUT is refused as another configuration instead of mixing the two)
READER_KEY = "reader"
READER = "datatrove"
#: ``format`` of a datatrove task's shard entry, and the prefix of its name and path
TASK_FORMAT = "datatrove"
#: stat (datatrove ``stat_update``) of annotated documents inside the language scope
IN_SCOPE_STAT = "in_scope"


def task_shard(rank: int, world_size: int) -> Shard:
    """The shard one datatrove task writes into OUT. Its name carries the task count: the same
    rank of a job cut into another number of tasks reads other files, so it is another shard.
    The path, like standard input's ``<stdin>``, is no file: a task's input is whatever its
    reader gave it."""
    rel = f"{TASK_FORMAT}/task-{rank:05d}-of-{world_size:05d}"
    return Shard(path=f"<{TASK_FORMAT}>/{rel.partition('/')[2]}", root=f"<{TASK_FORMAT}>", rel=rel,
                 format=TASK_FORMAT, size=0, mtime_ns=0, key=rel.replace("/", "-"))


def _names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    if not names or not all(names):
        raise ConfigError(f"{what}: an empty name in {value!r}")
    return names


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"LlamaAuditAnnotator {what} must be a positive integer (got {value!r})")
    return value


class LlamaAuditAnnotator(PipelineStep):
    """Annotate documents with llama-audit's analyzers (``Document.metadata["llama_audit"]``).

    ``analyzers``: names as ``scan --analyzers`` takes them (None: every available one);
    ``out``: an OUT directory each task writes one shard of (None: metadata only);
    ``languages``: the scope of scoped analyzers (``("all",)``: no gate), as ``scan --languages``;
    ``batch_docs`` / ``batch_bytes``: batch limits (None: what the analyzers ask for, as a scan);
    any other keyword names an analyzer and gives its options (``NAME={"KEY": VALUE}``,
    the keys of ``--option NAME.KEY=VALUE``). Every configuration error is a ConfigError here,
    in the process that builds the pipeline, before any task starts.
    """

    name = "🦙 llama-audit annotator"
    type = "📊 - STATS"
    _requires_dependencies = ["pyarrow", "numpy"]  # ours: datatrove checks them the way it checks its own

    def __init__(self, analyzers: str | Sequence[str] | None = None, out: str | os.PathLike | None = None, *,
                 languages: str | Sequence[str] = ("en",), batch_docs: int | None = None,
                 batch_bytes: int | None = None, **options: Mapping[str, Any] | AnalyzerOptions):
        super().__init__()
        from llama_audit.job import build_config, check_languages, choose_analyzers, locked_config, read_options

        known = available_names()
        for name, value in options.items():
            if name not in known:
                raise ConfigError(f"LlamaAuditAnnotator option {name}=...: {unknown_analyzer(name, list(known))}")
            if not isinstance(value, (Mapping, AnalyzerOptions)):
                raise ConfigError(f"LlamaAuditAnnotator option {name}=...: give the analyzer's options as a dict "
                                  f"(e.g. {name}={{'KEY': VALUE}}), not {type(value).__name__}")
        self.languages = tuple(_names(languages, "languages") or ())
        choice = choose_analyzers(_names(analyzers, "analyzers"), self.languages, options, logger.warning)
        built = build_analyzers(choice.names, choice.options)
        try:
            self.scope = Scope(self.languages, next((a.scope_column for a in built if a.scope_column), None))
            check_languages(built, self.scope)
            self.read = read_options(built, ReadOptions(batch_docs=_positive(batch_docs, "batch_docs"),
                                                        batch_bytes=_positive(batch_bytes, "batch_bytes")))
            self.config = {**build_config(built, choice.skipped, self.scope, self.read), READER_KEY: READER}
            self.schema = annotation_schema(built)
        finally:
            for a in built:
                a.close()
        self.locked_hash = config_hash(locked_config(self.config))
        self.analyzer_names = tuple(choice.names)
        self.analyzer_options = choice.options  # typed and validated: rebuilt from them in each task
        self.skipped = choice.skipped
        self.out = os.fspath(out) if out is not None else None

    def _analyzers(self) -> list[Analyzer]:
        """This task's analyzers, set up once (models loaded) before its first document."""
        try:
            analyzers = build_analyzers(self.analyzer_names, self.analyzer_options)
            for a in analyzers:
                a.setup()
        except AnalyzerUnavailable as exc:
            raise ConfigError(str(exc)) from None
        return analyzers

    def _batches(self, data: Iterable) -> Iterator[list]:
        """Documents in batches of at most ``batch_docs`` documents and ``batch_bytes`` UTF-8
        bytes of text (one larger document alone), as the scan's readers cut them."""
        batch: list = []
        size = 0
        for doc in data:
            batch.append(doc)
            size += utf8_size(doc.text)
            if len(batch) >= self.read.batch_docs or size >= self.read.batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _doc_batch(self, docs: list, shard: str, first_row: int) -> DocBatch:
        """Our batch of datatrove documents: the record fields the analyzers read are field
        paths into ``Document.metadata`` (datatrove's readers keep every other record field there)."""
        paths = [FieldPath(p) for p in self.read.fields]
        return DocBatch(shard=shard, rows=np.arange(first_row, first_row + len(docs), dtype=np.int64),
                        doc_ids=[d.id if isinstance(d.id, str) else id_text(d.id) for d in docs],
                        texts=[d.text for d in docs],
                        fields={p.path: [p.get(d.metadata) for d in docs] for p in paths})

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        shard = task_shard(rank, world_size)
        analyzers = self._analyzers()
        task: _TaskOutput | None = None
        counts: dict[str, Counter] = {partials.CORPUS: Counter()}
        samples = SampleKeeper({a.name: sampling[LIMIT_KEY] for a in analyzers if (sampling := a.review_sampling())})
        timings: dict[str, float] = {}
        content = hashlib.sha256()  # what this task annotated: its shard's fingerprint
        rows = 0
        try:
            if self.out is not None:
                task = _TaskOutput(self, shard, world_size)
            for a in analyzers:
                a.start_shard(shard.key)
            for docs in self._batches(data or ()):
                batch = self._doc_batch(docs, shard.rel, rows)
                with self.track_time("batch"):
                    columns, gate = analyze_in_order(batch, analyzers, self.scope, counts, timings, samples or None)
                    table = pa.table({f.name: columns[f.name] for f in self.schema}).cast(self.schema)
                if task is not None:
                    task.write(table)
                rows += len(docs)
                self.stat_update(IN_SCOPE_STAT, value=int(gate.sum()))
                for doc, values, doc_id, text in zip(docs, table.to_pylist(), batch.doc_ids, batch.texts):
                    content.update(doc_id.encode("utf-8", "surrogatepass") + b"\0"
                                   + text.encode("utf-8", "surrogatepass") + b"\0")
                    doc.metadata[METADATA_KEY] = values
                    self.stat_update(StatHints.total, StatHints.forwarded)
                    yield doc
            counts[partials.CORPUS]["bad_records"] += 0  # datatrove's reader drops what it cannot read
            counts[partials.CORPUS]["shards"] += 1
            if task is not None:
                task.finish(rows, counts, samples, timings, content.hexdigest())
        except BaseException as exc:
            if task is not None:
                task.abort(exc)
            raise
        finally:
            for a in analyzers:
                a.close()


class _TaskOutput:
    """One datatrove task's shard of OUT, written like a scan writes a shard: OUT is prepared
    and locked to the configuration under OUT's gate with the plan of every task's shard (so
    ``merge`` knows when the job is complete), a scan lease is held while the task runs, the
    annotations stream to a temporary file, and the partial, then the done marker, are
    written last (:func:`llama_audit.scan.finish_shard`); the manifest is rewritten after each
    task, so the last task to finish leaves the summary merged."""

    def __init__(self, step: LlamaAuditAnnotator, shard: Shard, world_size: int):
        from llama_audit.job import ScanRequest, locked_config, prepare_out

        self.step, self.shard = step, shard
        self.out = OutDir(step.out)
        self.lock = OutLock(self.out.root)
        self.started = time.time()
        t0 = time.perf_counter()
        self.t0 = t0
        try:
            self.lock.probe()
            with self.lock.gate("datatrove"):
                plan = [task_shard(r, world_size) for r in range(world_size)]
                prepare_out(self.out, self.lock, ScanRequest(paths=[], out=step.out), plan, locked_config(step.config),
                         step.locked_hash, step.skipped, logger.warning)
        except OSError as exc:
            self.lock.release()
            raise ConfigError(f"{self.out.root}: cannot be written ({exc.strerror or exc}); choose another out=") from None
        except BaseException:
            self.lock.release()
            raise
        self.writer = AtomicParquetWriter(self.out.annotation_path(shard.key), step.schema)

    def write(self, table: pa.Table) -> None:
        self.writer.write(table)

    def finish(self, documents: int, counts: dict[str, Counter], samples: SampleKeeper,
               timings: dict[str, float], fingerprint: str) -> None:
        from llama_audit.manifest import run_environment, shard_entry, utc_timestamp, write_manifest

        self.writer.commit()
        seconds = time.perf_counter() - self.t0
        record = {**shard_entry(self.shard), "mtime_ns": 0, "fingerprint": fingerprint,
                  "documents": documents, "bad_records": 0, "bad_samples": [], "seconds": round(seconds, 3),
                  "config_hash": self.step.locked_hash, "pid": os.getpid(),
                  "analyzer_seconds": {k: round(v, 3) for k, v in timings.items()}}
        finish_shard(self.out, self.shard.key, record, counts, None, samples)
        now = time.time()
        run = {"seconds": round(seconds, 3), "executor": {"name": READER, "task": self.shard.rel},
               "workers": 1, "strict": False, "paths": [], "started": utc_timestamp(self.started),
               "finished": utc_timestamp(now), "shards_scanned": 1, **run_environment(), "analyzer_stats": {}}
        try:
            with self.lock.gate("manifest"):
                write_manifest(self.out, None, self.step.config, self.step.locked_hash, run)
        except (OSError, ConfigError) as exc:  # the shard is done; the manifest is derived again by merge
            logger.warning(f"{self.out.root}: the manifest was not updated ({exc}); run llama-audit merge "
                           f"{self.out.root} when the job has ended")
        finally:
            self.lock.release()

    def abort(self, exc: BaseException) -> None:
        """The task did not finish: no done marker; an error is recorded as a failed scan's is
        (not when the pipeline merely stopped reading, or was interrupted)."""
        from llama_audit.manifest import record_outcome

        self.writer.abort()
        try:
            if isinstance(exc, Exception):
                reason = f"{self.shard.rel}: {type(exc).__name__}: {str(exc)[:300]}"
                record_outcome(self.out, ShardOutcome(self.shard.key, "failed", reason=reason))
        except OSError:
            pass  # the task's own error is what must be heard
        finally:
            self.lock.release()


def known_columns() -> pa.Schema:
    """Every annotation column an annotator may write, with its type: the base columns and the
    columns each available analyzer declares with its default options (an analyzer that cannot
    even be built here is left out)."""
    fields = {f.name: f for f in BASE_FIELDS}
    for name in available_names():
        try:
            cls = load_class(name)
            declared = cls(cls.options_from(None)).fields()
        except Exception:  # noqa: BLE001 - a broken plugin must not break filtering on the others
            continue
        for f in declared:
            fields.setdefault(f.name, f)
    return pa.schema(list(fields.values()))


#: documents per filter batch (expressions are evaluated on Arrow columns, a batch at a time)
FILTER_BATCH_DOCS = ReadSpec.batch_docs


class LlamaAuditFilter(BaseFilter):
    """Drop documents by ``llama-audit filter`` expressions over the metadata
    :class:`LlamaAuditAnnotator` wrote: a document is dropped by the first ``drop`` expression
    it matches, else by the first ``keep`` expression it does not match (the reason datatrove
    counts as ``dropped_drop: EXPR`` / ``dropped_keep: EXPR``, and writes to
    ``exclusion_writer``'s documents as ``filter_reason``). An expression that does not parse,
    names a column no analyzer writes, or does not fit the column types is a ConfigError here;
    one naming a column the annotator did not write is a ConfigError at the first batch.
    """

    name = "🦙 llama-audit filter"

    def __init__(self, drop: str | Sequence[str] | None = None, keep: str | Sequence[str] | None = None,
                 exclusion_writer=None, batch_size: int = FILTER_BATCH_DOCS):
        super().__init__(exclusion_writer, batch_size)
        self.drop = [drop] if isinstance(drop, str) else list(drop or ())
        self.keep = [keep] if isinstance(keep, str) else list(keep or ())
        if not self.drop and not self.keep:
            raise ConfigError("LlamaAuditFilter needs drop= or keep= (expressions as llama-audit filter "
                              "--drop/--keep take, e.g. drop='chars > 100000')")
        self.schema = known_columns()
        self._rules = self._compile()  # every error now, in the process that builds the pipeline

    def _compile(self) -> tuple[list[Predicate], list[Predicate]]:
        drops = [Predicate(x, self.schema) for x in self.drop]
        keeps = [Predicate(x, self.schema) for x in self.keep]
        for p in drops + keeps:
            p.check(self.schema)
        return drops, keeps

    def __getstate__(self) -> dict:  # compiled rules hold closures: each task compiles its own
        return {k: v for k, v in self.__dict__.items() if k != "_rules"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rules = self._compile()

    def _table(self, docs: list) -> pa.Table:
        """The columns the rules read, rebuilt from the documents' metadata with their types."""
        metas = []
        for doc in docs:
            meta = doc.metadata.get(METADATA_KEY)
            if not isinstance(meta, dict):
                raise ConfigError(f"a document reached LlamaAuditFilter without {METADATA_KEY!r} metadata: put "
                                  "LlamaAuditAnnotator(...) before it, or read documents it annotated")
            metas.append(meta)
        drops, keeps = self._rules
        arrays = {}
        for column in sorted({c for p in drops + keeps for c in p.columns}):
            if any(column not in m for m in metas):
                written = ", ".join(sorted(next(m for m in metas if column not in m)))
                raise ConfigError(f"LlamaAuditFilter: column {column!r} is not in the documents' {METADATA_KEY!r} "
                                  f"metadata (it holds {written}); run the analyzer that writes it in "
                                  "LlamaAuditAnnotator")
            field = self.schema.field(column)
            try:
                arrays[column] = pa.array([m[column] for m in metas], type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                raise ConfigError(f"LlamaAuditFilter: the {METADATA_KEY!r} metadata column {column!r} holds values "
                                  f"that are not {field.type}") from None
        return pa.table(arrays) if arrays else pa.table({"_": pa.nulls(len(docs))})

    def filter_batch(self, batch: list) -> list:
        drops, keeps = self._rules
        reasons = first_failing_rule(self._table(batch), drops, keeps)
        return [True if reason is None else (False, reason) for reason in reasons]

    def filter(self, doc) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]
