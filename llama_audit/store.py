"""The OUT directory: layout, atomic writes, the config lock-in, done markers and the manifest.

Layout (docs/outputs.md)::

    OUT/config.json            what this OUT was scanned with; a rerun must match it (or --overwrite)
    OUT/manifest.json          config + versions + shard list with states, bad-record counts, timings
    OUT/annotations/<key>.parquet
    OUT/partials/<key>.parquet
    OUT/done/<key>.json        written last for a shard: its presence means the shard is finished
    OUT/summary/counts.parquet merged partials
    OUT/samples/<key>.parquet  review samples of the shard (only when an analyzer keeps them)
    OUT/summary/samples.parquet merged review samples (idem)

    OUT/plan.json              the full shard list of the configuration, written before the first shard
    OUT/.lock/                 the OUT lock (llama_audit/lease.py)

Every file is written under a temporary name (``.<name>.<8 hex>.tmp``, mode 0666 less the umask)
and renamed, so a crash never leaves a half file that looks finished; the manifest is derived
from the plan and the done markers, so any process holding the gate (a scan, a Slurm slice,
``merge``) can rewrite it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from llama_audit import partials, review_samples
from llama_audit.types import ConfigError

PARQUET_OPTIONS = dict(compression="zstd", write_statistics=True, use_dictionary=True)
DONE_RECORD_KEYS = ("key", "shard", "documents", "bad_records")  # a done marker without them is damaged


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config)).hexdigest()[:16]


# ``.<name>.<8 characters>.tmp``: ours (and tempfile.mkstemp's of earlier versions); nothing else matches
TMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # what _tmp_near creates for <name>
ROW_GROUP_ROWS = 65536  # annotation rows per parquet row group, whatever the batch size (see AtomicParquetWriter)
PAUSE_ENV, PAUSE_FILE_ENV = "LLAMA_AUDIT_TEST_PAUSE_AT", "LLAMA_AUDIT_TEST_PAUSE_FILE"
_pause_counts: dict[str, int] = {}


class OutputWriteError(Exception):
    """OUT could not be written after work began (disk full, quota, file size limit, read-only):
    one line naming the path and the fix; exit code 1, the OUT stays resumable."""


def pause_for_tests(point: str) -> None:
    """Test hook, inert unless ``LLAMA_AUDIT_TEST_PAUSE_AT=POINT[@N]`` is set: at the N-th (default
    first) time this process reaches ``point``, create the file named by
    ``LLAMA_AUDIT_TEST_PAUSE_FILE`` and sleep, so that a test can SIGKILL the process at exactly
    that point (tests/test_kill_resume.py). Points: ``write:<dir>`` (a file of OUT/<dir>/ written
    under its temporary name, not yet renamed: annotations, partials, done, summary, ...) and
    ``merge`` (``merge`` holding the gate)."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _pause_counts[point] = _pause_counts.get(point, 0) + 1
    if _pause_counts[point] != int(nth or 1):
        return
    flag = os.environ.get(PAUSE_FILE_ENV)
    if flag:
        Path(flag).write_text(str(os.getpid()))
    time.sleep(600)


