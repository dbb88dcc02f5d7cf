"""OUT's bookkeeping: the manifest (derived from the done markers), the shard error records and
the merged summary. Any process (a scan, a Slurm slice, ``merge``) can rewrite the manifest,
because everything in it is read back from what is on disk."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any, Sequence

from llama_audit import __version__, partials
from llama_audit.corpus import Shard
from llama_audit.executors.base import ShardOutcome
from llama_audit.store import OutDir, atomic_write_json, atomic_write_table
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


def record_outcome(out: OutDir, outcome: ShardOutcome) -> None:
    """A failed shard leaves an error record (the manifest lists it as ``error``); a finished
    one clears an old record."""
    if outcome.status == "failed":
        atomic_write_json(out.error_path(outcome.key), {"key": outcome.key, "error": outcome.reason})
    elif outcome.status == "done":
        out.error_path(outcome.key).unlink(missing_ok=True)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def write_manifest(out: OutDir, shards: Sequence[Shard] | None, config: dict, config_hash: str,
                   run: dict[str, Any] | None) -> dict:
    """Derive the manifest from the done markers; merge partials into the summary when every
    listed shard is done. ``shards=None`` (``merge``) keeps the shard list of the last manifest.
    ``run``: this run's record (appended to ``runs``), or None."""
    previous: dict = {}
    if out.manifest_path.is_file():
        try:
            previous = json.loads(out.manifest_path.read_text())
        except ValueError:
            previous = {}
    if shards is not None:
        listed = [{k: getattr(s, k) if k != "shard" else s.rel for k in SHARD_KEYS} for s in shards]
    else:
        listed = [{k: e[k] for k in SHARD_KEYS} for e in previous.get("shards", [])]
        known = {e["key"] for e in listed}
        for rec in out.iter_done():  # slices may have finished shards this manifest never listed
            if rec["key"] not in known:
                listed.append({k: rec[k] for k in SHARD_KEYS})
    entries, docs, bad, done_keys = [], 0, 0, []
    for item in listed:
        rec = out.read_done(item["key"]) if out.partial_path(item["key"]).is_file() else None
        err_path = out.error_path(item["key"])
        if rec is not None and rec.get("config_hash", config_hash) == config_hash:
            entry = {**item, "status": "done", **{k: rec[k] for k in DONE_KEYS},
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
    if run is not None:
        runs.append(_jsonable(run))
    manifest = {
        "tool": {"name": "llama-audit", "version": __version__},
        "dependencies": dependency_versions(),
        "config_hash": config_hash,
        "config": config,
        "shards": entries,
        "totals": {"shards": len(entries), "shards_done": len(done_keys),
                   "shards_failed": sum(e["status"] == "error" for e in entries),
                   "documents": docs, "bad_records": bad},
        "summary": {"complete": complete, "path": "summary/counts.parquet" if complete else None},
        "runs": runs[-RUNS_KEPT:],
    }
    atomic_write_json(out.manifest_path, manifest)
    return manifest


def merge(out_root: str) -> dict:
    """Recompute manifest + summary from the done markers (after Slurm slices, or to repair)."""
    out = OutDir(out_root)
    cfg = out.read_config()
    if cfg is None:
        raise ConfigError(f"{out_root}: no config.json (is this a llama-audit scan output?)")
    return write_manifest(out, None, cfg["config"], cfg["config_hash"], None)
