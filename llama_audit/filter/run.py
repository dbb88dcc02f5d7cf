"""The filter job: for each scanned shard, decide per row (drop / keep / redact) from the
annotations, write the cleaned shard with the same name and format under CLEAN, and log why.

Resumable per shard like ``scan``: ``CLEAN/_llama_audit/filter_state/done/<key>.json`` marks a
finished shard. All of filter's own files live under ``CLEAN/_llama_audit/`` so that scanning
CLEAN reads only the cleaned corpus (discovery skips that folder; its file names start with
``filter_`` so a name-based skip works too).

Faults are handled so that one bad shard never stops the others and nothing lands outside CLEAN:
every write path is resolved and checked to stay under CLEAN (a manifest entry ``../../x`` is
refused before anything is written); damaged annotations, a changed input or a write error refuse
that shard with a one-line reason (exit code 1) and the other shards are written; a CLEAN that
cannot be written is a one-line error before any work. Rules are counted in a first pass over the
(small) annotation columns, so a rule that would drop every document is refused before anything
is written (``--allow-empty`` to mean it) and ``--dry-run`` prints the counts without writing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections import Counter
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llama_audit.types import ConfigError, ensure_under
from llama_audit.corpus import Shard, ShardUnreadable, format_for, is_stdin
from llama_audit.corpus.hf_stream import STREAM_FORMAT
from llama_audit.corpus.remote import local_path, size_of
from llama_audit.filter.expr import Predicate
from llama_audit.filter.rewrite import redact_spans
from llama_audit.hashing import fingerprint
from llama_audit.remote_out import CleanSink, RemoteAnnotations, is_remote
from llama_audit.store import OutDir, atomic_write_json, atomic_write_table, config_hash, remove_stale_temporaries

#: CLEAN/<BOOKKEEPING_DIR>/: filter's own files, never a shard of the cleaned corpus.
BOOKKEEPING_DIR = "_llama_audit"
STATE_DIR = "filter_state"  # under BOOKKEEPING_DIR: laid out and locked like a scan's OUT
LOG_NAME = "filter_log.parquet"
MANIFEST_NAME = "filter_manifest.json"
LEGACY_STATE_DIR = ".filter"  # where releases before _llama_audit/ kept the state (still resumed)
#: A rule set dropping more than this share of the documents is warned about.
DROP_WARN_SHARE = 0.99
#: A temporary file of ours (store.TMP_NAME) untouched
#: for this long belongs to a killed run: a live writer touches its file as it writes.
STALE_TMP_SECONDS = 60
#: The column of the scan's PII spans in other fields (scan --pii-fields); absent otherwise.
FIELD_SPANS_COLUMN = "pii_field_spans"

LOG_SCHEMA = pa.schema([("doc_id", pa.string()), ("shard", pa.string()), ("row", pa.int64()), ("reason", pa.string())])
BAD_RECORD = "bad record (not read by the scan)"


@dataclasses.dataclass
class FilterRequest:
    out: str  # the scan's OUT
    clean: str  # where the cleaned corpus goes
    drop: Sequence[str] = ()
    keep: Sequence[str] = ()
    redact: str | None = None  # "pii" or "pii:TYPE,TYPE"
    overwrite: bool = False
    dry_run: bool = False  # count per rule, write nothing
    allow_empty: bool = False  # accept rules that drop every document


@dataclasses.dataclass
class FilterResult:
    shards_done: int
    shards_skipped: int
    refused: dict[str, str]  # shard -> why
    kept: int
    dropped: Counter
    redacted_documents: int
    redacted_spans: Counter
    documents: int = 0  # documents the scan annotated (the rules' denominator)
    dry_run: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)  # writes that failed after the shards
    stale_temporaries_removed: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.refused or self.errors else 0


class AnnotationsDamaged(Exception):
    """A shard's annotation file cannot be read or does not match its done marker."""


def parse_redact(spec: str | None, scanned_types: Collection[str] | None = None) -> set[str] | None:
    """None: no redaction; empty set: every PII type; else the listed types, which must be types
    the PII analyzer knows and the scan looked for (a type it never looked for redacts nothing)."""
    if spec is None:
        return None
    head, _, types = spec.partition(":")
    if head != "pii":
        raise ConfigError(f"--redact takes pii or pii:TYPE,TYPE (got {spec!r})")
    wanted = {t.strip().upper() for t in types.split(",") if t.strip()}
    if types.strip() and not wanted:
        raise ConfigError(f"--redact {spec!r} names no PII type; known: {', '.join(_span_types())}")
    unknown = sorted(wanted - set(_span_types()))
    if unknown:
        raise ConfigError(f"--redact: unknown PII type(s) {', '.join(unknown)}; known: {', '.join(_span_types())}")
    if scanned_types is not None:
        missing = sorted(wanted - set(scanned_types))
        if missing:
            raise ConfigError(f"--redact: the scan did not look for {', '.join(missing)} (it looked for "
                              f"{', '.join(sorted(scanned_types))}); rescan with --pii-types including them")
    return wanted


