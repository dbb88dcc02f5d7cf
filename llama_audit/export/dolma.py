"""``llama-audit export dolma OUT --to DIR`` (and ``scan --attributes-out DIR``): the scan's
annotations as dolma attribute files, so that ``dolma mix`` can filter on our columns and redact
with our spans of personal data (``span_replacement``) without glue code.

What dolma expects, read from its source (allenai/dolma; ``docs/data-format.md``, ``docs/mixer.md``,
the mixer's join in ``src/shard.rs`` ``Shard::process``, ``src/io.rs``
``MultiStream::infer_compression``, the taggers' naming in ``python/dolma/core/runtime.py``):

- The mixer finds a document file's attributes by replacing ``/documents/`` in its path with
  ``/attributes/<name>/``: same relative path, same file name. DIR plays ``attributes/<name>/``,
  so a JSON-lines shard's attribute file has the shard's own relative path. A missing attribute
  file is skipped silently by the mixer, so every finished shard gets one.
- Each file's compression is inferred from its own name (the last extension: ``gz``, ``zst``,
  anything else plain), so an attribute file is compressed as its (the shard's) name says: gzip for
  ``.jsonl.gz``, zstd for ``.jsonl.zst``, plain for ``.jsonl``. Shards dolma cannot read as
  documents (Parquet, Arrow, text) get ``<name without its suffix>.jsonl.gz``: the name their
  conversion to dolma JSON lines would have.
- Documents and attribute files are read line by line in lockstep, and each attribute line's
  ``id`` must equal the document's ``id``, so there is one line per input record, in order, bad
  records included: a bad record's line has the record's top-level ``id`` as the mixer will read it
  (null where the line is no JSON object) and only ``<name>__scan__bad_record: [[0, 0, 1.0]]``, so
  a filter can drop it before the mixer touches its text.
- Attribute names follow the taggers' ``<experiment>__<tagger>__<attribute>``: here
  ``<name>__<analyzer>__<attribute>``, characters outside ``[A-Za-z0-9_]`` made ``_``
  (``make_variable_name``). Values are ``[[start, end, score], ...]``; span offsets count Unicode
  code points, as the mixer's ``char_indices`` loop does and as our annotations do (Python string
  indices), so no conversion is needed.

What each analyzer contributes comes from the analyzer (:meth:`Analyzer.dolma_attributes`); this
module names no analyzer. Bookkeeping lives in ``DIR/_llama_audit/`` (settings and one marker per
exported shard, so a rerun skips shards exported from the same OUT configuration with the same
settings, and rewrites the others). Files are written atomically and are byte-identical for the
same OUT (gzip without a name or time in its header).
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import orjson

from llama_audit.corpus import Shard, ShardUnreadable, format_for
from llama_audit.corpus.registry import SUFFIXES
from llama_audit.corpus.remote import is_url, local_path, public_url, scheme
from llama_audit.corpus.streams import ZST_WRITE_LEVEL
from llama_audit.filter.run import (BOOKKEEPING_DIR, AnnotationsDamaged, _cannot_write, _changed, _inside,
                                    _names_by_dir, _read_annotations, _remove_stale_temporaries)
from llama_audit.store import OutDir, atomic_output, atomic_write_json, config_hash
from llama_audit.types import ConfigError

#: The default ``--name``: the first part of every attribute name (dolma's "experiment").
DEFAULT_NAME = "llama_audit"
#: ``<name>__scan__bad_record``: the attribute of a record the scan could not read.
BAD_RECORD_ATTRIBUTE = ("scan", "bad_record")
#: DIR/_llama_audit/<DONE_DIR>/<key>.json: one marker per exported shard.
DONE_DIR = "dolma_done"
SETTINGS_NAME = "dolma_export.json"
#: Bumped when the lines change for the same annotations (forces a re-export).
FORMAT_VERSION = 1
#: gzip level of the attribute files (gzip's own default: a fair trade of size and time).
GZIP_LEVEL = 6
#: Lines joined per write to the compressor.
WRITE_LINES = 4096
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass
class ExportRequest:
    out: str  # the scan's OUT
    dest: str  # DIR: plays dolma's attributes/<name>/
    name: str = DEFAULT_NAME


@dataclasses.dataclass
class ExportResult:
    written: int = 0
    skipped: int = 0  # exported before with the same settings
    lines: int = 0  # lines written this run
    refused: dict[str, str] = dataclasses.field(default_factory=dict)  # shard -> why

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0


def attribute_name(*parts: str) -> str:
    """``a__b__c`` with dolma's ``make_variable_name`` applied to each part."""
    return "__".join(re.sub(r"[^a-zA-Z0-9_]", "_", p) for p in parts)


def dolma_compression(file_name: str) -> str:
    """The compression dolma's mixer infers from a file name (``MultiStream::infer_compression``):
    the text after the first dot, then its last dot-separated part; ``gz``, ``zst`` or plain."""
    ext = file_name.split(".", 1)[1] if "." in file_name else ""
    ext = ext.rsplit(".", 1)[1] if "." in ext else ext
    return ext if ext in ("gz", "zst") else ""


