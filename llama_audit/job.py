"""A scan job: choose analyzers, discover shards, lock the configuration into OUT, hand the shards
that are not done yet (resume) to an executor, and record what became of each.

The core knows analyzers only through their declarations (``scope_column``, ``resources()``,
``Options``); the manifest and error records are written by :mod:`llama_audit.manifest`.

OUT is shared (Slurm slices, reruns on other hosts, ``merge``): a scan prepares OUT, writes the
plan (every shard of the configuration) and takes its scan lease while holding OUT's gate
(:mod:`llama_audit.lease`), scans without the gate, and takes it again to write the manifest.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
import errno
import re
import time
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from llama_audit import groups as grouping
from llama_audit import partials, review_samples
from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.analyzers.registry import available_names, build_analyzers, load_class, resolve_order
from llama_audit.corpus import Shard, discover, is_stdin, stdin_request
from llama_audit.corpus.remote import is_url, local_path
from llama_audit.executors import ScanPlan, ShardOutcome, make_executor
from llama_audit.hashing import fingerprint
from llama_audit.lease import LockHeld, OutLock, is_unwritable
from llama_audit.remote_out import is_remote, run_remote_scan
from llama_audit.manifest import (current, record_outcome, run_environment, shard_entry, utc_timestamp,
                                  write_manifest)
from llama_audit.scan import ReadOptions, Scope, annotation_schema
from llama_audit.store import OutDir, OutputWriteError, config_hash
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
    # --executor ray: mode (auto | data | tasks) and the Ray Data pipeline's sizes (executors.ray_data)
    ray_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_format: str | None = None  # scan -: what standard input holds (None: jsonl); an error without '-'
    # scan --hf-dataset NAME [--hf-config C] --hf-split S: one split streamed by datasets, instead of paths
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_split: str | None = None
    staging: str | None = None  # --out URL: the local staging directory (None: one per URL in the user cache)


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
    nothing_to_do: str | None = None  # why nothing was scanned or written (a read-only, finished OUT)

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
        missing = [dep for dep in cls.requires if dep in skipped]  # dependencies come first: decided already
        short = reason
        if missing and not reason:  # what it reads cannot run, so neither can it
            reason = f"it needs {missing[0]!r}, which cannot run: {skipped[missing[0]]}"
            short = f"it needs {missing[0]!r}, which cannot run (see above)"  # its reason was printed just above
        if reason and required:
            raise ConfigError(f"analyzer {cls.name!r} cannot run: {reason}")
        if reason:
            skipped[cls.name] = reason  # in full: the report's provenance says why
            warn(f"skipping analyzer {cls.name!r}: {short}")
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
    group_path = (grouping.GroupBy.parse(read.group_by).path,) if read.group_by is not None else ()
    fields = tuple(dict.fromkeys((*read.fields, *(f for a in analyzers for f in a.input_fields()), *group_path)))
    return dataclasses.replace(read, fields=fields, batch_docs=read.batch_docs or max(r.batch_docs for r in wanted),
                               batch_bytes=read.batch_bytes or max(r.batch_bytes for r in wanted))


def build_config(analyzers: Sequence[Analyzer], skipped: dict[str, str], scope: Scope, read: ReadOptions) -> dict:
    """The scan's configuration as the manifest records it: what changes its outputs (see
    :func:`locked_config`) plus why analyzers were skipped."""
    config = {
        "analyzers": {a.name: a.config() for a in analyzers},
        "skipped_analyzers": dict(sorted(skipped.items())),
        "languages": list(scope.languages),
        "text_field": read.text_field,
        "id_field": read.id_field,
    }
    if read.group_by is not None:  # only then: an ungrouped scan keeps its configuration (and hash)
        config[GROUP_BY_KEY] = grouping.GroupBy.parse(read.group_by).spec
    sampling = {a.name: dict(d) for a in analyzers if (d := a.review_sampling())}
    if sampling:  # only then: a scan without review samples keeps its configuration (and hash)
        for name, declared in sampling.items():
            limit = declared.get(review_samples.LIMIT_KEY)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ConfigError(f"analyzer {name!r} declares review samples without a positive limit")
        config[review_samples.CONFIG_KEY] = sampling
    return config


GROUP_BY_KEY = "group_by"  # the configuration's --group-by (locked: it changes the partials)
NOT_LOCKED = ("skipped_analyzers",)  # messages, not outputs: installing torch changes a skip reason's text


def locked_config(config: dict) -> dict:
    """What OUT is locked to (config.json, the config hash): everything that changes an output –
    which analyzers ran and their options, the language scope, the fields read – and no messages.
    Which analyzers ran is ``analyzers``; why the others did not is recorded in the plan and the
    manifest only, so that the same command is not refused when a skip reason's text changes."""
    return {k: v for k, v in config.items() if k not in NOT_LOCKED}


