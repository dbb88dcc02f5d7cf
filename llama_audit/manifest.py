"""OUT's bookkeeping: the manifest (derived from the plan and the done markers), the shard error
records and the merged summary. Any process holding OUT's gate (a scan, a Slurm slice, ``merge``)
can rewrite the manifest, because everything in it is read back from what is on disk; ``report``
derives the same state without writing (:func:`current`).

"Complete" means every shard of the plan – the full shard list written before the first shard
started – is done with outputs that read back; a killed scan, a failed shard or an unmerged
slice is never complete. ``merge --allow-failed`` writes a summary over the shards that succeeded,
flagged ``summary.partial`` with its ``failed_shards``, and still not complete."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Sequence

from llama_audit import __version__, partials, review_samples
from llama_audit.corpus import Shard
from llama_audit.executors.base import ShardOutcome
from llama_audit.lease import OutLock, is_unwritable
from llama_audit.store import OutDir, atomic_write_json, atomic_write_table, pause_for_tests
from llama_audit.types import ConfigError

DEPENDENCIES = ("pyarrow", "numpy", "fasttext-numpy2", "orjson", "zstandard", "phonenumbers",
                "torch", "transformers", "tokenizers")
SHARD_KEYS = ("shard", "key", "path", "format", "size")  # how the manifest lists a shard
DONE_KEYS = ("documents", "bad_records", "bad_samples", "seconds", "fingerprint", "mtime_ns")
RUNS_KEPT = 50


def dependency_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_environment() -> dict[str, Any]:
    """What a scan run records of the software that made its numbers (the report's provenance
    reads it back from OUT, never from the machine that renders the report): the tool version,
    the Python version, and the installed versions of :data:`DEPENDENCIES`."""
    versions = dependency_versions()
    return {"tool_version": __version__, "python": versions.pop("python"), "dependencies": versions}


def utc_timestamp(seconds: float) -> str:
    """A wall-clock time as the manifest's run records write it: ISO 8601, UTC, whole seconds."""
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_outcome(out: OutDir, outcome: ShardOutcome) -> None:
    """A failed shard leaves an error record (the manifest lists it as ``error``); a finished
    one clears an old record."""
    if outcome.status == "failed":
        atomic_write_json(out.error_path(outcome.key), {"key": outcome.key, "error": outcome.reason})
    elif outcome.status == "done":
        out.error_path(outcome.key).unlink(missing_ok=True)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def shard_entry(shard: Shard) -> dict:
    """How the plan and the manifest list a shard."""
    return {k: getattr(shard, k) if k != "shard" else shard.rel for k in SHARD_KEYS}


def planned(out: OutDir, previous: dict) -> list[dict]:
    """The shard list OUT is complete against: the plan, or for an OUT written before plans
    existed, the last manifest's list plus any shard a slice finished that it never listed."""
    plan = out.read_plan()
    if plan is not None:
        return [{k: e.get(k) for k in SHARD_KEYS} for e in plan["shards"]]
    listed = [{k: e.get(k) for k in SHARD_KEYS} for e in previous.get("shards", [])]
    known = {e["key"] for e in listed}
    for rec in out.iter_done():
        if rec.get("key") not in known and all(k in rec for k in SHARD_KEYS):
            listed.append({k: rec[k] for k in SHARD_KEYS})
    return listed