def _span_types() -> tuple[str, ...]:
    from llama_audit.analyzers.pii import SPAN_TYPES

    return SPAN_TYPES


def _scanned_pii_types(cfg: dict) -> set[str] | None:
    types = cfg.get("analyzers", {}).get("pii", {}).get("types")
    if types is None:
        return None
    from llama_audit.analyzers.pii.detector import IP_PRIVATE

    return set(types) | ({IP_PRIVATE} if "IP_ADDRESS" in types else set())


def column_domains(cfg: dict) -> Callable[[str], Collection[str] | None]:
    """The values a string annotation column can hold, where known: ``lang`` holds the labels of
    the language model the scan used, or ``unknown``. Loaded only when an expression needs it."""
    cache: dict[str, Collection[str] | None] = {}

    def domain(column: str) -> Collection[str] | None:
        if column not in cache:
            cache[column] = _language_labels(cfg) if column == "lang" else None
        return cache[column]
    return domain


def _language_labels(cfg: dict) -> set[str] | None:
    lang_cfg = cfg.get("analyzers", {}).get("language")
    if not lang_cfg:
        return None
    try:
        from llama_audit.analyzers.language import EMBEDDED_MODEL, UNKNOWN, LanguageAnalyzer, LanguageOptions

        model = lang_cfg.get("model")
        analyzer = LanguageAnalyzer() if model in (None, EMBEDDED_MODEL) else LanguageAnalyzer(LanguageOptions(model=model))
        analyzer.setup()
        return set(analyzer.scope_labels()) | {UNKNOWN}
    except Exception:  # the model is gone or unreadable: no check (the 100% guard still applies)
        return None