def _still_done(out: OutDir, shard: Shard, warn: Callable[[str], None], schema=None) -> bool:
    """Done, with outputs that read back (parquet footers, row count, columns), and the file is
    still what was scanned (size + mtime, else size + fingerprint)? A changed file, or damaged
    outputs, lose the done marker and the shard is scanned again."""
    if is_stdin(shard):  # a stream is never the same file again: read it again, replacing the last run's
        if out.is_done(shard.key):
            warn(f"{out.root} holds an earlier scan of standard input: scanning standard input again "
                 "(resume is per run); its results replace the earlier ones")
            out.done_path(shard.key).unlink(missing_ok=True)
        return False
    if not out.is_done(shard.key):
        return False
    rec = out.read_done(shard.key)
    damaged = out.damaged(shard.key, rec, schema) if rec is not None else "done marker unreadable"
    if damaged is not None:
        warn(f"{shard.rel}: its outputs in {out.root} are damaged ({damaged}): scanning it again")
        out.done_path(shard.key).unlink(missing_ok=True)
        return False
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


def run_scan(req: ScanRequest, hooks: Hooks | None = None, remote=None) -> ScanResult:
    hooks = hooks or Hooks()
    if is_url(req.out) and not is_remote(req.out):  # file:///x: the local OUT /x
        req = dataclasses.replace(req, out=local_path(req.out))
    if remote is None and is_remote(req.out):  # OUT on object storage: run on its staging mirror
        return run_remote_scan(req, hooks, run_scan)
    t0 = time.perf_counter()
    choice = choose_analyzers(req.analyzers, req.languages, req.options, hooks.warn)
    analyzers = build_analyzers(choice.names, choice.options)
    scope = Scope(tuple(req.languages), next((a.scope_column for a in analyzers if a.scope_column), None))
    check_languages(analyzers, scope)
    read = read_options(analyzers, req.read)
    stdin = stdin_request(list(req.paths), req.input_format)
    if stdin is not None and req.executor != "local":
        raise ConfigError("'-' (standard input) is read by this process: drop --executor ray")
    if stdin is not None and req.num_shards > 1:
        raise ConfigError("'-' (standard input) is one shard: drop --num-shards/--shard-index")
    if req.hf_dataset is not None:
        shards = [_hf_dataset_shard(req)]
    else:
        shards = [stdin] if stdin is not None else discover(req.paths, skip_unknown=req.skip_unknown, warn=hooks.warn)
    if not shards:
        raise ConfigError("no corpus files found in " + ", ".join(req.paths))
    keys = [s.key for s in shards]
    if len(set(keys)) != len(keys):
        raise ConfigError("two corpus files map to the same output name; scan them into separate --out dirs")
    config = build_config(analyzers, choice.skipped, scope, read)
    locked = locked_config(config)
    locked_hash = config_hash(locked)
    out = OutDir(req.out)
    lock = remote.out_lock(out.root) if remote is not None else OutLock(out.root)
    try:
        lock.probe()
    except OSError as exc:
        return _unwritable_out(out, exc, locked_hash, shards, choice.skipped, t0, hooks)
    try:
        with lock.gate("scan"):
            prepare_out(out, lock, req, shards, locked, locked_hash, choice.skipped, hooks.warn)
    except OSError as exc:
        raise ConfigError(f"{out.root}: cannot be written ({exc.strerror or exc}); free space or fix its "
                          "permissions, or choose another --out") from None
    try:
        return _scan_prepared(req, hooks, t0, choice, analyzers, scope, read, shards, config, locked_hash, out, lock,
                              remote)
    finally:
        lock.release()


