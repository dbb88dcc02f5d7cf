"""What corpus discovery and reading hand to the rest of llama-audit: shards, the read spec,
bad records, errors."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional

from ..types import ConfigError, DocBatch

#: Why a record was not read as a document (:attr:`BadRecord.reason`).
BAD_REASONS: tuple[str, ...] = (
    "malformed_json",  # the line is not valid JSON
    "not_an_object",  # valid JSON, but not an object
    "missing_text",  # the text field is absent or null (or the column is missing)
    "non_string_text",  # the text field holds a number, list, object, bool, binary...
    "invalid_utf8",  # the line (or text file) is not valid UTF-8
    "truncated_stream",  # a .gz/.zst/.arrow stream ends early; the rest of the shard is lost
    "read_error",  # I/O error or corrupt data mid-file; the rest of the shard (row group) is lost
)


_CONTROL_OR_UNDECODABLE = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff]")
#: what :func:`~llama_audit.corpus.shard_key` produces: a file name with no path and no leading dot
_SAFE_KEY = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,254}")


def unsafe_rel(rel: object) -> str | None:
    """Why ``rel`` is not a safe shard name (a relative posix path that stays under its root, with
    printable, UTF-8-encodable characters), or None when it is one. Output files under OUT and
    CLEAN are named from it, so a name that could climb out of them is refused wherever one is
    built or read back."""
    if not isinstance(rel, str) or not rel:
        return "it is empty"
    if rel.startswith("/"):
        return "it is absolute"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "it has an empty, '.' or '..' part"
    if _CONTROL_OR_UNDECODABLE.search(rel):
        return "it has control characters or undecodable bytes"
    return None


def unsafe_key(key: object) -> str | None:
    """Why ``key`` is not a safe output file name (one name, no path, no leading dot), or None."""
    if not isinstance(key, str) or not _SAFE_KEY.fullmatch(key):
        return "it is not one plain file name"
    return None


#: corpus count ``text_field/<path>``: documents whose text came from that --text-field fallback
#: (counted only when the option lists fallbacks, so other scans keep their partials byte for byte)
TEXT_FIELD_COUNT_PREFIX = "text_field/"

#: ``scan -``: the argument that reads one shard from standard input (see docs/input-formats.md)
STDIN_ARG = "-"
#: the stdin shard's :attr:`Shard.path`: not a file name (no file of that name is ever opened)
STDIN_PATH = "<stdin>"
#: the stdin shard's name (:attr:`Shard.rel`, the ``shard`` column) and output key: the same on
#: every machine and run (a file's key always ends in ``-<8 hex>``, so none can be the same)
STDIN_NAME = "stdin"
#: ``--input-format``: what standard input may hold (streams without a name to detect it from)
STDIN_FORMATS: tuple[str, ...] = ("jsonl", "jsonl.gz", "jsonl.zst")


@dataclasses.dataclass(frozen=True)
class Shard:
    """One input file: the unit of work and of resume."""

    path: str  # absolute path (for saved HF datasets: the .arrow file), or a remote object's URL
    root: str  # the corpus root it was found under (absolute), or the URL prefix it was listed under
    rel: str  # posix path relative to root: the ``shard`` annotation column
    format: str  # one of FORMATS (llama_audit.corpus.registry)
    size: int  # bytes on disk
    mtime_ns: int
    key: str  # filesystem-safe, unique, deterministic name for output files

    def to_record(self) -> dict[str, Any]:
        """The shard as the JSON-able dict that done markers and manifests store (``shard`` is rel)."""
        return {"shard": self.rel, "key": self.key, "path": self.path, "format": self.format,
                "size": self.size, "mtime_ns": self.mtime_ns, "root": self.root}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Shard":
        """The shard of a :meth:`to_record` dict, or of a manifest entry. Manifest entries carry no
        ``root``: it is then the path with ``rel`` taken off its end (or the file's directory)."""
        path, rel, key = record["path"], record["shard"], record["key"]
        # a manifest is a file a person can edit: its names must not lead a write out of OUT/CLEAN
        why = unsafe_rel(rel)
        if why is not None:
            raise ConfigError(f"manifest entry for {path!r}: shard name {rel!r} is unsafe ({why})")
        why = unsafe_key(key)
        if why is not None:
            raise ConfigError(f"manifest entry for {path!r}: key {key!r} is unsafe ({why})")
        root = record.get("root")
        if root is None:
            suffix = "/" + rel
            root = path[:-len(suffix)] if path.endswith(suffix) else os.path.dirname(path)
        return cls(path=path, root=root, rel=rel, format=record["format"], size=record["size"],
                   mtime_ns=record["mtime_ns"], key=key)


def is_stdin(shard: Shard) -> bool:
    """Whether ``shard`` is standard input (``scan -``): read once per run, never reopened."""
    return shard.path == STDIN_PATH


def stdin_shard(fmt: str = "jsonl") -> Shard:
    """The one shard of ``scan -``. Its size is unknown until it is read (0 in the plan); the
    done marker records the bytes read and their sha256 (:func:`~llama_audit.corpus.streams.stdin_read`)."""
    if fmt not in STDIN_FORMATS:
        raise ConfigError(f"--input-format takes {', '.join(STDIN_FORMATS)} (got {fmt!r})")
    return Shard(path=STDIN_PATH, root=STDIN_ARG, rel=STDIN_NAME, format=fmt, size=0, mtime_ns=0, key=STDIN_NAME)


def stdin_request(paths: "list[str] | tuple[str, ...]", input_format: str | None) -> Shard | None:
    """The stdin shard when the corpus is ``-``, None when ``-`` is not among ``paths``.
    ConfigError (before any work) for ``--input-format`` without ``-``, and for ``-`` with other
    paths: the stdin shard is read by the scanning process itself, once, so it is scanned alone."""
    if STDIN_ARG not in paths:
        if input_format is not None:
            raise ConfigError("--input-format is for standard input only: give '-' as the corpus "
                              "(cat part.jsonl.gz | llama-audit scan - --input-format jsonl.gz --out OUT)")
        return None
    if len(paths) > 1:
        raise ConfigError("'-' (standard input) is scanned alone: give no other corpus paths with it "
                          "(scan them into another --out, or pipe them all into standard input)")
    return stdin_shard(input_format or STDIN_FORMATS[0])


@dataclasses.dataclass(frozen=True)
class ReadSpec:
    """What to read from each record, and how much per batch.

    ``text_field``, ``id_field`` and every entry of ``fields`` are field paths: a plain name is a
    top-level field (or column); ``meta.text`` walks into nested JSON objects or Arrow/Parquet
    structs. A top-level key that itself contains dots is taken literally when it exists, so
    such corpora keep working. The values at ``fields`` are projected into each batch as
    :attr:`DocBatch.fields` (one value per document, None where absent).
    A batch holds at most ``batch_docs`` documents and ``batch_bytes`` bytes (JSON line size for
    JSON lines, UTF-8 text size otherwise) unless one document alone is larger.
    """

    text_field: str = "text"
    id_field: str = "id"
    fields: tuple[str, ...] = ()
    batch_docs: int = 1024
    batch_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if self.batch_docs < 1 or self.batch_bytes < 1:
            raise ValueError("batch_docs and batch_bytes must be positive")
        object.__setattr__(self, "fields", tuple(self.fields))  # hashable, even when given a list


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """A record that was not read as a document. ``detail`` never contains record content."""

    row: int  # 0-based record index in the shard
    reason: str  # one of BAD_REASONS
    detail: str  # one short line: positions, field names, exception class names


#: What reading a shard yields: (batch or None, bad records since the last item, input bytes consumed).
Item = tuple[Optional[DocBatch], list[BadRecord], int]


class ShardUnreadable(Exception):
    """The file cannot be opened or read at all. The message is one line naming file and cause."""


class UnsupportedFormat(Exception):
    """A file's type is not one llama-audit reads. The message lists the supported formats."""