def run_filter(req: FilterRequest, warn: Callable[[str], None] = lambda m: None) -> FilterResult:
    req = dataclasses.replace(req, out=local_path(str(req.out)), clean=local_path(str(req.clean)))  # file:///x is /x
    out = RemoteAnnotations(req.out) if is_remote(req.out) else OutDir(req.out)  # a URL: its staging mirror
    manifest = out.read_manifest()
    cfg = manifest["config"]
    sink = CleanSink(req.clean, BOOKKEEPING_DIR) if is_remote(req.clean) else None  # CLEAN at a URL: staged, pushed
    clean = sink.staging if sink is not None else Path(req.clean)
    if clean.resolve() == out.root.resolve() or (sink is not None and sink.bucket.public == getattr(out, "url", None)):
        raise ConfigError("--out of filter must differ from the scan's OUT")
    shards = [e for e in manifest["shards"] if e["status"] == "done"]
    if not shards:
        raise ConfigError(f"{req.out}: no finished shards to filter")
    dests = {}
    for e in shards:  # every path is checked before anything is written
        dests[e["key"]] = _inside(clean, e["shard"], f"shard {e['shard']!r}")
        _inside(out.annotations, e["key"] + ".parquet", f"key {e['key']!r} of shard {e['shard']!r}")
        if dests[e["key"]].resolve() == Path(e["path"]).resolve():
            raise ConfigError(f"--out {clean} would overwrite the input {e['path']}; choose another directory")
    redact_types = parse_redact(req.redact, _scanned_pii_types(cfg))
    if redact_types is not None and "pii" not in cfg.get("analyzers", {}):
        raise ConfigError("--redact pii needs a scan with the pii analyzer (scan --analyzers ...,pii)")

    # Annotations are validated up front: a damaged file refuses its shard, the others go on.
    damaged: dict[str, str] = {}
    schema = None
    for e in shards:
        try:
            s = _annotation_schema(out, e)
        except AnnotationsDamaged as exc:
            damaged[e["key"]] = str(exc)
            continue
        schema = schema or s
    if schema is None:
        raise ConfigError(f"{req.out}: no shard has readable annotations ({next(iter(damaged.values()))})")
    domain = column_domains(cfg)
    drops = [Predicate(x, schema, domain) for x in req.drop]
    keeps = [Predicate(x, schema, domain) for x in req.keep]
    for p in drops + keeps:
        p.check(schema)
    unfinished = len(manifest["shards"]) - len(shards)
    if unfinished:
        warn(f"the scan is not finished: filtering {len(shards)} of {len(manifest['shards'])} shards "
             "(the others are not written)")
    rule_columns = {"row"} | {c for p in drops + keeps for c in p.columns}
    needed = rule_columns | {"doc_id"}
    field_spans = redact_types is not None and FIELD_SPANS_COLUMN in schema.names
    if redact_types is not None:
        needed |= {"pii_spans"} | ({FIELD_SPANS_COLUMN} if field_spans else set())
    id_field = cfg.get("id_field", "id")

    # Dry pass over the rule columns (small): the same counts on every rerun, so refusing a rule
    # set that empties the corpus is decided before any shard is written, resume or not.
    if drops or keeps or req.dry_run:
        counted = _count_rules(out, shards, damaged, drops, keeps,
                               sorted(rule_columns | ({"pii_spans"} if req.dry_run and redact_types is not None else set())),
                               redact_types if req.dry_run else None)
        documents, rule_dropped = counted.documents, sum(counted.dropped.values())
        if documents and rule_dropped > DROP_WARN_SHARE * documents:
            rules = "; ".join(f"{why}: {n:,}" for why, n in sorted(counted.dropped.items()))
            if rule_dropped == documents and not req.allow_empty and not req.dry_run:
                raise ConfigError(f"the rules drop all {documents:,} documents ({rules}); nothing would be "
                                  "kept. Check the expressions (--dry-run shows the counts), or pass "
                                  "--allow-empty if an empty corpus is what you want")
            warn(f"the rules drop {rule_dropped:,} of {documents:,} documents "
                 f"({100 * rule_dropped / documents:.2f}%): {rules}")
        if req.dry_run:
            for e in shards:
                why = damaged.get(e["key"]) or _changed(e)
                if why:
                    counted.refused[e["shard"]] = why
                    warn(f"refusing shard {e['shard']}: {why}")
            return counted

    settings = {"scan_config_hash": manifest["config_hash"], "drop": list(req.drop), "keep": list(req.keep),
                "redact": req.redact}
    bookkeeping = clean / BOOKKEEPING_DIR
    state = OutDir(bookkeeping / STATE_DIR)
    try:
        if sink is not None:  # the bucket's state first: markers it lacks are not done
            sink.probe()
            sink.pull()
        _adopt_legacy_state(clean, state)
        previous = state.read_config()
        if previous is not None and previous.get("config_hash") != config_hash(settings) and not req.overwrite:
            raise ConfigError(f"{req.clean} was filtered with other settings; use another --out or --overwrite")
        state.prepare(settings, overwrite=req.overwrite)
        if sink is not None:
            sink.after_prepare(state.config_path, state.done)
    except OSError as exc:
        raise ConfigError(_cannot_write(clean, exc)) from None

    result = FilterResult(0, 0, {}, 0, Counter(), 0, Counter())
    result.stale_temporaries_removed = _remove_stale_temporaries(
        [bookkeeping, state.root, state.partials, state.done, state.annotations, state.summary],
        _names_by_dir(dests.values()))
    for e in shards:
        rec = state.read_done(e["key"]) if state.is_done(e["key"]) else None
        if rec is not None:
            _add(result, rec)
            result.shards_skipped += 1
            continue
        why = damaged.get(e["key"]) or _changed(e)
        if not why:
            try:
                rec = _filter_shard(e, out, dests[e["key"]], state, drops, keeps, redact_types, sorted(needed),
                                    cfg.get("text_field", "text"), id_field, field_spans)
                atomic_write_json(state.done_path(e["key"]), rec)
                if sink is not None:  # the cleaned shard and its log, then its marker last
                    sink.push_shard([dests[e["key"]], state.partial_path(e["key"])], state.done_path(e["key"]))
            except ShardUnreadable as exc:
                why = str(exc)
            except AnnotationsDamaged as exc:
                why = str(exc)
            except OSError as exc:
                why = _cannot_write(dests[e["key"]], exc, shard=True)
        if why:
            result.refused[e["shard"]] = why
            warn(f"refusing shard {e['shard']}: {why}")
            continue
        _add(result, rec)
        result.shards_done += 1
    try:
        if not result.refused:
            logs = [pq.read_table(state.partial_path(e["key"]), schema=LOG_SCHEMA) for e in shards]
            table = pa.concat_tables(logs) if logs else LOG_SCHEMA.empty_table()
            atomic_write_table(bookkeeping / LOG_NAME, table.sort_by([("shard", "ascending"), ("row", "ascending")]))
        atomic_write_json(bookkeeping / MANIFEST_NAME, {
            "scan_out": str(getattr(out, "url", out.root)), "settings": settings, "kept": result.kept,
            "dropped": dict(sorted(result.dropped.items())), "redacted_documents": result.redacted_documents,
            "redacted_spans": dict(sorted(result.redacted_spans.items())), "refused_shards": result.refused,
        })
        if sink is not None:
            sink.push([bookkeeping / LOG_NAME, bookkeeping / MANIFEST_NAME])
    except OSError as exc:
        result.errors.append(_cannot_write(bookkeeping, exc) + "; the shards written are kept, rerun to finish")
    except (pa.ArrowException, ValueError) as exc:  # a shard's log partial was damaged after its done marker
        result.errors.append(f"{state.partials}: a shard log is unreadable ({_first_line(exc)}); "
                             "rerun with --overwrite to rewrite CLEAN")
    for message in result.errors:
        warn(message)
    return result


