"""A scan job: choose analyzers, discover shards, lock the configuration into OUT, run the
shards that are not done yet (resume), then merge partials into the summary and write the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from importlib import metadata
from typing import Callable, Sequence

from llama_audit import __version__, partials
from llama_audit.analyzers.base import Analyzer, AnalyzerUnavailable, ConfigError, ScanOptions
from llama_audit.analyzers.registry import available_names, load_class, resolve_order
from llama_audit.corpus import Shard, discover
from llama_audit.executors import run_local, run_pool
from llama_audit.hashing import fingerprint
from llama_audit.scan import ReadOptions
from llama_audit.store import OutDir, atomic_write_json, atomic_write_table, config_hash

DEPENDENCIES = ("pyarrow", "numpy", "fasttext-numpy2", "orjson", "zstandard", "phonenumbers",
                "torch", "transformers", "tokenizers")


@dataclasses.dataclass
class ScanRequest:
    paths: Sequence[str]
    out: str
    analyzers: Sequence[str] | None = None  # None = every available analyzer
    options: ScanOptions = dataclasses.field(default_factory=ScanOptions)
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
    def shard_finished(self, outcome: tuple) -> None: ...
    def stop(self) -> None: ...


def choose_analyzers(requested: Sequence[str] | None, options: ScanOptions,
                     warn: Callable[[str], None]) -> tuple[list[str], dict[str, str]]:
    """Names to run (dependency order, language first) and skipped analyzers with reasons.

    Explicitly requested analyzers that cannot run are an error before any data is read; the
    default set skips them with a warning.
    """
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
    run: list[str] = []
    for cls in resolve_order(names):
        reason = cls.unavailable_reason(options)
        if reason:
            if explicit and cls.name in names:
                raise ConfigError(f"analyzer {cls.name!r} cannot run: {reason}")
            skipped[cls.name] = reason
            warn(f"skipping analyzer {cls.name!r}: {reason}")
            continue
        run.append(cls.name)
    classes = [load_class(n) for n in run]
    if any(c.scoped for c in classes) and not options.gate_all and "language" not in run:
        reason = skipped.get("language") or load_class("language").unavailable_reason(options)
        if reason:  # never report a silently empty scope
            raise ConfigError(f"--languages {','.join(options.languages)} needs the language analyzer, "
                              f"which cannot run: {reason}; fix that or pass --languages all")
        run.insert(0, "language")
    if "language" in run:  # the gate is computed from it: it runs first
        run.remove("language")
        run.insert(0, "language")
    if not run:
        raise ConfigError("no analyzer can run (see the warnings above)")
    return run, skipped


def dependency_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def build_config(analyzers: list[Analyzer], skipped: dict[str, str], options: ScanOptions,
                 read: ReadOptions) -> dict:
    return {
        "analyzers": {a.name: a.config() for a in analyzers},
        "skipped_analyzers": dict(sorted(skipped.items())),
        "languages": list(options.languages),
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
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index must be in [0, {num_shards}) and --num-shards >= 1")
    return [s for i, s in enumerate(shards) if i % num_shards == shard_index]


def run_scan(req: ScanRequest, hooks: Hooks | None = None) -> ScanResult:
    hooks = hooks or Hooks()
    t0 = time.perf_counter()
    names, skipped = choose_analyzers(req.analyzers, req.options, hooks.warn)
    analyzers = [cls(req.options) for cls in resolve_order(names)]
    analyzers.sort(key=lambda a: names.index(a.name))
    if not req.options.gate_all and analyzers[0].name == "language":
        try:
            known = analyzers[0].labels()
        except AnalyzerUnavailable as exc:
            raise ConfigError(str(exc)) from None
        unknown = [code for code in req.options.languages if code not in known]
        if unknown:
            raise ConfigError(f"--languages: {', '.join(map(repr, unknown))} not among the language model's "
                              f"{len(known)} labels (e.g. {', '.join(sorted(known)[:8])}, ...)")
    big = "toxicity" in names  # the GPU scorer wants many lines per call
    req.read = dataclasses.replace(req.read, batch_docs=req.read.batch_docs or (8192 if big else 1024),
                                   batch_bytes=req.read.batch_bytes or ((32 << 20) if big else (4 << 20)))
    shards = discover(req.paths, skip_unknown=req.skip_unknown, warn=hooks.warn)
    if not shards:
        raise ConfigError("no corpus files found in " + ", ".join(req.paths))
    keys = [s.key for s in shards]
    if len(set(keys)) != len(keys):
        raise ConfigError("two corpus files map to the same output name; scan them into separate --out dirs")
    config = build_config(analyzers, skipped, req.options, req.read)
    out = OutDir(req.out)
    out.prepare(config, overwrite=req.overwrite)
    chash = config_hash(config)

    if req.executor not in ("local", "ray"):
        raise ConfigError(f"--executor takes local or ray (got {req.executor!r})")
    if req.emitter is not None and (req.workers > 1 or req.executor == "ray"):
        raise ConfigError("--emit jsonl streams from one process: drop --workers / --executor ray")
    mine = select_slice(shards, req.num_shards, req.shard_index)
    todo = [s for s in mine if not _still_done(out, s, hooks.warn)]
    hooks.start(sum(s.size for s in todo), len(todo), len(mine) - len(todo))
    failed: dict[str, str] = {}
    worker_stats: dict[int, dict] = {}
    ran = 0
    try:
        if todo:
            if req.executor == "ray":
                from llama_audit.executors.ray import run_ray

                outcomes = run_ray(todo, names, req.options, out, req.read, strict=req.strict, progress=hooks.advance,
                                   config_hash=chash, address=req.ray_address,
                                   num_cpus=req.workers if req.workers > 1 else None,
                                   gpus_per_task=1.0 if "toxicity" in names and req.options.device != "cpu"
                                   and _cuda_available() else 0.0)
            elif req.workers > 1 and len(todo) > 1:
                outcomes = run_pool(todo, names, req.options, out, req.read, workers=min(req.workers, len(todo)),
                                    strict=req.strict, progress=hooks.advance, config_hash=chash)
            else:
                outcomes = run_local(todo, analyzers, req.options, out, req.read, strict=req.strict,
                                     progress=hooks.advance, config_hash=chash, emit=req.emitter)
            for outcome in outcomes:
                ran += 1
                if outcome and isinstance(outcome[-1], tuple) and outcome[-1][:1] == ("worker",):
                    worker_stats[outcome[-1][1]] = outcome[-1][2]
                    outcome = outcome[:-1]
                if outcome[0] == "failed":
                    failed[outcome[1]] = outcome[2]
                    atomic_write_json(out.root / "errors" / f"{outcome[1]}.json", {"key": outcome[1], "error": outcome[2]})
                else:
                    (out.root / "errors" / f"{outcome[1]['key']}.json").unlink(missing_ok=True)
                hooks.shard_finished(outcome)
    except AnalyzerUnavailable as exc:  # a pool worker could not set up an analyzer
        hooks.stop()
        write_manifest(out, shards, config, chash, req, time.perf_counter() - t0, _run_stats(analyzers, worker_stats))
        raise ConfigError(str(exc)) from None
    except BaseException:  # interrupted (Ctrl-C, --strict, stdout closed): record what is finished
        hooks.stop()
        write_manifest(out, shards, config, chash, req, time.perf_counter() - t0, _run_stats(analyzers, worker_stats))
        raise
    finally:
        hooks.stop()
        stats = _run_stats(analyzers, worker_stats)
        for a in analyzers:
            a.close()
    manifest = write_manifest(out, shards, config, chash, req, time.perf_counter() - t0, stats)
    return ScanResult(
        shards_total=len(shards), shards_run=ran, shards_skipped=len(mine) - len(todo), failed=failed,
        documents=manifest["totals"]["documents"], bad_records=manifest["totals"]["bad_records"],
        seconds=time.perf_counter() - t0, summary_written=manifest["summary"]["complete"],
        skipped_analyzers=skipped,
    )


def _run_stats(analyzers, worker_stats: dict[int, dict]) -> dict:
    """Engine statistics for the run record: per analyzer, or per pool worker ("worker PID")."""
    if worker_stats:
        return {f"worker {pid}": st for pid, st in sorted(worker_stats.items())}
    out = {}
    for a in analyzers:
        if callable(getattr(a, "stats", None)):
            try:
                out[a.name] = a.stats()
            except Exception as exc:  # noqa: BLE001 - statistics must not hide the run's own outcome
                out[a.name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return out


def write_manifest(out: OutDir, shards: Sequence[Shard] | None, config: dict, chash: str,
                   req: ScanRequest | None, seconds: float | None, stats: dict | None = None) -> dict:
    """Derive the manifest from the done markers; merge partials into the summary when every
    listed shard is done. ``shards=None`` (``merge``) keeps the shard list of the last manifest."""
    previous: dict = {}
    if out.manifest_path.is_file():
        try:
            previous = json.loads(out.manifest_path.read_text())
        except ValueError:
            previous = {}
    if shards is not None:
        listed = [{"shard": s.rel, "key": s.key, "path": s.path, "format": s.format, "size": s.size} for s in shards]
    else:
        listed = [{k: e[k] for k in ("shard", "key", "path", "format", "size")} for e in previous.get("shards", [])]
        known = {e["key"] for e in listed}
        for rec in out.iter_done():  # slices may have finished shards this manifest never listed
            if rec["key"] not in known:
                listed.append({k: rec[k] for k in ("shard", "key", "path", "format", "size")})
    entries, docs, bad, done_keys = [], 0, 0, []
    for item in listed:
        rec = out.read_done(item["key"]) if out.partial_path(item["key"]).is_file() else None
        err_path = out.root / "errors" / f"{item['key']}.json"
        if rec is not None and rec.get("config_hash", chash) == chash:
            entry = {**item, "status": "done", **{k: rec[k] for k in ("documents", "bad_records", "bad_samples",
                                                                      "seconds", "fingerprint", "mtime_ns")},
                     "analyzer_seconds": rec.get("analyzer_seconds", {})}
            docs += rec["documents"]
            bad += rec["bad_records"]
            done_keys.append(item["key"])
        elif err_path.is_file():
            entry = {**item, "status": "error", "error": json.loads(err_path.read_text()).get("error", "")}
        else:
            entry = {**item, "status": "pending"}
        entries.append(entry)
    complete = bool(listed) and len(done_keys) == len(listed)
    if complete:
        atomic_write_table(out.summary_path(), partials.merge_files(out.partial_path(k) for k in done_keys))
    runs = list(previous.get("runs", []))
    if req is not None:
        runs.append({"seconds": round(seconds or 0.0, 3), "workers": req.workers, "num_shards": req.num_shards,
                     "shard_index": req.shard_index, "strict": req.strict, "paths": list(req.paths),
                     # engine counters of this process (in-process runs; pool workers keep their own)
                     "analyzer_stats": _jsonable(stats or {})})
    manifest = {
        "tool": {"name": "llama-audit", "version": __version__},
        "dependencies": dependency_versions(),
        "config_hash": chash,
        "config": config,
        "shards": entries,
        "totals": {"shards": len(entries), "shards_done": len(done_keys),
                   "shards_failed": sum(e["status"] == "error" for e in entries),
                   "documents": docs, "bad_records": bad},
        "summary": {"complete": complete, "path": "summary/counts.parquet" if complete else None},
        "runs": runs[-50:],
    }
    atomic_write_json(out.manifest_path, manifest)
    return manifest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def merge(out_root: str) -> dict:
    """Recompute manifest + summary from the done markers (after Slurm slices, or to repair)."""
    out = OutDir(out_root)
    cfg = out.read_config()
    if cfg is None:
        raise ConfigError(f"{out_root}: no config.json (is this a llama-audit scan output?)")
    return write_manifest(out, None, cfg["config"], cfg["config_hash"], None, None)