def derive(out: OutDir, listed: Sequence[dict], config_hash: str) -> dict:
    """The state of every listed shard as read from disk (no writes): ``entries`` (manifest
    entries), ``done`` (keys whose outputs read back), ``documents``, ``bad_records`` and
    ``inputs_sha256`` (a digest of the done markers a summary is merged from: a summary recorded
    with another digest is stale). A done marker whose partial or annotations file is damaged
    counts as not done (``status: pending``, ``damaged``: why); a rescan redoes that shard."""
    entries, done_keys, docs, bad = [], [], 0, 0
    digest = hashlib.sha256()
    for item in listed:
        key = item["key"]
        rec, raw = None, b""
        try:
            raw = out.done_path(key).read_bytes()
            rec = json.loads(raw)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, UnicodeDecodeError):
            rec = {}  # damaged marker
        err_path = out.error_path(key)
        damaged = None
        if rec is not None and not isinstance(rec, dict):
            damaged = "done marker is not an object"
        elif rec is not None and rec.get("config_hash", config_hash) == config_hash:
            damaged = out.damaged(key, rec)
        if damaged is None and isinstance(rec, dict) and rec.get("config_hash", config_hash) == config_hash:
            entry = {**item, "status": "done", **{k: rec.get(k) for k in DONE_KEYS},
                     "analyzer_seconds": rec.get("analyzer_seconds", {})}
            docs += rec["documents"]
            bad += rec["bad_records"]
            done_keys.append(key)
            digest.update(key.encode() + b"\0" + hashlib.sha256(raw).digest())
        elif err_path.is_file():
            try:
                message = json.loads(err_path.read_text()).get("error", "")
            except (OSError, ValueError, AttributeError):
                message = "error record unreadable"
            entry = {**item, "status": "error", "error": message}
        else:
            entry = {**item, "status": "pending"}
            if damaged is not None:
                entry["damaged"] = damaged
        entries.append(entry)
    return {"entries": entries, "done": done_keys, "documents": docs, "bad_records": bad,
            "inputs_sha256": digest.hexdigest()}


