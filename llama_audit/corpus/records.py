"""What corpus discovery and reading hand to the rest of llama-audit: shards, bad records, errors."""

from __future__ import annotations

import dataclasses

#: Shard formats, as found in :attr:`Shard.format`.
FORMATS: tuple[str, ...] = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "txt", "txt.gz", "txt.zst", "hf_arrow")

#: File name endings recognised by :func:`~llama_audit.corpus.discover`, longest first, and the
#: format each maps to. Matched case-insensitively.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".jsonl.zstd", "jsonl.zst"),
    (".ndjson.zstd", "jsonl.zst"),
    (".json.zstd", "jsonl.zst"),
    (".jsonl.zst", "jsonl.zst"),
    (".ndjson.zst", "jsonl.zst"),
    (".json.zst", "jsonl.zst"),
    (".txt.zstd", "txt.zst"),
    (".txt.zst", "txt.zst"),
    (".txt.gz", "txt.gz"),
    (".jsonl.gz", "jsonl.gz"),
    (".ndjson.gz", "jsonl.gz"),
    (".json.gz", "jsonl.gz"),
    (".parquet", "parquet"),
    (".ndjson", "jsonl"),
    (".jsonl", "jsonl"),
    (".arrow", "hf_arrow"),
    (".json", "jsonl"),
    (".txt", "txt"),
    (".pq", "parquet"),
)

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

SUPPORTED_FORMATS_TEXT = (
    "JSON lines (.jsonl, .ndjson, .json; compressed .jsonl.gz, .json.gz, .jsonl.zst, .json.zst), "
    "Parquet (.parquet, .pq), plain text (.txt, .txt.gz, .txt.zst; one document per file), "
    "Arrow (.arrow) and directories written by datasets' save_to_disk"
)


@dataclasses.dataclass(frozen=True)
class Shard:
    """One input file: the unit of work and of resume."""

    path: str  # absolute path (for saved HF datasets: the .arrow file)
    root: str  # the corpus root it was found under (absolute)
    rel: str  # posix path relative to root: the ``shard`` annotation column
    format: str  # one of FORMATS
    size: int  # bytes on disk
    mtime_ns: int
    key: str  # filesystem-safe, unique, deterministic name for output files


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """A record that was not read as a document. ``detail`` never contains record content."""

    row: int  # 0-based record index in the shard
    reason: str  # one of BAD_REASONS
    detail: str  # one short line: positions, field names, exception class names


class ShardUnreadable(Exception):
    """The file cannot be opened or read at all. The message is one line naming file and cause."""


class UnsupportedFormat(Exception):
    """A file's type is not one llama-audit reads. The message lists the supported formats."""