def attribute_path(shard_rel: str, shard_format: str) -> str:
    """Where a shard's attribute file goes, relative to DIR (see the module docstring)."""
    if shard_format.startswith("jsonl"):
        return shard_rel
    lower = shard_rel.lower()
    for suffix, _ in SUFFIXES:  # longest first
        if lower.endswith(suffix) and len(suffix) < len(shard_rel):
            return shard_rel[: -len(suffix)] + ".jsonl.gz"
    return shard_rel + ".jsonl.gz"


def check_destination(out: str | os.PathLike, dest: str | os.PathLike, name: str = DEFAULT_NAME) -> None:
    """One-line errors, before any work: a bad ``--name``, OUT or DIR given as a URL (both are
    local folders: a path such as ``s3://b/x`` would otherwise be written as a local folder
    named ``s3:``), DIR inside OUT (or OUT itself)."""
    for what, where in (("the scan's OUT", out), ("the attributes' DIR", dest)):
        if is_url(os.fspath(where)) and scheme(os.fspath(where)) != "file":
            raise ConfigError(f"{public_url(os.fspath(where))}: dolma export reads and writes local folders only "
                              f"({what} given as a URL); export to a local folder and copy it (aws s3 sync, gsutil rsync)")
    out, dest = local_path(os.fspath(out)), local_path(os.fspath(dest))
    if not _NAME_RE.fullmatch(name or ""):
        raise ConfigError(f"--name {name!r}: use letters, digits and _, not starting with a digit "
                          "(dolma attribute names are identifiers)")
    real_out, real_dest = os.path.realpath(out), os.path.realpath(dest)
    if real_dest == real_out or os.path.commonpath([real_out, real_dest]) == real_out:
        raise ConfigError(f"{dest} is inside the scan's OUT {out}: choose a directory outside it "
                          "(dolma reads it as attributes/<name>/ beside the documents)")


def run_export(req: ExportRequest, warn: Callable[[str], None] = lambda m: None) -> ExportResult:
    """Write DIR's attribute files for every finished shard of OUT (see the module docstring)."""
    check_destination(req.out, req.dest, req.name)
    req = dataclasses.replace(req, out=local_path(os.fspath(req.out)), dest=local_path(os.fspath(req.dest)))
    out_root = Path(req.out)
    if not out_root.is_dir():
        raise ConfigError(f"{req.out}: no such directory (give the OUT of a scan)")
    out = OutDir(out_root)
    manifest = out.read_manifest()
    cfg = manifest.get("config", {})
    shards = [e for e in manifest.get("shards", []) if e.get("status") == "done"]
    if not shards:
        raise ConfigError(f"{req.out}: no finished shards to export")
    dest = Path(req.dest)
    inputs = {os.path.realpath(e["path"]) for e in manifest["shards"] if e.get("path")}
    targets: dict[str, Path] = {}
    for e in shards:  # every path is checked before anything is written
        rel = attribute_path(e["shard"], e.get("format", ""))
        targets[e["key"]] = _inside(dest, rel, f"the attributes of shard {e['shard']!r}")
        if os.path.realpath(targets[e["key"]]) in inputs:
            raise ConfigError(f"--to {dest} would overwrite the input {targets[e['key']]} (attribute files "
                              "have the documents' names): use the attributes/<name>/ folder beside documents/")
        _inside(out.annotations, e["key"] + ".parquet", f"key {e['key']!r} of shard {e['shard']!r}")
    if len(shards) < len(manifest["shards"]):  # dolma's mixer mixes a document file without attributes silently
        warn(f"the scan is not finished: exporting {len(shards)} of {len(manifest['shards'])} shards; "
             "rerun the export when it is")
    if cfg.get("text_field", "text") != "text":
        warn(f"the scan read the text from {cfg['text_field']!r}: text spans index that field, while "
             "dolma's span_replacement edits `text`")
    if cfg.get("id_field", "id") != "id":
        warn(f"the scan took ids from {cfg['id_field']!r}: dolma's mixer compares the top-level `id`")

    analyzers = _analyzer_classes(cfg, warn)
    settings = {"scan_config_hash": manifest.get("config_hash"), "name": req.name, "format": FORMAT_VERSION,
                "analyzers": [cls.name for cls in analyzers]}
    settings_hash = config_hash(settings)
    bookkeeping = dest / BOOKKEEPING_DIR
    done_dir = bookkeeping / DONE_DIR
    record = {"settings": settings, "settings_hash": settings_hash, "scan_out": str(out_root)}
    try:
        done_dir.mkdir(parents=True, exist_ok=True)
        if _read_json(bookkeeping / SETTINGS_NAME) != record:  # a resumed export rewrites nothing
            atomic_write_json(bookkeeping / SETTINGS_NAME, record)
    except OSError as exc:
        raise ConfigError(_cannot_write(dest, exc)) from None

    result = ExportResult()
    # a killed export's temporaries (next to the attribute files, only of their names; and ours)
    _remove_stale_temporaries([bookkeeping, done_dir], _names_by_dir(targets.values()))
    for e in shards:
        target, marker = targets[e["key"]], done_dir / f"{e['key']}.json"
        if _exported(marker, target, e, settings_hash):
            result.skipped += 1
            continue
        try:
            lines = _export_shard(out, e, target, analyzers, req.name)
            atomic_write_json(marker, {"shard": e["shard"], "key": e["key"], "file": target.relative_to(dest).as_posix(),
                                       "lines": lines, "settings_hash": settings_hash,
                                       "fingerprint": e.get("fingerprint"), "documents": e.get("documents"),
                                       "bad_records": e.get("bad_records")})
        except (AnnotationsDamaged, ShardUnreadable, _Refused) as exc:
            result.refused[e["shard"]] = str(exc)
        except OSError as exc:
            result.refused[e["shard"]] = _cannot_write(target, exc, shard=True)
        else:
            result.written += 1
            result.lines += lines
            continue
        warn(f"refusing shard {e['shard']}: {result.refused[e['shard']]}")
    return result