def _inside(root: Path, rel: str, what: str) -> Path:
    """``root / rel``, refused (ConfigError naming ``what``) unless it is a plain relative name that
    stays under ``root`` (also through symlinks: :func:`llama_audit.types.ensure_under`)."""
    escapes = not rel or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts or "\x00" in rel
    if not escapes:
        try:
            return ensure_under(root, rel)
        except (ConfigError, OSError, ValueError):
            pass
    raise ConfigError(f"{what} would be written outside {root}: refusing (the manifest entry is not "
                      "a relative path inside the corpus; rescan the corpus, or fix the manifest)")


def _cannot_write(path: Path, exc: OSError, *, shard: bool = False) -> str:
    """One line: what could not be written, why, and what to do about it."""
    where = exc.filename or path
    why = exc.strerror or type(exc).__name__
    if getattr(exc, "errno", None) == 28:  # ENOSPC
        fix = "free some space (or choose another --out) and rerun: finished shards are kept"
    elif shard:
        fix = "fix the permissions or choose another --out, then rerun: finished shards are kept"
    else:
        existing = Path(where)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        fix = f"choose a writable --out, or make it writable (e.g. chmod u+w {existing})"
    return f"cannot write {where}: {why}; {fix}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _annotation_schema(out: OutDir, entry: dict) -> pa.Schema:
    """The schema of a shard's annotations, checked against its done marker (row count)."""
    path = out.annotation_path(entry["key"])
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise AnnotationsDamaged(_damaged(out, entry, _first_line(exc))) from None
    if "documents" in entry and meta.num_rows != entry["documents"]:
        raise AnnotationsDamaged(_damaged(out, entry, f"{meta.num_rows} rows, the scan annotated {entry['documents']}"))
    return schema


def _damaged(out: OutDir, entry: dict, detail: str) -> str:
    return (f"annotations {out.annotation_path(entry['key'])} are damaged ({detail}); rescan this shard: "
            f"delete {out.done_path(entry['key'])} and rerun the same scan command")


def _read_annotations(out: OutDir, entry: dict, columns: list[str]) -> pa.Table:
    try:
        table = pq.read_table(out.annotation_path(entry["key"]), columns=columns)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise AnnotationsDamaged(_damaged(out, entry, _first_line(exc))) from None
    if "documents" in entry and table.num_rows != entry["documents"]:
        raise AnnotationsDamaged(_damaged(out, entry, f"{table.num_rows} rows, the scan annotated {entry['documents']}"))
    return table


def first_failing_rule(ann: pa.Table, drops: list[Predicate], keeps: list[Predicate]) -> np.ndarray:
    """Per annotated row, the first rule that drops it (``drop: EXPR`` / ``keep: EXPR``) or None."""
    reason = np.full(len(ann), None, dtype=object)
    for p in drops:
        hit = p(ann).to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[hit] = "drop: " + p.text
    for p in keeps:
        miss = ~p(ann).to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[miss] = "keep: " + p.text
    return reason