def check_out(req: ScanRequest) -> None:
    """The configuration checks of :func:`run_scan` that need no corpus (analyzers, options,
    languages, OUT's locked configuration), for work that precedes a scan and must not run only
    to be refused by it (``eval --generate-with`` generates first). Warnings are left to the scan."""
    choice = choose_analyzers(req.analyzers, req.languages, req.options, lambda message: None)
    analyzers = build_analyzers(choice.names, choice.options)
    scope = Scope(tuple(req.languages), next((a.scope_column for a in analyzers if a.scope_column), None))
    check_languages(analyzers, scope)
    if not req.overwrite and not is_remote(req.out):
        config = build_config(analyzers, choice.skipped, scope, read_options(analyzers, req.read))
        OutDir(req.out).refuse_other_config(locked_config(config))


def _hf_dataset_shard(req: ScanRequest) -> Shard:
    """The one shard of ``scan --hf-dataset`` (checked before any work: one-line ConfigErrors)."""
    from llama_audit.corpus.hf_stream import stream_shard

    if req.paths:
        raise ConfigError("--hf-dataset is the whole corpus: give no CORPUS paths with it")
    if req.num_shards > 1:
        raise ConfigError("--hf-dataset streams one split as one shard: drop --num-shards/--shard-index")
    return stream_shard(req.hf_dataset, req.hf_config, req.hf_split)


def prepare_out(out: OutDir, lock: OutLock, req: ScanRequest, shards: list[Shard], locked: dict, locked_hash: str,
                skipped: dict[str, str], warn: Callable[[str], None]) -> None:
    """Holding the gate: refuse a conflicting running scan, remove stale temporaries, lock the
    configuration, write the plan, take this scan's lease."""
    running = lock.leases()
    other = [h for h in running if h.config_hash != locked_hash]
    if other:
        raise LockHeld(f"{out.root} is being scanned with another configuration by {other[0].describe()}; "
                       "wait for it to end, or use another --out")
    busy = "; ".join(h.describe() for h in running) or None
    out.prepare(locked, overwrite=req.overwrite, busy=busy)
    stale = out.remove_stale_temporaries(min((h.since_fs for h in running), default=None))
    if stale:
        warn(f"removed {len(stale)} temporary file(s) left in {out.root} by a run that was killed")
    plan = {"config_hash": locked_hash, "shards": [shard_entry(s) for s in shards],
            "skipped_analyzers": dict(sorted(skipped.items()))}
    before = out.read_plan()
    if before is not None and before.get("config_hash") == locked_hash:
        was, now = {e.get("key") for e in before["shards"]}, {e["key"] for e in plan["shards"]}
        if was != now:
            change = f"{len(now - was)} shard(s) added, {len(was - now)} gone"
            if running:  # slices of one configuration must cut the same list
                raise LockHeld(f"the corpus changed ({change}) while another scan of {out.root} runs: {busy}; "
                               "wait for it to end, then rerun")
            warn(f"the corpus changed since {out.root} was planned ({change}): the plan now lists the "
                 f"{len(now)} shard(s) found now; outputs of shards gone stay on disk but are not counted")
    if before != plan:
        out.write_plan(plan)
    lock.take_lease(locked_hash)


