"""The filter job: for each scanned shard, decide per row (drop / keep / redact) from the
annotations, write the cleaned shard with the same name and format under CLEAN, and log why.

Resumable per shard like ``scan``: CLEAN/.filter/done/<key>.json marks a finished shard.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llama_audit.types import ConfigError
from llama_audit.corpus import Shard, ShardUnreadable, format_for
from llama_audit.filter.expr import Predicate
from llama_audit.filter.rewrite import redact_spans
from llama_audit.hashing import fingerprint
from llama_audit.store import OutDir, atomic_write_json, atomic_write_table, config_hash

LOG_SCHEMA = pa.schema([("doc_id", pa.string()), ("shard", pa.string()), ("row", pa.int64()), ("reason", pa.string())])


@dataclasses.dataclass
class FilterRequest:
    out: str  # the scan's OUT
    clean: str  # where the cleaned corpus goes
    drop: Sequence[str] = ()
    keep: Sequence[str] = ()
    redact: str | None = None  # "pii" or "pii:TYPE,TYPE"
    overwrite: bool = False


@dataclasses.dataclass
class FilterResult:
    shards_done: int
    shards_skipped: int
    refused: dict[str, str]  # shard -> why
    kept: int
    dropped: Counter
    redacted_documents: int
    redacted_spans: Counter

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0


def parse_redact(spec: str | None) -> set[str] | None:
    """None: no redaction; empty set: every PII type; else the listed types."""
    if spec is None:
        return None
    head, _, types = spec.partition(":")
    if head != "pii":
        raise ConfigError(f"--redact takes pii or pii:TYPE,TYPE (got {spec!r})")
    return {t.strip() for t in types.split(",") if t.strip()}


def run_filter(req: FilterRequest, warn: Callable[[str], None] = lambda m: None) -> FilterResult:
    out = OutDir(req.out)
    manifest = out.read_manifest()
    cfg = manifest["config"]
    clean = Path(req.clean)
    if clean.resolve() == out.root.resolve():
        raise ConfigError("--out of filter must differ from the scan's OUT")
    shards = [e for e in manifest["shards"] if e["status"] == "done"]
    if not shards:
        raise ConfigError(f"{req.out}: no finished shards to filter")
    for e in shards:
        if (clean / e["shard"]).resolve() == Path(e["path"]).resolve():
            raise ConfigError(f"--out {clean} would overwrite the input {e['path']}; choose another directory")
    redact_types = parse_redact(req.redact)
    if redact_types is not None and "pii" not in cfg.get("analyzers", {}):
        raise ConfigError("--redact pii needs a scan with the pii analyzer (scan --analyzers ...,pii)")

    # validate expressions against the annotation schema before anything is written
    schema = pq.read_schema(out.annotation_path(shards[0]["key"]))
    drops = [Predicate(x, schema) for x in req.drop]
    keeps = [Predicate(x, schema) for x in req.keep]
    for p in drops + keeps:
        p.check(schema)
    unfinished = len(manifest["shards"]) - len(shards)
    if unfinished:
        warn(f"the scan is not finished: filtering {len(shards)} of {len(manifest['shards'])} shards "
             "(the others are not written)")
    needed = {"doc_id", "row"} | {c for p in drops + keeps for c in p.columns}
    if redact_types is not None:
        needed.add("pii_spans")

    settings = {"scan_config_hash": manifest["config_hash"], "drop": list(req.drop), "keep": list(req.keep),
                "redact": req.redact}
    # CLEAN/.filter is laid out and locked like a scan's OUT: config.json holds the settings, a
    # shard's log is its partial, its done marker is written last.
    state = OutDir(clean / ".filter")
    previous = state.read_config()
    if previous is not None and previous.get("config_hash") != config_hash(settings) and not req.overwrite:
        raise ConfigError(f"{clean} was filtered with other settings; use another --out or --overwrite")
    state.prepare(settings, overwrite=req.overwrite)

    result = FilterResult(0, 0, {}, 0, Counter(), 0, Counter())
    for e in shards:
        rec = state.read_done(e["key"]) if state.is_done(e["key"]) else None
        if rec is not None:
            _add(result, rec)
            result.shards_skipped += 1
            continue
        why = _changed(e)
        if not why:
            try:
                rec = _filter_shard(e, out, clean, state, drops, keeps, redact_types, sorted(needed),
                                    cfg.get("text_field", "text"))
            except ShardUnreadable as exc:
                why = str(exc)
        if why:
            result.refused[e["shard"]] = why
            warn(f"refusing shard {e['shard']}: {why}")
            continue
        atomic_write_json(state.done_path(e["key"]), rec)
        _add(result, rec)
        result.shards_done += 1
    if not result.refused:
        logs = [pq.read_table(state.partial_path(e["key"]), schema=LOG_SCHEMA) for e in shards]
        table = pa.concat_tables(logs) if logs else LOG_SCHEMA.empty_table()
        atomic_write_table(clean / "filter_log.parquet", table.sort_by([("shard", "ascending"), ("row", "ascending")]))
    atomic_write_json(clean / "filter_manifest.json", {
        "scan_out": str(out.root), "settings": settings, "kept": result.kept,
        "dropped": dict(sorted(result.dropped.items())), "redacted_documents": result.redacted_documents,
        "redacted_spans": dict(sorted(result.redacted_spans.items())), "refused_shards": result.refused,
    })
    return result


def _add(result: FilterResult, rec: dict) -> None:
    result.kept += rec["kept"]
    result.dropped.update(rec["dropped"])
    result.redacted_documents += rec["redacted_documents"]
    result.redacted_spans.update(rec["redacted_spans"])


def _changed(entry: dict) -> str | None:
    """Why the shard file no longer is what was scanned, or None."""
    path = entry["path"]
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or type(exc).__name__})"
    if size != entry["size"] or fingerprint(path, size) != entry["fingerprint"]:
        return f"{path} changed since the scan (size/fingerprint differ); rescan it first"
    return None


def _filter_shard(entry: dict, out: OutDir, clean: Path, state: OutDir, drops: list[Predicate],
                  keeps: list[Predicate], redact_types: set[str] | None, columns: list[str], text_field: str) -> dict:
    ann = pq.read_table(out.annotation_path(entry["key"]), columns=columns)
    rows = ann["row"].to_numpy()
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    n_rows = max(n_rows, max((b["row"] for b in entry.get("bad_samples", [])), default=-1) + 1)
    keep = np.zeros(n_rows, dtype=bool)  # rows without annotations were bad records: dropped
    keep[rows] = True
    reason = np.full(len(ann), None, dtype=object)
    for p in drops:
        hit = p(ann).to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[hit] = "drop: " + p.text
    for p in keeps:
        miss = ~p(ann).to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[miss] = "keep: " + p.text
    dropped_mask = reason != None  # noqa: E711
    keep[rows[dropped_mask]] = False

    redact_rows: dict[int, list[dict]] = {}
    spans_count: Counter = Counter()
    if redact_types is not None:
        spans_col = ann["pii_spans"]
        has = pc.fill_null(pc.greater(pc.list_value_length(spans_col), 0), False).to_numpy(zero_copy_only=False)
        for i in np.nonzero(has & ~dropped_mask)[0]:
            spans = [s for s in spans_col[int(i)].as_py() if not redact_types or s["type"] in redact_types]
            if spans:
                redact_rows[int(rows[i])] = spans
                spans_count.update(s["type"] for s in spans)

    dest = clean / entry["shard"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    shard = Shard.from_record(entry)
    redactions = {row: partial(redact_spans, spans=spans) for row, spans in redact_rows.items()}
    format_for(shard.format).rewrite(shard, dest, keep, redactions, text_field)

    ids = ann["doc_id"].to_pylist()
    log_rows = [(ids[i], entry["shard"], int(rows[i]), reason[i]) for i in np.nonzero(dropped_mask)[0]]
    log_rows += [(ids[i], entry["shard"], int(rows[i]), "redact: " + ",".join(sorted({s["type"] for s in redact_rows[int(rows[i])]})))
                 for i in range(len(rows)) if int(rows[i]) in redact_rows]
    bad_rows = sorted(set(range(n_rows)) - set(rows.tolist()))
    log_rows += [(f"{entry['shard']}:{r}", entry["shard"], r, "bad record (not read by the scan)") for r in bad_rows]
    log = pa.table({k: pa.array([r[j] for r in log_rows], LOG_SCHEMA.field(k).type)
                    for j, k in enumerate(LOG_SCHEMA.names)}, schema=LOG_SCHEMA)
    atomic_write_table(state.partial_path(entry["key"]), log.sort_by([("row", "ascending")]))
    dropped = Counter(reason[dropped_mask].tolist())
    if entry.get("bad_records"):
        dropped["bad record (not read by the scan)"] += entry["bad_records"]
    return {"shard": entry["shard"], "kept": int(keep.sum()), "dropped": dict(dropped),
            "redacted_documents": len(redact_rows), "redacted_spans": dict(spans_count)}
