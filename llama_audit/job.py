"""A scan job: choose analyzers, discover shards, lock the configuration into OUT, hand the shards
that are not done yet (resume) to an executor, and record what became of each.

The core knows analyzers only through their declarations (``scope_column``, ``resources()``,
``Options``); the manifest and error records are written by :mod:`llama_audit.manifest`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.analyzers.registry import available_names, build_analyzers, load_class, resolve_order
from llama_audit.corpus import Shard, discover
from llama_audit.executors import ScanPlan, ShardOutcome, make_executor
from llama_audit.hashing import fingerprint
from llama_audit.manifest import record_outcome, write_manifest
from llama_audit.scan import ReadOptions, Scope
from llama_audit.store import OutDir, config_hash
from llama_audit.types import AnalyzerUnavailable, ConfigError


@dataclasses.dataclass
class ScanRequest:
    paths: Sequence[str]
    out: str
    analyzers: Sequence[str] | None = None  # None = every available analyzer
    languages: tuple[str, ...] = ("en",)  # the scope of scoped analyzers; ("all",) disables the gate
    # per analyzer: {key: value} (text or typed) or a typed options instance
    options: Mapping[str, Mapping[str, Any] | AnalyzerOptions] = dataclasses.field(default_factory=dict)
    read: ReadOptions = dataclasses.field(default_factory=ReadOptions)
    strict: bool = False
    overwrite: bool = False
    skip_unknown: bool = False
    workers: int = 1
    num_shards: int = 1
    shard_index: int = 0
    emitter: Callable | None = None  # scan --emit jsonl: receives each annotated batch (one process)
    executor: str = "local"  # local (in-process, or a process pool with workers > 1) | ray
    ray_address: str | None = None


@dataclasses.dataclass
class ScanResult:
    shards_total: int
    shards_run: int
    shards_skipped: int  # done before this run
    failed: dict[str, str]  # key -> message
    documents: int
    bad_records: int
    seconds: float
    summary_written: bool
    skipped_analyzers: dict[str, str]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Hooks:
    """UI callbacks (the CLI draws a progress bar; tests pass nothing)."""

    def warn(self, message: str) -> None: ...
    def start(self, total_bytes: int, shards: int, skipped: int) -> None: ...
    def advance(self, docs: int, nbytes: int) -> None: ...
    def shard_finished(self, outcome: ShardOutcome) -> None: ...
    def stop(self) -> None: ...


@dataclasses.dataclass
class AnalyzerChoice:
    names: list[str]  # to run, in order: the scope provider first, dependencies before dependants
    skipped: dict[str, str]  # name -> why it does not run
    options: dict[str, AnalyzerOptions]  # typed, validated, for every name that runs


def choose_analyzers(requested: Sequence[str] | None, languages: Sequence[str],
                     options: Mapping[str, Any] | None, warn: Callable[[str], None]) -> AnalyzerChoice:
    """Which analyzers run, in which order, with which options.

    Explicitly requested analyzers that cannot run are an error before any data is read; the
    default set skips them with a warning. Scoped analyzers need the scope gate: the analyzer that
    declares ``scope_column`` is added (and runs first) unless ``--languages all``. Options are
    typed and validated here, before any file is read.
    """
    options = dict(options or {})
    explicit = requested is not None
    names = list(requested) if explicit else list(available_names())
    skipped: dict[str, str] = {}
    for n in list(names):
        try:
            load_class(n)  # unknown or broken names fail here
        except ConfigError as exc:
            if explicit:
                raise
            skipped[n] = str(exc)
            warn(f"skipping analyzer {n!r}: {exc}")
            names.remove(n)
    typed: dict[str, AnalyzerOptions] = {}

    def runnable(cls: type[Analyzer], required: bool) -> bool:
        value = options.get(cls.name)
        typed[cls.name] = value if isinstance(value, AnalyzerOptions) else cls.options_from(value)
        reason = cls.unavailable_reason(typed[cls.name])
        if reason and required:
            raise ConfigError(f"analyzer {cls.name!r} cannot run: {reason}")
        if reason:
            skipped[cls.name] = reason
            warn(f"skipping analyzer {cls.name!r}: {reason}")
        return not reason

    run = [cls for cls in resolve_order(names) if runnable(cls, explicit and cls.name in names)]
    everything = Scope(tuple(languages)).everything
    if any(c.scoped for c in run) and not everything and not any(c.scope_column for c in run):
        provider = _scope_provider()
        if provider is None:
            raise ConfigError(f"--languages {','.join(languages)} needs an analyzer that provides the language "
                              "scope, and none is installed; pass --languages all")
        if provider.name in skipped or not runnable(provider, False):  # never report a silently empty scope
            raise ConfigError(f"--languages {','.join(languages)} needs the {provider.name} analyzer, "
                              f"which cannot run: {skipped[provider.name]}; fix that or pass --languages all")
        run.append(provider)
    run.sort(key=lambda c: c.scope_column is None)  # the gate is computed from it: it runs first
    if not run:
        raise ConfigError("no analyzer can run (see the warnings above)")
    unused = sorted(set(options) - {c.name for c in run})
    if unused:
        warn(f"options given for analyzers that do not run are ignored: {', '.join(unused)}")
    return AnalyzerChoice([c.name for c in run], skipped, {c.name: typed[c.name] for c in run})


def _scope_provider() -> type[Analyzer] | None:
    """The first available analyzer that declares a scope column (built-ins come first)."""
    for name in available_names():
        try:
            cls = load_class(name)
        except ConfigError:
            continue
        if cls.scope_column is not None:
            return cls
    return None


def check_languages(analyzers: Sequence[Analyzer], scope: Scope) -> None:
    """Every ``--languages`` code must be a label the scope provider can output (a typo would
    silently put nothing in scope)."""
    provider = next((a for a in analyzers if a.scope_column is not None), None)
    if scope.everything or provider is None:
        return
    try:
        known = provider.scope_labels()
    except AnalyzerUnavailable as exc:
        raise ConfigError(str(exc)) from None
    unknown = [code for code in scope.languages if code not in known]
    if unknown:
        raise ConfigError(f"--languages: {', '.join(map(repr, unknown))} not among the {provider.name} model's "
                          f"{len(known)} labels (e.g. {', '.join(sorted(known)[:8])}, ...)")


def read_options(analyzers: Sequence[Analyzer], read: ReadOptions) -> ReadOptions:
    """What the reader projects and how it batches: the record fields the analyzers declare they
    read, and the batch size they work best with (the largest wins) unless the user chose one."""
    wanted = [a.resources() for a in analyzers]
    fields = tuple(dict.fromkeys((*read.fields, *(f for a in analyzers for f in a.input_fields()))))
    return dataclasses.replace(read, fields=fields, batch_docs=read.batch_docs or max(r.batch_docs for r in wanted),
                               batch_bytes=read.batch_bytes or max(r.batch_bytes for r in wanted))


def build_config(analyzers: Sequence[Analyzer], skipped: dict[str, str], scope: Scope, read: ReadOptions) -> dict:
    """What this OUT is locked to: everything that changes its output."""
    return {
        "analyzers": {a.name: a.config() for a in analyzers},
        "skipped_analyzers": dict(sorted(skipped.items())),
        "languages": list(scope.languages),
        "text_field": read.text_field,
        "id_field": read.id_field,
    }


def _still_done(out: OutDir, shard: Shard, warn: Callable[[str], None]) -> bool:
    """Done, and the file is still what was scanned (size + mtime, else size + fingerprint)?
    A changed file loses its done marker and is scanned again."""
    if not out.is_done(shard.key):
        return False
    rec = out.read_done(shard.key) or {}
    if rec.get("size") == shard.size and rec.get("mtime_ns") == shard.mtime_ns:
        return True
    try:
        same = rec.get("size") == shard.size and fingerprint(shard.path, shard.size) == rec.get("fingerprint")
    except OSError:
        same = False
    if not same:
        warn(f"{shard.rel} changed since it was scanned: scanning it again")
        out.done_path(shard.key).unlink(missing_ok=True)
    return same


def select_slice(shards: list[Shard], num_shards: int, shard_index: int) -> list[Shard]:
    """The shards of Slurm-style slice ``shard_index`` of ``num_shards`` (round robin)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index must be in [0, {num_shards}) and --num-shards >= 1")
    return [s for i, s in enumerate(shards) if i % num_shards == shard_index]