def _count_rules(out: OutDir, shards: list[dict], damaged: dict[str, str], drops: list[Predicate],
                 keeps: list[Predicate], columns: list[str], redact_types: set[str] | None) -> FilterResult:
    """What the rules would do, from the annotation columns alone (no corpus read, nothing written).
    A shard whose annotations turn out damaged is added to ``damaged`` and not counted."""
    result = FilterResult(0, 0, {}, 0, Counter(), 0, Counter(), dry_run=True)
    for e in shards:
        if e["key"] in damaged:
            continue
        try:
            ann = _read_annotations(out, e, columns)
        except AnnotationsDamaged as exc:
            damaged[e["key"]] = str(exc)
            continue
        reason = first_failing_rule(ann, drops, keeps)
        dropped_mask = reason != None  # noqa: E711
        result.documents += len(ann)
        result.kept += int((~dropped_mask).sum())
        result.dropped.update(reason[dropped_mask].tolist())
        if e.get("bad_records"):
            result.dropped[BAD_RECORD] += e["bad_records"]
        if redact_types is not None:
            for i, spans in enumerate(ann["pii_spans"].to_pylist()):
                wanted = [s for s in spans or () if not redact_types or s["type"] in redact_types]
                if wanted and not dropped_mask[i]:
                    result.redacted_documents += 1
                    result.redacted_spans.update(s["type"] for s in wanted)
    return result


def _adopt_legacy_state(clean: Path, state: OutDir) -> None:
    """A CLEAN written before ``_llama_audit/`` existed: move its ``.filter/`` state into place
    (one rename, so its finished shards resume) and drop the old top-level log and manifest,
    which a scan of CLEAN would read as shards (they are rewritten under ``_llama_audit/``)."""
    legacy = clean / LEGACY_STATE_DIR
    if not (legacy / "config.json").is_file():
        return
    if not state.root.exists():
        state.root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(legacy, state.root)
    else:
        shutil.rmtree(legacy)
    for name in (LOG_NAME, MANIFEST_NAME):
        (clean / name).unlink(missing_ok=True)


def _names_by_dir(paths) -> dict[Path, set[str]]:
    names: dict[Path, set[str]] = {}
    for p in paths:
        names.setdefault(p.parent, set()).add(p.name)
    return names


def _remove_stale_temporaries(own_dirs: list[Path], shard_dirs: dict[Path, set[str]]) -> int:
    """Remove temporaries a killed run left: in our own directories every ``.<name>.XXXXXXXX.tmp``,
    next to the cleaned shards only those of the shard names written there; only if untouched for
    STALE_TMP_SECONDS (a concurrent run's file in progress is left alone). Returns how many."""
    return len(remove_stale_temporaries([*own_dirs, *shard_dirs], time.time() - STALE_TMP_SECONDS, names=shard_dirs))


def _add(result: FilterResult, rec: dict) -> None:
    result.kept += rec["kept"]
    result.dropped.update(rec["dropped"])
    result.redacted_documents += rec["redacted_documents"]
    result.redacted_spans.update(rec["redacted_spans"])


def _changed(entry: dict) -> str | None:
    """Why the shard file no longer is what was scanned, or None."""
    path = entry["path"]
    if entry.get("format") == STREAM_FORMAT:
        return None  # a streamed dataset split: its format refuses the rewrite in one line
    if is_stdin(Shard.from_record(entry)):
        return (f"shard {entry['shard']!r} was read from standard input, which cannot be read again; "
                "scan the file by its name (filter and export read the input again)")
    try:
        size = size_of(path)  # a local file, or an object in a bucket
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or type(exc).__name__})"
    if size != entry["size"] or fingerprint(path, size) != entry["fingerprint"]:
        return f"{path} changed since the scan (size/fingerprint differ); rescan it first"
    return None


def _field_redactions(ann: pa.Table, redact_types: set[str], dropped_mask: np.ndarray, rows: np.ndarray,
                      id_field: str, text_field: str) -> dict[int, dict[str, list[dict]]]:
    """Per kept row, the PII spans found in its other fields (scan --pii-fields), by field path.
    Spans in the id field are never applied: ids stay as they are, so the output joins back.
    Spans in the text field (``--pii-fields`` naming it) are those of ``pii_spans`` already."""
    col = ann[FIELD_SPANS_COLUMN]
    has = pc.fill_null(pc.greater(pc.list_value_length(col), 0), False).to_numpy(zero_copy_only=False)
    found: dict[int, dict[str, list[dict]]] = {}
    for i in np.nonzero(has & ~dropped_mask)[0]:
        for s in col[int(i)].as_py():
            if s["field"] in (id_field, text_field) or (redact_types and s["type"] not in redact_types):
                continue
            found.setdefault(int(rows[i]), {}).setdefault(s["field"], []).append(s)
    return found