def _unwritable_out(out: OutDir, exc: OSError, locked_hash: str, shards: list[Shard], skipped: dict[str, str],
                    t0: float, hooks: Hooks) -> ScanResult:
    """OUT cannot be written at all. A finished OUT of this configuration whose summary is
    current has nothing to do (exit 0); anything else is a one-line error before work starts."""
    if is_unwritable(exc) and out.read_plan() is not None:
        state = current(out)
        planned = {e["key"] for e in state["shards"]}
        if (state["config_hash"] == locked_hash and state["summary"]["complete"] and state["summary"]["path"]
                and planned == {s.key for s in shards}):
            hooks.warn(f"{out.root} is read-only and already complete: nothing to do")
            t = state["totals"]
            return ScanResult(len(shards), 0, len(shards), {}, t["documents"], t["bad_records"],
                              time.perf_counter() - t0, True, skipped, nothing_to_do="read-only and complete")
    if is_unwritable(exc):
        raise ConfigError(f"{out.root} is not writable ({exc.strerror}); make it writable "
                          f"(chmod -R u+w {out.root}) or choose another --out")
    raise ConfigError(f"{out.root}: cannot be written ({exc.strerror or exc}); free space or choose another --out")


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no more room: every further shard would fail too
_ERRNO_IN_MESSAGE = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def is_disk_full(reason: str | None) -> bool:
    """A failed shard's one-line reason names ENOSPC / EDQUOT / EFBIG (an OSError's message, or
    pyarrow's, carries ``[Errno N]``)."""
    return any(int(n) in DISK_FULL_ERRNOS for n in _ERRNO_IN_MESSAGE.findall(reason or ""))


def _scan_prepared(req: ScanRequest, hooks: Hooks, t0: float, choice: AnalyzerChoice, analyzers, scope: Scope,
                   read: ReadOptions, shards: list[Shard], config: dict, locked_hash: str, out: OutDir,
                   lock: OutLock, remote=None) -> ScanResult:
    selected = select_slice(shards, req.num_shards, req.shard_index)
    schema = annotation_schema(analyzers)
    todo = [s for s in selected if not _still_done(out, s, hooks.warn, schema)]
    executor = make_executor(req.executor, workers=req.workers, shards=len(todo), analyzers=analyzers,
                             emit=req.emitter, ray_address=req.ray_address, ray_options=req.ray_options)
    plan = ScanPlan(tuple(choice.names), choice.options, scope, str(out.root.resolve()), read, req.strict, locked_hash,
                    gpus_per_worker=max(a.resources().gpus for a in analyzers))
    hooks.start(sum(s.size for s in todo), len(todo), len(selected) - len(todo))
    failed: dict[str, str] = {}
    worker_stats: dict[str, dict] = {}
    ran = 0
    disk_full: str | None = None

    def run_record() -> dict:
        stats = worker_stats or {a.name: st for a in analyzers if (st := _stats(a))}
        seconds, now = time.perf_counter() - t0, time.time()
        return {"seconds": round(seconds, 3), "executor": executor.describe(),
                "workers": req.workers, "num_shards": req.num_shards, "shard_index": req.shard_index,
                "strict": req.strict, "paths": list(req.paths),
                # the report's provenance: when, how many shards, with which software (not hashed)
                "started": utc_timestamp(now - seconds), "finished": utc_timestamp(now), "shards_scanned": ran,
                **run_environment(),
                **({"out": remote.public} if remote is not None else {}),  # the OUT URL, without credentials
                # engine counters: of this process in-process, else per worker process ("worker PID")
                "analyzer_stats": stats}

    def manifest_now(record: dict, wait_s: float | None = None) -> dict | None:
        """Write the manifest holding the gate; None when OUT cannot take it (disk full)."""
        nonlocal disk_full
        try:
            with lock.gate("manifest", **({"wait_s": wait_s} if wait_s is not None else {})):
                return write_manifest(out, shards, config, locked_hash, record)
        except OSError as exc:
            disk_full = disk_full or f"{exc.filename or out.root}: {exc.strerror or exc}"
            return None

    outcomes = executor.run(todo, plan, hooks.advance) if todo else iter(())
    try:
        try:
            for outcome in outcomes:
                if outcome.worker is not None:
                    worker_stats[outcome.worker] = outcome.stats or {}
                if outcome.status == "refused":  # a worker could not set up its analyzers
                    raise AnalyzerUnavailable(outcome.reason)
                if outcome.status == "interrupted":
                    continue
                ran += 1
                if outcome.status == "failed" and (record := out.read_done(outcome.key)) is not None \
                        and out.is_done(outcome.key):
                    # its worker finished it (the done marker is written last) and died before it said so
                    outcome = dataclasses.replace(outcome, status="done", reason=None, record=record)
                try:
                    record_outcome(out, outcome)
                except OSError as exc:
                    disk_full = disk_full or f"{out.root}: {exc.strerror or exc}"
                if outcome.status == "failed":
                    failed[outcome.key] = outcome.reason
                if remote is not None:  # upload its files, marker last; an upload that failed fails its shard
                    for key, why in remote.shard_finished(outcome.key, outcome.status):
                        failed[key], disk_full = why, disk_full or why
                hooks.shard_finished(outcome)
                if disk_full is None and outcome.status == "failed" and is_disk_full(outcome.reason):
                    disk_full = outcome.reason
                if disk_full is not None:
                    break  # every further shard would fail the same way: stop, keep what is finished
        finally:
            outcomes.close() if hasattr(outcomes, "close") else None
    except AnalyzerUnavailable as exc:
        hooks.stop()
        manifest_now(run_record())
        raise ConfigError(str(exc)) from None
    except BaseException:  # interrupted (Ctrl-C, --strict, stdout closed): record what is finished
        hooks.stop()
        try:
            manifest_now(run_record(), wait_s=10.0)
        except LockHeld:
            pass  # the interruption is what the user must hear of; the next run derives the manifest
        raise
    finally:
        hooks.stop()
        record = run_record()
        for a in analyzers:
            a.close()
    for key, why in remote.wait_uploads() if remote is not None else ():
        failed[key], disk_full = why, disk_full or why
    manifest = manifest_now(record)
    if disk_full is not None or manifest is None:
        raise OutputWriteError(
            f"could not write {out.root} ({_short(disk_full or '')}); {len(failed)} shard(s) recorded as failed, "
            f"finished shards are kept; free space (or raise the quota), then rerun the same command to resume"
            + ("" if manifest is not None else " (the manifest could not be updated)"))
    if ran:
        _warn_about_data(out, manifest, analyzers, hooks.warn)
        _check_group_field(out, manifest, config)
    return ScanResult(
        shards_total=len(shards), shards_run=ran, shards_skipped=len(selected) - len(todo), failed=failed,
        documents=manifest["totals"]["documents"], bad_records=manifest["totals"]["bad_records"],
        seconds=time.perf_counter() - t0, summary_written=manifest["summary"]["complete"],
        skipped_analyzers=choice.skipped,
    )