def run_scan(req: ScanRequest, hooks: Hooks | None = None) -> ScanResult:
    hooks = hooks or Hooks()
    t0 = time.perf_counter()
    choice = choose_analyzers(req.analyzers, req.languages, req.options, hooks.warn)
    analyzers = build_analyzers(choice.names, choice.options)
    scope = Scope(tuple(req.languages), next((a.scope_column for a in analyzers if a.scope_column), None))
    check_languages(analyzers, scope)
    read = read_options(analyzers, req.read)
    shards = discover(req.paths, skip_unknown=req.skip_unknown, warn=hooks.warn)
    if not shards:
        raise ConfigError("no corpus files found in " + ", ".join(req.paths))
    keys = [s.key for s in shards]
    if len(set(keys)) != len(keys):
        raise ConfigError("two corpus files map to the same output name; scan them into separate --out dirs")
    config = build_config(analyzers, choice.skipped, scope, read)
    out = OutDir(req.out)
    out.prepare(config, overwrite=req.overwrite)
    locked_hash = config_hash(config)

    selected = select_slice(shards, req.num_shards, req.shard_index)
    todo = [s for s in selected if not _still_done(out, s, hooks.warn)]
    executor = make_executor(req.executor, workers=req.workers, shards=len(todo), analyzers=analyzers,
                             emit=req.emitter, ray_address=req.ray_address)
    plan = ScanPlan(tuple(choice.names), choice.options, scope, str(out.root.resolve()), read, req.strict, locked_hash,
                    gpus_per_worker=max(a.resources().gpus for a in analyzers))
    hooks.start(sum(s.size for s in todo), len(todo), len(selected) - len(todo))
    failed: dict[str, str] = {}
    worker_stats: dict[str, dict] = {}
    ran = 0

    def run_record() -> dict:
        stats = worker_stats or {a.name: st for a in analyzers if (st := _stats(a))}
        return {"seconds": round(time.perf_counter() - t0, 3), "executor": executor.describe(),
                "workers": req.workers, "num_shards": req.num_shards, "shard_index": req.shard_index,
                "strict": req.strict, "paths": list(req.paths),
                # engine counters: of this process in-process, else per worker process ("worker PID")
                "analyzer_stats": stats}

    try:
        for outcome in executor.run(todo, plan, hooks.advance) if todo else ():
            if outcome.worker is not None:
                worker_stats[outcome.worker] = outcome.stats or {}
            if outcome.status == "refused":  # a worker could not set up its analyzers
                raise AnalyzerUnavailable(outcome.reason)
            if outcome.status == "interrupted":
                continue
            ran += 1
            record_outcome(out, outcome)
            if outcome.status == "failed":
                failed[outcome.key] = outcome.reason
            hooks.shard_finished(outcome)
    except AnalyzerUnavailable as exc:
        hooks.stop()
        write_manifest(out, shards, config, locked_hash, run_record())
        raise ConfigError(str(exc)) from None
    except BaseException:  # interrupted (Ctrl-C, --strict, stdout closed): record what is finished
        hooks.stop()
        write_manifest(out, shards, config, locked_hash, run_record())
        raise
    finally:
        hooks.stop()
        record = run_record()
        for a in analyzers:
            a.close()
    manifest = write_manifest(out, shards, config, locked_hash, record)
    return ScanResult(
        shards_total=len(shards), shards_run=ran, shards_skipped=len(selected) - len(todo), failed=failed,
        documents=manifest["totals"]["documents"], bad_records=manifest["totals"]["bad_records"],
        seconds=time.perf_counter() - t0, summary_written=manifest["summary"]["complete"],
        skipped_analyzers=choice.skipped,
    )


def _stats(a: Analyzer) -> dict:
    try:
        return a.stats()
    except Exception as exc:  # noqa: BLE001 - statistics must not hide the run's own outcome
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