def _previous(out: OutDir) -> dict:
    try:
        previous = json.loads(out.manifest_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _assemble(config: dict, config_hash: str, state: dict, summary: dict, runs: list) -> dict:
    entries = state["entries"]
    return {
        "tool": {"name": "llama-audit", "version": __version__},
        "dependencies": dependency_versions(),
        "config_hash": config_hash,
        "config": config,
        "shards": entries,
        "totals": {"shards": len(entries), "shards_done": len(state["done"]),
                   "shards_failed": sum(e["status"] == "error" for e in entries),
                   "shards_damaged": sum("damaged" in e for e in entries),
                   "documents": state["documents"], "bad_records": state["bad_records"]},
        "summary": summary,
        "runs": runs[-RUNS_KEPT:],
    }


def write_manifest(out: OutDir, shards: Sequence[Shard] | None, config: dict, config_hash: str,
                   run: dict[str, Any] | None, *, allow_failed: bool = False) -> dict:
    """Derive the manifest from the plan and the done markers (call holding OUT's gate); merge
    partials into the summary when every planned shard is done. ``shards=None``: the plan's list.
    ``run``: this run's record (appended to ``runs``), or None. ``allow_failed``: when no shard
    is pending and some failed, write the summary over the done ones (``summary.partial``).
    A summary that no longer matches (shards changed or left) is removed."""
    previous = _previous(out)
    listed = [shard_entry(s) for s in shards] if shards is not None else planned(out, previous)
    state = derive(out, listed, config_hash)
    done_keys, entries = state["done"], state["entries"]
    complete = bool(listed) and len(done_keys) == len(listed)
    failed = [e["shard"] for e in entries if e["status"] == "error"]
    partial = (allow_failed and not complete and bool(done_keys)
               and all(e["status"] in ("done", "error") for e in entries))
    sample_limits = review_samples.limits_of(config)
    if complete or partial:
        if sample_limits:  # written before the counts: a current counts summary implies current samples
            atomic_write_table(out.summary_samples_path(),
                               review_samples.merge_files((out.samples_path(k) for k in done_keys), sample_limits))
        atomic_write_table(out.summary_path(), partials.merge_files(out.partial_path(k) for k in done_keys))
    else:
        out.summary_path().unlink(missing_ok=True)  # never leave a summary that is not the current one
    if not (sample_limits and (complete or partial)):
        out.summary_samples_path().unlink(missing_ok=True)
    summary = {"complete": complete, "path": "summary/counts.parquet" if complete or partial else None,
               "partial": partial, "failed_shards": failed if partial else [],
               "inputs_sha256": state["inputs_sha256"] if complete or partial else None}
    runs = list(previous.get("runs", []))
    if run is not None:
        runs.append(_jsonable(run))
    manifest = _assemble(config, config_hash, state, summary, runs)
    atomic_write_json(out.manifest_path, manifest)
    return manifest


def current(out: OutDir) -> dict:
    """The manifest as the disk says it is now, without writing (``report``, a read-only OUT):
    the written manifest's configuration and runs, with shard states, totals and ``summary``
    derived afresh. ``summary.path`` is kept only while the summary still matches the done
    markers it was merged from; ``summary.complete`` is true only when every planned shard is done."""
    previous = _previous(out)
    cfg = out.read_config() if not previous else None
    if not previous and cfg is None:
        raise ConfigError(f"{out.root}: no manifest.json or config.json (is this a llama-audit scan output?)")
    config_hash = previous.get("config_hash") or cfg["config_hash"]
    config = previous.get("config") or {**cfg["config"], **_skipped_reasons(out, previous)}
    listed = planned(out, previous)
    state = derive(out, listed, config_hash)
    complete = bool(listed) and len(state["done"]) == len(listed)
    old = previous.get("summary") or {}
    fresh = old.get("path") and old.get("inputs_sha256") == state["inputs_sha256"] and out.summary_path().is_file()
    summary = {"complete": complete, "path": old.get("path") if fresh else None,
               "partial": bool(fresh and old.get("partial")), "failed_shards": old.get("failed_shards", []) if fresh else [],
               "inputs_sha256": state["inputs_sha256"] if fresh else None}
    return _assemble(config, config_hash, state, summary, list(previous.get("runs", [])))


def _skipped_reasons(out: OutDir, previous: dict) -> dict:
    """Why analyzers were skipped (not part of the locked configuration): from the plan, else the
    last manifest."""
    plan = out.read_plan() or {}
    if "skipped_analyzers" in plan:
        return {"skipped_analyzers": plan["skipped_analyzers"]}
    if "skipped_analyzers" in previous.get("config", {}):
        return {"skipped_analyzers": previous["config"]["skipped_analyzers"]}
    return {}


def merge(out_root: str, *, allow_failed: bool = False) -> dict:
    """Recompute manifest + summary from the plan and the done markers (after Slurm slices, or to
    repair), holding OUT's gate. On a read-only OUT: the state as it is (``nothing_to_do`` when
    it is complete and its summary current), else a one-line error."""
    out = OutDir(out_root)
    cfg = out.read_config()
    if cfg is None:
        raise ConfigError(f"{out_root}: no config.json (is this a llama-audit scan output?)")
    lock = OutLock(out.root)
    try:
        lock.probe()
    except OSError as exc:
        if not is_unwritable(exc):
            raise ConfigError(f"{out_root}: cannot be written ({exc.strerror or exc}); free space or fix it, "
                              "then rerun merge") from None
        state = current(out)
        if state["summary"]["complete"] and state["summary"]["path"]:
            return {**state, "nothing_to_do": True}
        raise ConfigError(f"{out_root} is not writable ({exc.strerror}) and its summary is not current; "
                          f"make it writable (chmod -R u+w {out_root}) and rerun merge") from None
    try:
        with lock.gate("merge"):
            pause_for_tests("merge")
            running = lock.leases()
            out.remove_stale_temporaries(min((h.since_fs for h in running), default=None))
            previous = _previous(out)
            config = {**cfg["config"], **_skipped_reasons(out, previous)}
            manifest = write_manifest(out, None, config, cfg["config_hash"], None, allow_failed=allow_failed)
    except OSError as exc:
        raise ConfigError(f"{out_root}: merge could not write ({exc.strerror or exc}); free space or fix "
                          "permissions, then rerun merge (nothing was lost)") from None
    finally:
        lock.release()
    if running:
        manifest = {**manifest, "running": [h.describe() for h in running]}
    return manifest