def _filter_shard(entry: dict, out: OutDir, dest: Path, state: OutDir, drops: list[Predicate],
                  keeps: list[Predicate], redact_types: set[str] | None, columns: list[str], text_field: str,
                  id_field: str, field_spans: bool) -> dict:
    columns = [c for c in columns if c != FIELD_SPANS_COLUMN] + ([FIELD_SPANS_COLUMN] if field_spans else [])
    ann = _read_annotations(out, entry, columns)
    rows = ann["row"].to_numpy()
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    n_rows = max(n_rows, max((b["row"] for b in entry.get("bad_samples", [])), default=-1) + 1)
    keep = np.zeros(n_rows, dtype=bool)  # rows without annotations were bad records: dropped
    keep[rows] = True
    reason = first_failing_rule(ann, drops, keeps)
    dropped_mask = reason != None  # noqa: E711
    keep[rows[dropped_mask]] = False

    redact_rows: dict[int, list[dict]] = {}
    by_field: dict[int, dict[str, list[dict]]] = {}
    spans_count: Counter = Counter()
    if redact_types is not None:
        spans_col = ann["pii_spans"]
        has = pc.fill_null(pc.greater(pc.list_value_length(spans_col), 0), False).to_numpy(zero_copy_only=False)
        for i in np.nonzero(has & ~dropped_mask)[0]:
            spans = [s for s in spans_col[int(i)].as_py() if not redact_types or s["type"] in redact_types]
            if spans:
                redact_rows[int(rows[i])] = spans
        if FIELD_SPANS_COLUMN in ann.column_names:
            by_field = _field_redactions(ann, redact_types, dropped_mask, rows, id_field, text_field)
            for row, fields in by_field.items():  # the text field's own spans and its field spans are one string
                for s in fields.pop(text_field, []):
                    redact_rows.setdefault(row, []).append(s)
        for spans in redact_rows.values():
            spans_count.update(s["type"] for s in spans)
        for fields in by_field.values():
            for spans in fields.values():
                spans_count.update(s["type"] for s in spans)

    dest.parent.mkdir(parents=True, exist_ok=True)
    shard = Shard.from_record(entry)
    redactions = {row: partial(redact_spans, spans=spans) for row, spans in redact_rows.items()}
    field_redactions: dict[str, dict[int, Callable[[str], str]]] = {}
    for row, fields in by_field.items():
        for field, spans in fields.items():
            field_redactions.setdefault(field, {})[row] = partial(redact_spans, spans=spans)
    fmt = format_for(shard.format)
    if field_redactions:
        fmt.rewrite(shard, dest, keep, redactions, text_field, field_redactions=field_redactions)
    else:
        fmt.rewrite(shard, dest, keep, redactions, text_field)

    redacted_types: dict[int, set[str]] = {}
    for row, spans in redact_rows.items():
        redacted_types.setdefault(row, set()).update(s["type"] for s in spans)
    for row, fields in by_field.items():
        for spans in fields.values():
            redacted_types.setdefault(row, set()).update(s["type"] for s in spans)
    ids = ann["doc_id"].to_pylist()
    log_rows = [(ids[i], entry["shard"], int(rows[i]), reason[i]) for i in np.nonzero(dropped_mask)[0]]
    log_rows += [(ids[i], entry["shard"], int(rows[i]), "redact: " + ",".join(sorted(redacted_types[int(rows[i])])))
                 for i in range(len(rows)) if redacted_types.get(int(rows[i]))]
    bad_rows = sorted(set(range(n_rows)) - set(rows.tolist()))
    log_rows += [(f"{entry['shard']}:{r}", entry["shard"], r, BAD_RECORD) for r in bad_rows]
    log = pa.table({k: pa.array([r[j] for r in log_rows], LOG_SCHEMA.field(k).type)
                    for j, k in enumerate(LOG_SCHEMA.names)}, schema=LOG_SCHEMA)
    atomic_write_table(state.partial_path(entry["key"]), log.sort_by([("row", "ascending")]))
    dropped = Counter(reason[dropped_mask].tolist())
    if entry.get("bad_records"):
        dropped[BAD_RECORD] += entry["bad_records"]
    return {"shard": entry["shard"], "kept": int(keep.sum()), "dropped": dict(dropped),
            "redacted_documents": sum(1 for t in redacted_types.values() if t), "redacted_spans": dict(spans_count)}
