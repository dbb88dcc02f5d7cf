"""The OUT directory: layout, atomic writes, the config lock-in, done markers and the manifest.

Layout (docs/outputs.md)::

    OUT/config.json            what this OUT was scanned with; a rerun must match it (or --overwrite)
    OUT/manifest.json          config + versions + shard list with states, bad-record counts, timings
    OUT/annotations/<key>.parquet
    OUT/partials/<key>.parquet
    OUT/done/<key>.json        written last for a shard: its presence means the shard is finished
    OUT/summary/counts.parquet merged partials

Every file is written under a temporary name and renamed, so a crash never leaves a half file
that looks finished; the manifest is derived from the done markers, so any process (a scan, a
Slurm slice, ``merge``) can rewrite it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from llama_audit.types import ConfigError

PARQUET_OPTIONS = dict(compression="zstd", write_statistics=True, use_dictionary=True)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config)).hexdigest()[:16]


def _tmp_near(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to: renamed onto ``path`` when the block ends,
    removed if it raises, so a crash never leaves a half file that looks finished."""
    tmp = _tmp_near(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_near(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def atomic_write_table(path: Path, table: pa.Table) -> None:
    tmp = _tmp_near(path)
    try:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AtomicParquetWriter:
    """Streams row groups into a temp file; ``commit()`` renames it into place, ``abort()`` drops it."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.tmp = _tmp_near(path)
        self._writer = pq.ParquetWriter(self.tmp, schema, **PARQUET_OPTIONS)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def commit(self) -> None:
        self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class OutDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.annotations = self.root / "annotations"
        self.partials = self.root / "partials"
        self.done = self.root / "done"
        self.summary = self.root / "summary"
        self.errors = self.root / "errors"
        self.config_path = self.root / "config.json"
        self.manifest_path = self.root / "manifest.json"

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

    # -- config lock-in ----------------------------------------------------------------------
    def prepare(self, config: dict, *, overwrite: bool) -> None:
        """Create OUT for ``config``; refuse an OUT written with another configuration."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} exists and is not a directory")
        existing = self.read_config()
        if (existing is not None and existing.get("config_hash") != config_hash(config)
                and self.manifest_path.is_file() and self._holds_nothing()):
            overwrite = True  # a run that ended (manifest) without any shard output, e.g. failed in setup
        if existing is not None and existing.get("config_hash") != config_hash(config):
            if not overwrite:
                diff = sorted(k for k in set(existing.get("config", {})) | set(config)
                              if existing.get("config", {}).get(k) != config.get(k))
                raise ConfigError(
                    f"{self.root} was scanned with a different configuration (differs in: {', '.join(diff) or 'details'}); "
                    "use another --out, or --overwrite to discard it"
                )
        if overwrite and existing is not None and existing.get("config_hash") != config_hash(config):
            self.clear()
        elif overwrite and existing is None and self.root.exists():
            self.clear()
        for d in (self.annotations, self.partials, self.done, self.summary):
            d.mkdir(parents=True, exist_ok=True)
        if self.read_config() is None:
            atomic_write_json(self.config_path, {"config_hash": config_hash(config), "config": config})

    def _holds_nothing(self) -> bool:
        """No shard output at all, finished or being written (annotations, partials, done markers)."""
        for d in (self.annotations, self.partials, self.done):
            try:
                if any(d.iterdir()):
                    return False
            except FileNotFoundError:
                continue
        return True

    def clear(self) -> None:
        for d in (self.annotations, self.partials, self.done, self.summary, self.errors):
            shutil.rmtree(d, ignore_errors=True)
        for p in (self.config_path, self.manifest_path):
            p.unlink(missing_ok=True)

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
        try:
            return json.loads(self.done_path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def iter_done(self) -> Iterator[dict]:
        if not self.done.is_dir():
            return
        for p in sorted(self.done.glob("*.json")):
            try:
                yield json.loads(p.read_text())
            except ValueError:
                continue

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.root}: no manifest.json (is this a llama-audit scan output?)") from None
        except ValueError as exc:
            raise ConfigError(f"{self.manifest_path}: not valid JSON ({exc})") from None