def _warn_about_data(out: OutDir, manifest: dict, analyzers: Sequence[Analyzer], warn: Callable[[str], None]) -> None:
    """Each analyzer's warnings about the scanned data (:meth:`Analyzer.scan_warnings`), from its
    counts merged over the OUT's done shards; once, at the end of a scan that scanned shards."""
    done = [e["key"] for e in manifest["shards"] if e["status"] == "done"]
    try:
        merged = partials.from_table(partials.merge_files(out.partial_path(k) for k in done))
    except (OSError, ValueError, pa.ArrowException):
        return
    for a in analyzers:
        for message in type(a).scan_warnings(merged.get(a.name, Counter())):
            warn(message)


def _check_group_field(out: OutDir, manifest: dict, config: dict) -> None:
    """``--group-by FIELD`` that no record of the whole corpus has (a typo, like a wrong
    --text-field): a one-line error (exit 2) once every planned shard is done and every document
    went to the missing-field group. A slice of a mixed corpus may lack the field: not checked
    before the corpus is complete."""
    spec = config.get(GROUP_BY_KEY)
    if not spec or not manifest["summary"]["complete"] or not manifest["summary"]["path"]:
        return
    try:
        table = partials.read_merged(out.summary_path())
    except (OSError, ValueError, pa.ArrowException):
        return
    documents = partials.from_table(table).get(grouping.CORPUS, Counter())["documents"]
    names = set(partials.group_rows(table)[partials.GROUP].unique().to_pylist())
    if documents and names <= {grouping.MISSING}:
        path = grouping.GroupBy.parse(spec).path
        raise ConfigError(f"--group-by {spec!r}: no record has field {path!r} (all {documents:,} documents are in "
                          f"group {grouping.MISSING!r}); check the field path, then rescan with --overwrite")


def _short(reason: str) -> str:
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _stats(a: Analyzer) -> dict:
    try:
        return a.stats()
    except Exception as exc:  # noqa: BLE001 - statistics must not hide the run's own outcome
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