def _tmp_near(path: Path) -> Path:
    """A new, empty temporary file next to ``path``, created with mode 0666 less the umask (as
    ``open()`` would), so that output files are readable by whoever the umask allows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def _install(tmp: Path, path: Path) -> None:
    pause_for_tests(f"write:{path.parent.name}")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to: renamed onto ``path`` when the block ends,
    removed if it raises, so a crash never leaves a half file that looks finished."""
    tmp = _tmp_near(path)
    try:
        yield tmp
        _install(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_near(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        _install(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = _tmp_near(path)
    try:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
        _install(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AtomicParquetWriter:
    """Streams row groups into a temp file; ``commit()`` renames it into place, ``abort()`` drops it.

    Rows are buffered and written in row groups of exactly ``row_group_rows`` rows (the last one
    smaller), each as one contiguous chunk, so the file's bytes do not depend on how the rows
    arrived (``--batch-docs``). 65,536 rows: annotation rows hold no text (tens of bytes each), so
    the buffer stays at a few MB, while a row group stays large enough for good compression and
    statistics that let readers skip it."""

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS):
        self.path = path
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.tmp = _tmp_near(path)
        self._writer = pq.ParquetWriter(self.tmp, schema, **PARQUET_OPTIONS)
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffer:
            return
        rows = pa.concat_tables(self._buffer).combine_chunks() if len(self._buffer) > 1 else self._buffer[0]
        full = rows.num_rows if final else rows.num_rows - rows.num_rows % self.row_group_rows
        for start in range(0, full, self.row_group_rows):
            group = rows.slice(start, min(self.row_group_rows, full - start)).combine_chunks()
            self._writer.write_table(group, row_group_size=self.row_group_rows)
        rest = rows.slice(full)
        self._buffer = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows

    def commit(self) -> None:
        self._flush(final=True)
        pause_for_tests(f"write:{self.path.parent.name}")
        self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directories, older_than: float | None,
                             names: "dict | None" = None) -> list[Path]:
    """Remove, in each of ``directories`` (not below), the temporaries of our naming
    (:data:`TMP_NAME`) whose mtime is before ``older_than`` (None: all of them). ``names``
    (directory -> set of file names) limits a directory to the temporaries of those names, for
    directories shared with files that are not ours (a cleaned corpus). Returns what was removed."""
    removed = []
    for d in directories:
        allowed = None if names is None else names.get(d)
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            m = TMP_NAME.match(e.name)
            if not m or (allowed is not None and m["name"] not in allowed):
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                if older_than is not None and e.stat(follow_symlinks=False).st_mtime >= older_than:
                    continue
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                continue
    return removed


class OutDir:
    def __init__(self, root: str | Path):
        from llama_audit.corpus.remote import local_path

        self.root = Path(local_path(root) if isinstance(root, str) else root)  # file:///x is /x
        self.annotations = self.root / "annotations"
        self.partials = self.root / "partials"
        self.done = self.root / "done"
        self.summary = self.root / "summary"
        self.samples = self.root / "samples"  # created by the first samples file (none by default)
        self.figures = self.root / "report"  # report's figures (SVG, PNG) unless --figures DIR
        self.errors = self.root / "errors"
        self.config_path = self.root / "config.json"
        self.manifest_path = self.root / "manifest.json"
        self.plan_path = self.root / "plan.json"

    # -- paths -------------------------------------------------------------------------------
    def annotation_path(self, key: str) -> Path:
        return self.annotations / f"{key}.parquet"

    def partial_path(self, key: str) -> Path:
        return self.partials / f"{key}.parquet"

    def done_path(self, key: str) -> Path:
        return self.done / f"{key}.json"

    def error_path(self, key: str) -> Path:
        return self.errors / f"{key}.json"

    def summary_path(self) -> Path:
        return self.summary / "counts.parquet"

    def samples_path(self, key: str) -> Path:
        return self.samples / f"{key}.parquet"

    def summary_samples_path(self) -> Path:
        return self.summary / "samples.parquet"

    # -- config lock-in ----------------------------------------------------------------------
    def prepare(self, config: dict, *, overwrite: bool, busy: str | None = None) -> None:
        """Create OUT for ``config``; refuse an OUT written with another configuration.
        ``busy``: who else is scanning OUT right now (their scan leases), or None; OUT is then
        never cleared, since that would discard their work (the caller holds the OUT gate)."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} exists and is not a directory")
        existing = self.read_config()
        if (existing is not None and existing.get("config_hash") != config_hash(config)
                and self.manifest_path.is_file() and self._holds_nothing() and busy is None):
            overwrite = True  # a run that ended (manifest) without any shard output, e.g. failed in setup
        if not overwrite:
            self.refuse_other_config(config, busy)
        clear = overwrite and (existing.get("config_hash") != config_hash(config) if existing is not None
                               else self.root.exists() and self._holds_outputs())
        if clear and busy is not None:
            raise ConfigError(f"--overwrite would discard the work of a scan still running in {self.root}: "
                              f"{busy}; wait for it to end, or use another --out")
        if clear:
            self.clear()
        for d in (self.annotations, self.partials, self.done, self.summary):
            d.mkdir(parents=True, exist_ok=True)
        if self.read_config() is None:
            atomic_write_json(self.config_path, {"config_hash": config_hash(config), "config": config})

    def refuse_other_config(self, config: dict, busy: str | None = None) -> None:
        """A one-line ConfigError when OUT is locked to another configuration than ``config``
        (unless it holds no shard output of a run that ended: :meth:`prepare` takes that over).
        Also a check before long work that precedes the scan (``eval --generate-with``)."""
        existing = self.read_config()
        if existing is None or existing.get("config_hash") == config_hash(config):
            return
        if self.manifest_path.is_file() and self._holds_nothing() and busy is None:
            return
        diff = sorted(k for k in set(existing.get("config", {})) | set(config)
                      if existing.get("config", {}).get(k) != config.get(k))
        raise ConfigError(
            f"{self.root} was scanned with a different configuration (differs in: {', '.join(diff) or 'details'}); "
            "use another --out, or --overwrite to discard it"
        )

    def _holds_nothing(self) -> bool:
        """No shard output at all, finished or being written (annotations, partials, done markers)."""
        for d in (self.annotations, self.partials, self.done, self.samples):
            try:
                if any(d.iterdir()):
                    return False
            except FileNotFoundError:
                continue
        return True

    def _holds_outputs(self) -> bool:
        """Anything of a scan in OUT (an OUT without config.json may still hold a killed run's files)."""
        return not self._holds_nothing() or any(
            p.exists() for p in (self.manifest_path, self.plan_path, self.summary, self.errors))

    def clear(self) -> None:
        for d in (self.annotations, self.partials, self.done, self.summary, self.errors, self.samples, self.figures):
            shutil.rmtree(d, ignore_errors=True)
        for p in (self.config_path, self.manifest_path, self.plan_path):
            p.unlink(missing_ok=True)

    # -- the plan: every shard of the configuration, written before the first shard starts ------
    def read_plan(self) -> dict | None:
        """``{"config_hash", "shards": [{shard, key, path, format, size}], ...}`` or None (an OUT
        written before plans existed, or a damaged plan: the caller falls back to the manifest)."""
        try:
            plan = json.loads(self.plan_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(plan, dict) or not isinstance(plan.get("shards"), list):
            return None
        return plan

    def write_plan(self, plan: dict) -> None:
        atomic_write_json(self.plan_path, plan)

    # -- stale temporaries ---------------------------------------------------------------------
    def remove_stale_temporaries(self, older_than: float | None) -> list[Path]:
        """Remove temporaries of our naming (``.<name>.<8>.tmp``) that a killed process left in
        OUT, its subdirectories and the summary; only those whose mtime is before ``older_than``
        (the start of the oldest live scan lease, on the file system's clock), so that a live
        holder's temporaries – created after it took its lease – are never touched. ``None``: no
        live holder, all of them. Returns what was removed."""
        return remove_stale_temporaries(
            [self.root, self.annotations, self.partials, self.done, self.summary, self.errors, self.samples],
            older_than)

    def read_config(self) -> dict | None:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.config_path}: unreadable ({exc}); use --overwrite") from None

    # -- done markers --------------------------------------------------------------------------
    def is_done(self, key: str) -> bool:
        return self.done_path(key).is_file() and self.partial_path(key).is_file()

    def read_done(self, key: str) -> dict | None:
        """The shard's done record, or None (absent, or damaged: truncated, not an object)."""
        try:
            rec = json.loads(self.done_path(key).read_text())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        return rec if isinstance(rec, dict) else None

    def iter_done(self) -> Iterator[dict]:
        if not self.done.is_dir():
            return
        for p in sorted(self.done.glob("*.json")):
            rec = self.read_done(p.stem)
            if rec is not None:
                yield rec

    def damaged(self, key: str, rec: dict, annotation_schema: pa.Schema | None = None) -> str | None:
        """Why the finished shard ``key`` (done record ``rec``) cannot be used, or None. Reads only
        parquet footers: the partial must have the partial schema, the annotations file as many
        rows as the shard's documents (and, when given, ``annotation_schema``). A truncated or
        otherwise corrupt file fails here instead of crashing a merge, a report or a filter."""
        missing = [k for k in DONE_RECORD_KEYS if k not in rec]
        if missing:
            return f"done marker lacks {', '.join(missing)}"
        for what, path in (("partial", self.partial_path(key)), ("annotations", self.annotation_path(key))):
            try:
                meta = pq.read_metadata(path)
                schema = meta.schema.to_arrow_schema()
            except FileNotFoundError:
                return f"{what} file missing"
            except (OSError, pa.ArrowException) as exc:
                return f"{what} file unreadable ({str(exc).splitlines()[0][:120]})"
            if what == "partial" and not partials.is_partial_schema(schema.remove_metadata()):
                return "partial file has another schema"
            if what == "annotations":
                if meta.num_rows != rec.get("documents"):
                    return f"annotations file holds {meta.num_rows} rows, the done marker says {rec.get('documents')}"
                if annotation_schema is not None and not schema.remove_metadata().equals(annotation_schema.remove_metadata()):
                    return "annotations file has other columns than this configuration writes"
        if review_samples.DONE_KEY in rec:  # written by a scan that kept review samples: they must read back
            try:
                meta = pq.read_metadata(self.samples_path(key))
            except FileNotFoundError:
                return "review samples file missing"
            except (OSError, pa.ArrowException) as exc:
                return f"review samples file unreadable ({str(exc).splitlines()[0][:120]})"
            if (not meta.schema.to_arrow_schema().remove_metadata().equals(review_samples.SCHEMA)
                    or meta.num_rows != rec[review_samples.DONE_KEY]):
                return "review samples file does not match the done marker"
        return None

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.root}: no manifest.json (is this a llama-audit scan output?)") from None
        except ValueError as exc:
            raise ConfigError(f"{self.manifest_path}: not valid JSON ({exc})") from None