class _Refused(Exception):
    """One shard cannot be exported (the reason is one line)."""


def _analyzer_classes(cfg: dict, warn: Callable[[str], None]) -> list[type]:
    from llama_audit.analyzers.registry import load_class

    classes = []
    for name in cfg.get("analyzers", {}):
        try:
            classes.append(load_class(name))
        except ConfigError as exc:  # a plugin that is not installed here: its attributes are left out
            warn(f"{exc}; its attributes are not exported")
    return classes


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _exported(marker: Path, target: Path, entry: dict, settings_hash: str) -> bool:
    rec = _read_json(marker)
    if not isinstance(rec, dict):
        return False
    return (rec.get("settings_hash") == settings_hash and rec.get("fingerprint") == entry.get("fingerprint")
            and rec.get("documents") == entry.get("documents") and target.is_file())


def _export_shard(out: OutDir, entry: dict, target: Path, analyzers: list[type], name: str) -> int:
    ann = _read_annotations(out, entry, None)
    columns = {c: ann.column(c).combine_chunks() for c in ann.column_names}
    per_analyzer = []
    for cls in analyzers:
        rows = cls.dolma_attributes(columns)
        if rows is None:
            continue
        if len(rows) != ann.num_rows:
            raise _Refused(f"analyzer {cls.name!r} gave {len(rows)} attribute rows for {ann.num_rows} documents")
        per_analyzer.append((cls.name, rows))
    ids = columns["doc_id"].to_pylist()
    at_row = {r: i for i, r in enumerate(columns["row"].to_pylist())}
    n_lines = int(entry.get("documents", ann.num_rows)) + int(entry.get("bad_records", 0))
    bad_ids = _bad_record_ids(entry, set(at_row)) if len(at_row) < n_lines else {}
    bad = {attribute_name(name, *BAD_RECORD_ATTRIBUTE): [[0, 0, 1.0]]}

    names: dict[tuple[str, str], str] = {}  # (analyzer, attribute) -> full name, made once per shard

    def lines() -> Iterator[bytes]:
        for row in range(n_lines):
            i = at_row.get(row)
            if i is None:
                yield orjson.dumps({"id": bad_ids.get(row), "attributes": bad}) + b"\n"
                continue
            attrs: dict[str, Any] = {}
            for analyzer, rows in per_analyzer:
                for key, spans in rows[i].items():
                    full = names.get((analyzer, key))
                    if full is None:
                        full = names[(analyzer, key)] = attribute_name(name, analyzer, key)
                    attrs[full] = spans
            yield orjson.dumps({"id": ids[i], "attributes": dict(sorted(attrs.items()))}) + b"\n"

    def chunks() -> Iterator[bytes]:  # a few thousand lines per write: fewer compressor calls
        it = lines()
        while chunk := b"".join(itertools.islice(it, WRITE_LINES)):
            yield chunk

    target.parent.mkdir(parents=True, exist_ok=True)
    kind = dolma_compression(target.name)
    with atomic_output(target) as tmp, open(tmp, "wb") as raw:
        if kind == "gz":  # no file name, time 0: the same bytes on every run
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as f:
                for chunk in chunks():
                    f.write(chunk)
        elif kind == "zst":
            import zstandard

            with zstandard.ZstdCompressor(level=ZST_WRITE_LEVEL).stream_writer(raw, closefd=False) as f:
                for chunk in chunks():
                    f.write(chunk)
        else:
            for chunk in chunks():
                raw.write(chunk)
    return n_lines


def _bad_record_ids(entry: dict, annotated: Collection[int]) -> dict[int, Any]:
    """The top-level ``id`` of each bad record, as dolma's mixer reads it (``data["id"]``: null
    when absent or the line is no JSON object), from the input, which must be unchanged."""
    why = _changed(entry)
    if why:
        raise _Refused(f"{why} (its bad records' ids are read from it to keep the lines aligned)")
    found: dict[int, Any] = {}
    for row, raw in format_for(entry["format"]).records(Shard.from_record(entry)):
        if row in annotated:
            continue
        obj: Any = raw
        if isinstance(raw, (bytes, str)):
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
        found[row] = obj.get("id") if isinstance(obj, dict) else None
    return found
